"""The one table from error type to words, next step and exit code (`comfyfixer/cli/errors.py`)."""

from __future__ import annotations

import errno
import inspect

import pytest

from comfyfixer import errors
from comfyfixer.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    RULES,
    UsageError,
    explain,
    print_error,
)


def test_every_rule_is_reachable_subclass_first() -> None:
    # A rule listed after one of its bases would never be used.
    for i, rule in enumerate(RULES):
        for earlier in RULES[:i]:
            assert not issubclass(rule.kind, earlier.kind), f"{rule.kind} is shadowed by {earlier.kind}"


def test_every_error_the_core_defines_has_its_own_rule_or_a_base() -> None:
    kinds = [r.kind for r in RULES]
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.ComfyFixerError):
            rule = next(r for r in RULES if issubclass(cls, r.kind))
            assert rule.kind is not BaseException, cls
    assert errors.ComfyFixerError in kinds


@pytest.mark.parametrize(
    ("exc", "code", "step"),
    [
        (errors.WorkflowPathError("/w/x.json", "missing"), EXIT_USAGE, "Pass workflow files"),
        (errors.WorkflowPathError("/w", "unreadable"), EXIT_USAGE, "Check its permissions."),
        (errors.ComfyUIRootError("/c", "ComfyUI folder /c does not exist"), EXIT_USAGE, "--comfyui"),
        (errors.ComfyUIRootError("/c/models", "no models", models_dir_given=True), EXIT_USAGE, "parent, /c."),
        (errors.ExtraPathsError("/c/e.yaml", "bad", line=3), EXIT_USAGE, "Fix that line"),
        (errors.InputError("cannot list /c/models"), EXIT_USAGE, ""),
        (
            errors.SettingError("COMFYFIXER_LLM_TIMEOUT", "x", "a number"),
            EXIT_USAGE,
            "Set COMFYFIXER_LLM_TIMEOUT",
        ),
        (errors.StateLocked("/o/s.json", "locked", lock_path="/o/.lock"), EXIT_FAILED, "remove /o/.lock"),
        (errors.StateTooNew("/o/s.json", schema=9, supported=2), EXIT_FAILED, "Upgrade comfyfixer"),
        (errors.StateDamaged("/o/s.json", "is not a JSON object"), EXIT_FAILED, "Move /o/s.json aside"),
        (errors.LLMUnavailable("refused", status=401), EXIT_FAILED, "COMFYFIXER_LLM_API_KEY"),
        (errors.LLMUnavailable("cannot connect", status=None), EXIT_FAILED, "is the LLM server running?"),
        (errors.LLMError("the server answered with no choices"), EXIT_FAILED, ""),
        (errors.UnsafePathError("../x", "the name contains a '..' component"), EXIT_FAILED, ""),
        (UsageError("no root", next_step="Pass --comfyui DIR"), EXIT_USAGE, "Pass --comfyui DIR"),
        (OSError(errno.ENOSPC, "No space left on device", "/m/x"), EXIT_FAILED, "The disk is full"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, ""),
        (RuntimeError("boom"), EXIT_FAILED, "COMFYFIXER_DEBUG=1"),
    ],
)
def test_each_error_gets_its_words_and_exit_code(exc: BaseException, code: int, step: str) -> None:
    told = explain(exc)
    assert told.exit_code == code
    assert (step in told.next_step) if step else told.next_step == ""
    assert told.message


def test_messages_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    exc = errors.ComfyFixerError("fetch https://h/x?token=hf_secretvalue failed")
    assert print_error(exc) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "hf_secretvalue" not in err and err.startswith("error: ")
    told = explain(RuntimeError("Authorization: Bearer abcdef123456"))
    assert "abcdef123456" not in told.message and told.message.startswith("unexpected RuntimeError")
