"""What the screen says about the agent: "asking Qwen about <name> …" and what it concluded (plain mode)."""

from __future__ import annotations

import io

from rich.console import Console

from comfyfixer.cli.progress import ProgressDisplay
from comfyfixer.events import AgentAsked, AgentConcluded


def test_agent_lines_on_a_plain_console() -> None:
    out = io.StringIO()
    with ProgressDisplay(Console(file=out, width=200), mode="plain") as display:
        display(AgentAsked("t5xxl_fp16.safetensors", "qwen2.5-coder-1.5b"))
        display(
            AgentConcluded(
                "t5xxl_fp16.safetensors",
                "found",
                "huggingface",
                "comfyanonymous/flux_text_encoders/t5xxl_fp16.safetensors",
                "LLM agent: official repo",
                12.4,
                2,
            )
        )
        display(AgentConcluded("x.safetensors", "not_found", None, "", "LLM agent: nothing", 3.0, 1))
    lines = out.getvalue().splitlines()
    assert lines == [
        "  asking Qwen (qwen2.5-coder-1.5b) about t5xxl_fp16.safetensors …",
        "  Qwen: t5xxl_fp16.safetensors: found on Hugging Face: "
        "comfyanonymous/flux_text_encoders/t5xxl_fp16.safetensors [12s, 2 tool call(s)]",
        "  Qwen: x.safetensors: not found (LLM agent: nothing) [3s, 1 tool call(s)]",
    ]
