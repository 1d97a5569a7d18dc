"""Tokens never reach the console: a malformed token is a usage error that does not echo it, and every
traceback (COMFYFIXER_DEBUG=1, a dying thread) is redacted."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from comfyfixer.cli import errors as cli_errors

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_ZXsecretVALUE1234567890"


def _cli(tmp_path: Path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_", "COMFYFIXER_", "CIVITAI"))
    }
    env.update(PYTHONPATH=str(REPO), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "comfyfixer", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("bad", [f"{TOKEN}\nsecond-line-SECRET", f"{TOKEN}\tTAB", f"{TOKEN}\x1b[2J"])
def test_a_token_with_control_characters_is_a_usage_error_that_does_not_echo_it(
    tmp_path: Path, bad: str
) -> None:
    (tmp_path / "wf").mkdir()
    for debug in ("0", "1"):
        proc = _cli(tmp_path, {"HF_TOKEN": bad, "COMFYFIXER_DEBUG": debug}, "scan", "wf")
        assert proc.returncode == 2, proc.stderr
        assert "HF_TOKEN contains a control character" in proc.stderr
        out = proc.stdout + proc.stderr
        assert "ZXsecret" not in out and "SECRET" not in out and "TAB" not in out
        assert "Traceback" not in out


def test_debug_tracebacks_are_redacted_in_every_form(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVITAI_API_TOKEN", TOKEN)
    monkeypatch.setenv("COMFYFIXER_DEBUG", "1")
    try:
        # Libraries quote header values with repr(): the literal token is not what appears.
        raise ValueError(f"Illegal header value {('Bearer ' + TOKEN).encode()!r} for {TOKEN}")
    except ValueError as exc:
        cli_errors.print_debug_traceback(exc)
    err = capsys.readouterr().err
    assert "Traceback" in err and "Illegal header value" in err
    assert "ZXsecret" not in err


def test_a_dying_thread_is_reported_without_the_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TOKEN)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    cli_errors.install_redacting_hooks()

    def boom() -> None:
        raise RuntimeError(f"key {TOKEN!r} refused")

    for debug in ("0", "1"):
        monkeypatch.setenv("COMFYFIXER_DEBUG", debug)
        t = threading.Thread(target=boom, name="worker")
        t.start()
        t.join()
        err = capsys.readouterr().err
        assert "error in thread worker" in err and "refused" in err and "ZXsecret" not in err
