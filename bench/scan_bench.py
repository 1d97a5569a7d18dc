"""Scan benchmark: `comfyfixer scan --json` against the least any scan must do, on the same files.

Builds, in a temporary folder, a set of workflow files (copies of the corpus in ../shared, varied so
model names differ between copies; synthetic UI workflows when ../shared is absent) and a ComfyUI
models tree of tiny files. The baseline is a separate Python process that only reads and `json.loads`
every workflow file and `os.walk`s the models tree. Both run as subprocesses, start-up included,
interleaved, several times; the figure is median(scan) / median(baseline).

    python3 bench/scan_bench.py [--workflows 1000] [--models 10000] [--repeat 5] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "workflows"

BASELINE = r"""
import json, os, sys
wf_dir, models_dir = sys.argv[1], sys.argv[2]
n = 0
for dirpath, _dirs, files in os.walk(wf_dir):
    for name in files:
        with open(os.path.join(dirpath, name), "rb") as fh:
            data = fh.read()
        if name.endswith(".json"):
            json.loads(data)
        n += 1
m = sum(len(files) for _d, _s, files in os.walk(models_dir, followlinks=True))
print(n, m)
"""

KEYS = ["checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "controlnet", "upscale_models",
        "embeddings", "clip_vision", "ipadapter"]  # fmt: skip


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.suffix == ".json")


def synthetic_workflow(i: int) -> str:
    """A small UI-format workflow with a checkpoint, two loras and a VAE (when ../shared is absent)."""

    def node(node_id: int, node_type: str, mode: int, *values: object) -> dict[str, object]:
        return {"id": node_id, "type": node_type, "mode": mode, "widgets_values": list(values)}

    nodes = [
        node(1, "CheckpointLoaderSimple", 0, f"ckpt_{i % 97}.safetensors"),
        node(2, "LoraLoader", 0, f"style/lora_{i % 301}.safetensors", 1, 1),
        node(3, "LoraLoader", 4, f"lora_{i % 53}.safetensors", 0.5, 0.5),
        node(4, "VAELoader", 0, "ae.safetensors"),
        node(5, "KSampler", 0, i, "randomize", 20, 7, "euler", "normal", 1),
    ]
    return json.dumps({"version": 0.4, "nodes": nodes, "links": [], "extra": {}})


def build_workflows(dest: Path, count: int) -> int:
    sources = corpus_files()
    rng = random.Random(7)
    for i in range(count):
        sub = dest / f"batch{i % 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        if sources:
            src = sources[i % len(sources)]
            round_ = i // len(sources)
            text = src.read_text(encoding="utf-8")
            if round_:  # vary the copies: other versions of the same models, so the plan grows
                text = text.replace(".safetensors", f"_v{round_}.safetensors")
            (sub / f"{round_}_{src.name}").write_text(text, encoding="utf-8")
        else:
            (sub / f"synthetic_{i:05d}.json").write_text(synthetic_workflow(rng.randrange(10**6)))
    return count


def truth_names() -> list[tuple[str, str]]:
    truth = CORPUS / "truth.jsonl"
    if not truth.is_file():
        return [("checkpoints", f"ckpt_{i}.safetensors") for i in range(97)]
    out = []
    for line in truth.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("directory") and row.get("name"):
            out.append((row["directory"], row["name"].replace("\\", "/")))
    return out


def build_models(root: Path, count: int) -> int:
    models = root / "models"
    made = 0
    # Half of the corpus models installed, so the scan classifies present, misplaced and missing.
    for n, (key, name) in enumerate(truth_names()):
        if n % 2 == 0:
            path = models / key / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            made += 1
    i = 0
    while made < count:
        key = KEYS[i % len(KEYS)]
        path = models / key / f"sub{i % 37}" / f"filler_{i:06d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        made += 1
        i += 1
    return made


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the child and its workers) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _runs(samples: list[tuple[float, float]]) -> str:
    return ", ".join(f"{wall:.3f}" for wall, _cpu in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the generated tree and print where")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep the environment's PYTHONDONTWRITEBYTECODE: the scan compiles its modules every run",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="comfyfixer-scan-bench-"))
    try:
        wf_dir, root = tmp / "workflows", tmp / "ComfyUI"
        n_wf = build_workflows(wf_dir, args.workflows)
        n_models = build_models(root, args.models)
        size_mb = sum(p.stat().st_size for p in wf_dir.rglob("*") if p.is_file()) / 1e6
        env = {**os.environ, "PYTHONPATH": str(REPO), "COMFYUI_PATH": ""}
        if not args.no_bytecode_cache:
            # Both processes start from compiled bytecode, as an installed tool does (pip compiles it);
            # an inherited PYTHONDONTWRITEBYTECODE=1 would make every scan recompile the package
            # (~40 ms here). The cache lives in the temp dir, not in the checkout.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        scan_cmd = [sys.executable, "-m", "comfyfixer", "scan", str(wf_dir), "--comfyui", str(root),
                    "--json", "--output-dir", str(tmp / "output")]  # fmt: skip
        base_cmd = [sys.executable, "-c", BASELINE, str(wf_dir), str(root / "models")]
        timed(base_cmd, env)  # warm the page cache and the bytecode cache
        timed(scan_cmd, env)
        scans, bases = [], []
        for _ in range(args.repeat):
            bases.append(timed(base_cmd, env))
            scans.append(timed(scan_cmd, env))
        plan = json.loads((tmp / "output" / "missing_models.json").read_text(encoding="utf-8"))
        ms, mb = statistics.median(t[0] for t in scans), statistics.median(t[0] for t in bases)
        cs, cb = statistics.median(t[1] for t in scans), statistics.median(t[1] for t in bases)
        kind = "corpus copies" if corpus_files() else "synthetic"
        print(f"workflow files     {n_wf} ({size_mb:.1f} MB, {kind})")
        print(f"model files        {n_models}")
        cache = "off (as the environment says)" if args.no_bytecode_cache else "warm (temp dir)"
        print(f"bytecode cache     {cache}")
        print(f"missing models     {len(plan['missing'])}")
        print(
            f"cpus / load        {os.cpu_count()} / {os.getloadavg()[0]:.2f} (1-min load average at the end)"
        )
        print(f"baseline median    {mb:.3f} s wall, {cb:.3f} s cpu   runs: {_runs(bases)}")
        print(f"scan median        {ms:.3f} s wall, {cs:.3f} s cpu   runs: {_runs(scans)}")
        print(f"ratio (wall)       {ms / mb:.2f}x (target <= 1.5x)")
        print(f"ratio (cpu)        {cs / cb:.2f}x (all processes; the scan parses on every core)")
        best = min(t[0] for t in scans) / min(t[0] for t in bases)
        print(f"ratio (best wall)  {best:.2f}x (fastest run of each: the least disturbed by other load)")
        if args.keep:
            print(f"kept               {tmp}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
