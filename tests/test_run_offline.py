"""`comfyfixer run` with no network at all: refused ports, or host names that do not resolve.

12 missing models must end quickly (the pytest timeout is the bound, not a timed assertion), every model
`source_error` naming the source, and stderr says it once in one sentence, with no flood of retry lines.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.test_run_e2e import REPO, workflow

pytestmark = pytest.mark.timeout(120)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("network", ["refused", "unresolvable"])
def test_twelve_models_with_no_network_end_fast_as_source_errors(tmp_path: Path, network: str) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    names = [f"offline_lora_{i:02d}.safetensors" for i in range(12)]
    wf = workflow(tmp_path / "wf.json", [(n, None, None) for n in names])
    if network == "refused":
        hub, civitai, catalogue = (f"http://127.0.0.1:{_closed_port()}" for _ in range(3))
    else:
        hub, civitai, catalogue = "http://hub.invalid", "https://civitai.invalid", "https://raw.invalid"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_", "COMFYFIXER_", "CIVITAI"))
    }
    env.update(
        HF_ENDPOINT=hub,
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        COMFYFIXER_CIVITAI_URL=civitai,
        COMFYFIXER_CATALOG_URL=f"{catalogue}/model-list.json",
        COMFYUI_PATH="",
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "comfyfixer", "run", str(wf), "--comfyui", str(root), "--yes", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    outcomes = {m["name"]: (m["outcome"], m["reason"]) for m in report["models"]}
    assert sorted(outcomes) == sorted(names)
    for outcome, reason in outcomes.values():
        assert outcome == "source_error"
        assert "Hugging Face unreachable" in reason and "Civitai unreachable" in reason
    text = " ".join(proc.stderr.split())  # the console wraps long lines
    assert text.count("Cannot reach Hugging Face") == 1, proc.stderr
    assert "Civitai" in text.split("Cannot reach", 1)[1].split("(`comfyfixer doctor`", 1)[0]
    assert "Retrying" not in text and "Traceback" not in text, proc.stderr
