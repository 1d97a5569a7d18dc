"""The collaborators the loop composes, as Protocols, and the `Stages` bundle the CLI hands it.

The pipeline knows its stages only through these Protocols, so tests can hand in small
implementations pointed at local fakes, and `comfyfixer.loop.wiring` builds the real ones from settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from comfyfixer.models import Candidate, FileChecks, LLMVerdict, MissingModel, Outcome, Resolution

LLM_SKIPPED = "LLM verification skipped: no LLM endpoint configured (deterministic checks only)"


class Finder(Protocol):
    def find(self, model: MissingModel) -> Resolution: ...


class Agent(Protocol):
    """Searches harder for what the direct sources left not_found or ambiguous."""

    def search(self, model: MissingModel, prior: Resolution) -> Resolution: ...


class Reviewer(Protocol):
    def review(self, reports: list[FileChecks]) -> list[LLMVerdict]: ...


class ScriptOutcome(Protocol):
    """How a finished script ended (`scripts.run.ScriptResult` fits)."""

    @property
    def returncode(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def log_tail(self) -> str: ...

    @property
    def failure_outcome(self) -> Outcome: ...


class DownloadProcess(Protocol):
    """A running download script (`scripts.run.ScriptProcess` fits)."""

    @property
    def pid(self) -> int: ...

    @property
    def reported_sha256(self) -> str | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def bytes_done(self) -> int: ...

    def terminate(self, grace: float = ...) -> object: ...

    def result(self) -> ScriptOutcome: ...


class Launcher(Protocol):
    def start(self, script: Path, *, log_path: Path, dest: Path) -> DownloadProcess: ...


class ScriptMaker(Protocol):
    def render(
        self, number: int, model: MissingModel, candidate: Candidate, destination: Path
    ) -> tuple[str, str]:
        """`(file name, script text)` for script number `number`."""
        ...

    def owns(self, script: Path, destination: Path) -> bool:
        """Whether an existing script downloads to `destination` (the model's own script)."""
        ...


class Placement(Protocol):
    def destination(self, model: MissingModel, candidate: Candidate) -> Path:
        """The final path of the model; raises UnsafePathError when the name would leave the models folder."""
        ...


class Checker(Protocol):
    def verify(
        self, model: MissingModel, candidate: Candidate, path: Path, reported_sha256: str | None
    ) -> FileChecks: ...

    def quarantine(self, path: Path) -> Path | None: ...


@dataclass(frozen=True)
class Stages:
    """Every collaborator of one run, complete before the loop starts (so frozen)."""

    finder: Finder
    scripts: ScriptMaker
    launcher: Launcher
    checker: Checker
    placement: Placement
    agent: Agent | None = None
    reviewer: Reviewer | None = None
    reviewer_skip_reason: str = LLM_SKIPPED
