"""kill -9 benchmark: 20 random kill -9s of `comfyfixer run` mid-download, then a clean re-run.

A workflow of 4 models served by the loopback file server (throttled so a run lasts a few seconds); each
round starts the real CLI and kills it with SIGKILL after a random delay. After each kill it measures how
long the run's download scripts (bash, curl, the writer) outlive it, and checks the next run is not
refused by a lock. At the end one run without kills must leave every file correct.

    python3 bench/kill_bench.py [--kills 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.civitai import FakeCivitai  # noqa: E402
from tests.fakes.content import safetensors_bytes  # noqa: E402
from tests.fakes.files import FileServer  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402
from tests.test_run_e2e import Env, workflow  # noqa: E402
from tests.test_run_kill import processes_running  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=150_000, help="bytes/s per download")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        FileServer() as files,
        FakeHub() as hub,
        FakeCivitai() as civ,
    ):
        tmp = Path(tmpdir)
        root = tmp / "ComfyUI"
        (root / "models" / "loras").mkdir(parents=True)
        work = tmp / "work"
        work.mkdir()
        env = Env(files, hub, civ, root, work)
        blobs = {}
        for i in range(4):
            name = f"k{i}.safetensors"
            data = safetensors_bytes(name, 1_000_000)  # 2 MB each: at 150 kB/s, ~13 s per file
            blob = files.add(f"/f/{name}", data, rate=args.rate)
            blobs[name] = (data, blob)
        wf = workflow(
            work / "k.json", [(n, files.url_for(f"/f/{n}"), b.sha256) for n, (_, b) in blobs.items()]
        )
        marker = str(work / "output")
        lifetimes: list[float] = []
        lock_failures = 0
        met = 0
        for k in range(args.kills):
            proc = subprocess.Popen(
                env.command(wf),
                cwd=work,
                env=env.environ(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, 4.0))
            # Processes of this run's scripts at the moment of the kill (the run itself names the folder too).
            live = len([pid for pid in processes_running(marker) if pid != proc.pid])
            met += live > 0
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            while processes_running(marker) and time.monotonic() - killed < 60:
                time.sleep(0.02)
            lifetimes.append(time.monotonic() - killed)
            left = processes_running(marker)
            print(
                f"kill {k + 1:2d}: {live} script processes alive at the kill, "
                f"gone {lifetimes[-1]:.2f} s after it" + (f" ORPHANS {left}" if left else "")
            )
        logs = "".join(p.read_text(errors="replace") for p in (work / "log").glob("download_*.log"))
        lock_failures = logs.count("is still running after")
        final = env.run(wf)
        report = json.loads(final.stdout)
        outcomes = {m["name"]: m["outcome"] for m in report["models"]}
        correct = all(
            hashlib.sha256((root / "models" / "loras" / n).read_bytes()).hexdigest()
            == hashlib.sha256(d).hexdigest()
            for n, (d, _) in blobs.items()
            if (root / "models" / "loras" / n).exists()
        )
        print(
            f"kills: {args.kills} ({met} during a download); "
            f"scripts outlived the run by at most {max(lifetimes):.2f} s "
            f"(median {sorted(lifetimes)[len(lifetimes) // 2]:.2f} s); "
            f"orphans left: {len(processes_running(marker))}"
        )
        print(
            f"lock refusals in script logs: {lock_failures}; final run exit {final.returncode}: {outcomes}; "
            f"files correct: {correct}; "
            f"download_failed: {sum(o == 'download_failed' for o in outcomes.values())}"
        )


if __name__ == "__main__":
    main()
