"""Errors into words: one table from error type to message, next step and exit code.

The core raises errors that carry data (`comfyfixer.errors`); this module alone decides what the user
reads and which exit code the process ends with. `RULES` is searched in order and the first type the
error is an instance of wins, so a subclass is listed before its base (a test keeps it that way).
Tracebacks only with COMFYFIXER_DEBUG=1.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfyfixer.errors import (
    ComfyFixerError,
    ComfyUIRootError,
    ExtraPathsError,
    InputError,
    LLMModelMissing,
    LLMNotConfigured,
    LLMUnavailable,
    SettingError,
    StateDamaged,
    StateLocked,
    StateTooNew,
    WorkflowPathError,
    redact,
)

if TYPE_CHECKING:
    from comfyfixer.agent.doctor import EndpointStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

ROOT_STEP = (
    "Pass --comfyui with the ComfyUI folder (the one holding main.py and models/), or set COMFYUI_PATH."
)
YAML_STEP = "Fix that line of the extra model paths file (see ComfyUI's extra_model_paths.yaml.example)."
LLM_SETUP_STEP = (
    "set COMFYFIXER_LLM_BASE_URL (e.g. http://localhost:11434/v1 for Ollama) and COMFYFIXER_LLM_MODEL "
    "to let the Qwen agent search for what the direct sources cannot find"
)


class UsageError(ComfyFixerError):
    """The command line or the environment is wrong; raised by the commands themselves (exit 2)."""

    def __init__(self, message: str, *, next_step: str = "") -> None:
        super().__init__(message)
        self.next_step = next_step


@dataclass(frozen=True)
class Explanation:
    """What the user is told about an error, and the exit code it stands for."""

    message: str
    next_step: str
    exit_code: int


@dataclass(frozen=True)
class Rule:
    """How one error type is told: its message, the next step (may be empty) and the exit code."""

    kind: type[BaseException]
    exit_code: int
    next_step: Callable[[Any], str] = lambda exc: ""
    message: Callable[[Any], str] = lambda exc: redact(str(exc))


def _llm_step(exc: LLMUnavailable) -> str:
    if exc.status in (401, 403):
        return "check COMFYFIXER_LLM_API_KEY"
    if exc.status == 404:
        return "check COMFYFIXER_LLM_MODEL and COMFYFIXER_LLM_BASE_URL (is the model pulled/loaded?)"
    if exc.status == 429:
        return "the endpoint is rate limiting or out of quota; try again later"
    if exc.status is None:
        return "is the LLM server running? check COMFYFIXER_LLM_BASE_URL"
    return ""


def _root_step(exc: ComfyUIRootError) -> str:
    if exc.models_dir_given:
        return f"That looks like the models folder itself: pass its parent, {os.path.dirname(exc.path)}."
    return ROOT_STEP


def _os_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _os_step(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "The disk is full: free some space and run the same command again."
    return ""


RULES: tuple[Rule, ...] = (
    Rule(
        KeyboardInterrupt,
        EXIT_INTERRUPTED,
        message=lambda exc: "Interrupted. Partial downloads were kept; run the same command again to resume.",
    ),
    Rule(UsageError, EXIT_USAGE, lambda exc: exc.next_step),
    Rule(
        WorkflowPathError,
        EXIT_USAGE,
        lambda exc: (
            "Pass workflow files (.json, .png, .webp) or folders that contain them."
            if exc.problem == "missing"
            else "Check its permissions."
        ),
    ),
    Rule(ComfyUIRootError, EXIT_USAGE, _root_step),
    Rule(ExtraPathsError, EXIT_USAGE, lambda exc: YAML_STEP),
    Rule(SettingError, EXIT_USAGE, lambda exc: f"Set {exc.name} to {exc.expected}, or unset it."),
    Rule(InputError, EXIT_USAGE),
    Rule(
        StateLocked,
        EXIT_FAILED,
        lambda exc: f"Wait for the other run to finish, or remove {exc.lock_path} if no run is active.",
    ),
    Rule(StateTooNew, EXIT_FAILED, lambda exc: "Upgrade comfyfixer, or use another --output-dir."),
    Rule(StateDamaged, EXIT_FAILED, lambda exc: f"Move {exc.path} aside and run again."),
    Rule(LLMNotConfigured, EXIT_FAILED, lambda exc: "set COMFYFIXER_LLM_BASE_URL"),
    Rule(LLMModelMissing, EXIT_FAILED, lambda exc: "set COMFYFIXER_LLM_MODEL"),
    Rule(LLMUnavailable, EXIT_FAILED, _llm_step),
    Rule(ComfyFixerError, EXIT_FAILED),
    Rule(OSError, EXIT_FAILED, _os_step, _os_message),
    Rule(
        BaseException,
        EXIT_FAILED,
        lambda exc: "Set COMFYFIXER_DEBUG=1 to see the traceback, and please report it.",
        lambda exc: f"unexpected {type(exc).__name__}: {redact(str(exc))}",
    ),
)


def explain(exc: BaseException) -> Explanation:
    """The words and exit code for `exc`: the first rule whose type it is an instance of."""
    rule = next(r for r in RULES if isinstance(exc, r.kind))
    return Explanation(rule.message(exc), rule.next_step(exc), rule.exit_code)


def endpoint_next_step(status: EndpointStatus) -> str:
    """What `doctor` tells the user to do about the LLM endpoint ("" when it works)."""
    if not status.configured:
        return LLM_SETUP_STEP
    if status.error is None:
        return ""
    step = explain(status.error).next_step
    if not step and status.failed_at == "listing":
        return "is the server running?"
    return step


def debug_enabled() -> bool:
    return os.environ.get("COMFYFIXER_DEBUG", "") not in ("", "0")


def print_debug_traceback(exc: BaseException) -> None:
    """`COMFYFIXER_DEBUG=1`: the traceback on stderr, with every token of the environment removed."""
    import traceback

    from comfyfixer.config import env_secrets

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(redact(text, env_secrets(os.environ)))


def install_redacting_hooks() -> None:
    """Tracebacks Python prints by itself (a dying thread, an error outside the CLI's edge): redacted too."""
    import threading

    from comfyfixer.config import env_secrets

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "?"
        sys.stderr.write(f"error in thread {name}:\n")
        if debug_enabled():
            print_debug_traceback(args.exc_value)
        else:
            sys.stderr.write(f"  {redact(str(args.exc_value), env_secrets(os.environ))}\n")

    def main_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        print_debug_traceback(value)

    threading.excepthook = thread_hook
    sys.excepthook = main_hook


def print_error(exc: BaseException) -> int:
    """Write `exc` to stderr as a message and a next step; return the exit code it stands for."""
    told = explain(exc)
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write(f"{told.message}\n")
    else:
        sys.stderr.write(f"error: {told.message}\n")
    if told.next_step:
        sys.stderr.write(f"  {told.next_step}\n")
    return told.exit_code
