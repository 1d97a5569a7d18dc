"""Reading JSON out of model text: final answers, and tool calls written as text.

Models wrap JSON in code fences, put prose around it, or (when the server's tool parser did not catch
it) write the call into `content`. Real servers and models produce all of these, and all are read:

- Hermes tags: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (closing tag may be missing);
- a bare or ```json-fenced `{"name": ..., "arguments": ...}`: Qwen2.5's fallback when its chat template's
  tags are not produced (arguments as an object or as a JSON string; `parameters` also accepted);
- our own text protocol `{"tool": ..., "arguments": ...}`;
- the OpenAI shape written out, `{"function": {"name", "arguments"}}`;
- several of any of these in one reply, or a JSON list of them.

A JSON object with an `outcome` is a final answer, never a tool call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from comfyfixer.agent.client import ToolCall

_FENCE = re.compile(r"```(?:json|tool_call|tool)?\s*(.*?)```", re.S | re.I)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S | re.I)
_DECODER = json.JSONDecoder()
_MAX_CALLS = 8  # more text calls than this in one reply is noise, not a plan

SHAPE_WORDS = {
    "native": "native tool calls",
    "tags": "<tool_call> tags in the text",
    "json": "a bare JSON object in the text",
    "fenced": "a ```json block in the text",
    "tool": 'a {"tool": ...} object in the text',
}


def _json_values(text: str) -> Iterator[Any]:
    """Every top-level JSON object or list in `text`, in order (prose between them skipped)."""
    i = 0
    while True:
        starts = [p for p in (text.find("{", i), text.find("[", i)) if p >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        if isinstance(value, (dict, list)):
            yield value
        i = end


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (inside a code fence or not), or None."""
    if not text:
        return None
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        for value in _json_values(chunk):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    return item
    return None


def _arguments_text(arguments: Any) -> str:
    # Keep a string as the model wrote it so malformed arguments reach the toolbox and get reported.
    return arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {})


def as_tool_call(obj: Any, shape: str) -> ToolCall | None:
    """The tool call an object describes, or None (a final answer, or not a call at all)."""
    if not isinstance(obj, dict) or "outcome" in obj:
        return None
    function = obj.get("function")
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return ToolCall(None, function["name"], _arguments_text(function.get("arguments")), shape)
    args = next((obj[k] for k in ("arguments", "parameters", "args", "input") if k in obj), None)
    name = obj.get("tool")
    if isinstance(name, str):
        return ToolCall(None, name, _arguments_text(args), "tool" if shape == "json" else shape)
    name = obj.get("name")
    if isinstance(name, str) and (args is not None or len(obj) == 1):
        return ToolCall(None, name, _arguments_text(args), shape)
    return None


def _calls_in(values: Iterator[Any], shape: str) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            call = as_tool_call(item, shape)
            if call is not None:
                calls.append(call)
    return calls


def text_tool_calls(text: str) -> list[ToolCall]:
    """Tool calls written into a reply's text, in every shape above; [] when there are none."""
    if not text:
        return []
    calls: list[ToolCall] = []
    for block in _HERMES.finditer(text):
        calls += _calls_in(_json_values(block.group(1)), "tags")
    if not calls:
        for fence in _FENCE.finditer(text):
            calls += _calls_in(_json_values(fence.group(1)), "fenced")
    if not calls:
        calls = _calls_in(_json_values(text), "json")
    return calls[:_MAX_CALLS]
