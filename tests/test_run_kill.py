"""kill -9 and Ctrl-C at any moment: no orphan download, no traceback, the next run finishes the job.

The file server holds the body at a chosen offset (`Blob.hold_after`), so each signal lands mid-download
whatever the machine's load; waits poll for a state with a generous bound, never race a sleep.
The 20-kill loop with its figures is `bench/kill_bench.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes.content import safetensors_bytes
from tests.test_run_e2e import Env, env, outcomes, report_of, workflow

__all__ = ["env"]

pytestmark = pytest.mark.timeout(240)


def processes_running(marker: str) -> list[int]:
    """Pids whose command line mentions `marker` (a script path): the downloads still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_for(predicate: object, what: str, bound: float = 60.0) -> None:
    deadline = time.monotonic() + bound
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _start(env: Env, wf: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        env.command(wf),
        cwd=env.work,
        env=env.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_kill_9_leaves_no_orphan_and_the_next_run_completes(env: Env) -> None:
    data = safetensors_bytes("killed", 400_000)
    blob = env.files.add("/f/killed.safetensors", data)
    url = env.files.url_for("/f/killed.safetensors")
    wf = workflow(env.work / "killed.json", [("killed.safetensors", url, blob.sha256)])
    part = env.loras / "killed.safetensors.part"
    marker = str(env.work / "output")
    for hold in (100_000, 250_000, 330_000):
        blob.hold_after = hold
        proc = _start(env, wf)
        _wait_for(lambda h=hold: env.files.bytes_sent("/f/killed.safetensors") >= h, "never downloaded")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        # The supervisor notices its run is gone and stops the script and curl (the bound is generous).
        _wait_for(
            lambda: not processes_running(marker), f"downloads outlived the run: {processes_running(marker)}"
        )
        assert not part.exists() or part.stat().st_size <= hold  # kept for the resume, never past the hold
    blob.hold_after = None
    last = env.run(wf)
    assert last.returncode == 0, last.stderr
    assert outcomes(report_of(last)) == {"killed.safetensors": "downloaded"}
    assert (env.loras / "killed.safetensors").read_bytes() == data
    assert not processes_running(marker)


def test_a_rerun_meeting_a_live_download_waits_for_it_instead_of_failing(env: Env) -> None:
    data = safetensors_bytes("shared", 300_000)
    blob = env.files.add("/f/shared.safetensors", data)
    blob.hold_after = 120_000
    wf = workflow(
        env.work / "shared.json",
        [("shared.safetensors", env.files.url_for("/f/shared.safetensors"), blob.sha256)],
    )
    first = _start(env, wf)
    _wait_for(lambda: env.files.bytes_sent("/f/shared.safetensors") >= 120_000, "never downloaded")
    second = _start(env, wf)  # meets the first one's lock on the same file
    _wait_for(lambda: "waiting for it" in _script_logs(env), "the second script did not wait on the lock")
    blob.hold_after = None
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert outcomes(json.loads(out1)) == {"shared.safetensors": "downloaded"}
    assert json.loads(out2)["models"][0]["outcome"] in ("downloaded", "already_present")
    assert (env.loras / "shared.safetensors").read_bytes() == data


def _script_logs(env: Env) -> str:
    return "".join(p.read_text(errors="replace") for p in (env.work / "log").glob("download_*.log"))


@pytest.mark.parametrize("delay", [0.1, 0.4, 1.0, 2.5])
def test_ctrl_c_at_any_moment_exits_130_without_traceback_and_with_json(env: Env, delay: float) -> None:
    data = safetensors_bytes("held", 200_000)
    blob = env.files.add("/f/held.safetensors", data)
    blob.hold_after = 50_000  # never finishes while the test runs: the interrupt always meets a live run
    wf = workflow(
        env.work / "held.json", [("held.safetensors", env.files.url_for("/f/held.safetensors"), blob.sha256)]
    )
    proc = _start(env, wf)
    time.sleep(delay)  # where the signal lands varies; every landing must end the same way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert not processes_running(str(env.work / "output"))
    assert not (env.loras / "held.safetensors").exists()
