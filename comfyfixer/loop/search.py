"""One model's search, the search thread's work: the direct sources first, then the LLM agent when
they left the model not_found or ambiguous (or for every model with `--search llm`).

A source problem never stops the run: a finder that raises becomes a `source_error`, and a failed
agent keeps the direct verdict with the agent's failure added to its reason.
"""

from __future__ import annotations

from collections.abc import Callable

from comfyfixer.errors import ComfyFixerError
from comfyfixer.loop.stages import Stages
from comfyfixer.models import MissingModel, Resolution


def search(
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
