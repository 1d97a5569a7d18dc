"""Progress of a run on stderr: the event sink the CLI hands to the pipeline.

Three modes. `rich` (stderr is a terminal): an overall line (`[i/N] searching <name>`, then how many
models are done, `2/48 models`), and one bar per running download (bytes, speed, ETA from the `.part`
size against the expected size). `plain` (no terminal): one line per notable event, nothing redrawn.
`quiet` (`--json`): only warnings and errors. Nothing here ever writes to stdout.

`[i/N]` means the same in every mode and line: model i of the N this run searches, in plan order.
Sizes are decimal (kB, MB, GB) everywhere.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
)
from rich.table import Column

from comfyfixer import events

Mode = Literal["rich", "plain", "quiet"]


def human_bytes(n: float | None) -> str:
    """Decimal units (kB = 1000 B, as curl's and rich's own columns count), one spelling everywhere."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressDisplay:
    """Use as a context manager; the instance itself is the `EventSink`."""

    def __init__(self, console: Console, *, mode: Mode) -> None:
        self.console = console
        self.mode = mode
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._bars: dict[str, TaskID] = {}
        self._done = 0
        self._total = 0
        self._current = ""
        self._review_reason = ""  # said once; later passes with the same reason are shorter

    def __enter__(self) -> ProgressDisplay:
        if self.mode == "rich":
            self._progress = Progress(
                # Numbers keep their width; a long name gives way (ellipsis) before they do.
                TextColumn(
                    "{task.description}",
                    markup=False,
                    table_column=Column(no_wrap=True, max_width=40, overflow="ellipsis"),
                ),
                BarColumn(bar_width=16),
                TextColumn("{task.fields[amount]}", markup=False, table_column=_fixed(19)),
                TextColumn("{task.fields[speed]}", markup=False, table_column=_fixed(11)),
                TextColumn("{task.fields[eta]}", markup=False, table_column=_fixed(9)),
                console=self.console,
                transient=True,
                refresh_per_second=4,
            )
            self._progress.start()
            self._overall = self._progress.add_task("starting", total=None, amount="", speed="", eta="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Notice):
            self._notice(event)
        elif self.mode == "quiet":
            return
        elif self._progress is not None:
            self._rich(event, self._progress)
        else:
            self._plain(event)

    # ------------------------------------------------------------ modes

    def _notice(self, event: events.Notice) -> None:
        if self.mode == "quiet" and event.level == "info":
            return
        prefix = {"warning": "warning: ", "error": "error: "}.get(event.level, "")
        style = {"warning": "yellow", "error": "bold red"}.get(event.level)
        self.console.print(prefix + event.message, style=style, markup=False, highlight=False)

    def _overall_text(self) -> str:
        return self._current or ("finishing" if self._total and self._done == self._total else "working")

    def _rich(self, event: events.Event, progress: Progress) -> None:
        assert self._overall is not None
        if isinstance(event, events.SearchStarted):
            self._total = event.total
            self._current = f"[{event.index}/{event.total}] searching {event.name}"
        elif isinstance(event, events.SearchFinished):
            line = _found_line(event)
            if line:
                progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, events.ModelDone):
            self._total = event.total
            self._done += 1
            self._current = "" if self._done == self._total else self._current
            progress.console.print(_done_line(event), markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, (events.DownloadStarted, events.DownloadProgress, events.DownloadFinished)):
            self._bar(event, progress)
        elif isinstance(event, events.VerificationPass):
            progress.console.print(self._verification_line(event), markup=False, highlight=False)
        elif isinstance(event, events.AgentAsked):
            self._current = f"asking Qwen about {event.name} …"
            progress.console.print(f"  {agent_line(event)}", markup=False, highlight=False)
        elif isinstance(event, events.AgentConcluded):
            progress.console.print(f"  {agent_line(event)}", markup=False, highlight=False)
        progress.update(
            self._overall,
            description=self._overall_text(),
            total=self._total or None,
            completed=self._done,
            amount=f"{self._done}/{self._total} models done" if self._total else "",
        )

    def _bar(
        self,
        event: events.DownloadStarted | events.DownloadProgress | events.DownloadFinished,
        progress: Progress,
    ) -> None:
        """One bar per running download: bytes against the expected size, speed, ETA."""
        if isinstance(event, events.DownloadStarted):
            self._bars[event.key] = progress.add_task(
                f"  {event.name}",
                total=event.expected_size,
                amount=_amount(0, event.expected_size),
                speed="",
                eta="",
            )
            return
        task = self._bars.get(event.key)
        if task is None:
            return
        if isinstance(event, events.DownloadFinished):
            del self._bars[event.key]
            progress.remove_task(task)
            return
        progress.update(
            task,
            completed=event.done,
            total=event.total,
            amount=_amount(event.done, event.total),
            speed=f"{human_bytes(event.speed)}/s",
            eta=f"ETA {human_seconds(event.eta)}",
        )

    def _plain(self, event: events.Event) -> None:
        line: str | None = None
        if isinstance(event, events.SearchStarted):
            line = f"[{event.index}/{event.total}] searching {event.name}"
        elif isinstance(event, events.SearchFinished):
            line = _found_line(event)
        elif isinstance(event, events.DownloadStarted):
            line = f"  downloading {event.name} ({human_bytes(event.expected_size)}) with {event.script}"
        elif isinstance(event, events.ModelDone):
            line = _done_line(event)
        elif isinstance(event, events.VerificationPass):
            line = self._verification_line(event)
        elif isinstance(event, (events.AgentAsked, events.AgentConcluded)):
            line = f"  {agent_line(event)}"
        if line is not None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _verification_line(self, event: events.VerificationPass) -> str:
        head = f"verification pass over {event.count} file(s)"
        if event.llm:
            return f"{head}: {event.suspicious} suspicious"
        reason = event.reason or "deterministic checks only"
        if reason == self._review_reason:
            return f"{head}: deterministic checks only"
        self._review_reason = reason
        return f"{head}: {reason}"


