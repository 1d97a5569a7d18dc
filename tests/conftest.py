"""Shared pytest hooks. `figures`: lines any test can add; they are printed in the terminal summary.

Use it for measured figures (accuracy, counts) that should show in a normal `python -m pytest` run:

    def test_accuracy(figures: list[str]) -> None:
        figures.append("parser recall: 99.9% (1416/1417)")
"""

from __future__ import annotations

import pytest

from tests.fakes.fixtures import *  # noqa: F403

_FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    return _FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.write_sep("=", "figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
