"""End to end: rendered scripts that take the segmented path (`carried/segments.py`) under bash.

`COMFYFIXER_SEGMENT_MIN_MIB=1` sends these few-MiB files through the segmented download, as files
of tens of MB and more go by default. Each case ends on what reached the models folder, what the
script printed and exited with, and the servers' request logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfixer.checks.hosts import HostRule
from comfyfixer.config import Settings
from comfyfixer.layout import safe_destination
from comfyfixer.scripts.render import (
    EXIT_BAD_FORMAT,
    EXIT_COMPRESSED,
    EXIT_HOST_REFUSED,
    EXIT_INTERRUPTED,
    EXIT_SHA256_MISMATCH,
    ScriptPlan,
    render_script,
    script_file_name,
)
from comfyfixer.scripts.run import ScriptProcess
from tests.fakes.files import FileServer
from tests.fakes.server import Exchange
from tests.test_segments import Expiring, NoRanges

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

MIB = 1 << 20
PAYLOAD = os.urandom(5 * MIB)
HEADER = json.dumps(
    {"w": {"dtype": "U8", "shape": [len(PAYLOAD)], "data_offsets": [0, len(PAYLOAD)]}}
).encode()
DATA = len(HEADER).to_bytes(8, "little") + HEADER + PAYLOAD  # a valid safetensors file
SHA = hashlib.sha256(DATA).hexdigest()
LOCAL: HostRule = Settings(extra_allowed_hosts=("127.0.0.1",)).host_rule  # localhost is a foreign host


def write_script(
    tmp: Path, url: str, *, sha256: str | None = SHA, auth: str | None = None
) -> tuple[Path, Path]:
    models = tmp / "ComfyUI" / "models"
    dest = safe_destination(models / "checkpoints", [models], "big.safetensors")
    plan = ScriptPlan(
        number=1,
        name="big.safetensors",
        directory="checkpoints",
        dest=dest,
        url=url,
        sha256=sha256,
        size=len(DATA),
        auth=auth,  # type: ignore[arg-type]
        source="hint",
        why="test",
        python=sys.executable,
        user_agent="comfyfixer/test",
        hosts=LOCAL,
    )
    (tmp / "output").mkdir(exist_ok=True)
    script = tmp / "output" / script_file_name(1, plan.name)
    script.write_text(render_script(plan), encoding="utf-8")
    return script, dest


def env(tmp: Path, **extra: str) -> dict[str, str]:
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMFYFIXER_")
        and k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CIVITAI_API_TOKEN")
    }
    out.update(
        COMFYFIXER_RETRY_DELAY="0",
        COMFYFIXER_RETRY_MAX_DELAY="0",
        COMFYFIXER_SEGMENT_MIN_MIB="1",
        COMFYFIXER_SEGMENTS="4",
        TMPDIR=str(tmp),
    )
    out.update(extra)
    return out


def run(script: Path, tmp: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script)], env=env(tmp, **extra), capture_output=True, text=True, timeout=60, check=False
    )


def reported_sha(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith("COMFYFIXER_SHA256="):
            return line.split("=", 1)[1]
    return None


@pytest.fixture
def fs() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server
        assert server.errors == []


def test_a_large_file_comes_in_ranged_pieces_and_is_installed(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m/big.safetensors", DATA)
    script, dest = write_script(tmp_path, fs.url_for("/m/big.safetensors"))
    result = run(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == DATA
    assert reported_sha(result.stdout) == SHA
    assert len(fs.requests) >= 4 and all((r.range or "").startswith("bytes=") for r in fs.requests)
    assert fs.bytes_sent() == len(DATA)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big.safetensors", "big.safetensors.sha256"]


def test_one_segment_setting_keeps_the_single_stream(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m/big.safetensors", DATA)
    script, dest = write_script(tmp_path, fs.url_for("/m/big.safetensors"))
    result = run(script, tmp_path, COMFYFIXER_SEGMENTS="1")
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == DATA
    assert [r.range for r in fs.requests] == [None]


def test_a_bad_segments_setting_is_a_clear_error(fs: FileServer, tmp_path: Path) -> None:
    script, _ = write_script(tmp_path, fs.url_for("/m/big.safetensors"))
    result = run(script, tmp_path, COMFYFIXER_SEGMENTS="many")
    assert result.returncode == 2
    assert "COMFYFIXER_SEGMENTS" in result.stderr


def test_cut_mid_way_then_a_rerun_resumes_every_piece(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m/big.safetensors", DATA, rate=3e6)
    script, dest = write_script(tmp_path, fs.url_for("/m/big.safetensors"))
    proc = ScriptProcess.start(script, env=env(tmp_path), log_path=tmp_path / "log" / "run.log", dest=dest)
    deadline = time.monotonic() + 30
    while proc.bytes_done() < len(DATA) // 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    code = proc.terminate()
    assert code in (EXIT_INTERRUPTED, -15), proc.result().log_tail
    record = json.loads(Path(f"{dest}.part.segments").read_text())
    kept = int(record["bytes"])
    assert len(DATA) // 3 <= kept < len(DATA)
    assert proc.bytes_done() == kept  # the live status counts every piece, not the preallocated size
    assert not dest.exists()
    fs.clear_log()
    fs.blobs["/m/big.safetensors"].rate = None
    result = run(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == DATA and reported_sha(result.stdout) == SHA
    done = [(a, b) for a, b in record["done"]]
    for r in fs.requests:  # only what the record did not hold was asked for again
        first, last = (int(x) for x in (r.range or "").removeprefix("bytes=").split("-"))
        assert all(last < a or first >= b for a, b in done), (r.range, done)
    assert not Path(f"{dest}.part.segments").exists() and not Path(f"{dest}.part").exists()


def test_a_server_that_ignores_ranges_gets_the_single_stream_and_a_whole_file(tmp_path: Path) -> None:
    with NoRanges() as server:
        server.add("/m/big.safetensors", DATA)
        script, dest = write_script(tmp_path, server.url_for("/m/big.safetensors"))
        result = run(script, tmp_path)
        assert result.returncode == 0, result.stderr
        assert dest.read_bytes() == DATA and reported_sha(result.stdout) == SHA
        assert "single connection" in result.stderr
        assert not Path(f"{dest}.part.segments").exists()


def test_a_segment_redirected_to_a_foreign_host_is_refused(tmp_path: Path) -> None:
    # The first link works; when it expires, the hub sends the pieces to localhost (not allowed).
    with Expiring(uses=2, foreign_after=1) as hub:
        hub.cdn.add("/cdn/blob", DATA)
        script, dest = write_script(tmp_path, hub.url_for("/orig"), sha256=None)
        result = run(script, tmp_path)
        assert result.returncode == EXIT_HOST_REFUSED, result.stderr
        assert "localhost" in result.stderr
        assert all(r.host == f"127.0.0.1:{hub.cdn.port}" for r in hub.cdn.requests)
        assert not dest.exists()
        part = Path(f"{dest}.part")
        assert not part.exists() or DATA.startswith(part.read_bytes())  # a clean prefix, no holes
        assert not Path(f"{dest}.part.segments").exists()


def test_an_expired_signed_link_is_resolved_again_and_the_token_stays_home(tmp_path: Path) -> None:
    with Expiring(uses=2) as hub:
        hub.cdn.add("/cdn/blob", DATA)
        script, dest = write_script(tmp_path, hub.url_for("/orig"), auth="huggingface")
        result = run(script, tmp_path, HF_TOKEN="hf_segment_secret")
        assert result.returncode == 0, result.stderr
        assert dest.read_bytes() == DATA and reported_sha(result.stdout) == SHA
        assert hub.signature >= 2 and "expired" in result.stderr
        assert all(r.authorization == "Bearer hf_segment_secret" for r in hub.requests)
        assert hub.cdn.authorization_seen == []
        assert "hf_segment_secret" not in script.read_text()


def test_a_wrong_file_from_pieces_is_rejected_by_the_hash(fs: FileServer, tmp_path: Path) -> None:
    fs.add("/m/big.safetensors", DATA, corrupt=True)
    script, dest = write_script(tmp_path, fs.url_for("/m/big.safetensors"))
    result = run(script, tmp_path)
    assert result.returncode == EXIT_SHA256_MISMATCH, result.stderr
    assert not dest.exists() and Path(f"{dest}.rejected").exists()
    assert not Path(f"{dest}.part.segments").exists()


class Gzipping(FileServer):
    def handle(self, ex: Exchange) -> None:
        if ex.path.startswith("/m/"):
            self.blobs[ex.path].headers = [("Content-Encoding", "gzip")]
        super().handle(ex)


def test_a_compressed_piece_is_refused(tmp_path: Path) -> None:
    with Gzipping() as server:
        server.add("/m/big.safetensors", DATA)
        script, dest = write_script(tmp_path, server.url_for("/m/big.safetensors"))
        result = run(script, tmp_path)
        assert result.returncode == EXIT_COMPRESSED, result.stderr
        assert not dest.exists()


def test_gzip_bytes_under_a_weights_name_fail_the_format_check_of_the_pieces(
    fs: FileServer, tmp_path: Path
) -> None:
    gz = b"\x1f\x8b\x08\x00" + os.urandom(len(DATA) - 4)
    fs.add("/m/big.safetensors", gz)
    script, dest = write_script(tmp_path, fs.url_for("/m/big.safetensors"), sha256=None)
    result = run(script, tmp_path)
    assert result.returncode == EXIT_BAD_FORMAT, result.stderr
    assert "format check failed" in result.stderr
    assert not dest.exists() and Path(f"{dest}.rejected").exists()
    assert len(fs.requests) >= 4  # it did come in pieces
