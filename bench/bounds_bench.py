"""Bounds benchmark: time to a verdict with no network, and peak memory of the process tree under hostile
servers (slow headers, endless bodies, gzip bombs) standing in for the catalogue, the Hub API and the LLM.

Every case runs the real CLI, `comfyfixer run WF --comfyui ROOT --yes --json`, as a subprocess with the
production bounds; the process tree's RSS (the run and every child) is sampled every 20 ms from /proc.

    python3 bench/bounds_bench.py [--models 12] [--only offline|hostile]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.hostile import HostileServer  # noqa: E402
from tests.test_run_e2e import workflow  # noqa: E402


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run(env_extra: dict[str, str], models: int, tmp: Path) -> tuple[float, int, int, dict[str, int], str]:
    root = tmp / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True, exist_ok=True)
    wf = workflow(tmp / "wf.json", [(f"bench_lora_{i:02d}.safetensors", None, None) for i in range(models)])
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_", "COMFYFIXER_", "CIVITAI"))
    }
    env.update(HF_HOME=str(tmp / "hf_home"), PYTHONPATH=str(REPO), **env_extra)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfyfixer", "run", str(wf), "--comfyui", str(root), "--yes", "--json"],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    out, err = proc.communicate()
    took = time.monotonic() - start
    outcomes: dict[str, int] = {}
    try:
        for m in json.loads(out)["models"]:
            outcomes[m["outcome"]] = outcomes.get(m["outcome"], 0) + 1
    except (ValueError, KeyError):
        pass
    return took, peak, proc.returncode, outcomes, " ".join(err.decode(errors="replace").split())


def offline(models: int) -> None:
    print(f"## offline, {models} missing models")
    cases = {
        "refused ports": {
            "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "COMFYFIXER_CIVITAI_URL": f"http://127.0.0.1:{closed_port()}",
            "COMFYFIXER_CATALOG_URL": f"http://127.0.0.1:{closed_port()}/model-list.json",
        },
        "unresolvable names": {
            "HF_ENDPOINT": "https://hub.invalid",
            "COMFYFIXER_CIVITAI_URL": "https://civitai.invalid",
            "COMFYFIXER_CATALOG_URL": "https://raw.invalid/model-list.json",
        },
    }
    for name, env in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            took, _peak, code, outcomes, err = run(env, models, Path(tmp))
        lines = err.count("Cannot reach")
        print(f"| {name} | {took:.2f} s | exit {code} | {outcomes} | 'Cannot reach' sentences: {lines} |")


def hostile(models: int) -> None:
    print("## hostile servers (production bounds), 1 model")
    refused = f"http://127.0.0.1:{closed_port()}"
    for target in ("catalogue", "huggingface", "llm"):
        for mode in ("slow_headers", "endless_body", "gzip_bomb"):
            with (
                HostileServer(mode, interval=0.001, chunk=64 << 10) as srv,
                tempfile.TemporaryDirectory() as tmp,
            ):  # type: ignore[arg-type]
                env = {
                    "HF_ENDPOINT": refused,
                    "COMFYFIXER_CIVITAI_URL": refused,
                    "COMFYFIXER_CATALOG_URL": "off",
                }
                if target == "catalogue":
                    env["COMFYFIXER_CATALOG_URL"] = f"{srv.url}/model-list.json"
                elif target == "huggingface":
                    env["HF_ENDPOINT"] = srv.url
                else:
                    env.update(COMFYFIXER_LLM_BASE_URL=f"{srv.url}/v1", COMFYFIXER_LLM_MODEL="qwen")
                took, peak, code, outcomes, _ = run(env, 1, Path(tmp))
            print(
                f"| {target} | {mode} | {took:.1f} s | peak RSS {peak / 2**20:.0f} MiB "
                f"| exit {code} | {outcomes} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--only", choices=["offline", "hostile"])
    args = parser.parse_args()
    if args.only in (None, "offline"):
        offline(args.models)
    if args.only in (None, "hostile"):
        hostile(args.models)


if __name__ == "__main__":
    main()
