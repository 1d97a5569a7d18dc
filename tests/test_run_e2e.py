"""`comfyfixer run` end to end: the real CLI in a subprocess against loopback fakes.

Few cases, each doing a lot: every trap a download can hit (redirects, Range resume after a dropped
connection, 429 + Retry-After, an HTML login page, a wrong hash, a disk that fills up), Ctrl-C and
resume, the verification batches, and the state a second run relies on. Each ends with the right
outcome and no corrupt file at a final path.

The full disk is simulated with RLIMIT_FSIZE (`ulimit -f`) on the run process, which its scripts
inherit: writes past the limit fail mid-download exactly as on a full disk (EFBIG/SIGXFSZ rather
than ENOSPC: same effect for the script, no root or loop device needed). The limit stays above
the state files' sizes so only the model write fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.civitai import FakeCivitai
from tests.fakes.content import safetensors_bytes
from tests.fakes.files import LOGIN_PAGE, FileServer
from tests.fakes.hub import FakeHub

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Env:
    files: FileServer
    hub: FakeHub
    civitai: FakeCivitai
    root: Path
    work: Path

    @property
    def loras(self) -> Path:
        return self.root / "models" / "loras"

    def environ(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HF_", "OPENAI_", "COMFYFIXER_", "CIVITAI"))
        }
        env.update(
            HF_ENDPOINT=self.hub.url,
            HF_HOME=str(self.work / "hf_home"),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            COMFYFIXER_CIVITAI_URL=self.civitai.url,
            COMFYFIXER_CATALOG_URL="off",
            COMFYFIXER_ALLOW_HOSTS="127.0.0.1,localhost",
            COMFYFIXER_RETRY_DELAY="0",
            COMFYUI_PATH="",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        return env

    def command(self, workflow: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "comfyfixer", *self.args(workflow, *extra)]

    def args(self, workflow: Path, *extra: str) -> list[str]:
        """`comfyfixer run` arguments for this world: its install, its folders, no questions, JSON."""
        return [
            "run",
            str(workflow),
            "--comfyui",
            str(self.root),
            "--yes",
            "--json",
            "--output-dir",
            str(self.work / "output"),
            "--log-dir",
            str(self.work / "log"),
            *extra,
        ]

    def cli(self, *args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m comfyfixer ARGS` in the work folder, with no terminal on stdin."""
        return subprocess.run(
            [sys.executable, "-m", "comfyfixer", *args],
            cwd=self.work,
            env=environ if environ is not None else self.environ(),
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )

    def run(self, workflow: Path, *extra: str, **popen: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(workflow, *extra),
            cwd=self.work,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
            **popen,
        )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    with FileServer() as files, FakeHub() as hub, FakeCivitai() as civitai:
        yield Env(files, hub, civitai, root, work)
        errors = files.errors + hub.errors + civitai.errors
    assert not errors


def workflow(path: Path, models: list[tuple[str, str | None, str | None]]) -> Path:
    """A UI workflow with one LoraLoader per `(name, url, sha256)`; url/hash go to properties.models."""
    nodes = []
    for i, (name, url, sha) in enumerate(models, 1):
        props: dict[str, Any] = {"Node name for S&R": "LoraLoader"}
        if url:
            entry = {"name": name.rsplit("/", 1)[-1], "url": url, "directory": "loras"}
            if sha:
                entry.update(hash=sha, hash_type="SHA256")
            props["models"] = [entry]
        nodes.append(
            {
                "id": i,
                "type": "LoraLoader",
                "mode": 0,
                "inputs": [],
                "outputs": [],
                "properties": props,
                "widgets_values": [name, 1.0, 1.0],
            }
        )
    path.write_text(json.dumps({"last_node_id": len(nodes), "nodes": nodes, "links": [], "version": 0.4}))
    return path


def report_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), f"no JSON on stdout; stderr:\n{proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout)  # exactly one JSON document: never progress
    return report


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["outcome"] for m in report["models"]}


def no_final_file_is_corrupt(env: Env, report: dict[str, Any]) -> None:
    for m in report["models"]:
        final = env.loras / m["name"]
        if m["outcome"] in ("downloaded", "already_present"):
            assert final.is_file() and final.stat().st_size == m["size"]
        else:
            assert not final.exists(), f"{m['name']} ({m['outcome']}) left a file at its final path"


# ---------------------------------------------------------------- the traps, batches and state


