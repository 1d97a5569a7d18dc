"""The agent's tools: typed functions over the real resolver sources, and the toolbox that runs them.

Each tool takes a pydantic model of its arguments; the JSON schema the LLM sees is derived from that
model (`Tool.schema()`), so the schema and the validation can never disagree. Results are compact JSON:
a few fields per item, long lists cut, and every file whose name equals the one we look for is
recorded in the conversation's `Ledger` (`agent/ledger.py`), which gives it a short id.

Tools never raise: malformed arguments, an unknown tool or a failing source become an `{"error": …}`
result the model can read and react to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from comfyfixer.agent.ledger import Ledger
from comfyfixer.agent.sources import CivitaiSource, Sources
from comfyfixer.errors import ComfyFixerError, SourceError, redact
from comfyfixer.models import MissingModel, base_name

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 6000
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".sft", ".pkl")


@dataclass
class ToolContext:
    """What one conversation's tools share: the file looked for, the sources, the ledger, the failures."""

    target: MissingModel
    sources: Sources
    ledger: Ledger = field(default_factory=Ledger)
    source_errors: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        return base_name(name).lower() == self.target.file_name.lower()


# -- tool argument models ------------------------------------------------------------------------------
class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SearchHuggingFace(_Args):
    """Search Hugging Face model repositories by words of the repo name (not file names). Returns repo ids."""

    query: str = Field(
        min_length=1, max_length=200, description="Words of a repo name, e.g. 'flux text encoders'"
    )
    limit: int = Field(10, ge=1, le=20, description="How many repo ids to return")


class ListRepoFiles(_Args):
    """List the model files of one Hugging Face repo (path, size, sha256); wanted files get an id."""

    repo_id: str = Field(min_length=3, max_length=200, description="A repo id such as 'Comfy-Org/flux1-dev'")


class SearchCivitai(_Args):
    """Search Civitai models by model name, creator or trigger words (not file names); shows their files."""

    query: str = Field(min_length=1, max_length=200, description="Words of a model name")
    type: str | None = Field(
        None,
        description="Civitai type filter: Checkpoint, LORA, VAE, Controlnet, Upscaler, TextualInversion",
    )


class GetCivitaiVersion(_Args):
    """Show the files of one Civitai model version (names, sizes, sha256)."""

    version_id: int = Field(ge=1, description="A Civitai model version id")


class LookupCatalogue(_Args):
    """Look a file name up in the ComfyUI-Manager model catalogue (exact file name)."""

    file_name: str = Field(
        min_length=1, max_length=300, description="A model file name, e.g. 'ae.safetensors'"
    )
    directory: str | None = Field(None, description="ComfyUI models folder, e.g. 'vae'")


A = TypeVar("A", bound=BaseModel)