_PLACES = {"huggingface": "Hugging Face", "civitai": "Civitai", "catalogue": "the ComfyUI-Manager catalogue"}


def agent_line(event: events.AgentAsked | events.AgentConcluded) -> str:
    """The screen line for the agent starting on a model, or for what it concluded."""
    if isinstance(event, events.AgentAsked):
        return f"asking Qwen ({event.llm_model}) about {event.name} …"
    place = _PLACES.get(event.source or "", event.source or "a tool result")
    took = f" [{event.seconds:.0f}s, {event.tool_calls} tool call(s)]"
    if event.outcome == "found":
        return f"Qwen: {event.name}: found on {place}: {event.where}{took}"
    if event.outcome == "confirmed":
        return f"Qwen: {event.name}: confirmed the direct search's pick on {place}: {event.where}{took}"
    if event.outcome == "kept":
        return f"Qwen: {event.name}: nothing better; the direct search's answer stands ({event.reason}){took}"
    words = {"ambiguous": "ambiguous", "not_found": "not found", "source_error": "could not search"}
    return f"Qwen: {event.name}: {words.get(event.outcome, event.outcome)} ({event.reason}){took}"


def _fixed(width: int) -> Column:
    return Column(no_wrap=True, min_width=width, overflow="ignore")


def _amount(done: int, total: int | None) -> str:
    return f"{human_bytes(done)}/{human_bytes(total)}" if total else human_bytes(done)


def _found_line(event: events.SearchFinished) -> str | None:
    if event.outcome != "found" or not event.source:
        return None
    return f"[{event.index}/{event.total}] {event.name}: found on {event.source}: {event.where or '?'}"


def _done_line(event: events.ModelDone) -> str:
    line = f"[{event.index}/{event.total}] {event.name}: {event.outcome.replace('_', ' ')}"
    if event.outcome not in ("downloaded", "already_present") and event.reason:
        line += f" ({event.reason})"
    return line
