"""The two HTTP stacks a run uses — httpx + httpcore (our sources), httpx2 + httpcore2 (huggingface_hub's
and openai's clients) — each with its own subclasses of `BoundExceeded` and `HostDown`, so that a broken
bound is that stack's `TransportError` (and none of its retried timeout/network errors)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from comfyfixer.transport import BoundExceeded, HostDown


class Stack:
    """One HTTP stack (httpx + httpcore, or httpx2 + httpcore2) and its bound exception types."""

    def __init__(self, http: ModuleType, core: ModuleType) -> None:
        self.http = http
        self.core = core
        self.bound: type[BoundExceeded] = type(
            "BoundExceeded", (BoundExceeded, http.TransportError), {"__module__": __name__}
        )
        self.down: type[BoundExceeded] = type("HostDown", (HostDown, self.bound), {"__module__": __name__})
        # httpx checks that a transport's stream is its own SyncByteStream.
        self.byte_stream: type[Any] = type(
            "BoundedByteStream",
            (http.SyncByteStream,),
            {
                "__init__": lambda self, body: setattr(self, "body", body),
                "__iter__": lambda self: iter(self.body),
                "close": lambda self: self.body.close(),
                "__module__": __name__,
            },
        )

    def error(self, host: str, message: str, *, down: bool = False) -> BoundExceeded:
        cls = self.down if down else self.bound
        exc = cls.__new__(cls)
        BoundExceeded.__init__(exc, host, message)
        return exc


_STACKS: dict[str, Stack] = {}


def stack_of(name: str) -> Stack:
    if name not in _STACKS:
        import importlib

        core_name = "httpcore2" if name == "httpx2" else "httpcore"
        _STACKS[name] = Stack(importlib.import_module(name), importlib.import_module(core_name))
    return _STACKS[name]

