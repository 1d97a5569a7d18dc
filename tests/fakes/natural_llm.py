"""An independent-style scripted model for the OpenAI-compatible fake: it behaves like a real LLM, not
like our protocol.

It was written against the tool *descriptions* only, the way a model sees them: it never uses the file
ids (`f1`) the tools hand out unless a correction message makes it, it writes its tool calls in the
shape its `Style` says (native `tool_calls`, a bare JSON object, a ```json block, `<tool_call>` tags),
and it answers naturally: repo + path, a `https://huggingface.co/<repo>/resolve/main/<path>` URL (the
public host, not the fake's), the bare file name, or repo + bare file name.

What it "knows" (its world knowledge, as a real model knows where FLUX's text encoders live) is a map
from file name to the words it searches Hugging Face with. It then does what a sensible model does:
search, list the files of the repos found (skipping obvious re-upload accounts), and answer when it
sees the exact file name; or say not_found after a few repos.

Use: `llm.queue_reply(model)` once per expected request, or `FakeLLM(...)` with `model.serve(llm, n)`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes.llm import completion

CallShape = Literal["native", "json", "fenced", "tags"]
AnswerShape = Literal["repo_path", "url", "file_name", "repo_basename"]
DISTRUSTED = re.compile(r"re-?upload|mirror|backup|unofficial|free-ai|aiuser", re.I)
_FILE_NAME = re.compile(r"^File name: (.+)$", re.M)
_IDS = re.compile(r"^- (f\d+): ", re.M)


@dataclass(frozen=True)
class Style:
    calls: CallShape = "native"
    answer: AnswerShape = "repo_path"


@dataclass
class NaturalModel:
    """Callable reply for `FakeLLM.queue_reply`: reads the conversation, returns the next completion."""

    knowledge: dict[str, str]  # file name (lower-case) -> Hugging Face search words
    styles: dict[str, Style] = field(default_factory=dict)  # file name (lower-case) -> how it writes
    max_repos: int = 3
    calls_made: int = 0

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = body["messages"]
        task = next(m["content"] for m in messages if m["role"] == "user")
        match = _FILE_NAME.search(task)
        wanted = match.group(1).strip() if match else ""
        style = self.styles.get(wanted.lower(), Style())
        if "tools" not in body and style.calls == "native":
            style = Style("json", style.answer)  # no tools offered: write calls as text, like Qwen does
        last = messages[-1]
        if last["role"] == "user" and str(last.get("content", "")).startswith("Answer rejected"):
            ids = _IDS.findall(last["content"])
            if ids:  # a real model follows a precise correction
                return _text({"outcome": "found", "file_id": ids[0], "reason": "the id the correction lists"})
            return _text({"outcome": "not_found", "reason": "nothing shown"})
        results = _tool_results(messages)
        searched = [r for name, r in results if name == "search_huggingface"]
        listed = [r for name, r in results if name == "list_repo_files"]
        if not searched:
            query = self.knowledge.get(wanted.lower())
            if query is None:
                return _text({"outcome": "not_found", "reason": "I know of no source for this file"})
            return self._call(style, "search_huggingface", {"query": query})
        for result in listed:
            repo = str(result.get("repo_id", ""))
            for entry in result.get("matching") or []:
                if str(entry.get("file", "")).lower() == wanted.lower() and not DISTRUSTED.search(repo):
                    return _text(_answer(style.answer, repo, str(entry.get("path") or entry["file"])))
        if not searched[-1].get("repos") and len(searched) < 2:
            # Nothing matched all the words: a model tries its most telling word alone.
            query = self.knowledge.get(wanted.lower(), "")
            return self._call(style, "search_huggingface", {"query": max(query.split(), key=len)})
        done = {str(r.get("repo_id", "")).lower() for r in listed}
        repos = [r for r in (searched[-1].get("repos") or []) if not DISTRUSTED.search(r)]
        todo = [r for r in repos if r.lower() not in done]
        if todo and len(listed) < self.max_repos:
            return self._call(style, "list_repo_files", {"repo_id": todo[0]})
        return _text({"outcome": "not_found", "reason": f"no repo I searched has {wanted}"})

    def _call(self, style: Style, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls_made += 1
        if style.calls == "native":
            call = {
                "id": f"call_nat{self.calls_made:05d}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            return completion({"content": None, "tool_calls": [call]}, "tool_calls")
        obj = {"name": name, "arguments": arguments}
        if style.calls == "json":
            return completion({"content": json.dumps(obj)})
        if style.calls == "fenced":
            # Qwen sometimes sends the arguments as a JSON string inside the object.
            obj = {"name": name, "arguments": json.dumps(arguments)}
            return completion({"content": f"I will look this up.\n```json\n{json.dumps(obj, indent=2)}\n```"})
        return completion({"content": f"<tool_call>\n{json.dumps(obj)}\n</tool_call>"})


def _answer(shape: AnswerShape, repo: str, path: str) -> dict[str, Any]:
    base = path.rsplit("/", 1)[-1]
    reason = f"{repo} publishes {base}"
    if shape == "url":
        url = f"https://huggingface.co/{repo}/resolve/main/{path}"
        return {"outcome": "found", "url": url, "reason": reason}
    if shape == "file_name":
        return {"outcome": "found", "filename": base, "reason": reason}
    if shape == "repo_basename":
        return {"outcome": "found", "repo": repo, "file": base, "reason": reason}
    return {"outcome": "found", "repo_id": repo, "path": path, "reason": reason}


def _text(obj: dict[str, Any]) -> dict[str, Any]:
    return completion({"content": json.dumps(obj)})


def _tool_results(messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(tool name, parsed result) for every tool result in the conversation, native or as text."""
    names: dict[str, str] = {}
    out: list[tuple[str, dict[str, Any]]] = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            names[call["id"]] = call["function"]["name"]
        content = m.get("content")
        if m["role"] == "tool" and isinstance(content, str):
            out.append((names.get(m.get("tool_call_id", ""), "?"), _load(content)))
        elif m["role"] == "user" and isinstance(content, str) and content.startswith("Result of "):
            for block in content.split("\n\nResult of "):
                head, _, rest = block.removeprefix("Result of ").partition(": ")
                if rest.startswith("{"):
                    out.append((head.strip(), _load(rest.split("\n\n", 1)[0])))
    return out


def _load(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
