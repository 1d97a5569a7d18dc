"""The agent loop end to end: scripted LLM + real tools over the Hub/Civitai fakes + the real Validator."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.agent import Agent, AgentLimits, RetryPolicy, build_agent
from comfyfixer.agent.history import HISTORY_FILE
from comfyfixer.events import Event, Notice
from comfyfixer.models import Candidate, Resolution
from tests.fakes.fixtures import hf_env  # noqa: F401
from tests.fakes.llm import FakeLLM, error_body, serve_llm
from tests.test_agent_tools import API_KEY, T5, World, make_world

REPO = "comfyanonymous/flux_text_encoders"
FOUND_F1 = {"outcome": "found", "file_id": "f1", "reason": "the official ComfyUI text encoder repo"}
NOT_FOUND = {"outcome": "not_found", "reason": "nothing with this exact name"}


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve_llm()


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    request.getfixturevalue("hf_env")
    yield from make_world(tmp_path)


@dataclasses.dataclass
class Setup:
    agent: Agent
    llm: FakeLLM
    world: World
    events: list[Event]

    @property
    def history(self) -> str:
        return (self.world.settings.log_dir / HISTORY_FILE).read_text(encoding="utf-8")

    def search(self, prior: Resolution | None = None) -> Resolution:
        model = self.world.target()
        return self.agent.search(
            model,
            prior
            or Resolution(
                model, "not_found", reason="direct: nothing", evidence=["huggingface: queries ['t5xxl']"]
            ),
        )


def _make(world: World, llm: FakeLLM, **limits: Any) -> Iterator[Setup]:
    settings = dataclasses.replace(world.settings, llm_base_url=llm.base_url)
    events: list[Event] = []
    with llm.client() as client:
        agent = build_agent(
            settings,
            world.finder,
            client=client,
            limits=AgentLimits(**limits),
            retry=RetryPolicy(attempts=2, base_wait=0.0, max_backoff=0.0, server_wait_scale=0.0),
            sink=events.append,
        )
        assert agent is not None
        with agent:
            yield Setup(agent, llm, dataclasses.replace(world, settings=settings), events)


@pytest.fixture
def setup(world: World, fake_llm: FakeLLM) -> Iterator[Setup]:
    yield from _make(world, fake_llm)


def _tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def test_grounded_answer_is_validated_and_chosen(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_tool_calls(("search_huggingface", {"query": "flux_text_encoders"}))
    llm.reply_tool_calls(("list_repo_files", {"repo_id": REPO}))
    llm.reply_json(FOUND_F1)
    res = setup.search()
    assert res.outcome == "found", res.reason
    c = res.candidate
    assert c is not None and c.source == "llm" and c.filename == "t5xxl_fp16.safetensors"
    assert c.url == setup.world.hub.resolve_url(REPO, "t5xxl_fp16.safetensors")
    assert c.size == len(T5) and c.sha256 and len(c.sha256) == 64
    assert "official" in res.reason and res.evidence[0].startswith("huggingface: queries")
    # The conversation is well formed: each tool call answered by a tool message with its id.
    second, third = llm.chat_bodies[1], llm.chat_bodies[2]
    call_id = second["messages"][-2]["tool_calls"][0]["id"]
    assert _tool_messages(second)[0]["tool_call_id"] == call_id
    assert "comfyanonymous/flux_text_encoders" in _tool_messages(second)[0]["content"]
    assert '"id":"f1"' in _tool_messages(third)[-1]["content"]
    assert {t["function"]["name"] for t in llm.chat_bodies[0]["tools"]} >= {
        "search_huggingface",
        "list_repo_files",
    }
    assert llm.chat_bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}
    assert "flux_dev.json" in llm.chat_bodies[0]["messages"][1]["content"]  # the workflows needing it
    history = setup.history
    for kind in ("search:", "request:", "tool:", "decision:"):
        assert kind in history
    assert '"outcome": "found"' in history and '"seconds"' in history
    assert API_KEY not in history


def test_repo_and_filename_answer_with_a_think_block_is_grounded(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_tool_calls(("list_repo_files", {"repo_id": REPO}))
    answer = {"outcome": "found", "repo_id": REPO, "filename": "t5xxl_fp16.safetensors", "reason": "listed"}
    llm.reply_text("<think>The repo lists it.</think>\n\n" + json.dumps(answer))
    res = setup.search()
    assert res.outcome == "found" and res.candidate is not None and res.candidate.size == len(T5)


def test_hallucinated_url_is_rejected_and_the_model_is_told(setup: Setup) -> None:
    llm = setup.llm
    invented = "https://huggingface.co/someone/fake/resolve/main/t5xxl_fp16.safetensors"
    llm.reply_json({"outcome": "found", "url": invented, "reason": "I remember it"})
    llm.reply_json(NOT_FOUND)
    llm.reply_json(NOT_FOUND)  # a first not_found without any tool call is sent back once: search first
    res = setup.search()
    assert res.outcome == "not_found" and res.candidate is None
    feedback = llm.chat_bodies[1]["messages"][-1]["content"]
    assert "Answer rejected" in feedback and "appeared in no tool result" in feedback
    assert any("invented" in e for e in res.evidence)
    assert "rejected:" in setup.history


def test_url_on_a_disallowed_host_is_rejected(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_json({"outcome": "found", "url": "https://evil.example.com/t5xxl_fp16.safetensors"})
    llm.reply_json(NOT_FOUND)
    llm.reply_json(NOT_FOUND)
    res = setup.search()
    assert res.outcome == "not_found"
    assert "not allowed" in llm.chat_bodies[1]["messages"][-1]["content"]


def test_a_grounded_file_with_another_name_is_rejected(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_tool_calls(("list_repo_files", {"repo_id": REPO}))
    llm.reply_json({"outcome": "found", "repo_id": REPO, "path": "clip_l.safetensors"})
    llm.reply_json(NOT_FOUND)
    assert setup.search().outcome == "not_found"
    correction = llm.chat_bodies[2]["messages"][-1]["content"]
    assert "clip_l.safetensors was not shown by any tool result" in correction
    assert f"- f1: {REPO}/t5xxl_fp16.safetensors" in correction
    assert '"file_id": "<one of the ids' in correction


def test_malformed_arguments_and_unknown_tool_are_told_to_the_model(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_tool_calls(("search_huggingface", '{"query": '), ("download_file", {"url": "https://x"}))
    llm.reply_json(NOT_FOUND)
    res = setup.search()
    assert res.outcome == "not_found"
    results = [json.loads(m["content"]) for m in _tool_messages(llm.chat_bodies[1])]
    assert "not valid JSON" in results[0]["error"]
    assert "unknown tool 'download_file'" in results[1]["error"]


def test_an_endless_tool_loop_is_bounded(world: World, fake_llm: FakeLLM) -> None:
    for setup in _make(world, fake_llm, max_turns=4, max_tool_calls=2):
        for i in range(4):
            fake_llm.reply_tool_calls(("search_huggingface", {"query": f"flux {i}"}))
        res = setup.search()
        assert res.outcome == "not_found" and "no answer within 4 turns" in res.reason
        assert len(fake_llm.chat_bodies) == 4  # and not one more: the fake fails on an unexpected call
        answered = [json.loads(m["content"]) for m in _tool_messages(fake_llm.chat_bodies[3])]
        assert [("error" in a) for a in answered] == [False, False, True]  # 2 calls allowed, the 3rd refused
        assert "tool call limit" in answered[2]["error"]


def test_the_agent_stands_down_only_after_three_failing_models_in_a_row(setup: Setup) -> None:
    llm = setup.llm
    for _ in range(6):  # three searches x two attempts
        llm.reply_error(500, error_body("The server had an error", type_="server_error"))
    for _ in range(2):
        res = setup.search()
        assert res.outcome == "source_error" and "HTTP 500" in res.reason
        assert setup.agent.available and not [e for e in setup.events if isinstance(e, Notice)]
    third = setup.search()
    assert third.outcome == "source_error" and not setup.agent.available
    [notice] = [e for e in setup.events if isinstance(e, Notice)]
    assert "failed for 3 models in a row" in notice.message and "HTTP 500" in notice.message
    assert "direct sources only" in notice.message
    fourth = setup.search()  # no request at all: the fake would fail on an unexpected call
    assert fourth.outcome == "source_error" and "not used" in fourth.reason


def test_an_ambiguous_prior_survives_an_endpoint_failure(setup: Setup) -> None:
    setup.llm.reply_error(400, {"error": "Model is unloaded."})  # LM Studio's string form
    model = setup.world.target()
    options = [
        Candidate(
            f"https://huggingface.co/{r}/resolve/main/t5xxl_fp16.safetensors",
            "t5xxl_fp16.safetensors",
            "huggingface",
            repo=r,
        )
        for r in ("a/x", "b/y")
    ]
    prior = Resolution(model, "ambiguous", candidates=options, reason="two different files")
    res = setup.agent.search(model, prior)
    assert res.outcome == "ambiguous" and res.candidates == options
    assert "Model is unloaded." in res.reason


def test_agent_can_choose_among_prior_candidates_or_call_it_ambiguous(setup: Setup) -> None:
    model = setup.world.target()
    hub = setup.world.finder.huggingface
    assert hub is not None
    good = hub.candidate_for(REPO, "t5xxl_fp16.safetensors")
    other = Candidate(
        "https://huggingface.co/b/y/resolve/main/t5xxl_fp16.safetensors",
        "t5xxl_fp16.safetensors",
        "huggingface",
        repo="b/y",
    )
    prior = Resolution(model, "ambiguous", candidates=[good, other], reason="two files")
    setup.llm.reply_json(
        {"outcome": "ambiguous", "candidate_ids": ["f1", "f2", "f9"], "reason": "cannot tell"}
    )
    res = setup.agent.search(model, prior)
    assert res.outcome == "ambiguous" and [c.url for c in res.candidates] == [good.url, other.url]
    assert '"id": "f2"' in setup.llm.chat_bodies[0]["messages"][1]["content"]  # shown as known candidates
    setup.llm.reply_json(FOUND_F1)
    chosen = setup.agent.search(model, prior)
    assert chosen.outcome == "found" and chosen.candidate is not None
    assert chosen.candidate.url == good.url and chosen.candidate.source == "llm"


def test_a_server_without_tools_gets_the_text_protocol(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_error(400, error_body("registry.ollama.ai/library/qwen3:8b does not support tools"))
    llm.reply_text(json.dumps({"tool": "list_repo_files", "arguments": {"repo_id": REPO}}))
    llm.reply_text(
        f"<tool_call>{json.dumps({'name': 'search_huggingface', 'arguments': {'query': 'x'}})}</tool_call>"
    )
    llm.reply_json(FOUND_F1)
    res = setup.search()
    assert res.outcome == "found", res.reason
    assert "tools" not in llm.chat_bodies[1]
    assert "cannot call tools natively" in llm.chat_bodies[1]["messages"][0]["content"]
    assert llm.chat_bodies[2]["messages"][-1]["content"].startswith("Result of list_repo_files:")
    assert llm.chat_bodies[3]["messages"][-1]["content"].startswith("Result of search_huggingface:")
    assert not setup.agent.supports_tools  # remembered for the next model


def test_a_validation_failure_is_not_accepted(setup: Setup) -> None:
    setup.world.hub.fail(f"/{REPO}/resolve/main/t5xxl_fp16.safetensors", 404, times=None)
    llm = setup.llm
    llm.reply_tool_calls(("list_repo_files", {"repo_id": REPO}))
    llm.reply_json(FOUND_F1)
    llm.reply_json(NOT_FOUND)
    res = setup.search()
    assert res.outcome == "not_found"
    assert "failed validation" in llm.chat_bodies[2]["messages"][-1]["content"]


def test_invalid_final_json_is_sent_back_for_a_retry(setup: Setup) -> None:
    llm = setup.llm
    llm.reply_text("I think it is on Hugging Face somewhere.")
    llm.reply_json({"outcome": "maybe"})
    llm.reply_json(NOT_FOUND)
    llm.reply_json(NOT_FOUND)
    assert setup.search().outcome == "not_found"
    assert "no JSON object" in llm.chat_bodies[1]["messages"][-1]["content"]
    assert "outcome" in llm.chat_bodies[2]["messages"][-1]["content"]


def test_no_endpoint_means_no_agent(world: World) -> None:
    no_llm = dataclasses.replace(world.settings, llm_base_url=None)
    assert build_agent(no_llm, world.finder) is None


def test_history_is_written_under_the_log_dir(setup: Setup, tmp_path: Path) -> None:
    setup.llm.reply_json(NOT_FOUND)
    setup.llm.reply_json(NOT_FOUND)
    setup.search()
    assert (tmp_path / "log" / HISTORY_FILE).is_file()


def test_a_not_found_without_any_search_is_sent_back_once(setup: Setup) -> None:
    """Small models answer from memory; one nudge makes them look, and finds what they did not know."""
    llm = setup.llm
    llm.reply_json(NOT_FOUND)
    llm.reply_tool_calls(("list_repo_files", {"repo_id": REPO}))
    llm.reply_json(FOUND_F1)
    res = setup.search()
    assert res.outcome == "found", res.reason
    nudge = llm.chat_bodies[1]["messages"][-1]["content"]
    assert "without calling any tool: search first" in nudge and "Call one tool now" in nudge
    assert '{"name": "search_huggingface", "arguments": {"query": "t5xxl fp16"}}' in nudge
