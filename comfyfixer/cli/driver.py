"""Building and driving one run's loop at the edge: every client built once from settings (the host
breakers, the start-up probe of the sources, the finder, the LLM agent and reviewer) and closed when
the run ends (`contextlib.ExitStack`), the stages and `Pipeline` built complete, and the loop run with
live progress and `kill <pid>` stopping it as Ctrl-C does. `cli/run.py` asks first and renders after.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from comfyfixer.cli.console import stderr_console
from comfyfixer.cli.progress import Mode, ProgressDisplay
from comfyfixer.errors import redact
from comfyfixer.loop.stages import LLM_SKIPPED

if TYPE_CHECKING:
    from comfyfixer.config import Settings
    from comfyfixer.events import EventSink
    from comfyfixer.health import SourceHealth
    from comfyfixer.loop.result import RunResult
    from comfyfixer.loop.stages import Agent, Reviewer
    from comfyfixer.resolvers.finder import Finder
    from comfyfixer.scan import ScanResult


def drive(
    scan: ScanResult,
    settings: Settings,
    *,
    dry_run: bool,
    no_llm: bool,
    jobs: int,
    json_output: bool,
    search_all: bool,
) -> RunResult:
    """Run the loop over `scan.missing` with every client built once and closed after it."""
    # Heavy imports (httpx, huggingface_hub, openai) only once the user said yes.
    from comfyfixer.events import Notice
    from comfyfixer.health import probe_sources
    from comfyfixer.loop.inbox import Inbox
    from comfyfixer.loop.pipeline import LoopOptions, Pipeline
    from comfyfixer.loop.wiring import build_stages
    from comfyfixer.resolvers.finder import Finder as RealFinder
    from comfyfixer.transport import Breakers

    assert scan.inventory is not None  # a run always has a ComfyUI root
    console = stderr_console()
    mode: Mode = "quiet" if json_output else ("rich" if console.is_terminal else "plain")
    with ProgressDisplay(console, mode=mode) as display, contextlib.ExitStack() as clients:
        breakers = Breakers()
        health = probe_sources(settings, breakers=breakers)
        unreachable = [h for h in health if not h.ok]
        if unreachable:
            display(Notice(_unreachable_sentence(unreachable), "warning"))
        finder = RealFinder.create(settings, output_dir=settings.output_dir, breakers=breakers)
        clients.callback(_close_quietly, finder)
        for h in unreachable:
            finder.mark_down(h.source, h.sentence)
        # The agent runs on the search thread: its events reach the display through the loop's inbox.
        inbox = Inbox()
        if no_llm:
            llm = _LLM(None, None, "LLM verification skipped: --no-llm (deterministic checks only)")
        else:
            llm = _llm_stages(settings, finder, inbox.forward, display, clients, search_all)
        stages = build_stages(
            finder,
            scan.inventory.layout,
            os.environ,
            settings=settings,
            agent=llm.agent,
            reviewer=llm.reviewer,
            reviewer_skip_reason=llm.skip_reason,
        )
        pipeline = Pipeline(
            stages,
            roots=scan.inventory.layout.models_roots,
            output_dir=settings.output_dir,
            log_dir=settings.log_dir,
            options=LoopOptions(jobs=jobs, dry_run=dry_run, agent_for_all=search_all),
            sink=display,
            inbox=inbox,
        )
        with _sigterm_as_interrupt():
            return pipeline.run(list(scan.missing))


def _unreachable_sentence(down: list[SourceHealth]) -> str:
    """One sentence for every source the start-up probe could not reach."""
    parts = [f"{h.title} ({h.detail})" for h in down]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (
        f"Cannot reach {listed}: models only {'it' if len(parts) == 1 else 'they'} could find are reported "
        "as source errors; check the network or proxy (`comfyfixer doctor` checks again)."
    )


class _Closable(Protocol):
    def close(self) -> None: ...


def _close_quietly(client: _Closable) -> None:
    # Closing a client after the run must not turn a finished run into a traceback.
    with contextlib.suppress(Exception):
        client.close()


@dataclass(frozen=True)
class _LLM:
    """The LLM stages of a run: each None when unavailable, and why the review pass is skipped then."""

    agent: Agent | None
    reviewer: Reviewer | None
    skip_reason: str


def _llm_stages(
    settings: Settings,
    finder: Finder,
    forward: EventSink,
    display: ProgressDisplay,
    clients: contextlib.ExitStack,
    search_all: bool,
) -> _LLM:
    from comfyfixer.agent import build_agent, build_reviewer
    from comfyfixer.events import Notice

    # No pre-run gate: the agent's first real request is the health probe (a busy CPU model may take
    # a minute to answer it), and a failing endpoint is handled per model, never by one early timeout.
    agent = build_agent(settings, finder, sink=forward)
    if agent is not None:
        clients.callback(_close_quietly, agent)
    reviewer = build_reviewer(settings)
    if reviewer is not None:
        clients.callback(_close_quietly, reviewer)
    if agent is None:
        display(Notice("LLM agent: no endpoint configured; direct sources only"))
        if search_all:
            display(
                Notice(
                    "--search llm asked for the LLM agent, but no endpoint is configured: "
                    "direct sources only",
                    "warning",
                )
            )
        return _LLM(None, reviewer, LLM_SKIPPED)
    what = settings.llm_model or "the first model it lists"
    display(
        Notice(
            f"LLM agent: {what} at {redact(settings.llm_base_url or '', settings.secrets)}; "
            f"up to {settings.llm_timeout:.0f}s per model"
        )
    )
    return _LLM(agent, reviewer, LLM_SKIPPED)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill <pid>` stops the run the way Ctrl-C does: downloads stopped, state saved, exit 130."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
