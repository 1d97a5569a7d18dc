"""Download benchmark: the generated script against plain `curl -o`, and resume after a kill.

    python3 bench/download_bench.py [--size-mib 1024] [--rate-mbs 200] [--rounds 3]

(1) Time to download + verify (size, sha256 while streaming, rename) a file from the loopback file
    server throttled to ~200 MB/s, against `curl -sS -o` of the same file; the target ratio is
    <= 1.15. (2) Kill the script half-way, run it again, and count the bytes the server sends the
    second time; the target is <= 55% of the file. Files go to a temporary folder; 1 GiB only when
    at least 5 GB are free there, else the size is scaled down and the output says so.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comfyfixer.scripts.render import ScriptPlan, render_script  # noqa: E402
from comfyfixer.scripts.run import ScriptProcess  # noqa: E402
from tests.fakes.files import FileServer, sparse_file  # noqa: E402

MIB = 1 << 20


def _size_for(folder: Path, wanted: int) -> tuple[int, str]:
    free = shutil.disk_usage(folder).free
    if free >= 5 * 1024 * MIB:
        return wanted, ""
    scaled = max(16 * MIB, min(wanted, free // 5) // MIB * MIB)
    return scaled, f"only {free // MIB} MiB free in {folder}: scaled down to {scaled // MIB} MiB"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_API_TOKEN")}
    env.update(COMFYFIXER_RETRY_DELAY="0", TMPDIR=str(tmp))
    return env


def _plan(dest: Path, url: str, sha256: str | None, size: int) -> ScriptPlan:
    return ScriptPlan(
        number=1, name=dest.name, directory="checkpoints", dest=dest, url=url, sha256=sha256, size=size,
        auth=None, source="bench", why="benchmark", python=sys.executable, user_agent="comfyfixer/bench",
    )


def _timed(cmd: list[str], env: dict[str, str], cpu: list[float]) -> float:
    """Wall-clock seconds of one run; its CPU seconds (user + system, all children) go to `cpu`."""
    # Flush the previous run's dirty pages first: write-back of 1 GiB would slow whichever runs next.
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def throughput(fs: FileServer, tmp: Path, size: int, rounds: int) -> dict[str, Any]:
    blob = fs.blobs["/bench.safetensors"]
    url = fs.url_for("/bench.safetensors")
    env = _env(tmp)
    models = tmp / "models"
    curl_times: list[float] = []
    script_times: list[float] = []
    curl_cpu: list[float] = []
    script_cpu: list[float] = []
    for i in range(rounds):
        plain = tmp / "plain.bin"
        dest = models / f"run{i}" / "bench.safetensors"
        script = tmp / f"download_{i:03d}.sh"
        script.write_text(render_script(_plan(dest, url, blob.sha256, size)))
        # Alternate the order so neither side always runs on a warmer (or busier) machine.
        for which in (("curl", "script") if i % 2 == 0 else ("script", "curl")):
            if which == "curl":
                curl_times.append(_timed(["curl", "-sS", "--fail", "-o", str(plain), url], env, curl_cpu))
                plain.unlink()
            else:
                script_times.append(_timed(["bash", str(script)], env, script_cpu))
                if dest.stat().st_size != size:
                    raise SystemExit("the script did not install the whole file")
                shutil.rmtree(dest.parent)
    curl_s, script_s = statistics.median(curl_times), statistics.median(script_times)
    return {
        "curl_s": curl_s,
        "script_s": script_s,
        "ratio": script_s / curl_s,
        "curl_mb_s": size / curl_s / 1e6,
        "script_mb_s": size / script_s / 1e6,
        "curl_cpu_s": statistics.median(curl_cpu),
        "script_cpu_s": statistics.median(script_cpu),
        "curl_runs": curl_times,
        "script_runs": script_times,
    }


def resume(fs: FileServer, tmp: Path, size: int) -> dict[str, float]:
    blob = fs.blobs["/bench.safetensors"]
    url = fs.url_for("/bench.safetensors")
    dest = tmp / "models" / "resume" / "bench.safetensors"
    script = tmp / "download_resume.sh"
    script.write_text(render_script(_plan(dest, url, blob.sha256, size)))
    fs.clear_log()
    proc = ScriptProcess.start(script, env=_env(tmp), log_path=tmp / "resume.log", dest=dest)
    while proc.bytes_done() < size // 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.terminate()
    kept = dest.with_name(dest.name + ".part").stat().st_size
    first = fs.bytes_sent()
    fs.clear_log()
    subprocess.run(["bash", str(script)], env=_env(tmp), check=True, capture_output=True)
    second = fs.bytes_sent()
    if dest.stat().st_size != size:
        raise SystemExit("the resumed download is incomplete")
    return {
        "killed_at": kept / size,
        "first_run_served": first / size,
        "resume_served": second / size,
        "range": float(fs.requests[0].range == f"bytes={kept}-"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rate-mbs", type=float, default=200.0, help="server throttle in MB/s (1e6 bytes)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for this benchmark")
    with tempfile.TemporaryDirectory(prefix="comfyfixer-bench-") as td:
        tmp = Path(td)
        size, note = _size_for(tmp, args.size_mib * MIB)
        if note:
            print(f"note: {note}")
        source = sparse_file(tmp / "source.bin", size)
        with FileServer() as fs:
            fs.add("/bench.safetensors", file=source, rate=args.rate_mbs * 1e6)
            _ = fs.blobs["/bench.safetensors"].sha256  # hash the source before timing anything
            t = throughput(fs, tmp, size, args.rounds)
            r = resume(fs, tmp, size)
    print(f"file {size // MIB} MiB, server throttled to {args.rate_mbs:.0f} MB/s, median of {args.rounds}")
    for label, key in (("(1) plain curl -o    ", "curl"), ("    script + verify  ", "script")):
        runs = ", ".join(f"{x:.2f}" for x in t[f"{key}_runs"])
        print(
            f"{label}  {t[f'{key}_s']:7.2f} s  {t[f'{key}_mb_s']:6.1f} MB/s"
            f"  cpu {t[f'{key}_cpu_s']:.2f} s  runs [{runs}]"
        )
    print(f"    ratio               {t['ratio']:7.3f}   (target <= 1.15)")
    print(f"(2) killed at           {r['killed_at']:7.1%} of the file")
    print(f"    re-sent on resume   {r['resume_served']:7.1%} of the file   (target <= 55%)")
    print(f"    resumed with Range  {'yes' if r['range'] else 'NO'}")


if __name__ == "__main__":
    main()
