"""Download benchmark: the generated script against curl, aria2c and hf_hub_download on a capped CDN.

    python3 bench/download_bench.py [--size-mib 256] [--rate-mbs 40] [--rounds 5] [--segments 16]
        [--no-resume] [--small-only]

A fake Hugging Face hub (`tests/fakes`) whose CDN caps every connection at --rate-mbs (`capped.py`,
as the hubs' CDNs do) serves one safetensors file of --size-mib. Every client starts from the hub's
`resolve` URL (a 302 to a signed CDN link) and must end with the right sha256 (checked outside the
timing for the peers; the script hashes as part of its own run, as it must before installing):

- script: `bash download_NNN.sh` as comfyfixer writes it (size and sha256 known);
- curl: `curl -sS --fail -L -o FILE URL`;
- aria2c: `aria2c -x16 -s16` (Debian's aria2, its defaults otherwise), and the same with
  `--checksum=sha-256=HEX` (aria2c then hashes the file too, as the script must);
- hf_hub_download: `huggingface_hub.hf_hub_download(..., endpoint=HUB)` in a fresh process and cache.

(1) Rounds: one warm-up of each, then --rounds interleaved rounds (the order rotates), `sync` before
    every run (excluded). Wall time, CPU (user + system of the process and its children), and per
    round the paired ratio script / peer; the table gives medians. Targets: script <= 1.15x the
    fastest peer, CPU <= 1.5x aria2c's.
(2) Fixed cost: the script and curl on a 1 KiB file (single stream: one redirect, so two checked
    hops) and on a 2 MiB file with the segment threshold lowered to 1 MiB (the segmented path),
    interleaved, median of --rounds (every run printed). --small-only runs just this part.
(3) Resume: each client is cut (SIGTERM to its process group) once the CDN has sent half the file,
    then run again; the CDN's byte counter gives what the second run re-sent. Target <= 55%.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.capped import CappedServer  # noqa: E402
from comfyfixer.config import Settings  # noqa: E402
from comfyfixer.scripts.render import ScriptPlan, render_script  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402

MIB = 1 << 20
REPO = "bench/model"
HF_SNIPPET = (
    "import sys\n"
    "from huggingface_hub import hf_hub_download\n"
    "hf_hub_download(sys.argv[1], sys.argv[2], endpoint=sys.argv[3], cache_dir=sys.argv[4])\n"
)


def safetensors_bytes(size: int) -> bytes:
    """A valid safetensors file of exactly `size` bytes: one U8 tensor of random bytes."""
    n = size
    while True:
        header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
        header += b" " * (-len(header) % 8)
        if 8 + len(header) + n == size:
            return len(header).to_bytes(8, "little") + header + os.urandom(n)
        n = size - 8 - len(header)


@dataclass
class Client:
    name: str
    start: Callable[[Path], subprocess.Popen[bytes]]  # work dir -> the running download
    result: Callable[[Path], Path]  # work dir -> the downloaded file
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        TMPDIR=str(tmp),
        COMFYFIXER_RETRY_DELAY="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HOME=str(tmp / "hf_home"),
    )
    return env


def _popen(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def make_clients(tmp: Path, url: str, hub_url: str, data: bytes, sha: str) -> list[Client]:
    env = _env(tmp)
    python = sys.executable

    def script(work: Path) -> subprocess.Popen[bytes]:
        dest = work / "models" / "checkpoints" / "model.safetensors"
        plan = ScriptPlan(
            number=1,
            name=dest.name,
            directory="checkpoints",
            dest=dest,
            url=url,
            sha256=sha,
            size=len(data),
            auth=None,
            source="bench",
            why="benchmark",
            python=python,
            user_agent="comfyfixer/bench",
            hosts=Settings(extra_allowed_hosts=("127.0.0.1",)).host_rule,
        )
        path = work / "download_001_model.sh"
        path.write_text(render_script(plan))
        return _popen(["bash", str(path)], env)

    def curl(work: Path) -> subprocess.Popen[bytes]:
        return _popen(["curl", "-sS", "--fail", "-L", "-C", "-", "-o", str(work / "curl.bin"), url], env)

    def aria2c(work: Path) -> subprocess.Popen[bytes]:
        return _popen(["aria2c", "-x16", "-s16", "-q", "-c", "-d", str(work), "-o", "aria2c.bin", url], env)

    def aria2c_sha(work: Path) -> subprocess.Popen[bytes]:
        cmd = [
            "aria2c",
            "-x16",
            "-s16",
            "-q",
            "-c",
            f"--checksum=sha-256={sha}",
            "-d",
            str(work),
            "-o",
            "aria2c.bin",
        ]
        return _popen([*cmd, url], env)

    def hf(work: Path) -> subprocess.Popen[bytes]:
        cmd = [python, "-c", HF_SNIPPET, REPO, "model.safetensors", hub_url, str(work / "hf_cache")]
        return _popen(cmd, env)

    def hf_result(work: Path) -> Path:
        return next((work / "hf_cache").rglob("snapshots/*/model.safetensors"))

    return [
        Client("script", script, lambda w: w / "models" / "checkpoints" / "model.safetensors"),
        Client("curl -o", curl, lambda w: w / "curl.bin"),
        Client("aria2c -x16 -s16", aria2c, lambda w: w / "aria2c.bin"),
        Client("aria2c -x16 -s16 --checksum", aria2c_sha, lambda w: w / "aria2c.bin"),
        Client("hf_hub_download", hf, hf_result),
    ]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * MIB), b""):
            h.update(block)
    return h.hexdigest()


def timed(client: Client, work: Path) -> tuple[float, float]:
    os.sync()  # the previous run's dirty pages must not be flushed during this one
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = client.start(work)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{client.name} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def fresh(tmp: Path, name: str) -> Path:
    work = tmp / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def rounds(clients: list[Client], tmp: Path, sha: str, count: int) -> None:
    for i in range(-1, count):  # round -1 is the warm-up
        order = clients[i % len(clients) :] + clients[: i % len(clients)]
        for client in order:
            work = fresh(tmp, "run")
            wall, cpu = timed(client, work)
            got = sha256_of(client.result(work))
            if got != sha:
                raise SystemExit(f"{client.name} ended with sha256 {got}, expected {sha}")
            if i >= 0:
                client.walls.append(wall)
                client.cpus.append(cpu)
            shutil.rmtree(work)


def resume(client: Client, tmp: Path, cdn: CappedServer, size: int, sha: str) -> tuple[float, float]:
    """Cut the client once the CDN has sent half the file, run it again; (cut at, re-sent) as shares."""
    work = fresh(tmp, "resume")
    cdn.clear_log()
    proc = client.start(work)
    while cdn.bytes_sent() < size // 2 and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGTERM)  # what Ctrl-C or `comfyfixer`'s stop does
    proc.communicate()
    cut = cdn.bytes_sent() / size
    cdn.clear_log()
    proc = client.start(work)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(
            f"{client.name} resume failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}"
        )
    if sha256_of(client.result(work)) != sha:
        raise SystemExit(f"{client.name} resumed to a wrong file")
    resent = cdn.bytes_sent() / size
    shutil.rmtree(work)
    return cut, resent


def fixed_cost(tmp: Path, hub: FakeHub, count: int) -> dict[str, list[float]]:
    """Wall times on small files: 1 KiB (single stream) and 2 MiB through the segments."""
    out: dict[str, list[float]] = {}
    for label, size, threshold in (("1 KiB", 1024, "32"), ("2 MiB segmented", 2 * MIB, "1")):
        data = safetensors_bytes(size)
        name = f"small{size}.safetensors"
        hub.add_file(REPO, name, data)
        url = hub.resolve_url(REPO, name)
        os.environ["COMFYFIXER_SEGMENT_MIN_MIB"] = threshold  # read by _env for the script
        script, curl = make_clients(tmp, url, hub.url, data, hashlib.sha256(data).hexdigest())[:2]
        for i in range(count + 1):
            for client in (script, curl):
                work = fresh(tmp, "small")
                wall, _ = timed(client, work)
                if i:
                    client.walls.append(wall)
        out[f"script {label}"] = script.walls
        out[f"curl {label}"] = curl.walls
    os.environ.pop("COMFYFIXER_SEGMENT_MIN_MIB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rate-mbs", type=float, default=40.0, help="cap per connection, MB/s (1e6 bytes)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--segments", type=int, default=16, help="COMFYFIXER_SEGMENTS for the script")
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--small-only", action="store_true", help="only the fixed cost on small files")
    args = parser.parse_args()
    for tool in ("curl", "aria2c", "bash"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed for this benchmark")
    os.environ["COMFYFIXER_SEGMENTS"] = str(args.segments)
    if args.small_only:
        small_only(args)
        return
    size = args.size_mib * MIB
    data = safetensors_bytes(size)
    sha = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="comfyfixer-bench-") as td:
        tmp = Path(td)
        if shutil.disk_usage(tmp).free < 4 * size:
            raise SystemExit(f"need {4 * size // MIB} MiB free in {tmp}")
        with CappedServer(args.rate_mbs * 1e6) as cdn, FakeHub(cdn=cdn) as hub:
            hub.add_file(REPO, "model.safetensors", data)
            url = hub.resolve_url(REPO, "model.safetensors")
            clients = make_clients(tmp, url, hub.url, data, sha)
            load = os.getloadavg()[0]
            rounds(clients, tmp, sha, args.rounds)
            cuts = {} if args.no_resume else {c.name: resume(c, tmp, cdn, size, sha) for c in clients}
            small = fixed_cost(tmp, hub, args.rounds)
            load = max(load, os.getloadavg()[0])
    report(clients, cuts, args, size, load, small)


def small_only(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="comfyfixer-bench-") as td,
        CappedServer(args.rate_mbs * 1e6) as cdn,
        FakeHub(cdn=cdn) as hub,
    ):
        load = os.getloadavg()[0]
        small = fixed_cost(Path(td), hub, args.rounds)
        load = max(load, os.getloadavg()[0])
    print(f"small files, CDN capped at {args.rate_mbs:g} MB/s per connection, 1-min load up to {load:.1f}")
    report_small(small)


def report_small(small: dict[str, list[float]]) -> None:
    print(
        "small files (median wall): "
        + ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in small.items())
    )
    runs = "; ".join(f"{k} [{', '.join(f'{w * 1000:.0f}' for w in v)}]" for k, v in small.items())
    print(f"small-file runs (ms): {runs}")


def report(
    clients: list[Client],
    cuts: dict[str, tuple[float, float]],
    args: argparse.Namespace,
    size: int,
    load: float,
    small: dict[str, list[float]],
) -> None:
    script = clients[0]
    ideal = size / (args.segments * args.rate_mbs * 1e6)
    print(
        f"file {size // MIB} MiB, CDN capped at {args.rate_mbs:g} MB/s per connection, script with "
        f"{args.segments} segments, median of {args.rounds} interleaved rounds, 1-min load up to {load:.1f}"
    )
    print(
        "| client | wall (median) | CPU (median) | script/client wall (paired, median) | script/client CPU |"
        " cut at | re-sent on resume |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in clients:
        wall_ratio = statistics.median(s / p for s, p in zip(script.walls, c.walls, strict=True))
        cpu_ratio = statistics.median(s / p for s, p in zip(script.cpus, c.cpus, strict=True))
        cut, resent = cuts.get(c.name, (float("nan"), float("nan")))
        print(
            f"| {c.name} | {statistics.median(c.walls):.3f} s | {statistics.median(c.cpus):.3f} s | "
            f"{wall_ratio:.2f}x | {cpu_ratio:.2f}x | {cut:.0%} | {resent:.0%} |"
        )
    peers = clients[1:]
    fastest = min(peers, key=lambda c: statistics.median(c.walls))
    best = [min(times) for times in zip(*(c.walls for c in peers), strict=True)]
    paired = statistics.median(s / b for s, b in zip(script.walls, best, strict=True))
    print(
        f"script / fastest peer in each round (paired, median): {paired:.2f}x  (target <= 1.15; fastest "
        f"by median: {fastest.name})"
    )
    print("runs: " + "; ".join(f"{c.name} [{', '.join(f'{w:.2f}' for w in c.walls)}]" for c in clients))
    print("CPU runs: " + "; ".join(f"{c.name} [{', '.join(f'{u:.2f}' for u in c.cpus)}]" for c in clients))
    print(
        "script/client CPU per round: "
        + "; ".join(
            f"{c.name} [{', '.join(f'{s / p:.2f}' for s, p in zip(script.cpus, c.cpus, strict=True))}]"
            for c in peers
        )
    )
    print(f"ideal transfer at {args.segments} x {args.rate_mbs:g} MB/s: {ideal:.3f} s")
    report_small(small)


if __name__ == "__main__":
    main()
