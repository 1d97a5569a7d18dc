"""The incremental loop: search → script → download in the background → verify → review in batches.

Owns the order and the overlap. One search thread works through the plan in order and stays at
most `jobs` models ahead of the downloads; the main thread starts each found model's script at once
when a download slot is free, polls the running scripts (progress, `status.json`), and hands every
finished file to a verify thread, which also runs the review pass after every `batch_size`
verified files (counted across the run; the remainder at the end). So a search, several downloads
and a hash check really run at the same time. `status.json` and the script counter are written by
the main thread only, `downloaded_models.json` by the verify thread only; every event reaches the
sink from the main thread (worker-thread collaborators use `Inbox.forward`).

Every stage is an injected collaborator (the Protocols in `stages`); `wiring` builds the real ones.
The threads talk through the `inbox`; `search` does the search thread's work and `acceptance` the
verify thread's; `live_status` keeps speeds and `status.json`; `result` is what the run produced.
Ctrl-C stops the scripts (their process groups), keeps `.part` files, saves state and returns a
result marked interrupted; the CLI turns that into exit 130.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfyfixer import events
from comfyfixer.errors import ComfyFixerError, redact
from comfyfixer.loop import inbox
from comfyfixer.loop.acceptance import Job, check_job, note_suspicious, review_job
from comfyfixer.loop.inbox import Inbox, Message
from comfyfixer.loop.live_status import ActiveDownload, LiveStatus, downloaded_bytes
from comfyfixer.loop.result import (
    ModelResult,
    RunResult,
    VerificationBatch,
    failure_reason,
    where_found,
    why,
)
from comfyfixer.loop.search import search
from comfyfixer.loop.stages import DownloadProcess, Stages
from comfyfixer.models import FileChecks, MissingModel, Resolution
from comfyfixer.state.counter import ScriptCounter
from comfyfixer.state.store import DownloadedModels, EntryState, StatusFile, model_key

log = logging.getLogger(__name__)

INTERRUPT_GRACE = 5.0  # seconds Ctrl-C waits for checks already running on downloaded files


@dataclass(frozen=True)
class LoopOptions:
    jobs: int = 2
    dry_run: bool = False
    batch_size: int = 6
    poll_interval: float = 0.1
    agent_for_all: bool = False  # `--search llm`: the agent sees every model, not only the hard ones


class Pipeline:
    """Runs the loop over a plan of missing models; one instance per run."""

    def __init__(
        self,
        stages: Stages,
        *,
        output_dir: Path,
        log_dir: Path,
        options: LoopOptions | None = None,
        sink: events.EventSink = events.null_sink,
        counter: ScriptCounter | None = None,
        downloaded: DownloadedModels | None = None,
        status: StatusFile | None = None,
        inbox: Inbox | None = None,
        roots: Sequence[Path] | None = None,
    ) -> None:
        self.stages = stages
        # This run's models folders: records of files elsewhere belong to another ComfyUI install.
        self.roots = roots
        self.output_dir = output_dir
        self.log_dir = log_dir
        self.options = options or LoopOptions()
        self.sink = sink
        self.counter = counter or ScriptCounter(output_dir)
        self.downloaded = downloaded or DownloadedModels(output_dir)
        self.status = status or StatusFile(output_dir)
        self._live = LiveStatus(self.status)
        self._inbox = inbox or Inbox()
        self._stop = threading.Event()
        # Searches may run at most `jobs` models ahead of the downloads (none in a dry run).
        self._lookahead = threading.Semaphore(max(1, self.options.jobs))
        self._work: queue.Queue[Job | None] = queue.Queue()  # for the verify thread
        self._results: dict[int, ModelResult] = {}
        self._verifications: list[VerificationBatch] = []
        self._batch: list[FileChecks] = []
        self._outstanding = 0
        self._total = 0

    # ------------------------------------------------------------ entry point

    def run(self, models: list[MissingModel]) -> RunResult:
        self._total = len(models)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        known = {r.key: r for r in self.downloaded.load() if self.roots is None or r.under(self.roots)}
        to_search: list[tuple[int, MissingModel]] = []
        for index, model in enumerate(models):
            record = known.get(model_key(model.directory, model.name))
            if record is not None and record.file_intact():
                self._finish(index, model, ModelResult.already_present(model, record))
            else:
                self._live.set(model, "queued")
                to_search.append((index, model))
        self._live.flush(force=True)
        verifier = threading.Thread(target=self._verify_worker, name="comfyfixer-verify", daemon=True)
        searcher = threading.Thread(
            target=self._search_worker, args=(to_search,), name="comfyfixer-search", daemon=True
        )
        verifier.start()
        searcher.start()
        running: dict[int, ActiveDownload] = {}
        interrupted = False
        try:
            self._loop(models, running)
        except KeyboardInterrupt:
            interrupted = True
            self._interrupt(models, running)
        except BaseException:
            # Never leave orphan downloads behind an unexpected error; their .part files stay.
            self._interrupt(models, running)
            raise
        finally:
            self._stop.set()
            self._work.put(None)
            self._live.flush(force=True)
        ordered = [self._results[i] for i in sorted(self._results)]
        return RunResult(
            ordered,
            list(self._verifications),
            interrupted,
            list(self.downloaded.warnings + self.status.warnings),
        )

    # ------------------------------------------------------------ main thread

    def _loop(self, models: list[MissingModel], running: dict[int, ActiveDownload]) -> None:
        pending: deque[tuple[int, Resolution]] = deque()
        searching = True
        while True:
            message = self._inbox.get(timeout=self.options.poll_interval)
            while message is not None:
                if isinstance(message, inbox.SearchEnd):
                    searching = False
                    if message.error is not None:
                        raise message.error
                else:
                    self._handle(message, models, pending)
                message = self._inbox.get_nowait()
            self._poll(running)  # first, so a slot freed by a finished script is refilled right away
            while pending and (self.options.dry_run or len(running) < max(1, self.options.jobs)):
                index, resolution = pending.popleft()
                self._start(index, resolution, running)
                self._release_lookahead()
            if not searching and not pending and not running and self._outstanding == 0:
                if self._batch:
                    self._submit_review()
                    continue
                break
            self._live.flush()

    def _release_lookahead(self) -> None:
        if not self.options.dry_run:
            self._lookahead.release()

    def _handle(
        self, message: Message, models: list[MissingModel], pending: deque[tuple[int, Resolution]]
    ) -> None:
        if isinstance(message, inbox.SearchStarted):
            model = models[message.index]
            self._live.set(model, "searching")
            self.sink(events.SearchStarted(message.index + 1, self._total, model.name, model.directory))
        elif isinstance(message, inbox.SearchDone):
            res = message.resolution
            cand = res.candidate
            self.sink(
                events.SearchFinished(
                    message.index + 1,
                    self._total,
                    res.model.name,
                    res.outcome,
                    cand.source if cand else None,
                    res.reason,
                    where_found(cand) if cand else "",
                )
            )
            if res.outcome == "found" and cand is not None:
                pending.append((message.index, res))
            else:
                self._finish(message.index, res.model, ModelResult.unresolved(res))
                self._release_lookahead()
        elif isinstance(message, inbox.Verified):
            self._outstanding -= 1
            self._finish(message.index, models[message.index], message.result)
            self._batch.append(message.checks)
            if len(self._batch) >= self.options.batch_size:
                self._submit_review()
        elif isinstance(message, inbox.Reviewed):
            self._outstanding -= 1
            self._record_review(message.batch)
        elif isinstance(message, inbox.Forward):
            self.sink(message.event)
        # Exited only wakes the loop: the poll right after it collects the finished script at once.

    def _start(self, index: int, res: Resolution, running: dict[int, ActiveDownload]) -> None:
        model, cand = res.model, res.candidate
        assert cand is not None
        base = ModelResult.of(model, "skipped", origin=cand, candidates=res.candidates)
        try:
            destination = self.stages.placement.destination(model, cand)
        except ComfyFixerError as exc:
            base.reason = exc.message
            self._finish(index, model, base)
            return
        base.path = str(destination)
        try:
            script = self.counter.create_script(
                lambda n: self.stages.scripts.render(n, model, cand, destination),
                owns=lambda path: self.stages.scripts.owns(path, destination),
            )
        except (ComfyFixerError, OSError) as exc:
            base.outcome, base.reason = "download_failed", f"could not write the download script: {why(exc)}"
            self._finish(index, model, base)
            return
        base.script = str(script.path)
        if self.options.dry_run:
            written = "rewritten" if script.reused else "written"
            base.outcome, base.reason = "planned", f"script {written}: {script.path.name}"
            self._finish(index, model, base)
            return
        try:
            process = self.stages.launcher.start(
                script.path, log_path=self.log_dir / f"{script.path.stem}.log", dest=destination
            )
        except (ComfyFixerError, OSError) as exc:
            base.outcome, base.reason = "download_failed", f"could not start {script.path.name}: {why(exc)}"
            self._finish(index, model, base)
            return
        running[index] = ActiveDownload(index, model, cand, process, script.path, destination)
        # A waiter per download wakes the loop the moment the script ends, so the next one starts at once.
        threading.Thread(
            target=self._wait_exit, args=(index, process), name=f"comfyfixer-wait-{index}", daemon=True
        ).start()
        running[index].speed(time.monotonic(), downloaded_bytes(process))
        self._live.set(model, "downloading", pid=process.pid, total=cand.size, script=script.path.name)
        self.sink(
            events.DownloadStarted(
                model_key(model.directory, model.name),
                model.name,
                str(script.path),
                f"{destination}.part",
                cand.size,
            )
        )
        log.info("started %s (pid %s) for %s", script.path.name, process.pid, model.name)

    def _poll(self, running: dict[int, ActiveDownload]) -> None:
        now = time.monotonic()
        for index in list(running):
            item = running[index]
            code = item.process.poll()
            done = downloaded_bytes(item.process)
            speed = item.speed(now, done)
            total = item.candidate.size
            eta = (total - done) / speed if total and speed > 0 and total >= done else None
            key = model_key(item.model.directory, item.model.name)
            if code is None:
                self._live.set(
                    item.model,
                    "downloading",
                    pid=item.process.pid,
                    total=total,
                    script=item.script.name,
                    bytes_done=done,
                    speed=speed,
                    eta=eta,
                )
                self.sink(events.DownloadProgress(key, item.model.name, done, total, speed, eta))
                continue
            del running[index]
            base = ModelResult.of(
                item.model,
                "download_failed",
                origin=item.candidate,
                script=str(item.script),
                path=str(item.destination),
            )
            outcome = item.process.result()
            if outcome.returncode != 0:
                base.outcome, base.reason = outcome.failure_outcome, failure_reason(outcome)
                self.sink(events.DownloadFinished(key, item.model.name, base.outcome, base.reason))
                self._finish(index, item.model, base)
                continue
            self._live.set(item.model, "verifying", bytes_done=done, total=total, script=item.script.name)
            self.sink(events.DownloadFinished(key, item.model.name, "verifying", ""))
            self._outstanding += 1
            reported = item.process.reported_sha256
            self._work.put(check_job(self.stages.checker, self.downloaded, item, base, reported))

    def _submit_review(self) -> None:
        batch, self._batch = self._batch, []
        reviewer = self.stages.reviewer
        names = [r.name for r in batch]
        if reviewer is None:
            self._record_review(VerificationBatch(names, llm=False, reason=self.stages.reviewer_skip_reason))
            return
        self._outstanding += 1
        self._work.put(review_job(reviewer, batch))

    def _record_review(self, batch: VerificationBatch) -> None:
        self._verifications.append(batch)
        suspicious = note_suspicious(self._results.values(), batch)
        self.sink(events.VerificationPass(len(batch.models), batch.llm, len(suspicious), batch.reason))
        log.info(
            "verification pass over %d file(s): llm=%s suspicious=%d %s",
            len(batch.models),
            batch.llm,
            len(suspicious),
            batch.reason,
        )

    def _finish(self, index: int, model: MissingModel, result: ModelResult) -> None:
        self._results[index] = result
        state: EntryState = "done" if result.ok else "failed"
        self._live.set(
            model, state, reason=result.reason, script=Path(result.script).name if result.script else None
        )
        self.sink(events.ModelDone(index + 1, self._total, model.name, result.outcome, result.reason))
        log.info(
            "[%d/%d] %s: %s %s", index + 1, self._total, model.name, result.outcome, redact(result.reason)
        )

    def _interrupt(self, models: list[MissingModel], running: dict[int, ActiveDownload]) -> None:
        self._stop.set()
        for item in running.values():
            with contextlib.suppress(OSError, ComfyFixerError):
                item.process.terminate()
            self._live.set(
                item.model,
                "interrupted",
                bytes_done=downloaded_bytes(item.process),
                total=item.candidate.size,
                script=item.script.name,
                reason="interrupted; the .part file was kept for resume",
            )
        self._drain_verifications(models, deadline=time.monotonic() + INTERRUPT_GRACE)
        for index, model in enumerate(models):
            if index not in self._results:
                active = running.get(index)
                self._results[index] = ModelResult.of(
                    model,
                    "skipped",
                    "interrupted before this model finished; run again to resume",
                    path=str(active.destination) if active else None,
                    script=str(active.script) if active else None,
                )
                if index not in running:
                    self._live.set(model, "interrupted", reason="interrupted")
        log.warning("interrupted: %d download(s) stopped, partial files kept", len(running))

    def _drain_verifications(self, models: list[MissingModel], *, deadline: float) -> None:
        """Let checks already under way finish (briefly), so an installed file gets its verdict."""
        pending: deque[tuple[int, Resolution]] = deque()
        while self._outstanding > 0 and time.monotonic() < deadline:
            message = self._inbox.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            if isinstance(message, (inbox.Verified, inbox.Reviewed)):
                self._handle(message, models, pending)

    # ------------------------------------------------------------ worker threads

    def _search_worker(self, to_search: list[tuple[int, MissingModel]]) -> None:
        stop = self._stop.is_set
        try:
            for index, model in to_search:
                if not self.options.dry_run:
                    while not self._lookahead.acquire(timeout=0.2):
                        if stop():
                            return
                if stop():
                    return
                self._inbox.put(inbox.SearchStarted(index))
                found = search(self.stages, model, agent_for_all=self.options.agent_for_all, stopping=stop)
                self._inbox.put(inbox.SearchDone(index, found))
        except BaseException as exc:  # reported to the main thread, which re-raises it
            self._inbox.put(inbox.SearchEnd(exc))
            return
        self._inbox.put(inbox.SearchEnd())

    def _wait_exit(self, index: int, process: DownloadProcess) -> None:
        with contextlib.suppress(Exception):  # a failed wait only loses the early wake-up
            process.wait()
        self._inbox.put(inbox.Exited(index))

    def _verify_worker(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            self._inbox.put(job.run())
