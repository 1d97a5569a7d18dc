"""`log/qwen_search_history.log`: every LLM exchange, for a human asking "why did it pick that file?".

One line per event, each prefixed with the time and the model file it concerns: the task (whole,
never cut), each request (new messages only, the long repeated system prompt shortened to its first
line), the reply (with its reasoning cut short), each tool call with its arguments and full result,
rejected answers, and the decision with the time spent. Every line passes through `redact()` with the
run's secrets, so an API key the model or a server echoes cannot reach the file. The folder is created
on the first write, never at import.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from comfyfixer.errors import redact

log = logging.getLogger(__name__)

HISTORY_FILE = "qwen_search_history.log"
_MAX_FIELD = 4000


def _clip(text: str, limit: int = _MAX_FIELD) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more chars]"


class SearchHistory:
    """Appends redacted lines to the history file; a failing disk is logged once and otherwise ignored."""

    def __init__(self, log_dir: Path | None, secrets: tuple[str, ...] = ()) -> None:
        self.path = log_dir / HISTORY_FILE if log_dir is not None else None
        self._secrets = secrets
        self._lock = threading.Lock()
        self._broken = False

    def write(self, subject: str, kind: str, text: str, *, limit: int | None = _MAX_FIELD) -> None:
        """One line; `limit=None` writes `text` whole (a model's task is never cut)."""
        if self.path is None or self._broken:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        body = text if limit is None else _clip(text, limit)
        line = redact(f"{stamp} [{subject}] {kind}: {body}", self._secrets).replace("\n", "\\n")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError as exc:
                self._broken = True
                log.warning("cannot write the LLM history log %s: %s", self.path, exc)

    def event(self, subject: str, kind: str, payload: Any, *, limit: int | None = _MAX_FIELD) -> None:
        """Write `payload` as compact JSON (strings as they are)."""
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
        self.write(subject, kind, text, limit=limit)
