"""A scripted OpenAI-compatible chat server (`apis.md` §4.4) that fails loudly.

Each test queues the replies it expects, in order; every `POST /v1/chat/completions` pops one. A reply
is `(status, headers, body)` (a dict body is sent as JSON, a str as-is) or a callable that receives the
parsed request body and returns such a tuple (or just a dict for a 200). Every request body is recorded
in `.chat_bodies`. A request with nothing queued is answered 500 with `x-should-retry: false` and
recorded in `.unexpected`; `assert_done()` (run at teardown by fixtures built on `serve_llm()`) fails the
test on an unexpected call *or* an unconsumed reply. `GET /v1/models` lists `.models`.

```python
with FakeLLM() as llm:
    llm.reply_tool_calls(("search_huggingface", {"query": "flux"}))
    llm.reply_text('{"outcome": "not_found", "reason": "nothing"}')
    with llm.client() as client: ...            # openai.OpenAI, max_retries=0, timeout=5
    llm.assert_done()
```
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes.server import Exchange, FakeServer

if TYPE_CHECKING:
    from openai import OpenAI

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "samples"

Scripted = tuple[int, dict[str, str], Any]
Reply = Scripted | Callable[[dict[str, Any]], Scripted | dict[str, Any]]

_ids = itertools.count(1)


def sample(name: str) -> Any:
    """A JSON sample from `../shared/reference/samples/`; skips the test when the folder is absent."""
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"shared samples not found at {SAMPLES}")
    return json.loads(path.read_text(encoding="utf-8"))


def completion(
    message: dict[str, Any], finish_reason: str = "stop", model: str = "qwen3-8b"
) -> dict[str, Any]:
    """A full `chat.completion` body around one assistant message."""
    return {
        "id": f"chatcmpl-fake{next(_ids)}",
        "object": "chat.completion",
        "created": 1763719200,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def error_body(
    message: str, *, type_: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class FakeLLM(FakeServer):
    name = "llm"

    def __init__(self, models: tuple[str, ...] = ("qwen3-8b",)) -> None:
        super().__init__()
        self.models = list(models)
        self._queue: deque[Reply] = deque()
        self._qlock = threading.Lock()
        self.chat_bodies: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        # Answers every request the queue does not (a model that plays a whole conversation).
        self.responder: Callable[[dict[str, Any]], Scripted | dict[str, Any]] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, **kwargs: Any) -> OpenAI:
        from openai import OpenAI

        options: dict[str, Any] = {"max_retries": 0, "timeout": 5.0, "api_key": "sk-test-secret-key"}
        options.update(kwargs)
        return OpenAI(base_url=self.base_url, **options)

    # -- scripting -----------------------------------------------------------------------------------
    def queue(self, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.queue_reply((status, dict(headers or {}), body))

    def queue_reply(self, reply: Reply) -> None:
        with self._qlock:
            self._queue.append(reply)

    def reply_text(
        self,
        content: str | None,
        *,
        reasoning: str | None = None,
        reasoning_key: str = "reasoning",
        finish_reason: str = "stop",
    ) -> None:
        message: dict[str, Any] = {"content": content}
        if reasoning is not None:
            message[reasoning_key] = reasoning
        self.queue(completion(message, finish_reason))

    def reply_json(self, obj: dict[str, Any]) -> None:
        self.reply_text(json.dumps(obj))

    def reply_tool_calls(self, *calls: tuple[str, dict[str, Any] | str], content: str | None = None) -> None:
        """One assistant message calling each (name, arguments); a str argument is sent verbatim."""
        tool_calls = [
            {
                "id": f"call_{next(_ids):08d}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for name, args in calls
        ]
        self.queue(completion({"content": content, "tool_calls": tool_calls}, "tool_calls"))

    def reply_error(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.queue(body, status=status, headers=headers)

    @property
    def pending(self) -> int:
        with self._qlock:
            return len(self._queue)

    def assert_done(self) -> None:
        problems = [f"unexpected request: {u}" for u in self.unexpected]
        if self.pending:
            problems.append(f"{self.pending} scripted repl(y/ies) never requested")
        problems += [f"handler error: {e}" for e in self.errors]
        if problems:
            raise AssertionError("fake LLM: " + "; ".join(problems))

    # -- serving -------------------------------------------------------------------------------------
    def handle(self, ex: Exchange) -> None:
        path = ex.path.rstrip("/")
        if ex.method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
            ex.json(200, {"object": "list", "data": data})
            return
        if ex.method == "POST" and path == "/v1/chat/completions":
            try:
                body = json.loads(ex.body or b"{}")
            except json.JSONDecodeError:
                self.unexpected.append("a chat request whose body is not JSON")
                ex.json(400, error_body("body is not JSON"), {"x-should-retry": "false"})
                return
            self.chat_bodies.append(body)
            with self._qlock:
                reply = self._queue.popleft() if self._queue else self.responder
            if reply is None:
                self.unexpected.append(f"chat request #{len(self.chat_bodies)} with nothing queued")
                ex.json(
                    500,
                    error_body("fake LLM: no reply queued", type_="server_error"),
                    {"x-should-retry": "false"},
                )
                return
            self._send(ex, reply(body) if callable(reply) else reply)
            return
        self.unexpected.append(f"{ex.method} {ex.path}")
        ex.json(404, error_body(f"fake LLM has no route {ex.method} {ex.path}"), {"x-should-retry": "false"})

    @staticmethod
    def _send(ex: Exchange, reply: Scripted | dict[str, Any]) -> None:
        status, headers, body = (200, {}, reply) if isinstance(reply, dict) else reply
        if isinstance(body, (dict, list)):
            ex.json(status, body, headers)
        else:
            ex.reply(status, str(body), headers, content_type="application/json")


def serve_llm() -> Iterator[FakeLLM]:
    """Body of a `fake_llm` fixture: a started `FakeLLM`, checked with `assert_done()` at teardown.

    @pytest.fixture
    def fake_llm() -> Iterator[FakeLLM]:
        yield from serve_llm()
    """
    with FakeLLM() as llm:
        yield llm
    llm.assert_done()
