"""The run's progress display, fed the loop's real events, read back from a real rich console."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from comfyfixer import events
from comfyfixer.cli.progress import Mode, ProgressDisplay, human_bytes

_ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def _shown(mode: Mode, *, terminal: bool) -> str:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=100, markup=False, highlight=False)
    with ProgressDisplay(console, mode=mode) as display:
        display(events.SearchStarted(1, 48, "first.safetensors", "loras"))
        display(
            events.SearchFinished(
                1, 48, "first.safetensors", "found", "huggingface", "", "org/repo (first.safetensors)"
            )
        )
        display(events.DownloadStarted("k", "first.safetensors", "download_001.sh", "first.part", 2_000_000))
        display(events.DownloadProgress("k", "first.safetensors", 500_000, 2_000_000, 250_000.0, 6.0))
        for _ in range(2):
            display(
                events.VerificationPass(3, False, 0, "LLM verification skipped: no LLM endpoint configured")
            )
        display(events.SearchStarted(2, 48, "second.safetensors", "loras"))
    return _ANSI.sub("", buf.getvalue())


def test_terminal_overall_line_counts_models_and_numbers_them_as_the_pipe_does() -> None:
    screen = _shown("rich", terminal=True)
    piped = _shown("plain", terminal=False)
    # The overall line counts models, never "bytes", and has no ETA of its own.
    assert "0/48 models done" in screen and "bytes" not in screen
    # The first model is [1/48] on a terminal and in a pipe alike (it was [0/48] on a terminal).
    assert "[1/48] searching first.safetensors" in screen
    assert "[1/48] searching first.safetensors" in piped and "[2/48] searching second.safetensors" in piped
    # The download bar: decimal units, one spelling (kB), with speed and ETA.
    assert "500.0 kB/2.0 MB" in screen and "250.0 kB/s" in screen and "ETA 00:06" in screen
    assert "KB" not in screen and "KB" not in piped
    for out in (screen, piped):
        assert "[1/48] first.safetensors: found on huggingface: org/repo (first.safetensors)" in out
        # The reason a pass skipped the LLM is said once; the next pass is short.
        assert out.count("no LLM endpoint configured") == 1


@pytest.mark.parametrize(
    ("n", "text"), [(None, "?"), (999, "999 B"), (1000, "1.0 kB"), (1_500_000, "1.5 MB"), (2.5e9, "2.5 GB")]
)
def test_sizes_are_decimal_with_one_spelling(n: float | None, text: str) -> None:
    assert human_bytes(n) == text
