"""Whether a finished download is kept: its checks, quarantine, its record, and the batched LLM review.

The verify thread's work, as `Job`s: `accept_download` runs there because hashing a large file takes
seconds; it hands its verdict back as an `inbox.Verified` for the main thread and is the only writer
of `downloaded_models.json`. The review runs there too. A job that raises (a bug) still answers
with a message, so the loop never waits on a dead thread. It is a second opinion on files that already
passed the deterministic checks, so a "suspicious" verdict adds a note to the result and never
undoes the download.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from comfyfixer.errors import ComfyFixerError
from comfyfixer.loop.inbox import Message, Reviewed, Verified
from comfyfixer.loop.live_status import ActiveDownload
from comfyfixer.loop.result import ModelResult, VerificationBatch, internal_error, why
from comfyfixer.loop.stages import Checker, Reviewer
from comfyfixer.models import FileChecks, LLMVerdict
from comfyfixer.state.store import DownloadedModels, DownloadRecord, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """Work for the verify thread, and the message that stands for it if the work raises."""

    work: Callable[[], Message]
    crashed: Callable[[Exception], Message]

    def run(self) -> Message:
        try:
            return self.work()
        except Exception as exc:  # never a dead thread: the loop waits for one message per job
            log.exception("internal error in the verify thread")
            return self.crashed(exc)


def check_job(
    checker: Checker,
    downloaded: DownloadedModels,
    item: ActiveDownload,
    base: ModelResult,
    reported: str | None,
) -> Job:
    return Job(
        functools.partial(accept_download, checker, downloaded, item, base, reported),
        functools.partial(verify_crashed, checker, item, base),
    )


def review_job(reviewer: Reviewer, batch: list[FileChecks]) -> Job:
    names = [r.name for r in batch]
    return Job(lambda: Reviewed(review(reviewer, batch)), lambda exc: Reviewed(review_crashed(names, exc)))


def accept_download(
    checker: Checker,
    downloaded: DownloadedModels,
    item: ActiveDownload,
    base: ModelResult,
    reported: str | None,
) -> Verified:
    """Checks the file a script finished; a failed file is moved aside, a good one recorded."""
    try:
        checks = checker.verify(item.model, item.candidate, item.destination, reported)
    except (ComfyFixerError, OSError) as exc:
        checks = FileChecks(item.model.name, item.model.directory, str(item.destination), False, why(exc))
    if not checks.ok:
        where = None
        with contextlib.suppress(ComfyFixerError, OSError):
            where = checker.quarantine(item.destination) if item.destination.exists() else None
        base.outcome = "verify_failed"
        base.reason = checks.reason + (f" (moved to {where})" if where else "")
        return Verified(item.index, base, checks)
    base.outcome = "downloaded"
    base.sha256 = checks.sha256 or base.sha256
    base.size = checks.size if checks.size is not None else base.size
    try:
        downloaded.record(
            DownloadRecord(
                name=item.model.name,
                directory=item.model.directory,
                path=str(item.destination),
                url=item.candidate.url,
                source=item.candidate.source,
                sha256=base.sha256,
                size=base.size,
                script=item.script.name,
                time=utc_now(),
            )
        )
    except (ComfyFixerError, OSError) as exc:
        base.reason = f"verified, but not recorded in downloaded_models.json: {why(exc)}"
    return Verified(item.index, base, checks)


def review(reviewer: Reviewer, batch: list[FileChecks]) -> VerificationBatch:
    names = [r.name for r in batch]
    try:
        verdicts = reviewer.review(batch)
    except ComfyFixerError as exc:
        return VerificationBatch(names, llm=False, reason=f"LLM verification failed: {exc.message}")
    return VerificationBatch(names, llm=True, verdicts=list(verdicts))


def note_suspicious(results: Collection[ModelResult], batch: VerificationBatch) -> list[LLMVerdict]:
    """Adds each suspicious verdict to the reason of the downloaded result it names; returns them."""
    suspicious = [v for v in batch.verdicts if v.verdict == "suspicious"]
    for verdict in suspicious:
        for result in results:
            if result.name == verdict.name and result.outcome == "downloaded":
                note = f"LLM review: suspicious: {verdict.reason}"
                result.reason = f"{result.reason}; {note}" if result.reason else note
    return suspicious


def verify_crashed(checker: Checker, item: ActiveDownload, base: ModelResult, exc: Exception) -> Verified:
    """The check of a finished download raised: the file is not trusted (moved aside), the model fails."""
    where = None
    with contextlib.suppress(Exception):
        where = checker.quarantine(item.destination) if item.destination.exists() else None
    reason = internal_error("verifying", exc) + (f"; the file was moved to {where}" if where else "")
    base.outcome, base.reason = "verify_failed", reason
    checks = FileChecks(item.model.name, item.model.directory, str(item.destination), False, reason)
    return Verified(item.index, base, checks)


def review_crashed(names: list[str], exc: Exception) -> VerificationBatch:
    """The review pass raised: the batch stays with its deterministic checks only."""
    return VerificationBatch(
        names, llm=False, reason=f"LLM verification failed: {internal_error('reviewing', exc)}"
    )
