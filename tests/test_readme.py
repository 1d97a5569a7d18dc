"""The README stays true: each command and flag it shows exists, and CI runs its test command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from comfyfixer.cli.app import COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
# Every `comfyfixer <command> ...` the README shows, in code spans and code blocks alike.
SHOWN = re.findall(r"comfyfixer (\w+)((?:\\\||[^`\n|])*)", README)


@cache
def help_text(command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "comfyfixer", command, "--help"],
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    assert f"comfyfixer {command}" in README
    assert "--help" in help_text(command)


@pytest.mark.parametrize(("command", "flags"), sorted(set(SHOWN)), ids=lambda v: v.split("[")[0].strip())
def test_every_flag_the_readme_shows_is_accepted(command: str, flags: str) -> None:
    assert command in COMMANDS, f"the README shows `comfyfixer {command}`, which does not exist"
    for flag in re.findall(r"(?<![\w-])--?[a-z][\w-]*", flags):
        assert flag in help_text(command), f"`comfyfixer {command} {flag}` is in the README but not in --help"


def test_ci_runs_the_readme_test_command() -> None:
    (command,) = re.findall(r"## Test\s+```bash\n(.+)\n```", README)
    assert command.strip() in (REPO / ".ci" / "run").read_text(encoding="utf-8")
