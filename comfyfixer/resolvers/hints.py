"""Source 1: what the workflow itself says about where a file lives.

A `properties.models` / top-level `models` record pairs a name with a URL on purpose, so its URL is
taken even when the remote file is named differently (ComfyUI's own missing-models dialog does the
same). A link found in a note is only a hint: it counts when its file name equals the reference.
Links to a Hub repo or a Civitai model page are returned as places to look, not as files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from comfyfixer.config import Settings
from comfyfixer.models import Candidate, MissingModel
from comfyfixer.resolvers.names import accepts
from comfyfixer.resolvers.urls import LinkTarget, classify, clean_url

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
EXPLICIT_SOURCES = frozenset({"properties.models", "top-level models"})


@dataclass(slots=True)
class HintPlan:
    """The workflow's hints for one model, sorted into direct candidates and places to look."""

    candidates: list[tuple[Candidate, bool]] = field(default_factory=list)  # (candidate, check_name)
    links: list[LinkTarget] = field(default_factory=list)  # hf_repo / civitai_model pages to search
    sha256: str | None = None  # the workflow's expected hash, when it gave a sha256
    rejected: list[str] = field(default_factory=list)


def expected_sha256(model: MissingModel) -> str | None:
    for hint in model.hints:
        if (
            hint.hash
            and _SHA256.match(hint.hash.strip())
            and (hint.hash_type or "sha256").lower() == "sha256"
        ):
            return hint.hash.strip().lower()
    return None


def plan_hints(model: MissingModel, settings: Settings) -> HintPlan:
    plan = HintPlan(sha256=expected_sha256(model))
    seen: set[str] = set()
    for hint in model.hints:
        if not hint.url:
            continue
        url = clean_url(hint.url, settings)
        if url is None:
            plan.rejected.append(f"hint {hint.url!r}: not an http(s) URL")
            continue
        if url in seen:
            continue
        seen.add(url)
        target = classify(url, settings)
        explicit = hint.source in EXPLICIT_SOURCES
        if target.kind in ("hf_repo", "civitai_model"):
            plan.links.append(target)
            continue
        remote = target.file_name
        if target.kind == "civitai_download":
            remote = None  # the name is only known from Content-Disposition; the validator checks it
        if not explicit and remote is not None and not accepts(model.file_name, remote):
            plan.rejected.append(f"note link {url}: names {remote!r}, not {model.file_name!r}")
            continue
        note = f"workflow {hint.source}"
        if explicit and remote is not None and not accepts(model.file_name, remote):
            note += f": the workflow pairs {model.file_name!r} with the remote file {remote!r}"
        candidate = Candidate(
            url=url,
            filename=remote or model.file_name,
            source="hint",
            sha256=plan.sha256,
            repo=target.repo
            or (f"civitai:?/{target.version_id}" if target.kind == "civitai_download" else None),
            path_in_repo=target.path,
            directory_hint=hint.directory,
            auth="huggingface" if target.kind == "hf_file" else "civitai" if target.version_id else None,
            note=note,
        )
        # Only an explicit pairing may serve a file under another name; a note link must match.
        plan.candidates.append((candidate, not explicit))
    return plan
