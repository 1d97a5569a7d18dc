"""The measure: resolve every distinct corpus model in a fake world (URLs stripped) and score it.

Each model is asked for as the scan plans it: with the other models its workflows load as context.

The world (tests/fakes/world.py) hosts each model where it truly lives plus look-alike decoys.
Right = the chosen file's sha256 is the expected one, or its URL is the one truth.jsonl gives for
that model. Wrongly resolved must be exactly 0; the figures go to the `figures` summary (conftest).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from comfyfixer.http import build_client
from comfyfixer.models import MissingModel, Reference, WorkflowResult, normalise_name
from comfyfixer.resolvers.catalogue import VerifiedCatalogue
from comfyfixer.resolvers.finder import Finder
from comfyfixer.retry import RetryPolicy
from comfyfixer.scan import attach_context
from tests.fakes.world import World, start_world

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FAST = RetryPolicy(attempts=3, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)


def test_resolution_measure(
    hf_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: list[str]
) -> None:
    truth = SHARED / "corpus" / "workflows" / "truth.jsonl"
    if not truth.is_file():
        pytest.skip(f"shared corpus not found at {truth}")
    from huggingface_hub import HfApi

    names: dict[tuple[str | None, str], str] = {}
    truth_urls: dict[tuple[str | None, str], set[str]] = {}
    by_workflow: dict[str, list[str]] = {}
    workflows_of: dict[tuple[str | None, str], list[str]] = {}
    for line in truth.read_text().splitlines():
        row = json.loads(line)
        key = (row["directory"], normalise_name(row["name"]).lower())
        names.setdefault(key, row["name"])  # the name as the workflow writes it (case matters to search)
        if row["url"]:
            truth_urls.setdefault(key, set()).add(row["url"])
        by_workflow.setdefault(row["workflow"], []).append(row["name"])
        workflows_of.setdefault(key, []).append(row["workflow"])

    def planned(key: tuple[str | None, str]) -> MissingModel:
        """The model as the scan plans it: its name, folder, workflows and their other models."""
        model = MissingModel(name=names.get(key, key[1]), directory=key[0])
        model.workflows = [str(w) for w in dict.fromkeys(workflows_of.get(key, []))]
        attach_context([model], [WorkflowResult(path=w, references=_refs(w)) for w in model.workflows])
        return model

    def _refs(workflow: str) -> list[Reference]:
        return [Reference(workflow=workflow, name=n, directory=None) for n in by_workflow.get(workflow, [])]

    world = World.from_corpus(SHARED)
    with start_world(world) as ep:
        settings = ep.settings()
        api = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token)
        finder = Finder(
            settings,
            http=build_client(),
            hf_api=api,
            catalogue_cache=tmp_path / "cache",
            verified=VerifiedCatalogue(settings, None),
            policy=FAST,
        )
        chosen: dict[tuple[str | None, str], str | None] = {}
        outcomes: Counter[str] = Counter()
        with finder:
            for key in sorted(world.expected, key=lambda k: (k[0] or "", k[1])):
                resolution = finder.find(planned(key))
                outcomes[resolution.outcome] += 1
                c = resolution.candidate
                sha = c.sha256 if c else None
                expected = world.expected[key]
                hinted = {ep.rewrite(u).split("?", 1)[0] for u in truth_urls.get(key, ())}
                if c is not None and expected is not None and c.url.split("?", 1)[0] in hinted:
                    sha = expected.sha256  # the very URL the workflow names for this model
                chosen[key] = sha or ("no-sha256" if c else None)
            average = finder.counter.average_per_model
    score = world.score(chosen)
    total = len(chosen)
    existing = total - len(score.correct_not_found) - sum(1 for k in score.wrong if world.expected[k] is None)

    def share(n: int, of: int) -> str:
        return f"{n}/{of} ({100 * n / of:.1f}%)" if of else "0/0"

    figures.extend(
        [
            f"resolution measure: {total} distinct corpus models, URLs stripped, fake world with decoys",
            f"  resolved to the right file : {share(len(score.right), existing)} of those online",
            f"  WRONGLY resolved           : {share(len(score.wrong), total)}",
            f"  unresolved (exist online)  : {share(len(score.unresolved), existing)}",
            f"  correctly not found        : {len(score.correct_not_found)}",
            f"  outcomes                   : {dict(outcomes)}",
            f"  API requests per model     : {average:.2f}",
        ],
    )
    assert score.wrong == [], f"wrong files chosen for {score.wrong}"
    assert not score.unknown
    assert len(score.right) >= 0.85 * existing
