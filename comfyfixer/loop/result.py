"""The result of a run as data: one `ModelResult` per planned model, the verification passes, the
words a failure is reported in, and the `run --json` document built from them (DESIGN "run --json":
models, verifications, counts).

Pure: no I/O. The same error reads the same wherever it shows (a model's `reason`, a status entry, a
log line). URLs are redacted on the way out so a signed or token-carrying URL never reaches stdout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, get_args
from urllib.parse import urlsplit

from comfyfixer.errors import ComfyFixerError, redact
from comfyfixer.loop.stages import ScriptOutcome
from comfyfixer.models import Candidate, LLMVerdict, MissingModel, Outcome, Resolution, SearchOutcome

if TYPE_CHECKING:
    from comfyfixer.state.store import DownloadRecord

OUTCOMES: tuple[str, ...] = get_args(Outcome)
SUCCESS_OUTCOMES = frozenset({"downloaded", "already_present", "planned"})
RUN_JSON_SCHEMA = 1
# A search that settled nothing ends the model's run with this outcome ("found" without a candidate too).
SEARCH_FAILURES: dict[SearchOutcome, Outcome] = {
    "ambiguous": "ambiguous",
    "not_found": "not_found",
    "source_error": "source_error",
    "found": "not_found",
}


class Origin(Protocol):
    """Where a file comes from: a `Candidate`, or the `DownloadRecord` of an earlier run."""

    @property
    def source(self) -> str | None: ...

    @property
    def url(self) -> str | None: ...

    @property
    def sha256(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...


@dataclass(slots=True)
class ModelResult:
    """What became of one model in this run."""

    name: str
    directory: str | None
    outcome: Outcome
    source: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    script: str | None = None
    path: str | None = None
    reason: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        model: MissingModel,
        outcome: Outcome,
        reason: str = "",
        *,
        origin: Origin | None = None,
        candidates: Iterable[Candidate] = (),
        script: str | None = None,
        path: str | None = None,
    ) -> ModelResult:
        """The one way a result is built: the model's name, folder and workflows, and where its file
        comes from (source, URL, hash and size of `origin`)."""
        return cls(
            name=model.name,
            directory=model.directory,
            outcome=outcome,
            source=origin.source if origin else None,
            url=origin.url if origin else None,
            sha256=origin.sha256 if origin else None,
            size=origin.size if origin else None,
            script=script,
            path=path,
            reason=reason,
            candidates=list(candidates),
            workflows=list(model.workflows),
        )

    @classmethod
    def unresolved(cls, resolution: Resolution) -> ModelResult:
        """A search that found no single file: its outcome and reason, and the candidates it saw."""
        outcome = SEARCH_FAILURES.get(resolution.outcome, "not_found")
        reason = resolution.reason or outcome.replace("_", " ")
        return cls.of(resolution.model, outcome, reason, candidates=resolution.candidates)

    @classmethod
    def already_present(cls, model: MissingModel, record: DownloadRecord) -> ModelResult:
        """A model an earlier run downloaded and verified, its file still there."""
        reason = f"verified earlier ({record.time or 'unknown time'})"
        return cls.of(model, "already_present", reason, origin=record, script=record.script, path=record.path)

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES


@dataclass(slots=True)
class VerificationBatch:
    """One verification pass: the models it covered, whether the LLM took part, and its verdicts."""

    models: list[str]
    llm: bool
    verdicts: list[LLMVerdict] = field(default_factory=list)
    reason: str = ""


@dataclass
class RunResult:
    """Everything one run produced, in plan order; `notices` are the state files' warnings."""

    results: list[ModelResult]
    verifications: list[VerificationBatch]
    interrupted: bool = False
    notices: list[str] = field(default_factory=list)


