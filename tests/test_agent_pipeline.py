"""The real Reviewer inside the real loop: LLM passes after 6 and 12 downloads and for the remainder.

Reuses the loop harness of `tests/test_pipeline.py` (real scripts against the loopback file server);
only the reviewer differs: ours, talking to the scripted LLM fake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.agent import RetryPolicy, Reviewer
from comfyfixer.agent.client import ChatClient
from tests.fakes.files import FileServer
from tests.fakes.llm import FakeLLM, completion, error_body, serve_llm
from tests.test_pipeline import _run, _setup


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from serve_llm()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as fs:
        yield fs
    assert not fs.errors


def _verdicts(body: dict[str, Any]) -> dict[str, Any]:
    """Answer for whatever files the request lists; names containing 'odd' are suspicious."""
    files = json.loads(body["messages"][-1]["content"].split("\n", 1)[1])
    verdicts = [
        {"id": f["id"], "verdict": "ok", "reason": "checked"}
        if "odd" not in f["name"]
        else {
            "id": f["id"],
            "verdict": "suspicious",
            "check": "name",
            "expected": "m.safetensors",
            "reason": "x",
        }
        for f in files
    ]
    return completion({"content": json.dumps({"verdicts": verdicts})})


def test_llm_pass_runs_at_6_and_12_downloads_and_for_the_remainder(
    tmp_path: Path, server: FileServer, fake_llm: FakeLLM
) -> None:
    for _ in range(3):
        fake_llm.queue_reply(_verdicts)
    names = [f"m{i:02d}.safetensors" for i in range(13)] + ["odd.safetensors"]
    with fake_llm.client() as client:
        reviewer = Reviewer(ChatClient(client, "qwen3-8b", retry=RetryPolicy(1, 0.0, 0.0)))
        models, stages, _, _ = _setup(tmp_path, server, names, reviewer=reviewer)  # type: ignore[arg-type]
        result = _run(tmp_path, stages, models, jobs=3)
    sizes = [len(json.loads(b["messages"][-1]["content"].split("\n", 1)[1])) for b in fake_llm.chat_bodies]
    assert sizes == [6, 6, 2]
    assert [len(v.models) for v in result.verifications] == [6, 6, 2]
    assert all(v.llm for v in result.verifications)
    odd = next(r for r in result.results if r.name == "odd.safetensors")
    assert odd.outcome == "downloaded" and "suspicious" in odd.reason


def test_an_llm_failure_leaves_the_pass_deterministic(
    tmp_path: Path, server: FileServer, fake_llm: FakeLLM
) -> None:
    fake_llm.reply_error(500, error_body("down", type_="server_error"))
    names = [f"m{i}.safetensors" for i in range(2)]
    with fake_llm.client() as client:
        reviewer = Reviewer(ChatClient(client, "qwen3-8b", retry=RetryPolicy(1, 0.0, 0.0)))
        models, stages, _, _ = _setup(tmp_path, server, names, reviewer=reviewer)  # type: ignore[arg-type]
        result = _run(tmp_path, stages, models)
    [batch] = result.verifications
    assert not batch.llm and "HTTP 500" in batch.reason
    assert all(r.outcome == "downloaded" for r in result.results)
