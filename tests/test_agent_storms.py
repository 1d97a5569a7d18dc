"""The agent under hostile endpoints and sloppy models: 429/500 storms, a hanging server, garbage, loops,
text-written tool calls. Every case ends within its bounds, and the agent is still used afterwards.

Waits are recorded, not slept: the chat client gets a virtual clock that the recorded sleeps advance,
so a 4-second Retry-After costs nothing here but still counts against the per-model time bound.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.agent import Agent, AgentLimits
from comfyfixer.agent.client import ChatClient
from comfyfixer.agent.history import HISTORY_FILE, SearchHistory
from comfyfixer.events import Event, Notice
from comfyfixer.models import Resolution
from comfyfixer.retry import RetryPolicy
from tests.fakes.fixtures import hf_env  # noqa: F401
from tests.fakes.llm import FakeLLM, completion, error_body, sample, serve_llm
from tests.test_agent_tools import World, make_world

REPO = "comfyanonymous/flux_text_encoders"
T5_PATH = "t5xxl_fp16.safetensors"
NOT_FOUND = {"outcome": "not_found", "reason": "nothing"}
POLICY = RetryPolicy(attempts=8, base_wait=0.5, max_backoff=2.0)


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclasses.dataclass
class Setup:
    agent: Agent
    llm: FakeLLM
    world: World
    time: VirtualTime
    events: list[Event]

    def search(self) -> Resolution:
        model = self.world.target()
        return self.agent.search(model, Resolution(model, "not_found", reason="direct: nothing"))

    @property
    def notices(self) -> list[Notice]:
        return [e for e in self.events if isinstance(e, Notice)]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve_llm()


def _setup(world: World, llm: FakeLLM, budget: float = 120.0, virtual: bool = True) -> Iterator[Setup]:
    vt = VirtualTime()
    events: list[Event] = []
    with llm.client(timeout=30.0) as client:
        chat = ChatClient(
            client,
            "qwen2.5-coder",
            retry=POLICY,
            secrets=world.settings.secrets,
            sleep=vt.sleep if virtual else time.sleep,
            clock=vt.clock if virtual else time.monotonic,
        )
        agent = Agent(
            chat,
            world.finder,
            validator=world.finder.validator,
            host_allowed=world.settings.host_allowed,
            history=SearchHistory(world.settings.log_dir),
            limits=AgentLimits(time_budget=budget),
            sink=events.append,
            clock=vt.clock if virtual else time.monotonic,
        )
        yield Setup(agent, llm, world, vt, events)


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path, fake_llm: FakeLLM) -> Iterator[Setup]:
    request.getfixturevalue("hf_env")
    for world in make_world(tmp_path):
        yield from _setup(world, fake_llm)


def _find_t5(llm: FakeLLM) -> None:
    llm.reply_tool_calls(("list_repo_files", {"repo_id": REPO}))
    llm.reply_json({"outcome": "found", "repo_id": REPO, "path": T5_PATH, "reason": "official"})


def test_a_429_then_500_storm_is_ridden_out_within_the_model_and_honours_retry_after(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_error(429, sample("openai_error_429.json"), {"Retry-After": "1"})
    for _ in range(3):
        llm.reply_error(500, error_body("The server had an error", type_="server_error"))
    llm.reply_error(429, sample("openai_error_429.json"), {"retry-after-ms": "250"})
    _find_t5(llm)
    res = setup.search()
    assert res.outcome == "found", res.reason
    assert setup.time.slept == [1.0, 1.0, 2.0, 2.0, 0.25]  # Retry-After, back-off (capped), retry-after-ms
    assert setup.agent.available and not setup.notices
    # No retry happened inside the SDK as well: exactly one request per scripted reply.
    assert len(llm.chat_bodies) == 7 and all(b["max_tokens"] > 0 for b in llm.chat_bodies)


def test_retries_stop_at_the_per_model_time_bound_and_the_next_model_is_still_searched(
    request: pytest.FixtureRequest, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    request.getfixturevalue("hf_env")
    for world in make_world(tmp_path):
        for s in _setup(world, fake_llm, budget=10.0):
            for _ in range(3):  # at 0, 4 and 8 s; a 4th would end past the 10 s bound
                fake_llm.reply_error(429, sample("openai_error_429.json"), {"Retry-After": "4"})
            first = s.search()
            assert first.outcome == "source_error" and "HTTP 429" in first.reason
            assert sum(s.time.slept) <= 10.0 and s.agent.available
            _find_t5(fake_llm)
            assert s.search().outcome == "found"
            assert not s.notices


def test_a_hanging_server_costs_one_model_its_time_bound_not_the_run(
    request: pytest.FixtureRequest, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    request.getfixturevalue("hf_env")

    def hang(body: dict[str, Any]) -> dict[str, Any]:
        time.sleep(3.0)  # longer than the model's 1.5 s budget
        return completion({"content": json.dumps(NOT_FOUND)})

    for world in make_world(tmp_path):
        for s in _setup(world, fake_llm, budget=1.5, virtual=False):
            fake_llm.queue_reply(hang)
            started = time.monotonic()
            first = s.search()
            elapsed = time.monotonic() - started
            assert first.outcome == "source_error" and "timed out" in first.reason
            assert elapsed < 2.9  # ended by its own bound, not by the server finally answering
            time.sleep(1.6)  # let the fake finish the hung request before the next one
            s.agent.limits = AgentLimits(time_budget=30)
            _find_t5(fake_llm)
            assert s.search().outcome == "found" and s.agent.available


def test_garbage_answers_end_within_the_turn_limit_and_the_agent_carries_on(setup: Setup) -> None:
    llm = setup.llm
    llm.queue("<html>502 Bad Gateway</html>", status=200, headers={"content-type": "text/html"})
    first = setup.search()
    assert first.outcome == "source_error"
    setup.agent.limits = AgentLimits(max_turns=3)
    for text in ("I am not sure.", '{"outcome": "perhaps"}', "```json\n{broken\n```"):
        llm.reply_text(text)
    second = setup.search()
    assert second.outcome == "not_found" and "no answer within 3 turns" in second.reason
    _find_t5(llm)
    assert setup.search().outcome == "found" and setup.agent.available


def test_repeated_identical_calls_get_the_old_result_and_a_nudge(setup: Setup) -> None:
    llm = setup.llm
    for _ in range(3):
        llm.reply_text(json.dumps({"name": "list_repo_files", "arguments": {"repo_id": REPO}}))
    llm.reply_json({"outcome": "found", "file": T5_PATH, "reason": "listed"})
    res = setup.search()
    assert res.outcome == "found"
    third = llm.chat_bodies[3]["messages"][-1]["content"]
    assert third.startswith("Result of list_repo_files:") and '"repeated_call":true' in third


def test_several_text_calls_in_one_reply_are_all_run(setup: Setup) -> None:
    llm = setup.llm
    calls = [
        {"name": "search_huggingface", "arguments": {"query": "flux"}},
        {"name": "list_repo_files", "arguments": json.dumps({"repo_id": REPO})},
    ]
    llm.reply_text("".join(f"<tool_call>\n{json.dumps(c)}\n</tool_call>\n" for c in calls))
    llm.reply_json({"outcome": "found", "url": f"https://huggingface.co/{REPO}/blob/main/{T5_PATH}"})
    res = setup.search()
    assert res.outcome == "found" and res.candidate is not None
    assert res.candidate.url == setup.world.hub.resolve_url(REPO, T5_PATH)  # its own URL, not the model's
    results = llm.chat_bodies[1]["messages"][-1]["content"]
    assert "Result of search_huggingface:" in results and "Result of list_repo_files:" in results


def test_a_file_name_matching_two_shown_files_is_refused_with_the_ids(setup: Setup) -> None:
    setup.world.hub.add_file("someone/t5-copies", T5_PATH, b"\x08" + b"\x00" * 7 + b"{}      " + b"copy" * 99)
    llm = setup.llm
    llm.reply_tool_calls(
        ("list_repo_files", {"repo_id": REPO}), ("list_repo_files", {"repo_id": "someone/t5-copies"})
    )
    llm.reply_json({"outcome": "found", "filename": T5_PATH})
    llm.reply_json({"outcome": "found", "file_id": "f1"})
    res = setup.search()
    assert res.outcome == "found" and res.candidate is not None and res.candidate.repo == REPO
    correction = llm.chat_bodies[2]["messages"][-1]["content"]
    assert "2 shown files match t5xxl_fp16.safetensors (f1, f2)" in correction
    assert f"- f1: {REPO}/{T5_PATH}" in correction and "- f2: someone/t5-copies/" in correction


def test_an_invented_url_is_refused_and_the_correction_names_the_shape(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_json({"url": "https://huggingface.co/nobody/nothing/resolve/main/t5xxl_fp16.safetensors"})
    llm.reply_json(NOT_FOUND)
    llm.reply_json(NOT_FOUND)
    assert setup.search().outcome == "not_found"
    correction = llm.chat_bodies[1]["messages"][-1]["content"]
    assert "appeared in no tool result" in correction and "there is no id to choose" in correction
    assert '{"outcome": "not_found"' in correction
    history = (setup.world.settings.log_dir / HISTORY_FILE).read_text(encoding="utf-8")
    assert "rejected:" in history and "task: Find a download source" in history
