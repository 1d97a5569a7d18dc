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
    _libraries_to(handler)
    return path, handler


# Libraries whose own messages ("Retrying in 8s [Retry 3/5]") belong in the run log, not on the console.
LIBRARY_LOGGERS = ("huggingface_hub", "openai")


def _libraries_to(handler: logging.Handler) -> None:
    import huggingface_hub.utils.logging  # noqa: F401 - it adds its console handler on import: import, then remove

    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for existing in list(library.handlers):
            if type(existing) is logging.StreamHandler:
                library.removeHandler(existing)
        library.addHandler(handler)
        library.propagate = False
        if library.level == logging.NOTSET or library.level > logging.INFO:
            library.setLevel(logging.INFO)


def close_run_log(handler: logging.Handler) -> None:
    logging.getLogger("comfyfixer").removeHandler(handler)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
