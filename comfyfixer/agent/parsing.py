"""Reading JSON out of model text: final answers, and tool calls written as text.

Models wrap JSON in code fences, put prose around it, or (without a server-side tool parser) write a
Hermes `<tool_call>{…}</tool_call>` block into `content`. These helpers find the first JSON object
and recognise the two tool-call shapes the JSON-in-text protocol accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from comfyfixer.agent.client import ToolCall

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S | re.I)
_DECODER = json.JSONDecoder()


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (inside a code fence or not), or None."""
    if not text:
        return None
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        start = chunk.find("{")
        while start >= 0:
            try:
                value, _ = _DECODER.raw_decode(chunk, start)
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = chunk.find("{", start + 1)
    return None


def _arguments_text(arguments: Any) -> str:
    # Keep a string as the model wrote it so malformed arguments reach the toolbox and get reported.
    return arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {})


def text_tool_calls(text: str) -> list[ToolCall]:
    """Tool calls written as text: `<tool_call>{"name","arguments"}</tool_call>` or `{"tool","arguments"}`."""
    calls: list[ToolCall] = []
    for block in _HERMES.finditer(text or ""):
        obj = extract_json_object(block.group(1))
        if obj is not None and isinstance(obj.get("name"), str):
            calls.append(ToolCall(None, obj["name"], _arguments_text(obj.get("arguments"))))
    if calls:
        return calls
    obj = extract_json_object(text or "")
    if obj is None or "outcome" in obj:
        return []
    name = obj.get("tool")
    if isinstance(name, str):
        return [ToolCall(None, name, _arguments_text(obj.get("arguments")))]
    return []
