"""The scripted LLM fake itself: it speaks what the real openai SDK expects, records, and fails loudly."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes.llm import FakeLLM, completion, sample


def test_models_list_and_tool_round_trip_are_recorded() -> None:
    with FakeLLM(models=("qwen3-8b", "qwen3-32b")) as llm, llm.client() as client:
        assert [m.id for m in client.models.list().data] == ["qwen3-8b", "qwen3-32b"]
        llm.reply_tool_calls(("search_huggingface", {"query": "flux"}))
        llm.reply_text("done")
        first = client.chat.completions.create(model="qwen3-8b", messages=[{"role": "user", "content": "hi"}])
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "search_huggingface"
        assert json.loads(call.function.arguments) == {"query": "flux"}
        second = client.chat.completions.create(
            model="qwen3-8b",
            messages=[{"role": "tool", "tool_call_id": call.id, "content": "{}"}],
            extra_body={"chat_template_kwargs": {"enable_thinking": False}},
        )
        assert second.choices[0].message.content == "done"
        assert llm.chat_bodies[1]["messages"][0]["tool_call_id"] == call.id
        assert llm.chat_bodies[1]["chat_template_kwargs"] == {"enable_thinking": False}
        llm.assert_done()


def test_shared_samples_parse_with_the_sdk() -> None:
    with FakeLLM() as llm, llm.client() as client:
        llm.queue(sample("openai_chat_tool_call_response.json"))
        llm.queue(sample("openai_chat_response_reasoning_field.json"))
        one = client.chat.completions.create(model="m", messages=[])
        two = client.chat.completions.create(model="m", messages=[])
        assert one.choices[0].message.tool_calls
        assert (two.choices[0].message.model_extra or {})["reasoning"].startswith("The user needs")
        llm.assert_done()


def test_an_unexpected_call_fails_loudly() -> None:
    with FakeLLM() as llm, llm.client() as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[])
        with pytest.raises(AssertionError, match="unexpected request"):
            llm.assert_done()


def test_an_unconsumed_reply_fails_loudly() -> None:
    with FakeLLM() as llm:
        llm.reply_text("never asked for")
        with pytest.raises(AssertionError, match="never requested"):
            llm.assert_done()


def test_callable_replies_see_the_request_and_errors_keep_their_headers() -> None:
    with FakeLLM() as llm, llm.client() as client:
        llm.queue_reply(lambda body: completion({"content": body["model"]}))
        llm.reply_error(429, {"error": "slow down"}, {"x-should-retry": "false", "retry-after-ms": "10"})
        echoed = client.chat.completions.create(model="echo-me", messages=[])
        assert echoed.choices[0].message.content == "echo-me"
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=[])
        assert info.value.body == "slow down"  # LM Studio's string form survives only in .body
        assert info.value.response.headers["retry-after-ms"] == "10"
        llm.assert_done()