def strip_titles(schema: Any) -> Any:
    # pydantic adds a "title" to every property; it is noise in the prompt and some servers choke on it.
    if isinstance(schema, dict):
        return {k: strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [strip_titles(v) for v in schema]
    return schema


@dataclass(frozen=True)
class Tool(Generic[A]):
    """One callable tool: name, argument model (source of the JSON schema) and the function."""

    name: str
    args: type[A]
    fn: Callable[[A, ToolContext], dict[str, Any]]

    @property
    def description(self) -> str:
        return " ".join((self.args.__doc__ or "").split())

    def parameters(self) -> dict[str, Any]:
        schema: dict[str, Any] = strip_titles(self.args.model_json_schema())
        schema.pop("description", None)
        return schema

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools[]` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters()},
        }

    def call(self, arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return self.fn(self.args.model_validate(arguments), ctx)


# -- the tool functions --------------------------------------------------------------------------------
def search_huggingface(args: SearchHuggingFace, ctx: ToolContext) -> dict[str, Any]:
    hub = ctx.sources.huggingface
    if hub is None:
        return {"error": "Hugging Face search is disabled in this run"}
    repos = hub.search_repos(args.query, args.limit)
    return {"repos": repos[: args.limit]} if repos else {"repos": [], "note": "no repo matched these words"}


def list_repo_files(args: ListRepoFiles, ctx: ToolContext) -> dict[str, Any]:
    hub = ctx.sources.huggingface
    if hub is None:
        return {"error": "Hugging Face is disabled in this run"}
    files = list(hub.list_files(args.repo_id))
    weights = [f for f in files if f.path.lower().endswith(_WEIGHT_SUFFIXES)]
    matching = [f for f in weights if ctx.matches(f.path)]
    shown: list[dict[str, Any]] = [ctx.ledger.add_hub_file(args.repo_id, f).describe() for f in matching]
    others = [f for f in weights if not ctx.matches(f.path)]
    # Non-matching files get no id (they can never be chosen) but help the model judge the repo.
    out: dict[str, Any] = {
        "repo_id": args.repo_id,
        "total_files": len(files),
        "matching": shown,
        "other_weights": [f.path for f in others[:25]],
    }
    if len(others) > 25:
        out["other_weights_omitted"] = len(others) - 25
    if not matching:
        out["note"] = f"no file named {ctx.target.file_name} in this repo"
    return out


def _version_summary(
    ctx: ToolContext, civitai: CivitaiSource, version: dict[str, Any], model: dict[str, Any] | None = None
) -> dict[str, Any]:
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    out: dict[str, Any] = {
        "version_id": version.get("id"),
        "name": version.get("name"),
        "base_model": version.get("baseModel"),
        "files": [
            {"name": f.get("name"), "size_kb": f.get("sizeKB"), "type": f.get("type")} for f in files[:6]
        ],
    }
    if any(ctx.matches(str(f.get("name") or "")) for f in files):
        matching = civitai.candidates_in(version, ctx.target.file_name, model=model)
        out["matching"] = [
            ctx.ledger.add_candidate(c).describe() for c in matching if ctx.matches(c.filename)
        ]
    return out


def search_civitai(args: SearchCivitai, ctx: ToolContext) -> dict[str, Any]:
    civitai = ctx.sources.civitai
    if civitai is None:
        return {"error": "Civitai is disabled in this run"}
    items = civitai.search(args.query, [args.type] if args.type else None)
    models = []
    for item in items[:5]:
        versions = [v for v in item.get("modelVersions") or [] if isinstance(v, dict)]
        models.append(
            {
                "model_id": item.get("id"),
                "name": item.get("name"),
                "type": item.get("type"),
                "versions": [_version_summary(ctx, civitai, v, item) for v in versions[:4]],
            }
        )
    return {"models": models} if models else {"models": [], "note": "no Civitai model matched these words"}


def get_civitai_version(args: GetCivitaiVersion, ctx: ToolContext) -> dict[str, Any]:
    civitai = ctx.sources.civitai
    if civitai is None:
        return {"error": "Civitai is disabled in this run"}
    version = civitai.version(args.version_id)
    if version is None:
        return {"error": f"Civitai has no model version {args.version_id}"}
    out = _version_summary(ctx, civitai, version)
    out["model_id"] = version.get("modelId")
    return out


def lookup_catalogue(args: LookupCatalogue, ctx: ToolContext) -> dict[str, Any]:
    catalogue = ctx.sources.catalogue
    if catalogue is None:
        return {"error": "the ComfyUI-Manager catalogue is disabled in this run"}
    found = catalogue.lookup(args.file_name, args.directory)
    shown = [ctx.ledger.add_candidate(c).describe() for c in found if ctx.matches(c.filename)]
    return {"entries": shown} if shown else {"entries": [], "note": "not in the catalogue"}


TOOLS: tuple[Tool[Any], ...] = (
    Tool("search_huggingface", SearchHuggingFace, search_huggingface),
    Tool("list_repo_files", ListRepoFiles, list_repo_files),
    Tool("search_civitai", SearchCivitai, search_civitai),
    Tool("get_civitai_version", GetCivitaiVersion, get_civitai_version),
    Tool("lookup_catalogue", LookupCatalogue, lookup_catalogue),
)


@dataclass(frozen=True)
class ToolResult:
    content: str  # the JSON text sent back to the model
    summary: str  # one line for the history log and the evidence
    ok: bool


def compact(payload: dict[str, Any], limit: int = MAX_RESULT_CHARS) -> str:
    """JSON without spaces, cut to `limit` characters by dropping list tails (never mid-token)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    trimmed = dict(payload)
    for key in ("other_weights", "models", "repos", "entries", "matching"):
        value = trimmed.get(key)
        while isinstance(value, list) and value and len(json.dumps(trimmed, default=str)) > limit:
            value = value[:-1]
            trimmed[key] = value
            trimmed["truncated"] = True
    text = json.dumps(trimmed, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= limit else json.dumps({"error": "result too large", "truncated": True})


def _summary(name: str, payload: dict[str, Any]) -> str:
    if "error" in payload:
        return f"{name}: error: {payload['error']}"
    counts = [f"{len(v)} {k}" for k, v in payload.items() if isinstance(v, list)]
    return f"{name}: " + (", ".join(counts) or "ok")


class Toolbox:
    """Runs tool calls by name; every failure becomes an error result, never an exception."""

    def __init__(self, tools: Iterable[Tool[Any]] = TOOLS) -> None:
        self.tools = {t.name: t for t in tools}

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    def run(self, name: str, arguments: str | dict[str, Any], ctx: ToolContext) -> ToolResult:
        tool = self.tools.get(name)
        if tool is None:
            return self._error(name, f"unknown tool {name!r}; the tools are: {', '.join(self.tools)}")
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return self._error(name, f"arguments are not valid JSON ({exc.msg}); send one JSON object")
        else:
            parsed = arguments
        if not isinstance(parsed, dict):
            return self._error(name, "arguments must be a JSON object")
        try:
            payload = tool.call(parsed, ctx)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            return self._error(name, f"invalid arguments: {problems}")
        except SourceError as exc:
            ctx.source_errors.append(exc.message)
            return self._error(name, f"the source failed: {exc.message}", ctx.secrets)
        except ComfyFixerError as exc:
            return self._error(name, exc.message, ctx.secrets)
        except Exception as exc:  # a source bug must not end the run; the model is told, the log keeps it
            log.exception("tool %s failed", name)
            ctx.source_errors.append(f"{name}: {type(exc).__name__}")
            return self._error(name, f"the tool failed ({type(exc).__name__})")
        return ToolResult(
            compact(payload), redact(_summary(name, payload), ctx.secrets), "error" not in payload
        )

    @staticmethod
    def _error(name: str, message: str, secrets: tuple[str, ...] = ()) -> ToolResult:
        message = redact(message, secrets)
        return ToolResult(compact({"error": message}), f"{name}: error: {message}", False)
