"""Atomic file writes: a temp file in the same folder, fsync, then `os.replace`.

A reader therefore sees the old file or the new one, never half of either, even after a crash or
a full disk (the temp file is removed and the old file is left as it was).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` with a `schema` field first, atomically."""
    body = {"schema": SCHEMA_VERSION, **{k: v for k, v in payload.items() if k != "schema"}}
    atomic_write_text(path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