def failure_reason(outcome: ScriptOutcome) -> str:
    """The exit code in words, plus the script's own last message when it said one."""
    lines = [line.strip() for line in outcome.log_tail.splitlines() if line.strip()]
    said = [line.removeprefix("comfyfixer: ") for line in lines if line.startswith("comfyfixer: ")]
    detail = said[-1] if said else ""
    reason = f"{outcome.reason} (exit {outcome.returncode})"
    return f"{reason}: {redact(detail)}" if detail else reason


def internal_error(doing: str, exc: BaseException) -> str:
    """The reason a model gets when our own code failed on it (the traceback is in the run log)."""
    what = f"{type(exc).__name__}: {redact(str(exc))}"
    return f"internal error while {doing}: {what} (a bug: the run log has the traceback)"


def why(exc: BaseException) -> str:
    """An exception in words: the message of our own errors, the OS's words (and file) otherwise."""
    if isinstance(exc, ComfyFixerError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return str(exc)


def where_found(candidate: Candidate) -> str:
    """The repo or model a candidate comes from, for "found on <source>: <where>" (no secret in it)."""
    if candidate.source == "civitai" and candidate.note.startswith("civitai "):
        return candidate.note.removeprefix("civitai ")  # "model 1 version 2 (Name / v1.0)"
    if candidate.repo:
        return candidate.repo + (f" ({candidate.path_in_repo})" if candidate.path_in_repo else "")
    return url_place(candidate.url)


def url_place(url: str) -> str:
    """Host and path of a URL: where a file is, without its query (signatures, tokens)."""
    parts = urlsplit(redact(url))
    return f"{parts.hostname or '?'}{parts.path}"


# ---------------------------------------------------------------- the run --json document


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "url": redact(candidate.url),
        "filename": candidate.filename,
        "source": candidate.source,
        "repo": candidate.repo,
        "path_in_repo": candidate.path_in_repo,
        "sha256": candidate.sha256,
        "size": candidate.size,
        "note": candidate.note,
    }


def model_json(result: ModelResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "directory": result.directory,
        "outcome": result.outcome,
        "source": result.source,
        "url": redact(result.url) if result.url else None,
        "sha256": result.sha256,
        "size": result.size,
        "script": result.script,
        "path": result.path,
        "reason": redact(result.reason),
        "candidates": [candidate_json(c) for c in result.candidates],
        "workflows": list(result.workflows),
    }


def verification_json(batch: VerificationBatch) -> dict[str, Any]:
    return {
        "models": list(batch.models),
        "llm": batch.llm,
        "verdicts": [{"name": v.name, "verdict": v.verdict, "reason": v.reason} for v in batch.verdicts],
        "reason": batch.reason,
    }


def counts(results: list[ModelResult], *, scripts_in_output: int | None = None) -> dict[str, int]:
    """Every outcome (zeros included), plus `total`, `failed`, `scripts` (scripts this run wrote or
    rewrote) and, when given, `scripts_in_output` (every download script in the output folder)."""
    out = dict.fromkeys(OUTCOMES, 0)
    for r in results:
        out[r.outcome] += 1
    out["total"] = len(results)
    out["failed"] = sum(1 for r in results if not r.ok)
    out["scripts"] = sum(1 for r in results if r.script and r.outcome != "already_present")
    if scripts_in_output is not None:
        out["scripts_in_output"] = scripts_in_output
    return out


def run_json(
    results: list[ModelResult],
    verifications: list[VerificationBatch],
    *,
    interrupted: bool = False,
    dry_run: bool = False,
    scripts_in_output: int | None = None,
) -> dict[str, Any]:
    return {
        "schema": RUN_JSON_SCHEMA,
        "models": [model_json(r) for r in results],
        "verifications": [verification_json(v) for v in verifications],
        "counts": counts(results, scripts_in_output=scripts_in_output),
        "interrupted": interrupted,
        "dry_run": dry_run,
    }


def exit_code(results: list[ModelResult], *, interrupted: bool = False) -> int:
    """0 all done (or nothing to do), 1 some model failed, 130 interrupted."""
    if interrupted:
        return 130
    return 0 if all(r.ok for r in results) else 1