def test_run_survives_every_download_trap_and_keeps_state(env: Env) -> None:
    fs = env.files
    blobs = {}
    for name in (
        "plain1",
        "plain2",
        "plain3",
        "plain4",
        "redirected",
        "dropped",
        "limited",
        "login",
        "badhash",
    ):
        blobs[name] = fs.add(f"/f/{name}.safetensors", safetensors_bytes(name, 40_000 + len(name)))
    blobs["sub"] = fs.add("/f/sd15/sub.safetensors", safetensors_bytes("sub", 30_000))
    fs.redirect("/r/redirected.safetensors", "/hop/redirected.safetensors")
    fs.redirect("/hop/redirected.safetensors", fs.url_for("/f/redirected.safetensors", alt=True), status=307)
    fs.drop("/f/dropped.safetensors", after=30_000)  # cut half-way; the script resumes with Range
    fs.fail("/f/limited.safetensors", 429, headers={"Retry-After": "1"}, methods=["GET"])
    fs.fail(
        "/f/login.safetensors",
        200,
        times=None,
        headers={"Content-Type": "text/html"},
        body=LOGIN_PAGE,
        methods=["GET"],
    )  # the probe (HEAD) looks fine; the download itself is a login page
    fs.add("/f/badhash.safetensors", blobs["badhash"].data, corrupt=True)

    def hinted(name: str, path: str | None = None, sha: str | None = None) -> tuple[str, str, str | None]:
        return (name, fs.url_for(path or f"/f/{name}"), sha)

    wf = workflow(
        env.work / "traps.json",
        [
            hinted("plain1.safetensors", sha=blobs["plain1"].sha256),
            hinted("plain2.safetensors"),
            hinted("plain3.safetensors"),
            hinted("plain4.safetensors"),
            hinted("redirected.safetensors", "/r/redirected.safetensors"),
            hinted("dropped.safetensors", sha=blobs["dropped"].sha256),
            hinted("limited.safetensors"),
            hinted("login.safetensors"),
            hinted("badhash.safetensors", sha=blobs["badhash"].sha256),
            hinted("sd15/sub.safetensors", "/f/sd15/sub.safetensors"),
            ("nowhere_at_all_v9.safetensors", None, None),
        ],
    )
    proc = env.run(wf)
    report = report_of(proc)
    assert proc.returncode == 1, proc.stderr  # some failed
    got = outcomes(report)
    assert got == {
        "plain1.safetensors": "downloaded",
        "plain2.safetensors": "downloaded",
        "plain3.safetensors": "downloaded",
        "plain4.safetensors": "downloaded",
        "redirected.safetensors": "downloaded",
        "dropped.safetensors": "downloaded",
        "limited.safetensors": "downloaded",
        "login.safetensors": "download_failed",
        "badhash.safetensors": "verify_failed",
        "sd15/sub.safetensors": "downloaded",
        "nowhere_at_all_v9.safetensors": "not_found",
    }, proc.stderr
    by_name = {m["name"]: m for m in report["models"]}
    assert "HTML" in by_name["login.safetensors"]["reason"]
    assert "sha256" in by_name["badhash.safetensors"]["reason"]
    no_final_file_is_corrupt(env, report)
    assert (env.loras / "sd15" / "sub.safetensors").read_bytes() == blobs["sub"].data  # sub-folder kept
    assert (env.loras / "dropped.safetensors").read_bytes() == blobs["dropped"].data
    resumed = [r.range for r in fs.requests_to("/f/dropped.safetensors", "GET")]
    assert len(resumed) >= 2 and resumed[-1] and resumed[-1].startswith("bytes=")
    assert len(fs.requests_to("/f/limited.safetensors", "GET")) >= 2  # 429 first, then the file
    # Eight files were verified: one pass after the 6th, the remainder at the end; no LLM configured.
    assert [len(v["models"]) for v in report["verifications"]] == [6, 2]
    assert all(v["llm"] is False and "skipped" in v["reason"] for v in report["verifications"])
    assert report["counts"]["downloaded"] == 8 and report["counts"]["failed"] == 3
    out = env.work / "output"
    assert (out / "download_counter.txt").read_text() == "10\n"
    assert len(list(out.glob("download_*.sh"))) == 10
    recorded = json.loads((out / "downloaded_models.json").read_text())
    assert sorted(m["name"] for m in recorded["models"]) == sorted(
        n for n, o in got.items() if o == "downloaded"
    )
    assert "Traceback" not in proc.stderr

    # A second run plans only what is still missing (the scan now finds the others installed) and
    # lists the installed ones as already_present, with path and sha256; failures are never cached:
    # they are searched and planned again, each into its own script from the first run (same number).
    first_scripts = {m["name"]: m["script"] for m in report["models"] if m["script"]}
    fs.clear_log()
    second = env.run(wf, "--dry-run")
    assert second.returncode == 1, second.stderr  # nowhere_at_all is still not found
    second_report = report_of(second)
    again = outcomes(second_report)
    assert again == {
        **{n: "already_present" for n, o in got.items() if o == "downloaded"},
        "login.safetensors": "planned",
        "badhash.safetensors": "planned",
        "nowhere_at_all_v9.safetensors": "not_found",
    }
    for m in second_report["models"]:
        if m["outcome"] == "already_present":
            installed = Path(m["path"])
            assert installed.is_file() and m["sha256"] == hashlib.sha256(installed.read_bytes()).hexdigest()
            assert m["size"] == installed.stat().st_size
        if m["outcome"] == "planned":
            assert m["script"] == first_scripts[m["name"]] and "rewritten" in m["reason"]
            assert Path(m["script"]).is_file()
    assert not fs.requests_to("/f/plain1.safetensors")
    # No new number: the retried models reuse theirs; the counter still holds the last number used.
    assert (out / "download_counter.txt").read_text() == "10\n"
    assert len(list(out.glob("download_*.sh"))) == 10
    assert second_report["counts"]["scripts_in_output"] == 10
    assert second_report["counts"]["already_present"] == 8

    # `status` shows the finished run; `verify` re-checks what was recorded, and catches a damaged file.
    status = env.cli("status", "--output-dir", str(out), "--json")
    states = {m["name"]: m["state"] for m in json.loads(status.stdout)["models"]}
    assert states["plain1.safetensors"] == "done" and "stale" not in states.values()
    with open(env.loras / "plain2.safetensors", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff\xff")
    verify = env.cli("verify", "--output-dir", str(out), "--json")
    assert verify.returncode == 1
    checked = {m["name"]: m["ok"] for m in json.loads(verify.stdout)["models"]}
    assert checked["plain2.safetensors"] is False and checked["plain1.safetensors"] is True


# ---------------------------------------------------------------- Ctrl-C, then resume


def test_ctrl_c_stops_downloads_keeps_part_and_the_next_run_resumes(env: Env) -> None:
    data = safetensors_bytes("big", 600_000)
    # The server stops after 100,000 bytes until released: the Ctrl-C always lands mid-download,
    # however loaded the machine (no sleep races the real processes).
    blob = env.files.add("/f/big.safetensors", data)
    blob.hold_after = 100_000
    wf = workflow(
        env.work / "big.json", [("big.safetensors", env.files.url_for("/f/big.safetensors"), blob.sha256)]
    )
    proc = subprocess.Popen(
        env.command(wf),
        cwd=env.work,
        env=env.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    part = env.loras / "big.safetensors.part"
    deadline = time.monotonic() + 120
    while env.files.bytes_sent("/f/big.safetensors") < 100_000 and proc.poll() is None:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume" in err
    report = json.loads(out)
    assert report["interrupted"] is True and outcomes(report) == {"big.safetensors": "skipped"}
    kept = part.stat().st_size if part.exists() else 0
    assert kept <= 100_000
    assert not (env.loras / "big.safetensors").exists()
    status = json.loads((env.work / "output" / "status.json").read_text())["models"]
    assert [m["state"] for m in status] == ["interrupted"]

    env.files.clear_log()
    blob.hold_after = None
    second = env.run(wf)
    assert second.returncode == 0, second.stderr
    assert outcomes(report_of(second)) == {"big.safetensors": "downloaded"}
    assert (env.loras / "big.safetensors").read_bytes() == data
    ranges = [r.range or "" for r in env.files.requests_to("/f/big.safetensors", "GET")]
    if kept:
        assert any(r.startswith(f"bytes={kept}-") for r in ranges), ranges  # resumed, not restarted


# ---------------------------------------------------------------- a disk that fills up


def _limit_file_size() -> None:
    limit = 256 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_fails_the_download_cleanly(env: Env) -> None:
    data = safetensors_bytes("huge", 500_000)  # 1 MB: four times what the "disk" takes
    env.files.add("/f/huge.safetensors", data)
    wf = workflow(
        env.work / "huge.json", [("huge.safetensors", env.files.url_for("/f/huge.safetensors"), None)]
    )
    proc = env.run(wf, preexec_fn=_limit_file_size)
    assert proc.returncode == 1, proc.stderr
    report = report_of(proc)
    assert outcomes(report) == {"huge.safetensors": "download_failed"}
    assert report["models"][0]["reason"]
    assert not (env.loras / "huge.safetensors").exists()
    assert "Traceback" not in proc.stderr
    # The state files are whole: the next run can read them.
    json.loads((env.work / "output" / "status.json").read_text())


# ---------------------------------------------------------------- usage


def test_run_without_comfyui_is_a_usage_error_and_without_tty_only_shows_the_plan(env: Env) -> None:
    wf = workflow(env.work / "u.json", [("x.safetensors", None, None)])
    args = ["run", str(wf), "--output-dir", str(env.work / "output")]
    proc = env.cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "--comfyui" in proc.stderr and "COMFYUI_PATH" in proc.stderr, proc.stderr
    proc = env.cli(*args, "--comfyui", str(env.root))
    assert proc.returncode == 0 and "x.safetensors" in proc.stdout and "--yes" in proc.stderr
    assert not list((env.work / "output").glob("download_*.sh"))


def test_piped_run_keeps_names_whole_and_groups_the_summary_by_outcome(env: Env) -> None:
    long = "an_unusually_long_lora_file_name_that_a_narrow_pipe_used_to_fold_into_pieces_v1.5.safetensors"
    blob = env.files.add(f"/f/{long}", safetensors_bytes("long", 20_000))
    wf = workflow(
        env.work / "piped.json",
        [
            (long, env.files.url_for(f"/f/{long}"), blob.sha256),
            ("nowhere_at_all_v9.safetensors", None, None),
        ],
    )
    plain = [a for a in env.args(wf) if a not in ("--json", "--yes")]
    environ = {**env.environ(), "COLUMNS": "80"}  # what a pipe used to be folded to
    # Without a terminal or --yes: the plan only, each name whole on its line.
    plan = env.cli(*plain, environ=environ)
    assert plan.returncode == 0, plan.stderr
    assert any(long in line for line in plan.stdout.splitlines()), plan.stdout
    # With --yes, piped: progress on stderr, the summary on stdout, names never cut.
    proc = env.cli(*plain, "--yes", environ=environ)
    assert proc.returncode == 1, proc.stderr
    out, err = proc.stdout.splitlines(), proc.stderr.splitlines()
    assert f"[1/2] searching {long}" in err and "[2/2] searching nowhere_at_all_v9.safetensors" in err
    assert f"[1/2] {long}: found on hint: 127.0.0.1/f/{long}" in err
    # Grouped by outcome, each failed group with what to do, each model under its group.
    heads = [line for line in out if not line.startswith(" ")]
    assert heads[0] == "downloaded (1)"
    assert heads[1].startswith("not found (1): ") and "by hand" in heads[1]
    assert out[out.index(heads[0]) + 1].startswith(f"  {long} (loras): ")
    assert out[out.index(heads[0]) + 2].strip() == f"found on hint: 127.0.0.1/f/{long}"
    assert out[out.index(heads[1]) + 1].startswith("  nowhere_at_all_v9.safetensors (loras): ")
    # The verification pass is one line, said once; the counts say what output/ holds.
    assert sum("verification" in line for line in out) == 1
    assert "scripts: 1 used this run, 1 in output/" in proc.stdout

    # A second run, piped: the installed model is listed as such, no new script is written.
    again = env.cli(*plain, "--yes", environ=environ)
    heads = [line for line in again.stdout.splitlines() if not line.startswith(" ")]
    assert heads[:2] == ["already installed (1)", heads[1]] and heads[1].startswith("not found (1)")
    assert "scripts: 0 used this run, 1 in output/" in again.stdout


def _converse(cmd: list[str], env: dict[str, str], cwd: Path, answers: list[str]) -> tuple[int, str]:
    """Run `cmd` on a pseudo-terminal, typing each answer when a `Proceed?` prompt appears."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    # A wide terminal, as a person would have: the tables are not wrapped mid-URL.
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=child_fd, stdout=child_fd, stderr=child_fd)
    os.close(child_fd)
    seen, pending, deadline = b"", list(answers), time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if pending and seen.count(b"Proceed?") > len(answers) - len(pending):
                    os.write(main_fd, pending.pop(0).encode() + b"\r")
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=10), seen.decode("utf-8", "replace")
    finally:
        os.close(main_fd)
        if proc.poll() is None:
            proc.kill()


def test_prompt_offers_y_n_v_and_v_shows_the_hints_before_asking_again(env: Env) -> None:
    url = env.files.url_for("/l/seen.safetensors")
    wf = workflow(env.work / "p.json", [("seen.safetensors", url, None)])
    cmd = [sys.executable, "-m", "comfyfixer", "run", str(wf), "--comfyui", str(env.root)]
    cmd += ["--output-dir", str(env.work / "output"), "--log-dir", str(env.work / "log")]
    environ = {**env.environ(), "TERM": "xterm"}
    code, screen = _converse(cmd, environ, env.work, ["v", "n"])
    assert code == 0, screen
    assert screen.count("Proceed? [y/n/v]") == 2, screen  # the choices are shown, and asked again after v
    assert url in screen  # `v` lists the hints found for each model
    assert "Nothing downloaded" in screen
    assert not list((env.work / "output").glob("download_*.sh"))


SUSPICIOUS = {
    "id": "r1",
    "verdict": "suspicious",
    "check": "folder",
    "expected": "vae",
    "reason": "a VAE",
}
SUSPICIOUS_WORDS = "folder is loras, expected vae: a VAE"


def test_llm_agent_finds_what_direct_sources_miss_and_reviews_the_batch(env: Env) -> None:
    from tests.fakes.llm import serve_llm

    # Only in a repo whose name shares no word with the file: no derived query or publisher finds it.
    data = safetensors_bytes("secret_lora", 3000)
    env.hub.add_repo("someone/odd-name")
    env.hub.add_file("someone/odd-name", "secret_lora.safetensors", data)
    wf = workflow(env.work / "agent.json", [("secret_lora.safetensors", None, None)])
    key = "sk-e2e-secret-key"
    for llm in serve_llm():
        # No pre-run check: the first search request is the health probe.
        llm.reply_tool_calls(("search_huggingface", {"query": "odd"}))
        llm.reply_tool_calls(("list_repo_files", {"repo_id": "someone/odd-name"}))
        llm.reply_json({"outcome": "found", "file_id": "f1", "reason": "the only exact name"})
        llm.reply_json({"verdicts": [SUSPICIOUS]})
        environ = {
            **env.environ(),
            "COMFYFIXER_LLM_BASE_URL": llm.base_url,
            "COMFYFIXER_LLM_MODEL": "qwen3-8b",
            "COMFYFIXER_LLM_API_KEY": key,
        }
        proc = env.cli(*env.args(wf), environ=environ)
        report = report_of(proc)
        (model,) = report["models"]
        assert model["outcome"] == "downloaded" and model["source"] == "llm", model
        assert model["sha256"] == hashlib.sha256(data).hexdigest()
        assert (env.loras / "secret_lora.safetensors").read_bytes() == data
        (batch,) = report["verifications"]
        assert batch["llm"] is True
        verdicts = [(v["verdict"], v["reason"]) for v in batch["verdicts"]]
        assert verdicts == [("suspicious", SUSPICIOUS_WORDS)]
        # Without --json the summary names the suspicious file and says why.
        (env.loras / "secret_lora.safetensors").unlink()
        llm.reply_json({"verdicts": [SUSPICIOUS]})
        proc = env.cli(*(arg for arg in env.args(wf) if arg != "--json"), environ=environ)
        shown = proc.stdout + proc.stderr
        assert f"suspicious: secret_lora.safetensors: {SUSPICIOUS_WORDS}" in proc.stdout, shown
        history = (env.work / "log" / "qwen_search_history.log").read_text()
        assert "someone/odd-name" in history
        for path in (env.work / "log").iterdir():  # the key reaches no log...
            assert key not in path.read_text(errors="replace"), path
        for path in (env.work / "output").rglob("*"):  # ...no state file and no script
            assert not path.is_file() or key not in path.read_text(errors="replace"), path


# ---------------------------------------------------------------- prompt text references


def test_embedding_named_in_a_prompt_is_installed_with_its_sha256(env: Env) -> None:
    data = safetensors_bytes("easynegative", 4_000)
    model = env.civitai.add_model("EasyNegative", type="TextualInversion")
    version = env.civitai.add_version(model, "v1")
    env.civitai.add_file(version, data, "EasyNegative.safetensors", name="EasyNegative.safetensors")
    node = {
        "id": 1,
        "type": "CLIPTextEncode",
        "mode": 0,
        "inputs": [],
        "outputs": [],
        "properties": {},
        "widgets_values": ["worst quality, embedding:EasyNegative, (blurry:1.2)"],
    }
    wf = env.work / "prompt.json"
    wf.write_text(json.dumps({"last_node_id": 1, "nodes": [node], "links": [], "version": 0.4}))
    proc = env.run(wf)
    assert proc.returncode == 0, proc.stderr
    report = report_of(proc)
    assert outcomes(report) == {"EasyNegative": "downloaded"}
    final = env.root / "models" / "embeddings" / "EasyNegative.safetensors"
    assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert report["models"][0]["sha256"] == hashlib.sha256(data).hexdigest()
