"""The plain data every stage passes to the next: references, scan results, candidates, resolutions.

Plain dataclasses, not pydantic models, because the scan path creates tens of thousands of them and
must start fast; pydantic is used only where untrusted data is validated (LLM answers, state files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["present", "misplaced", "missing", "unknown"]
Outcome = Literal[
    "downloaded",
    "already_present",
    "planned",
    "ambiguous",
    "not_found",
    "source_error",
    "download_failed",
    "verify_failed",
    "skipped",
]
SearchOutcome = Literal["found", "ambiguous", "not_found", "source_error"]
Auth = Literal["huggingface", "civitai"]  # whose token a download may need


def normalise_name(name: str) -> str:
    """The comparison form of a model name: forward slashes, no leading `./` or `/`."""
    out = name.replace("\\", "/").strip()
    while out.startswith("./"):
        out = out[2:]
    return out.lstrip("/")


def base_name(name: str) -> str:
    return normalise_name(name).rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Hint:
    """Where a workflow says a file can be downloaded from."""

    url: str | None
    hash: str | None = None
    hash_type: str | None = None
    directory: str | None = None
    source: str = "properties.models"  # properties.models | top-level models | note


class _NamedModel:
    """What a reference and a planned model share: a name in a folder, and the workflow's download hints."""

    __slots__ = ()
    name: str
    directory: str | None
    hints: list[Hint]

    @property
    def key(self) -> tuple[str | None, str]:
        """What makes two references the same model: folder and normalised name."""
        return (self.directory, normalise_name(self.name).lower())

    @property
    def url(self) -> str | None:
        return next((h.url for h in self.hints if h.url), None)

    @property
    def hash(self) -> str | None:
        return next((h.hash for h in self.hints if h.hash), None)


@dataclass(slots=True)
class Reference(_NamedModel):
    """One model file named by one node (or text, or metadata) of one workflow."""

    workflow: str
    name: str  # exactly as the workflow holds it (sub-folders and back-slashes kept)
    directory: str | None  # canonical ComfyUI folder key, None when the node is unknown
    node_id: str | None = None
    node_type: str | None = None
    input_name: str | None = None
    bypassed: bool = False
    strategy: str = "table"  # table | names | heuristic | text | properties.models | top-level models
    folder_guessed: bool = False
    # Why the folder is what it is when no loader table row gave it: the evidence, in words.
    folder_evidence: str | None = None
    hints: list[Hint] = field(default_factory=list)
    status: Status = "unknown"
    local_path: str | None = None  # where it was found (present) or where a copy sits (misplaced)


@dataclass(frozen=True, slots=True)
class UnusedHint:
    """A `models` / `properties.models` entry that lent nothing, and why (shown, never planned)."""

    name: str
    directory: str | None
    url: str | None
    source: str
    reason: str


@dataclass(slots=True)
class WorkflowResult:
    """What one workflow file yielded: its format and references, or a one-line reason it was not read."""

    path: str
    format: str | None = None  # ui | api | api-wrapped | png:ui | webp:api ...
    error: str | None = None
    references: list[Reference] = field(default_factory=list)
    unknown_nodes: list[str] = field(default_factory=list)
    # Names with no file extension (prompt `embedding:` / `<lora:>` tags, Lora-Manager lists, folder-type
    # models): reported, but not planned for download — no source can match them to one exact file.
    text_references: list[Reference] = field(default_factory=list)
    unused_hints: list[UnusedHint] = field(default_factory=list)


@dataclass(slots=True)
class MissingModel(_NamedModel):
    """A de-duplicated model to fetch: one folder + name, needed by one or more workflows."""

    name: str
    directory: str | None
    workflows: list[str] = field(default_factory=list)
    node_types: list[str] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    bypassed_only: bool = False
    # The other model files its workflows load: evidence of which publisher a generic name
    # (`ae.safetensors` beside `flux1-dev.safetensors`) or an oddly named repo belongs to.
    context: list[str] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return base_name(self.name)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file some source says is the one asked for, with what that source publishes about it."""

    url: str
    filename: str
    source: str  # hint | catalogue | verified | huggingface | civitai | llm
    sha256: str | None = None
    size: int | None = None
    repo: str | None = None  # HF repo id, or "civitai:<modelId>/<versionId>"
    path_in_repo: str | None = None
    directory_hint: str | None = None
    authoritative: bool = False
    auth: Auth | None = None  # which token may be needed
    pickle_scan: str | None = None
    virus_scan: str | None = None
    note: str = ""


@dataclass(slots=True)
class Resolution:
    """The search verdict for one missing model, with the evidence that led to it."""

    model: MissingModel
    outcome: SearchOutcome
    candidate: Candidate | None = None
    candidates: list[Candidate] = field(default_factory=list)
    reason: str = ""
    evidence: list[str] = field(default_factory=list)
    requests: int = 0


CheckStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Check:
    """One deterministic check of a downloaded file: how it went, and why when it did not simply pass."""

    status: CheckStatus
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def __str__(self) -> str:
        """`ok`, `failed: <detail>` or `skipped: <detail>`: the form JSON output and the LLM review show."""
        return f"{self.status}: {self.detail}" if self.detail else self.status


@dataclass(slots=True)
class FileChecks:
    """The deterministic checks of one downloaded file; `ok` is False if any check failed."""

    name: str
    directory: str | None
    path: str
    ok: bool
    reason: str = ""
    size: int | None = None
    expected_size: int | None = None
    sha256: str | None = None
    expected_sha256: str | None = None
    format: str | None = None  # safetensors | gguf | pickle-zip | pickle | onnx | unknown
    source: str | None = None
    url: str | None = None
    checks: dict[str, Check] = field(default_factory=dict)  # exists, size, format, sha256, pickle

    def check_texts(self) -> dict[str, str]:
        """The checks as `name -> "ok" | "failed: ..." | "skipped: ..."` (JSON output, the LLM review)."""
        return {name: str(check) for name, check in self.checks.items()}


Verdict = Literal["ok", "suspicious", "no_verdict"]  # no_verdict: a suspicion naming no differing check


@dataclass(frozen=True, slots=True)
class LLMVerdict:
    """The model's opinion of one verified file. Never overrides a failed deterministic check."""

    name: str
    verdict: Verdict
    reason: str
