"""End to end: rendered scripts run by bash against the loopback file server.

Every case runs the real script (curl, the carried streamer, host check, format check and pickle gate) from
a folder other than its own, and asserts on what reached the disk and on the server's request log.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from comfyfixer.checks.hosts import HostRule
from comfyfixer.config import Settings
from comfyfixer.layout import safe_destination
from comfyfixer.scripts.render import (
    EXIT_AUTH,
    EXIT_BAD_FORMAT,
    EXIT_BAD_SETTING,
    EXIT_DEST_DIFFERS,
    EXIT_ERROR_PAGE,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_NO_TOOL,
    EXIT_SHA256_MISMATCH,
    EXIT_SIZE_MISMATCH,
    EXIT_UNSAFE_PICKLE,
    ScriptPlan,
    render_script,
    script_file_name,
)
from comfyfixer.scripts.run import ScriptProcess, script_destination
from tests import model_bytes
from tests.fakes.files import FileServer

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

TOKEN = "hf_test_token_never_to_be_written_4711"
# The fakes listen on 127.0.0.1 (plain http, as a user's COMFYFIXER_ALLOW_HOSTS would allow);
# `localhost` reaches the same servers as another host, allowed here, foreign in test_script_hostile.
LOCAL_HOSTS = Settings(extra_allowed_hosts=("127.0.0.1", "localhost")).host_rule
DATA = model_bytes.random_safetensors(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
# Tools the scripts need besides curl/wget, for the PATH-restricted cases.
BASE_TOOLS = (
    "bash",
    "cat",
    "tee",
    "head",
    "tr",
    "mv",
    "rm",
    "mkdir",
    "mktemp",
    "stat",
    "sleep",
    "truncate",
    "flock",
    "sha256sum",
    "openssl",
    "env",
)


@dataclass
class Rig:
    server: FileServer
    tmp: Path
    models: Path
    elsewhere: Path
    counter: list[int] = field(default_factory=lambda: [0])

    def plan(
        self,
        path: str,
        *,
        name: str = "x.safetensors",
        folder: str = "checkpoints",
        sha256: str | None = SHA,
        size: int | None = len(DATA),
        auth: str | None = None,
        url: str | None = None,
        python: str = sys.executable,
        hosts: HostRule = LOCAL_HOSTS,
        granted_by: str | None = None,
    ) -> ScriptPlan:
        self.counter[0] += 1
        return ScriptPlan(
            number=self.counter[0],
            name=name,
            directory=folder,
            dest=safe_destination(self.models / folder, [self.models], name),
            url=url or self.server.url_for(path),
            sha256=sha256,
            size=size,
            auth=auth,  # type: ignore[arg-type]
            source="hint",
            why="test",
            python=python,
            user_agent="comfyfixer/0.1.0",
            hosts=hosts,
            granted_by=granted_by,
        )

    def script(self, plan: ScriptPlan) -> Path:
        out = self.tmp / "output"
        out.mkdir(exist_ok=True)
        path = out / script_file_name(plan.number, plan.name)
        path.write_text(render_script(plan), encoding="utf-8")
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_API_TOKEN")
            and not k.startswith("COMFYFIXER_")
        }
        env.update(COMFYFIXER_RETRY_DELAY="0", COMFYFIXER_RETRY_MAX_DELAY="0", TMPDIR=str(self.tmp))
        env.update(extra)
        return env

    def run(self, script: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(script)],
            env=dict(env if env is not None else self.env()),
            cwd=self.elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def leftovers(self) -> list[str]:
        """Files under the models folder other than installed models and their sidecars."""
        return sorted(
            str(p.relative_to(self.models))
            for p in self.models.rglob("*")
            if p.is_file() and (p.suffix in (".part", ".lock", ".tmp") or ".tmp." in p.name)
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    with FileServer() as server:
        yield Rig(server, tmp_path, models, elsewhere)
    assert not server.errors, server.errors


def reported_sha(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith("COMFYFIXER_SHA256="):
            return line.split("=", 1)[1]
    return None


def restricted_path(tmp: Path, *, without: tuple[str, ...]) -> str:
    """A PATH holding only the base tools (and curl/wget unless excluded), as symlinks."""
    bin_dir = tmp / f"bin-{'-'.join(without) or 'all'}"
    bin_dir.mkdir()
    for tool in (*BASE_TOOLS, "curl", "wget"):
        real = shutil.which(tool)
        if tool not in without and real:
            (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


# -- the happy path -------------------------------------------------------------------------------


def test_downloads_verifies_and_installs(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    assert reported_sha(result.stdout) == SHA
    assert f"COMFYFIXER_SIZE={len(DATA)}" in result.stdout
    sidecar = plan.dest.with_name(plan.dest.name + ".sha256").read_text().splitlines()
    assert sidecar[0] == f"{SHA}  x.safetensors"
    assert rig.leftovers() == []
    [request] = rig.server.requests
    assert request.headers["user-agent"] == "comfyfixer/0.1.0"
    assert request.authorization is None  # no auth kind: no header, even if a token were set
    assert not list(rig.tmp.glob("comfyfixer.*")), "the script's temporary folder was left behind"


def test_the_file_is_hashed_once_while_it_streams(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    calls = rig.tmp / "calls"
    spy = rig.tmp / "spy"
    spy.mkdir()
    # The rendering interpreter, wrapped to log each use; stand-alone hashers that log and fail.
    python = spy / "python3"
    python.write_text(f'#!/bin/sh\necho python >>"{calls}"\nexec "{sys.executable}" "$@"\n')
    for tool in ("python3", "openssl", "sha256sum", "shasum"):
        if tool != "python3":
            (spy / tool).write_text(f'#!/bin/sh\necho {tool} >>"{calls}"\nexit 1\n')
        (spy / tool).chmod(0o755)
    plan = rig.plan("/m/x.safetensors", python=str(python))
    result = rig.run(rig.script(plan), rig.env(PATH=f"{spy}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    assert reported_sha(result.stdout) == SHA
    # Python: one streaming pass that checks the URL's host before the fetch may start, writes,
    # hashes and runs the format check on the finished part (no start just to probe Python). No
    # stand-alone hasher ever runs.
    assert calls.read_text().split() == ["python"]


def test_the_single_stream_works_in_its_own_temporary_folder(rig: Rig) -> None:
    # Headers and the streamer's answers go to a folder of its own (made on first use),
    # never to paths built from an empty variable; it is gone afterwards.
    rig.server.add("/m/x.safetensors", DATA)
    made = rig.tmp / "made"
    spy = rig.tmp / "spy"
    spy.mkdir()
    real = shutil.which("mktemp")
    wrapper = f'#!/bin/sh\nout=$("{real}" "$@") || exit 1\necho "$out" >>"{made}"\necho "$out"\n'
    (spy / "mktemp").write_text(wrapper)
    (spy / "mktemp").chmod(0o755)
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan), rig.env(PATH=f"{spy}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    [work] = made.read_text().split()
    assert Path(work).parent == rig.tmp
    assert not Path(work).exists()


def test_an_attempt_with_a_redirect_is_one_python_start(rig: Rig) -> None:
    rig.server.add("/cdn/x.safetensors", DATA)
    rig.server.redirect("/m/x.safetensors", rig.server.url_for("/cdn/x.safetensors"))
    calls = rig.tmp / "calls"
    spy = rig.tmp / "spy"
    spy.mkdir()
    python = spy / "python3"
    python.write_text(f'#!/bin/sh\necho python >>"{calls}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    plan = rig.plan("/m/x.safetensors", python=str(python))
    result = rig.run(rig.script(plan), rig.env(PATH=f"{spy}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    # One start: the streamer checked the URL, fetched it (a 302), checked the target, fetched the
    # file, hashed it and checked its format.
    assert calls.read_text().split() == ["python"]
    assert [r.path for r in rig.server.requests] == ["/m/x.safetensors", "/cdn/x.safetensors"]


def test_a_script_whose_python_is_gone_uses_python3_on_path(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    rig.server.drop("/m/x.safetensors", after=70_000)
    plan = rig.plan("/m/x.safetensors", python="/nonexistent/python3")
    result = rig.run(rig.script(plan), rig.env(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    assert reported_sha(result.stdout) == SHA
    assert rig.server.requests_to("/m/x.safetensors", "GET")[-1].range == "bytes=70000-"


def test_an_interpreter_that_cannot_start_is_replaced_by_python3(rig: Rig) -> None:
    # It exists (so nothing starts it to find out) but cannot run: the first Python step says so.
    broken = rig.tmp / "broken-python"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", python=str(broken))
    result = rig.run(rig.script(plan), rig.env(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    assert "using python3 from PATH" in result.stderr
    assert plan.dest.read_bytes() == DATA
    assert reported_sha(result.stdout) == SHA


@pytest.mark.parametrize("size", [len(DATA), 3 << 20], ids=["single-stream", "segmented"])
def test_an_interpreter_that_cannot_start_and_no_python3_requests_nothing(rig: Rig, size: int) -> None:
    broken = rig.tmp / "broken-python"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    data = DATA if size == len(DATA) else os.urandom(size)
    rig.server.add("/m/x.safetensors", data)
    sha = hashlib.sha256(data).hexdigest()
    plan = rig.plan("/m/x.safetensors", sha256=sha, size=size, python=str(broken))
    env = rig.env(PATH=restricted_path(rig.tmp, without=()), COMFYFIXER_SEGMENT_MIN_MIB="1")
    result = rig.run(rig.script(plan), env)
    assert result.returncode == EXIT_NO_TOOL, result.stderr
    assert "python3 is needed" in result.stderr
    assert rig.server.requests == []
    assert not plan.dest.exists()


def test_unknown_hash_and_size_still_reports_the_hash(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", sha256=None, size=None)
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert reported_sha(result.stdout) == SHA
    assert plan.dest.read_bytes() == DATA


def test_sidecar_is_sha256sum_compatible(rig: Rig) -> None:
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum is not installed")
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    assert rig.run(rig.script(plan)).returncode == 0
    sidecar = f"{plan.dest.name}.sha256"
    folder = plan.dest.parent
    check = subprocess.run(["sha256sum", "-c", sidecar], cwd=folder, capture_output=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


# -- resume ---------------------------------------------------------------------------------------


def test_dropped_connection_resumes_with_range(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    rig.server.drop("/m/x.safetensors", after=100_000)
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    assert reported_sha(result.stdout) == SHA  # the digest covers the bytes of both attempts
    first, second = rig.server.requests_to("/m/x.safetensors", "GET")
    assert first.range is None
    assert second.range == "bytes=100000-"
    missing = len(DATA) - 100_000
    assert rig.server.bytes_sent() - 100_000 <= missing


def test_partial_file_from_an_earlier_run_is_resumed_and_rehashed(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    plan.part.parent.mkdir(parents=True, exist_ok=True)
    plan.part.write_bytes(DATA[:123_456])
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    [request] = rig.server.requests
    assert request.range == "bytes=123456-"
    assert rig.server.bytes_sent() == len(DATA) - 123_456


def test_corrupt_partial_file_is_caught_by_the_hash(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    plan.part.parent.mkdir(parents=True, exist_ok=True)
    plan.part.write_bytes(b"\x00" * 1000)  # not the first 1000 bytes of the file
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_SHA256_MISMATCH
    assert not plan.dest.exists()
    assert plan.dest.with_name(plan.dest.name + ".rejected").exists()


def test_complete_partial_file_needs_no_network(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    plan.part.parent.mkdir(parents=True, exist_ok=True)
    plan.part.write_bytes(DATA)  # killed after the last byte, before the rename
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert rig.server.requests == []
    assert plan.dest.read_bytes() == DATA


def test_complete_partial_of_unknown_size_is_finished_after_416(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", sha256=None, size=None)
    plan.part.parent.mkdir(parents=True, exist_ok=True)
    plan.part.write_bytes(DATA)
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert [r.status for r in rig.server.requests] == [416]
    assert reported_sha(result.stdout) == SHA


def test_server_that_ignores_range_restarts_from_zero(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    plan.part.parent.mkdir(parents=True, exist_ok=True)
    plan.part.write_bytes(DATA[:1000])
    # A malformed Range is ignored by the server, like a server without range support: it sends 200.
    rig.server.fail("/m/x.safetensors", 200, times=1, body=DATA)
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA


# -- auth -----------------------------------------------------------------------------------------


def test_token_is_sent_to_the_origin_but_not_to_a_redirect_host(rig: Rig) -> None:
    rig.server.add("/cdn/x.safetensors", DATA)
    rig.server.redirect("/hub/x.safetensors", rig.server.url_for("/cdn/x.safetensors", alt=True))
    plan = rig.plan("/hub/x.safetensors", auth="huggingface")
    script = rig.script(plan)
    result = rig.run(script, rig.env(HF_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    hub, cdn = rig.server.requests
    assert hub.path == "/hub/x.safetensors" and hub.authorization == f"Bearer {TOKEN}"
    assert cdn.host == f"localhost:{rig.server.port}" and cdn.authorization is None
    for path in (script, plan.dest.with_name(plan.dest.name + ".sha256")):
        assert TOKEN not in path.read_text()
    assert TOKEN not in result.stdout + result.stderr


def test_civitai_token_comes_from_its_own_variable(rig: Rig) -> None:
    rig.server.add("/api/download/models/1", DATA)
    plan = rig.plan("/api/download/models/1", auth="civitai")
    result = rig.run(rig.script(plan), rig.env(CIVITAI_API_TOKEN="civ-token", HF_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    assert rig.server.requests[0].authorization == "Bearer civ-token"


def test_no_token_no_header(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", auth="huggingface")
    assert rig.run(rig.script(plan)).returncode == 0
    assert rig.server.authorization_seen == []


def test_401_without_token_asks_for_the_variable(rig: Rig) -> None:
    rig.server.json_error(
        "/m/x.safetensors", {"error": "Unauthorized", "message": "log in to download"}, status=401
    )
    plan = rig.plan("/m/x.safetensors", auth="civitai")
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_AUTH
    assert "set CIVITAI_API_TOKEN" in result.stderr
    assert not plan.dest.exists() and not plan.part.exists()
    assert len(rig.server.requests) == 1  # an auth failure is not retried


def test_403_with_token_points_at_the_licence(rig: Rig) -> None:
    rig.server.fail("/m/x.safetensors", 403, times=None, headers={"X-Error-Code": "GatedRepo"})
    plan = rig.plan("/m/x.safetensors", auth="huggingface")
    result = rig.run(rig.script(plan), rig.env(HF_TOKEN=TOKEN))
    assert result.returncode == EXIT_AUTH
    assert "licence" in result.stderr and TOKEN not in result.stderr


# -- bodies that are not the model ----------------------------------------------------------------


def test_html_login_page_is_rejected(rig: Rig) -> None:
    rig.server.html("/m/x.safetensors")
    plan = rig.plan("/m/x.safetensors", sha256=None, size=None)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_ERROR_PAGE
    assert not plan.dest.exists() and not plan.part.exists()
    assert plan.dest.with_name(plan.dest.name + ".rejected").read_bytes().startswith(b"<!DOCTYPE html>")


def test_html_sent_as_octet_stream_is_caught_by_sniffing(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", b"\n  <html><body>Please log in</body></html>\n")
    plan = rig.plan("/m/x.safetensors", sha256=None, size=None)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_ERROR_PAGE
    assert not plan.dest.exists()


def test_json_error_with_200_is_rejected(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", b'{"error": "Model archived"}', content_type="text/plain")
    plan = rig.plan("/m/x.safetensors", sha256=None, size=None)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_ERROR_PAGE
    assert not plan.dest.exists()


def test_wrong_hash_is_rejected_and_nothing_is_installed(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA, corrupt=True)
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_SHA256_MISMATCH
    assert "sha256 mismatch" in result.stderr
    assert not plan.dest.exists() and not plan.part.exists()
    assert not plan.dest.with_name(plan.dest.name + ".sha256").exists()


def test_smaller_file_than_published_is_a_size_mismatch(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", sha256=None, size=len(DATA) + 10)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_SIZE_MISMATCH
    assert not plan.dest.exists()


# -- retries --------------------------------------------------------------------------------------


def test_429_with_retry_after_then_success(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    rig.server.fail("/m/x.safetensors", 429, times=1, headers={"Retry-After": "30"})
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert [r.status for r in rig.server.requests] == [429, 200]
    assert "HTTP 429" in result.stderr and "retrying in 0s" in result.stderr  # capped by the test's max
    assert plan.dest.read_bytes() == DATA


def test_server_errors_are_retried_a_bounded_number_of_times(rig: Rig) -> None:
    rig.server.fail("/m/x.safetensors", 503, times=None)
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan), rig.env(COMFYFIXER_MAX_ATTEMPTS="3"))
    assert result.returncode == EXIT_NETWORK
    assert len(rig.server.requests) == 3
    assert "after 3 attempts" in result.stderr


def test_404_is_not_retried(rig: Rig) -> None:
    plan = rig.plan("/m/missing.safetensors")
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_NETWORK
    assert len(rig.server.requests) == 1
    assert "HTTP 404" in result.stderr
    assert rig.leftovers() == []


def test_bad_retry_setting_is_a_clear_error(rig: Rig) -> None:
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan), rig.env(COMFYFIXER_RETRY_DELAY="soon"))
    assert result.returncode == EXIT_BAD_SETTING
    assert "COMFYFIXER_RETRY_DELAY" in result.stderr


# -- already present ------------------------------------------------------------------------------


def test_second_run_exits_at_once_without_network_or_hashing(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    script = rig.script(plan)
    assert rig.run(script).returncode == 0
    rig.server.clear_log()
    # A hasher that records each call proves the sidecar spared a re-hash.
    spy_dir = rig.tmp / "spy"
    spy_dir.mkdir()
    calls = rig.tmp / "hash_calls"
    for tool in ("openssl", "sha256sum", "shasum"):
        (spy_dir / tool).write_text(f'#!/bin/sh\necho {tool} >>"{calls}"\nexit 1\n')
        (spy_dir / tool).chmod(0o755)
    env = rig.env(PATH=f"{spy_dir}:{os.environ['PATH']}")
    result = rig.run(script, env)
    assert result.returncode == 0, result.stderr
    assert "COMFYFIXER_ALREADY_PRESENT=1" in result.stdout
    assert reported_sha(result.stdout) == SHA
    assert rig.server.requests == []
    assert not calls.exists()


def test_present_file_without_sidecar_is_hashed_once_and_accepted(rig: Rig) -> None:
    plan = rig.plan("/m/x.safetensors")
    plan.dest.parent.mkdir(parents=True, exist_ok=True)
    plan.dest.write_bytes(DATA)
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert rig.server.requests == []
    assert plan.dest.with_name(plan.dest.name + ".sha256").exists()


def test_a_different_file_at_the_destination_is_left_alone(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors")
    script = rig.script(plan)
    assert rig.run(script).returncode == 0
    other = bytes(reversed(DATA))  # same size, other content: the sidecar stamp no longer matches
    plan.dest.write_bytes(other)
    os.utime(plan.dest, (time.time() + 5, time.time() + 5))
    result = rig.run(script)
    assert result.returncode == EXIT_DEST_DIFFERS
    assert plan.dest.read_bytes() == other


# -- hostile names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sub dir/x $(touch pwned).safetensors",
        "x `touch pwned` y.safetensors",
        'it\'s "quoted" ; touch pwned.safetensors',
        r"win\sub\$HOME & touch pwned.safetensors",
        "-n --help.safetensors",
        "ünï 模型 *.safetensors",
    ],
)
def test_hostile_names_land_exactly_where_they_belong(rig: Rig, name: str) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", name=name)
    result = rig.run(rig.script(plan), rig.env(HOME=str(rig.tmp / "home")))
    assert result.returncode == 0, result.stderr
    expected = rig.models / "checkpoints" / name.replace("\\", "/")
    assert expected.read_bytes() == DATA
    assert not [*rig.tmp.rglob("pwned"), *rig.tmp.rglob("pwned.safetensors")], "a name was executed"
    installed = [p for p in rig.models.rglob("*") if p.is_file() and not p.name.endswith(".sha256")]
    assert installed == [expected]


# -- pickle safety --------------------------------------------------------------------------------


@pytest.mark.parametrize("allow", [None, "true", "yes", "0"])
def test_malicious_pickle_is_refused(rig: Rig, allow: str | None) -> None:
    # Only COMFYFIXER_ALLOW_PICKLE=1 opens the door; "true" or "yes" must not (same rule as the tool).
    bad = model_bytes.malicious_pickle()
    rig.server.add("/m/x.ckpt", bad)
    plan = rig.plan("/m/x.ckpt", name="x.ckpt", sha256=None, size=len(bad))
    result = rig.run(rig.script(plan), rig.env(COMFYFIXER_ALLOW_PICKLE=allow) if allow else None)
    assert result.returncode == EXIT_UNSAFE_PICKLE
    assert "os.system" in result.stderr and "weights files do not use" in result.stderr
    assert not plan.dest.exists()


@pytest.mark.parametrize("segments", ["1", "0"], ids=["single-stream", "segmented"])
def test_the_pickle_gate_runs_in_the_python_step_that_finished_the_part(rig: Rig, segments: str) -> None:
    bad = model_bytes.malicious_pickle()
    rig.server.add("/m/x.ckpt", bad)
    calls = rig.tmp / "calls"
    spy = rig.tmp / "spy"
    spy.mkdir()
    python = spy / "python3"
    python.write_text(f'#!/bin/sh\necho python >>"{calls}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    plan = rig.plan("/m/x.ckpt", name="x.ckpt", sha256=None, size=len(bad), python=str(python))
    env = rig.env(PATH=f"{spy}:{os.environ['PATH']}", COMFYFIXER_SEGMENT_MIN_MIB=segments)
    result = rig.run(rig.script(plan), env)
    assert result.returncode == EXIT_UNSAFE_PICKLE, result.stderr
    assert "os.system" in result.stderr and "weights files do not use" in result.stderr
    assert not plan.dest.exists()
    # One Python start did it all: host check, transfer, hash, format check, pickle gate.
    assert calls.read_text().split() == ["python"]
    assert (rig.server.requests[-1].range is not None) == (segments == "0")  # the path it took


def test_flagged_pickle_is_installed_when_allowed(rig: Rig) -> None:
    bad = model_bytes.malicious_torch_zip()
    rig.server.add("/m/x.pt", bad)
    plan = rig.plan("/m/x.pt", name="x.pt", sha256=None, size=None)
    result = rig.run(rig.script(plan), rig.env(COMFYFIXER_ALLOW_PICKLE="1"))
    assert result.returncode == 0, result.stderr
    assert "COMFYFIXER_ALLOW_PICKLE=1" in result.stderr
    assert plan.dest.read_bytes() == bad


def test_benign_torch_zip_is_installed(rig: Rig) -> None:
    good = model_bytes.benign_torch_zip()
    rig.server.add("/m/x.pth", good)
    plan = rig.plan("/m/x.pth", name="x.pth", sha256=hashlib.sha256(good).hexdigest(), size=len(good))
    result = rig.run(rig.script(plan))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == good


def test_without_any_python_nothing_is_downloaded(rig: Rig) -> None:
    # The checks are Python: without one the script says so before it requests anything.
    good = model_bytes.benign_torch_zip()
    rig.server.add("/m/x.ckpt", good)
    plan = rig.plan("/m/x.ckpt", name="x.ckpt", sha256=None, size=len(good), python="/nonexistent/python3")
    result = rig.run(rig.script(plan), rig.env(PATH=restricted_path(rig.tmp, without=())))
    assert result.returncode == EXIT_NO_TOOL
    assert "python3 is needed" in result.stderr
    assert rig.server.requests == []
    assert not plan.dest.exists()


def test_garbage_with_a_pickle_extension_is_refused(rig: Rig) -> None:
    rig.server.add("/m/x.ckpt", b"\x01\x02 not a pickle" * 10)
    plan = rig.plan("/m/x.ckpt", name="x.ckpt", sha256=None, size=None)
    result = rig.run(rig.script(plan))
    assert result.returncode == EXIT_BAD_FORMAT
    assert "a .ckpt file should be pickle" in result.stderr
    assert not plan.dest.exists()


# -- tools ----------------------------------------------------------------------------------------


def test_no_curl_no_wget_is_a_clear_error(rig: Rig) -> None:
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan), rig.env(PATH=restricted_path(rig.tmp, without=("curl", "wget"))))
    assert result.returncode == EXIT_NO_TOOL
    assert "install curl" in result.stderr


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_fallback_downloads_and_resumes(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    rig.server.drop("/m/x.safetensors", after=50_000)
    plan = rig.plan("/m/x.safetensors")
    result = rig.run(rig.script(plan), rig.env(PATH=restricted_path(rig.tmp, without=("curl",))))
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == DATA
    assert rig.server.requests_to("/m/x.safetensors", "GET")[-1].range == "bytes=50000-"


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_is_not_trusted_with_a_token(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", auth="huggingface")
    env = rig.env(PATH=restricted_path(rig.tmp, without=("curl",)), HF_TOKEN=TOKEN)
    result = rig.run(rig.script(plan), env)
    assert result.returncode == EXIT_NO_TOOL
    assert rig.server.requests == []


# -- ScriptProcess --------------------------------------------------------------------------------


def test_script_process_reports_sha_and_logs_output(rig: Rig) -> None:
    rig.server.add("/m/x.safetensors", DATA)
    plan = rig.plan("/m/x.safetensors", auth="huggingface")
    script = rig.script(plan)
    assert script_destination(script) == plan.dest
    log_path = rig.tmp / "log" / "download_001.log"
    proc = ScriptProcess.start(script, env=rig.env(HF_TOKEN=TOKEN), log_path=log_path)
    assert proc.wait(timeout=60) == 0
    assert proc.reported_sha256 == SHA
    assert proc.bytes_done() == len(DATA)
    outcome = proc.result()
    assert outcome.ok and outcome.sha256 == SHA and outcome.size == len(DATA) and not outcome.already_present
    assert "installed" in log_path.read_text()
    assert TOKEN not in log_path.read_text()
    again = ScriptProcess.start(script, env=rig.env(), log_path=log_path)
    assert again.wait(timeout=60) == 0
    assert again.result().already_present
    assert again.reported_sha256 == SHA


def test_terminate_keeps_the_part_and_the_next_run_resumes(rig: Rig) -> None:
    big = model_bytes.random_safetensors(2_000_000)
    rig.server.add("/m/slow.safetensors", big, rate=1_000_000)
    plan = rig.plan("/m/slow.safetensors", sha256=hashlib.sha256(big).hexdigest(), size=len(big))
    script = rig.script(plan)
    proc = ScriptProcess.start(script, env=rig.env(), log_path=rig.tmp / "log" / "slow.log")
    deadline = time.monotonic() + 30
    while proc.bytes_done() < 200_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the throttled download finished before it could be interrupted"
    proc.terminate(grace=10)
    outcome = proc.result()
    assert outcome.returncode == EXIT_INTERRUPTED
    kept = plan.part.stat().st_size
    assert 0 < kept < len(big)
    assert not plan.dest.exists()
    rig.server.blobs["/m/slow.safetensors"].rate = None
    rig.server.clear_log()
    result = rig.run(script)
    assert result.returncode == 0, result.stderr
    assert plan.dest.read_bytes() == big
    [request] = rig.server.requests
    assert request.range == f"bytes={kept}-"


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to read command lines")
def test_token_is_not_in_any_command_line(rig: Rig) -> None:
    big = model_bytes.random_safetensors(1_000_000)
    rig.server.add("/m/slow.safetensors", big, rate=2_000_000)
    plan = rig.plan("/m/slow.safetensors", sha256=None, size=len(big), auth="huggingface")
    proc = ScriptProcess.start(rig.script(plan), env=rig.env(HF_TOKEN=TOKEN), log_path=rig.tmp / "t.log")
    seen: set[str] = set()
    try:
        while proc.poll() is None:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if os.getpgid(int(entry.name)) != proc.pid:
                        continue
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except (OSError, ProcessLookupError):
                    continue
                seen.add(Path(argv[0].decode()).name)
                assert TOKEN.encode() not in b" ".join(argv)
            time.sleep(0.01)
    finally:
        proc.terminate()
    assert proc.returncode == 0
    assert "curl" in seen, f"never saw curl running (saw {sorted(seen)})"
    assert rig.server.requests[0].authorization == f"Bearer {TOKEN}"


def test_script_process_describes_failures(rig: Rig) -> None:
    rig.server.html("/m/x.safetensors")
    plan = rig.plan("/m/x.safetensors")
    proc = ScriptProcess.start(rig.script(plan), env=rig.env(), log_path=rig.tmp / "log" / "x.log")
    proc.wait(timeout=60)
    outcome = proc.result()
    assert outcome.returncode == EXIT_ERROR_PAGE
    assert "HTML" in outcome.reason
    assert "web page" in outcome.log_tail
    assert proc.reported_sha256 is None
