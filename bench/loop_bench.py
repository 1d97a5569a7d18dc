"""Loop overlap benchmark: does the next search really run while earlier models download?

A simulated 21-model run through the real pipeline, real rendered scripts, real bash/curl
processes and the real checks, against the loopback file server (tests/fakes). Only the finder is
simulated: it sleeps S seconds per model and answers with a candidate on the file server, whose
blobs are throttled so each download takes about D seconds.

Three measured runs, each in a fresh folder:
  search-only  : searches only (--dry-run: scripts written, nothing downloaded)  -> T_search
  download-only: instant searches, the same downloads                             -> T_download
  full         : both                                                             -> T_full
Each is the fastest of --repeat runs. ratio = T_full / max(T_search, T_download); the goal is
<= 1.15 (a loop that did not overlap would approach the sum).

    python3 bench/loop_bench.py [--models 21] [--search-seconds 0.3] [--download-seconds 0.6]
                                [--jobs 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfyfixer.config import Settings
from comfyfixer.layout import Layout
from comfyfixer.loop.pipeline import LoopOptions, Pipeline
from comfyfixer.loop.wiring import build_stages
from comfyfixer.models import Candidate, MissingModel, Resolution
from tests.fakes.content import safetensors_bytes
from tests.fakes.files import FileServer

BLOB_VALUES = 100_000  # 200 kB of tensor data per model


class SleepingFinder:
    def __init__(self, table: dict[str, Candidate], seconds: float) -> None:
        self.table = table
        self.seconds = seconds

    def find(self, model: MissingModel) -> Resolution:
        if self.seconds:
            time.sleep(self.seconds)
        cand = self.table[model.name]
        return Resolution(model, "found", candidate=cand, candidates=[cand])


def one_run(
    server: FileServer, table: dict[str, Candidate], *, search: float, jobs: int, dry_run: bool
) -> float:
    with tempfile.TemporaryDirectory(prefix="loop_bench_") as tmp:
        root = Path(tmp) / "ComfyUI"
        (root / "models" / "loras").mkdir(parents=True)
        env = {**os.environ, "COMFYFIXER_RETRY_DELAY": "0"}
        # The file server is on loopback, which a script only downloads from when allowed.
        local = Settings(extra_allowed_hosts=("127.0.0.1",))
        stages = build_stages(SleepingFinder(table, search), Layout.load(root), env, settings=local)
        pipeline = Pipeline(
            stages,
            output_dir=Path(tmp) / "output",
            log_dir=Path(tmp) / "log",
            options=LoopOptions(jobs=jobs, dry_run=dry_run),
        )
        models = [MissingModel(name=name, directory="loras") for name in table]
        started = time.perf_counter()
        result = pipeline.run(models)
        elapsed = time.perf_counter() - started
        expected = "planned" if dry_run else "downloaded"
        bad = [r for r in result.results if r.outcome != expected]
        if bad:
            raise SystemExit(f"benchmark run failed: {bad[0].name}: {bad[0].outcome} {bad[0].reason}")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=21)
    parser.add_argument("--search-seconds", type=float, default=0.3)
    parser.add_argument("--download-seconds", type=float, default=0.6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest counts")
    args = parser.parse_args()

    with FileServer() as server:
        table: dict[str, Candidate] = {}
        for i in range(args.models):
            name = f"model_{i:02d}.safetensors"
            data = safetensors_bytes(name, BLOB_VALUES)
            server.add(f"/f/{name}", data, rate=len(data) / args.download_seconds)
            table[name] = Candidate(
                server.url_for(f"/f/{name}"), name, "hint", hashlib.sha256(data).hexdigest(), len(data)
            )
        runs = range(args.repeat)
        t_search = min(
            one_run(server, table, search=args.search_seconds, jobs=args.jobs, dry_run=True) for _ in runs
        )
        t_download = min(one_run(server, table, search=0.0, jobs=args.jobs, dry_run=False) for _ in runs)
        t_full = min(
            one_run(server, table, search=args.search_seconds, jobs=args.jobs, dry_run=False) for _ in runs
        )

    bound = max(t_search, t_download)
    print(
        f"models={args.models} jobs={args.jobs} search={args.search_seconds}s/model "
        f"download~{args.download_seconds}s/model"
    )
    print(f"T_search   {t_search:6.2f} s  (searches only, dry run)")
    print(f"T_download {t_download:6.2f} s  (instant searches)")
    print(f"T_full     {t_full:6.2f} s  (sequential would be ~{t_search + t_download:.2f} s)")
    print(f"ratio      {t_full / bound:6.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
