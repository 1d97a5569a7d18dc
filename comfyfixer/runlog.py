"""The run log: `log/run_<timestamp>.log`, fed by the standard `logging` tree under `comfyfixer`.

Core modules log with `logging.getLogger(__name__)`; the CLI calls `open_run_log` once. Every
record passes through a filter that removes tokens, so a secret cannot reach the file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from comfyfixer.errors import redact


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self._secrets)
        record.args = None
        return True


def open_run_log(
    log_dir: Path, secrets: tuple[str, ...], *, prefix: str = "run"
) -> tuple[Path, logging.Handler]:
    """Attach a file handler for this run; returns the log path and the handler (to close at the end)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = log_dir / f"{prefix}_{stamp}.log"
    n = 1
    while path.exists():
        n += 1
        path = log_dir / f"{prefix}_{stamp}-{n}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger("comfyfixer")
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    return path, handler


def close_run_log(handler: logging.Handler) -> None:
    logging.getLogger("comfyfixer").removeHandler(handler)
    handler.close()
