"""The LLM verification pass: validated verdicts, never overriding a failed deterministic check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfixer.agent import RetryPolicy, Reviewer, build_reviewer
from comfyfixer.agent.client import ChatClient
from comfyfixer.agent.history import HISTORY_FILE, SearchHistory
from comfyfixer.config import Settings
from comfyfixer.errors import LLMError
from comfyfixer.models import FileChecks
from tests.fakes.llm import FakeLLM, error_body, serve_llm

KEY = "sk-review-secret"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve_llm()


def _report(
    name: str, directory: str, ok: bool = True, reason: str = "", size: int = 335_304_388
) -> FileChecks:
    return FileChecks(
        name,
        directory,
        f"/models/{directory}/{name}",
        ok,
        reason,
        size=size,
        sha256="a" * 64,
        expected_sha256="a" * 64 if ok else "b" * 64,
        format="safetensors",
        source="huggingface",
        url=f"https://huggingface.co/x/y/resolve/main/{name}",
    )


BATCH = [
    _report("ae.safetensors", "vae"),
    _report("flux_vae.safetensors", "loras"),
    _report("broken.safetensors", "checkpoints", ok=False, reason="sha256 differs"),
]


@pytest.fixture
def reviewer(fake_llm: FakeLLM, tmp_path: Path) -> Iterator[Reviewer]:
    with fake_llm.client() as client:
        chat = ChatClient(client, "qwen3-8b", retry=RetryPolicy(2, 0.0, 0.0), secrets=(KEY,))
        yield Reviewer(chat, history=SearchHistory(tmp_path, (KEY,)), secrets=(KEY,))


def test_verdicts_are_validated_and_a_failed_check_stays_suspicious(
    fake_llm: FakeLLM, reviewer: Reviewer
) -> None:
    fake_llm.reply_json(
        {
            "verdicts": [
                {"id": "r1", "verdict": "ok", "reason": "a VAE in vae/"},
                {
                    "id": "r2",
                    "verdict": "Suspicious",
                    "check": "folder",
                    "expected": "vae",
                    "reason": "a VAE placed in loras/",
                },
                {"id": "r3", "verdict": "ok", "reason": "looks fine to me"},
            ]
        }
    )
    verdicts = reviewer.review(BATCH)
    assert [(v.name, v.verdict) for v in verdicts] == [
        ("ae.safetensors", "ok"),
        ("flux_vae.safetensors", "suspicious"),
        ("broken.safetensors", "suspicious"),  # the model said ok; the failed sha256 check wins
    ]
    assert verdicts[1].reason == "folder is loras, expected vae: a VAE placed in loras/"
    assert verdicts[2].reason.startswith("deterministic check failed: sha256 differs")
    sent = json.loads(fake_llm.chat_bodies[0]["messages"][1]["content"].split("\n", 1)[1])
    assert sent[1]["folder"] == "loras" and sent[2]["deterministic_ok"] is False
    assert sent[2]["expected_sha256"] == "b" * 64
    assert "tools" not in fake_llm.chat_bodies[0]


def test_invalid_json_is_retried_once_then_missing_opinions_default_to_ok(
    fake_llm: FakeLLM, reviewer: Reviewer, tmp_path: Path
) -> None:
    fake_llm.reply_text("<think>hmm</think>All good!")
    fake_llm.reply_text(
        f'```json\n{{"verdicts": [{{"name": "AE.safetensors", "verdict": "ok", "reason": "{KEY}"}}]}}\n```'
    )
    verdicts = reviewer.review(BATCH[:2])
    assert [v.verdict for v in verdicts] == ["ok", "ok"]
    assert verdicts[0].reason == "***"  # secrets never come back out
    assert "no LLM opinion" in verdicts[1].reason
    assert "Invalid answer" in fake_llm.chat_bodies[1]["messages"][-1]["content"]
    history = (tmp_path / HISTORY_FILE).read_text()
    assert "review of 2 file(s)" in history and KEY not in history


def test_a_model_that_never_answers_properly_is_an_llm_error(fake_llm: FakeLLM, reviewer: Reviewer) -> None:
    fake_llm.reply_json({"verdicts": [{"id": "r1", "verdict": "great"}]})
    fake_llm.reply_json({"verdicts": "none"})
    with pytest.raises(LLMError, match="not valid"):
        reviewer.review(BATCH[:1])


def test_endpoint_failure_raises_for_the_pipeline_to_skip_the_llm_part(
    fake_llm: FakeLLM, reviewer: Reviewer
) -> None:
    fake_llm.reply_error(503, error_body("overloaded", type_="server_error"), {"retry-after-ms": "10"})
    fake_llm.reply_error(503, error_body("overloaded", type_="server_error"), {"retry-after-ms": "10"})
    with pytest.raises(LLMError) as info:
        reviewer.review(BATCH[:1])
    assert info.value.status == 503


def test_empty_batch_asks_nothing(reviewer: Reviewer) -> None:
    assert reviewer.review([]) == []


def test_no_endpoint_means_no_reviewer() -> None:
    assert build_reviewer(Settings()) is None


@pytest.mark.parametrize(
    ("verdict", "why"),
    [
        ({"reason": "size 19271 is not the expected size of 19271"}, "names no check"),
        (
            {"check": "size", "expected": "19,271 bytes", "reason": "size 19271 is not 19271"},
            "is the file's own",
        ),
        ({"check": "folder", "reason": "wrong folder"}, "not the value it should have"),
        ({"check": "name", "expected": "loras/flux_vae.safetensors", "reason": "odd"}, "is the file's own"),
        ({"check": "sha256", "expected": "unknown", "reason": "hash looks off"}, "is not a sha256"),
        ({"check": "vibes", "expected": "better", "reason": "feels wrong"}, "names no check"),
    ],
)
def test_a_suspicion_without_a_concrete_differing_check_is_no_verdict(
    fake_llm: FakeLLM, reviewer: Reviewer, verdict: dict[str, str], why: str
) -> None:
    report = _report("flux_vae.safetensors", "loras", size=19271)
    fake_llm.reply_json({"verdicts": [{"id": "r1", "verdict": "suspicious", **verdict}]})
    [result] = reviewer.review([report])
    assert result.verdict == "no_verdict" and why in result.reason, result.reason
