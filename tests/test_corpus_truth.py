"""The parser measured against the labelled corpus in ../shared (recall, precision, folder accuracy).

Per workflow: predicted = normalised names of every reference; truth = names in truth.jsonl; names in
uncertain.jsonl count neither way. Directory accuracy is the share of matched names whose folder (the
non-empty folders the parser gave that name) is exactly truth's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import pytest

from comfyfixer.models import WorkflowResult, normalise_name
from comfyfixer.workflow import parse_file

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus" / "workflows"
TRUTH = CORPUS / "truth.jsonl"
UNCERTAIN = CORPUS / "uncertain.jsonl"
TARGET = 0.99

needs_corpus = pytest.mark.skipif(
    not TRUTH.is_file(), reason=f"labelled corpus not found at {CORPUS} (../shared beside the repo)"
)


@dataclass
class Labels:
    truth: dict[str, dict[str, dict[str, object]]] = field(default_factory=lambda: defaultdict(dict))
    uncertain: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


@lru_cache(maxsize=1)
def labels() -> Labels:
    out = Labels()
    for line in TRUTH.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.truth[row["workflow"]][normalise_name(row["name"])] = row
    if UNCERTAIN.is_file():
        for line in UNCERTAIN.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out.uncertain[row["workflow"]].add(normalise_name(row["value"]))
    return out


@cache
def parsed(name: str) -> WorkflowResult:
    return parse_file(CORPUS / name)


def _workflows() -> list[str]:
    return sorted(labels().truth) if TRUTH.is_file() else []


def _corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.glob("*.json")) if CORPUS.is_dir() else []


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    dir_ok: int = 0
    misses: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    wrong_dirs: list[str] = field(default_factory=list)


def score(workflow: str, result: WorkflowResult, into: Score) -> None:
    truth = labels().truth[workflow]
    neutral = labels().uncertain[workflow]
    predicted: dict[str, set[str | None]] = defaultdict(set)
    for ref in result.references:
        predicted[normalise_name(ref.name)].add(ref.directory)
    for name, dirs in predicted.items():
        if name in truth:
            into.tp += 1
            given = {d for d in dirs if d is not None}
            if given == {truth[name]["directory"]}:
                into.dir_ok += 1
            else:
                into.wrong_dirs.append(
                    f"{workflow}: {name} -> {sorted(map(str, dirs))}, truth {truth[name]['directory']}"
                )
        elif name not in neutral:
            into.fp += 1
            into.extras.append(f"{workflow}: {name}")
    for name in truth:
        if name not in predicted:
            into.fn += 1
            into.misses.append(f"{workflow}: {name}")


@needs_corpus
def test_corpus_recall_precision_directory(figures: list[str]) -> None:
    total = Score()
    for workflow in _workflows():
        score(workflow, parsed(workflow), total)
    recall = total.tp / (total.tp + total.fn)
    precision = total.tp / (total.tp + total.fp)
    directory = total.dir_ok / total.tp
    figures.append(
        f"parser recall    {recall:.2%} ({total.tp}/{total.tp + total.fn}) over {len(_workflows())} workflows"
    )
    figures.append(f"parser precision {precision:.2%} ({total.tp}/{total.tp + total.fp})")
    figures.append(f"parser directory {directory:.2%} ({total.dir_ok}/{total.tp})")
    assert recall >= TARGET, "missed:\n" + "\n".join(total.misses)
    assert precision >= TARGET, "not in truth:\n" + "\n".join(total.extras)
    assert directory >= TARGET, "wrong folder:\n" + "\n".join(total.wrong_dirs)


@needs_corpus
def test_corpus_hint_urls_match_truth(figures: list[str]) -> None:
    """Where truth has a download URL (from the file's own metadata), the matching reference carries it."""
    agree = total = 0
    missing = []
    for workflow in _workflows():
        result = parsed(workflow)
        for name, row in labels().truth[workflow].items():
            if not row.get("url"):
                continue
            total += 1
            urls = {h.url for r in result.references if normalise_name(r.name) == name for h in r.hints}
            if row["url"] in urls:
                agree += 1
            else:
                missing.append(f"{workflow}: {name}")
    figures.append(f"parser hint URLs {agree / total:.2%} ({agree}/{total}) of truth URLs attached")
    assert agree / total >= TARGET, "\n".join(missing)


@needs_corpus
@pytest.mark.parametrize("workflow", _workflows())
def test_every_truth_name_found(workflow: str) -> None:
    result = parsed(workflow)
    assert result.error is None
    found = {normalise_name(r.name) for r in result.references}
    missing = sorted(set(labels().truth[workflow]) - found)
    assert not missing, f"{workflow}: missing {missing}"


@needs_corpus
@pytest.mark.parametrize("name", _corpus_files())
def test_corpus_file_parses_cleanly(name: str) -> None:
    """Every real file reads without error, and every reference is well formed."""
    result = parsed(name)
    assert result.error is None, result.error
    assert result.format in {"ui", "api", "api-wrapped"}
    keys = [(r.node_id, normalise_name(r.name)) for r in result.references]
    assert len(keys) == len(set(keys)), "same (node, name) reported twice"
    for ref in result.references:
        assert ref.workflow == str(CORPUS / name)
        assert ref.name.strip()
        assert ref.status == "unknown" and ref.local_path is None
        if ref.strategy in ("table", "names"):
            assert ref.directory is not None
