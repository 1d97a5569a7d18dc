"""Choosing among exact-name candidates, or declaring the choice impossible.

Candidates are grouped by identity (sha256 when published, else URL): several URLs serving the same
bytes are one file. The file whose best copy ranks strictly highest wins, ranking by (trust, path
names the ComfyUI folder, repo name relevant to the file name — counted for trusted publishers
only, so a look-alike repo name can never win). Trust is 2 for a known publisher (or the workflow's
own link), 1 for an established source (a popular repo, a Civitai listing), 0 for an unknown
uploader. Several files and nothing decides → ambiguous. A lone file from an unknown uploader is not
taken either: re-uploads under the same name are exactly how wrong files spread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from comfyfixer.folders import ALIASES, canonical
from comfyfixer.models import Candidate

Score = tuple[int, int, int]
TRUSTED, ESTABLISHED, UNKNOWN = 2, 1, 0


def default_trust(c: Candidate) -> int:
    return TRUSTED if c.authoritative else UNKNOWN


@dataclass(slots=True)
class Decision:
    winner: Candidate | None
    groups: list[list[Candidate]] = field(default_factory=list)
    reason: str = ""

    @property
    def ambiguous(self) -> bool:
        """No file chosen although there are candidates (several files, or only an unknown uploader's)."""
        return self.winner is None and bool(self.groups)


def identity(c: Candidate) -> str:
    return f"sha256:{c.sha256.lower()}" if c.sha256 else f"url:{c.url}"


def folder_matches(c: Candidate, directory: str | None) -> bool:
    """Whether the candidate's path (or declared folder) names the ComfyUI folder the model belongs in."""
    if directory is None:
        return False
    key = canonical(directory)
    names = {key} | {alias for alias, target in ALIASES.items() if target == key}
    if c.directory_hint and canonical(c.directory_hint) == key:
        return True
    path = c.path_in_repo or unquote(urlsplit(c.url).path)
    segments = {s.lower() for s in path.split("/")[:-1]}
    return any(n.lower() in segments for n in names)


def decide(
    candidates: Sequence[Candidate],
    directory: str | None,
    *,
    expected_sha256: str | None = None,
    relevance: Callable[[Candidate], int] | None = None,
    trust: Callable[[Candidate], int] = default_trust,
    generic: bool = False,
) -> Decision:
    """Pick the one file `candidates` agree on, or explain why not (none, or ambiguous groups).

    For a `generic` name (`ae.safetensors`) a path naming the folder is no evidence (every publisher
    files it under vae/): among equally trusted files only `relevance` — the workflow's context —
    may choose, and it must single one out."""
    pool = list(candidates)
    if expected_sha256:
        wanted = expected_sha256.lower()
        matching = [c for c in pool if c.sha256 and c.sha256.lower() == wanted]
        if matching:
            pool = matching
        else:
            # Copies without a published hash stay possible; the download is checked against the hash.
            pool = [dataclasses.replace(c, sha256=wanted) for c in pool if not c.sha256]
            if not pool:
                return Decision(None, [], "no candidate has the sha256 the workflow gives")
    if not pool:
        return Decision(None, [], "no candidate")

    def score(c: Candidate) -> Score:
        level = trust(c)
        rel = relevance(c) if (relevance is not None and level >= TRUSTED) else 0
        if generic:
            return (level, rel, 0)
        return (level, 1 if folder_matches(c, directory) else 0, rel)

    by_identity: dict[str, list[Candidate]] = {}
    for c in pool:
        by_identity.setdefault(identity(c), []).append(c)
    groups = [sorted(g, key=score, reverse=True) for g in by_identity.values()]
    groups.sort(key=lambda g: score(g[0]), reverse=True)
    best = score(groups[0][0])
    if len(groups) > 1:
        runner_up = score(groups[1][0])
        if best <= runner_up:
            return Decision(None, groups, f"{len(groups)} different files share the name and nothing decides")
        why = (
            ("publisher trust", "the workflow's other models", "")
            if generic
            else ("publisher trust", "path matches the folder", "repo named after the model")
        )
        decisive = next(i for i in range(3) if best[i] != runner_up[i])
        reason = f"{len(groups)} different files; chosen by {why[decisive]}"
    else:
        reason = "one file"
    if best[0] <= UNKNOWN and not expected_sha256:
        return Decision(None, groups[:1], "only a copy from an unknown uploader: not taken without a hash")
    return Decision(groups[0][0], groups, reason)
