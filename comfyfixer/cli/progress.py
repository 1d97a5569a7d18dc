"""Progress of a run on stderr: the event sink the CLI hands to the pipeline.

Three modes. `rich` (stderr is a terminal): an overall `[i/N]` line with the current search, and one
bar per running download (bytes, speed, ETA from the `.part` size against the expected size).
`plain` (no terminal): one line per notable event, nothing redrawn. `quiet` (`--json`): only
warnings and errors. Nothing here ever writes to stdout.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
)

from comfyfixer import events

Mode = Literal["rich", "plain", "quiet"]


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
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

    def __enter__(self) -> ProgressDisplay:
        if self.mode == "rich":
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(bar_width=30),
                DownloadColumn(),
                TextColumn("{task.fields[speed]}", markup=False),
                TextColumn("ETA {task.fields[eta]}", markup=False),
                console=self.console,
                transient=True,
                refresh_per_second=4,
            )
            self._progress.start()
            self._overall = self._progress.add_task("starting", total=None, speed="", eta="--:--")
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
        return f"[{self._done}/{self._total}] {self._current}".rstrip()

    def _rich(self, event: events.Event, progress: Progress) -> None:
        assert self._overall is not None
        if isinstance(event, events.SearchStarted):
            self._total = event.total
            self._current = f"searching {event.name}"
        elif isinstance(event, events.ModelDone):
            self._total = event.total
            self._done += 1
            self._current = "" if self._done == self._total else self._current
            line = f"[{event.index}/{event.total}] {event.name}: {event.outcome.replace('_', ' ')}"
            if event.outcome not in ("downloaded", "already_present", "planned") and event.reason:
                line += f" ({event.reason})"
            progress.console.print(line, markup=False, highlight=False)
        elif isinstance(event, events.DownloadStarted):
            self._bars[event.key] = progress.add_task(
                f"  {event.name}", total=event.expected_size, speed="", eta="--:--"
            )
        elif isinstance(event, events.DownloadProgress):
            task = self._bars.get(event.key)
            if task is not None:
                progress.update(
                    task,
                    completed=event.done,
                    total=event.total,
                    speed=f"{human_bytes(event.speed)}/s",
                    eta=human_seconds(event.eta),
                )
        elif isinstance(event, events.DownloadFinished):
            task = self._bars.pop(event.key, None)
            if task is not None:
                progress.remove_task(task)
        elif isinstance(event, events.VerificationPass):
            progress.console.print(_verification_line(event), markup=False, highlight=False)
        elif isinstance(event, events.AgentAsked):
            self._current = f"asking Qwen about {event.name} …"
            progress.console.print(f"  {agent_line(event)}", markup=False, highlight=False)
        elif isinstance(event, events.AgentConcluded):
            progress.console.print(f"  {agent_line(event)}", markup=False, highlight=False)
        progress.update(
            self._overall, description=self._overall_text(), total=self._total or None, completed=self._done
        )

    def _plain(self, event: events.Event) -> None:
        line: str | None = None
        if isinstance(event, events.SearchStarted):
            line = f"[{event.index}/{event.total}] searching {event.name}"
        elif isinstance(event, events.DownloadStarted):
            line = f"  downloading {event.name} ({human_bytes(event.expected_size)}) with {event.script}"
        elif isinstance(event, events.ModelDone):
            line = f"[{event.index}/{event.total}] {event.name}: {event.outcome.replace('_', ' ')}"
            if event.reason and event.outcome != "downloaded":
                line += f" ({event.reason})"
        elif isinstance(event, events.VerificationPass):
            line = _verification_line(event)
        elif isinstance(event, (events.AgentAsked, events.AgentConcluded)):
            line = f"  {agent_line(event)}"
        if line is not None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


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


def _verification_line(event: events.VerificationPass) -> str:
    if event.llm:
        return f"verification pass over {event.count} file(s): {event.suspicious} suspicious"
    return f"verification pass over {event.count} file(s): {event.reason or 'deterministic checks only'}"
