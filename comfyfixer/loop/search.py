"""One model's search, the search thread's work: the direct sources first, then the LLM agent when
they left the model not_found or ambiguous (or for every model with `--search llm`).

A source problem never stops the run: a finder that raises becomes a `source_error`, and a failed
agent keeps the direct verdict with the agent's failure added to its reason. A bug in either (any
other exception) is that model's `source_error` too, its traceback in the run log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from comfyfixer.errors import ComfyFixerError
from comfyfixer.loop.result import internal_error
from comfyfixer.loop.stages import Stages
from comfyfixer.models import MissingModel, Resolution

log = logging.getLogger(__name__)


def search(
    stages: Stages, model: MissingModel, *, agent_for_all: bool, stopping: Callable[[], bool]
) -> Resolution:
    try:
        return _search(stages, model, agent_for_all=agent_for_all, stopping=stopping)
    except Exception as exc:  # a bug in a source or the agent: this model's outcome, not a crash
        log.exception("internal error while searching for %s", model.name)
        return Resolution(model, "source_error", reason=internal_error("searching", exc))


def _search(
    stages: Stages, model: MissingModel, *, agent_for_all: bool, stopping: Callable[[], bool]
) -> Resolution:
    try:
        res = stages.finder.find(model)
    except ComfyFixerError as exc:
        res = Resolution(model, "source_error", reason=exc.message)
    agent = stages.agent
    hard = res.outcome in ("not_found", "ambiguous") or agent_for_all
    if agent is not None and hard and not stopping():
        try:
            res = agent.search(model, res)
        except ComfyFixerError as exc:
            res.reason = f"{res.reason}; LLM search failed: {exc.message}".lstrip("; ")
    return res
