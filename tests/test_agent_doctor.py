"""The endpoint check and `comfyfixer doctor`: what works, what to fix, exit 0 or 1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from comfyfixer.agent import RetryPolicy, check_endpoint
from comfyfixer.cli import doctor as doctor_cmd
from comfyfixer.cli.errors import endpoint_next_step
from comfyfixer.config import Settings
from tests.fakes import FakeCivitai, FakeHub, FileServer
from tests.fakes.llm import FakeLLM, error_body, sample, serve_llm

FAST = RetryPolicy(1, 0.0, 0.0)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve_llm()


def _settings(llm: FakeLLM, model: str | None = "qwen3-8b") -> Settings:
    return Settings(llm_base_url=llm.base_url, llm_model=model, llm_api_key="sk-doctor")


def test_working_endpoint_with_native_tools(fake_llm: FakeLLM) -> None:
    fake_llm.reply_tool_calls(("ping", {"word": "ready"}))
    with fake_llm.client() as client:
        status = check_endpoint(_settings(fake_llm), client=client, retry=FAST)
    assert status.ok and status.supports_tools is True and status.models == ("qwen3-8b",)
    assert status.thinking == "chat_template_kwargs" and "tool calling: native tool calls" in status.reason
    assert status.protocol == "native" and status.tool_calling
    tool = fake_llm.chat_bodies[0]["tools"][0]["function"]
    assert tool["name"] == "ping" and tool["parameters"]["required"] == ["word"]
    assert "LLM agent: qwen3-8b" in status.notice().message


def test_server_without_tools_is_ok_with_the_text_protocol(fake_llm: FakeLLM) -> None:
    fake_llm.reply_error(400, error_body("registry.ollama.ai/library/qwen3:8b does not support tools"))
    fake_llm.reply_text('{"tool": "ping", "arguments": {"word": "ready"}}')
    with fake_llm.client() as client:
        status = check_endpoint(_settings(fake_llm), client=client, retry=FAST)
    assert status.ok and status.supports_tools is False and "text protocol" in status.reason
    assert status.protocol == "tool" and "tools" not in fake_llm.chat_bodies[1]
    assert '{"tool":' in fake_llm.chat_bodies[1]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("content", "shape"),
    [
        ('<tool_call>\n{"name": "ping", "arguments": {"word": "ready"}}\n</tool_call>', "tags"),
        ('{"name": "ping", "arguments": {"word": "ready"}}', "json"),
        ('```json\n{"name": "ping", "arguments": "{\\"word\\": \\"ready\\"}"}\n```', "fenced"),
        ('Sure: {"tool": "ping", "arguments": {"word": "ready"}}', "tool"),
    ],
)
def test_tool_calls_written_as_text_are_recognised(fake_llm: FakeLLM, content: str, shape: str) -> None:
    """Qwen2.5 on llama.cpp writes its call into the text; doctor says so, and it counts as tool calling."""
    fake_llm.reply_text(content)
    with fake_llm.client() as client:
        status = check_endpoint(_settings(fake_llm), client=client, retry=FAST)
    assert status.ok and status.tool_calling and status.protocol == shape and status.supports_tools
    assert "tool calling:" in status.reason and "in the text" in status.reason


def test_unknown_model_is_not_ok_and_says_what_to_fix(fake_llm: FakeLLM) -> None:
    fake_llm.reply_error(404, sample("ollama_error_404.json"))
    with fake_llm.client() as client:
        status = check_endpoint(_settings(fake_llm, "qwen3:8b"), client=client, retry=FAST)
    assert not status.ok and "not found, try pulling it first" in status.reason
    assert "COMFYFIXER_LLM_MODEL" in endpoint_next_step(status) and "not among" in status.reason
    assert status.notice().level == "warning"


def test_no_model_configured_uses_the_first_listed(fake_llm: FakeLLM) -> None:
    fake_llm.reply_text("I would rather not call tools.")
    with fake_llm.client() as client:
        status = check_endpoint(_settings(fake_llm, None), client=client, retry=FAST)
    assert status.ok and status.model == "qwen3-8b" and not status.tool_calling
    assert fake_llm.chat_bodies[0]["model"] == "qwen3-8b" and fake_llm.chat_bodies[0]["max_tokens"] > 0


def test_dead_and_missing_endpoints() -> None:
    with FakeLLM() as llm:
        settings = _settings(llm)
    dead = check_endpoint(settings, retry=FAST, timeout=2)
    assert not dead.ok and dead.configured and "cannot" in dead.reason
    missing = check_endpoint(Settings())
    assert not missing.ok and not missing.configured
    assert "COMFYFIXER_LLM_BASE_URL" in endpoint_next_step(missing)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    doctor_cmd.register(app)

    @app.callback()
    def _root() -> None:
        """Keeps `doctor` a sub-command, as in the real application."""

    return app


def _sources_env(hub: FakeHub, civitai: FakeCivitai, files: FileServer) -> dict[str, str]:
    files.set_catalogue([])
    return {
        "HF_ENDPOINT": hub.url,
        "COMFYFIXER_CIVITAI_URL": civitai.url,
        "COMFYFIXER_CATALOG_URL": files.url_for("/model-list.json"),
        "HF_TOKEN": "",
        "CIVITAI_API_TOKEN": "",
    }


def test_doctor_command_exit_codes(
    fake_llm: FakeLLM, fake_hub: FakeHub, fake_civitai: FakeCivitai, file_server: FileServer
) -> None:
    env = {
        "COMFYFIXER_LLM_BASE_URL": fake_llm.base_url,
        "COMFYFIXER_LLM_MODEL": "qwen3-8b",
        "COMFYFIXER_LLM_API_KEY": "sk-cli-secret",
        **_sources_env(fake_hub, fake_civitai, file_server),
    }
    fake_llm.reply_tool_calls(("ping", {"word": "ready"}))
    ok = CliRunner(env=env).invoke(_app(), ["doctor", "--json"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout)
    assert payload["llm"]["ok"] and payload["llm"]["supports_tools"] is True
    assert "sk-cli-secret" not in ok.output
    fake_llm.reply_error(401, error_body("Incorrect API key provided: sk-cli-secret"))
    bad = CliRunner(env=env).invoke(_app(), ["doctor"])
    assert bad.exit_code == 1
    assert "NOT WORKING" in bad.stdout and "COMFYFIXER_LLM_API_KEY" in bad.stdout
    assert "sk-cli-secret" not in bad.output
    unset = CliRunner(
        env={
            "COMFYFIXER_LLM_BASE_URL": "",
            "OPENAI_BASE_URL": "",
            **_sources_env(fake_hub, fake_civitai, file_server),
        }
    ).invoke(_app(), ["doctor"])
    assert unset.exit_code == 0 and "not configured" in unset.stdout
    assert "Hugging Face: OK" in unset.stdout and "Civitai: OK" in unset.stdout


def test_doctor_checks_every_source_and_fails_when_one_is_unreachable(
    fake_hub: FakeHub, fake_civitai: FakeCivitai, file_server: FileServer
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    env = {
        "COMFYFIXER_LLM_BASE_URL": "",
        "OPENAI_BASE_URL": "",
        **_sources_env(fake_hub, fake_civitai, file_server),
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "COMFYFIXER_CIVITAI_URL": "http://civitai.invalid",
    }
    result = CliRunner(env=env).invoke(_app(), ["doctor"])
    assert result.exit_code == 1, result.output
    assert f"Hugging Face: UNREACHABLE: http://127.0.0.1:{port}" in result.stdout
    assert "Civitai: UNREACHABLE" in result.stdout and "civitai.invalid" in result.stdout
    assert "catalogue: OK" in result.stdout
    as_json = CliRunner(env=env).invoke(_app(), ["doctor", "--json"])
    assert as_json.exit_code == 1
    sources = json.loads(as_json.stdout)["sources"]
    assert not sources["huggingface"]["ok"] and not sources["civitai"]["ok"] and sources["catalogue"]["ok"]
