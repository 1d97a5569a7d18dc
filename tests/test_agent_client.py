"""The chat client against the scripted server: thinking off, thoughts stripped, retries, provider errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from comfyfixer.agent.client import ChatClient, ToolsUnsupported
from comfyfixer.agent.dialect import ThinkingSwitch, strip_thinking, thinking_switch_for
from comfyfixer.cli.errors import explain
from comfyfixer.errors import LLMError
from comfyfixer.retry import RetryPolicy
from tests.fakes.llm import FakeLLM, error_body, sample, serve_llm

KEY = "sk-test-secret-key"
FAST = RetryPolicy(attempts=3, base_wait=0.0, max_backoff=0.0)
MESSAGES = [{"role": "user", "content": "hi"}]
TOOLS = [
    {"type": "function", "function": {"name": "t", "description": "d", "parameters": {"type": "object"}}}
]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve_llm()


@pytest.fixture
def client(fake_llm: FakeLLM) -> Iterator[OpenAI]:
    with fake_llm.client() as c:
        yield c


def _chat(client: OpenAI, thinking: ThinkingSwitch | None = None) -> ChatClient:
    slept: list[float] = []
    chat = ChatClient(client, "qwen3-8b", thinking=thinking, retry=FAST, sleep=slept.append, secrets=(KEY,))
    chat.slept = slept  # type: ignore[attr-defined]
    return chat


@pytest.mark.parametrize(
    ("url", "switch"),
    [
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "enable_thinking"),
        ("http://localhost:11434/v1", "reasoning_effort"),
        ("http://localhost:1234/v1", "none"),
        ("https://api.openai.com/v1", "none"),
        ("http://gpu-box:8000/v1", "chat_template_kwargs"),
    ],
)
def test_thinking_switch_is_chosen_by_base_url(url: str, switch: str) -> None:
    assert thinking_switch_for(url) == switch


def test_vllm_style_switch_goes_top_level_and_tool_choice_is_auto(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_text("ok")
    assert _chat(client).complete(MESSAGES, tools=TOOLS).content == "ok"
    body = fake_llm.chat_bodies[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["tool_choice"] == "auto" and body["tools"] == TOOLS
    assert body["temperature"] == 0


def test_think_block_in_content_is_stripped(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.queue(sample("openai_chat_response_qwen3_think_inline.json"))
    reply = _chat(client).complete(MESSAGES)
    assert reply.content.startswith('{"repo_id"') and "<think>" not in reply.content
    assert reply.reasoning and "flux text encoder repo" in reply.reasoning


def test_reasoning_field_is_kept_apart_from_the_answer(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.queue(sample("openai_chat_response_reasoning_field.json"))
    reply = _chat(client).complete(MESSAGES, tools=TOOLS)
    assert reply.content == ""
    assert [c.name for c in reply.tool_calls] == ["search_huggingface"]
    assert reply.reasoning == "The user needs t5xxl_fp16.safetensors. I should search Hugging Face first."


@pytest.mark.parametrize(
    ("text", "answer", "thought"),
    [
        ("<think>a</think>\n\nB", "B", "a"),
        ("only the end of a thought</think>B", "B", "only the end of a thought"),
        ("<think>cut off mid-thought", "", "cut off mid-thought"),
        ("plain", "plain", None),
    ],
)
def test_strip_thinking_shapes(text: str, answer: str, thought: str | None) -> None:
    assert strip_thinking(text) == (answer, thought)


def test_429_then_success_honours_retry_after_ms(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(429, sample("openai_error_429.json"), {"retry-after-ms": "10"})
    fake_llm.reply_text("fine")
    chat = _chat(client)
    assert chat.complete(MESSAGES).content == "fine"
    assert chat.slept == [0.01]  # type: ignore[attr-defined]
    assert chat.requests == 2


def test_quota_429_is_not_retried(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(429, sample("openai_error_429_quota.json"))
    with pytest.raises(LLMError) as info:
        _chat(client).complete(MESSAGES)
    assert info.value.status == 429 and "exceeded your current quota" in info.value.message


def test_500_storm_ends_in_an_llm_error_after_the_attempts(fake_llm: FakeLLM, client: OpenAI) -> None:
    for _ in range(3):
        fake_llm.reply_error(500, sample("openai_error_500.json"))
    chat = _chat(client)
    with pytest.raises(LLMError) as info:
        chat.complete(MESSAGES)
    assert info.value.status == 500 and "server had an error" in info.value.message
    assert chat.requests == 3


def test_lm_studio_string_error_body_is_reported_in_its_own_words(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(400, sample("lmstudio_error_400.json"))
    with pytest.raises(LLMError) as info:
        _chat(client, thinking="none").complete(MESSAGES)
    assert "'response_format.type' must be 'json_schema' or 'text'" in info.value.message
    assert info.value.status == 400


def test_ollama_without_tools_raises_tools_unsupported(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(400, error_body("registry.ollama.ai/library/gemma:2b does not support tools"))
    with pytest.raises(ToolsUnsupported):
        _chat(client).complete(MESSAGES, tools=TOOLS)


def test_vllm_without_auto_tool_choice_raises_tools_unsupported(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(400, sample("vllm_error_400.json"))
    with pytest.raises(ToolsUnsupported):
        _chat(client).complete(MESSAGES, tools=TOOLS)


def test_dashscope_demand_switches_to_enable_thinking_and_repeats(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(400, sample("dashscope_error_400.json"))
    fake_llm.reply_text("ok")
    chat = _chat(client)
    assert chat.complete(MESSAGES).content == "ok"
    assert chat.thinking == "enable_thinking"
    assert "chat_template_kwargs" in fake_llm.chat_bodies[0]
    assert fake_llm.chat_bodies[1]["enable_thinking"] is False
    assert "chat_template_kwargs" not in fake_llm.chat_bodies[1]


def test_a_rejected_switch_is_dropped_once(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(400, error_body("Unrecognized request argument supplied: chat_template_kwargs"))
    fake_llm.reply_text("ok")
    chat = _chat(client)
    assert chat.complete(MESSAGES).content == "ok"
    assert chat.thinking == "none" and "chat_template_kwargs" not in fake_llm.chat_bodies[1]


def test_other_400s_are_not_retried(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(400, sample("openai_error_400_context_length.json"))
    with pytest.raises(LLMError, match="maximum context length"):
        _chat(client).complete(MESSAGES)


def test_dead_endpoint_is_an_llm_error_with_a_hint() -> None:
    with FakeLLM() as llm:
        url = llm.base_url
    with OpenAI(base_url=url, api_key="x", max_retries=0, timeout=2) as dead, pytest.raises(LLMError) as info:
        ChatClient(dead, "m", retry=RetryPolicy(1, 0, 0)).complete(MESSAGES)
    assert info.value.status is None and "cannot connect" in info.value.message
    assert "COMFYFIXER_LLM_BASE_URL" in explain(info.value).next_step


def test_the_api_key_never_reaches_an_error_message(fake_llm: FakeLLM, client: OpenAI) -> None:
    fake_llm.reply_error(401, error_body("Incorrect API key provided: sk-test-secret-key"))
    with pytest.raises(LLMError) as info:
        _chat(client).complete(MESSAGES)
    assert "sk-test-secret-key" not in info.value.message and "***" in info.value.message
