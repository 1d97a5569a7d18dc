"""The dialect: what differs between OpenAI-compatible servers (OpenAI, DashScope, vLLM, Ollama, LM Studio;
see the shared `apis.md` §3.4), so the chat client can speak to each.

- Thinking is switched off where the server allows. The switch is chosen from the base URL
  (`thinking_switch_for`): DashScope takes top-level `enable_thinking: false`, Ollama
  `reasoning_effort: "none"`, LM Studio and OpenAI get nothing, and everything else (vLLM, SGLang,
  unknown servers) gets `chat_template_kwargs: {enable_thinking: false}`. A 400 naming the switch (or
  "unrecognized argument") drops it; a DashScope "enable_thinking must be set to false" answer selects
  the DashScope switch (`switch_after`).
- `<think>` blocks in `content` are split off (`strip_thinking`): callers only ever see the answer.
- The words of a 400 that means "no tools here" (`TOOLS_UNSUPPORTED`) or "say `max_completion_tokens`"
  (`MAX_TOKENS_REJECTED`).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

ThinkingSwitch = Literal["chat_template_kwargs", "enable_thinking", "reasoning_effort", "none"]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
TOOLS_UNSUPPORTED = re.compile(
    r"does not support tools|tool choice requires|tools? (?:is|are) not supported|"
    r"does not support (?:function|tool)|tool[_ ]calling is not (?:supported|enabled)|unsupported.*\btools\b",
    re.I,
)
_SWITCH_REJECTED = re.compile(
    r"unrecognized request argument|extra inputs are not permitted|extra_forbidden|"
    r"unknown (?:parameter|field)|unexpected keyword|not a valid parameter",
    re.I,
)
_DASHSCOPE_NEEDS_SWITCH = re.compile(r"enable_thinking must be set to false", re.I)
MAX_TOKENS_REJECTED = re.compile(
    r"max_tokens.*(?:not supported|unsupported|max_completion_tokens)", re.I | re.S
)


def thinking_switch_for(base_url: str) -> ThinkingSwitch:
    """The request field that turns Qwen3 thinking off on the server behind `base_url`."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if "dashscope" in host or host.endswith(".aliyuncs.com"):
        return "enable_thinking"
    if port == 11434 or "ollama" in host:
        return "reasoning_effort"
    if host == "api.openai.com" or port == 1234 or "lmstudio" in host:
        return "none"
    return "chat_template_kwargs"


def switch_body(switch: ThinkingSwitch) -> dict[str, Any]:
    if switch == "chat_template_kwargs":
        return {"chat_template_kwargs": {"enable_thinking": False}}
    if switch == "enable_thinking":
        return {"enable_thinking": False}
    if switch == "reasoning_effort":
        return {"reasoning_effort": "none"}
    return {}


def strip_thinking(text: str | None) -> tuple[str, str | None]:
    """Split `<think>` blocks off a content string: (answer, thoughts or None)."""
    if not text:
        return "", None
    thoughts = [m.group(0)[7:-8].strip() for m in _THINK_BLOCK.finditer(text)]
    out = _THINK_BLOCK.sub("", text)
    lower = out.lower()
    # Some chat templates put the opening tag in the prompt, so only `</think>` reaches us.
    close = lower.rfind("</think>")
    if close >= 0:
        thoughts.append(out[:close].strip())
        out = out[close + len("</think>") :]
    # A reply cut off mid-thought (finish_reason "length") has an opening tag and nothing after it.
    open_at = out.lower().find("<think>")
    if open_at >= 0:
        thoughts.append(out[open_at + len("<think>") :].strip())
        out = out[:open_at]
    joined = "\n".join(t for t in thoughts if t)
    return out.strip(), joined or None


def switch_after(thinking: ThinkingSwitch, text: str) -> ThinkingSwitch | None:
    """The switch to try after a 400 that may be about the switch itself, or None."""
    if _DASHSCOPE_NEEDS_SWITCH.search(text) and thinking != "enable_thinking":
        return "enable_thinking"
    if thinking == "none":
        return None
    # The switch names are the request keys, so a server complaining about one names it.
    named = thinking in text
    return "none" if named or _SWITCH_REJECTED.search(text) else None
