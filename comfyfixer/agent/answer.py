"""The model's final answer as it is parsed: the JSON shape of `prompts/search_v2.md`, with the key names
and outcome spellings real models use. Mapping it to a file the tools showed is `grounding`'s job.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


def _ids(value: object) -> list[str]:
    """Candidate ids as models write them: a list of ids, of objects with an id/url, or one string."""
    items = value if isinstance(value, list) else [value] if value else []
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            item = next((item[k] for k in ("file_id", "id", "url") if item.get(k)), None)
        if isinstance(item, (str, int)) and str(item).strip():
            out.append(str(item).strip())
    return out


class SearchAnswer(BaseModel):
    """The model's final answer (`prompts/search_v2.md`), with the key names real models use."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    outcome: Literal["found", "ambiguous", "not_found"]
    file_id: str | None = Field(
        None, validation_alias=AliasChoices("file_id", "id", "fileId", "candidate_id")
    )
    url: str | None = Field(None, validation_alias=AliasChoices("url", "download_url", "link"))
    repo_id: str | None = Field(
        None, validation_alias=AliasChoices("repo_id", "repo", "repository", "repoId")
    )
    path: str | None = Field(
        None, validation_alias=AliasChoices("path", "filename", "file", "file_name", "path_in_repo")
    )
    candidate_ids: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("candidate_ids", "candidates", "ids", "file_ids")
    )
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _outcome(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        outcome = data.get("outcome") or data.get("status") or data.get("result")
        if isinstance(outcome, str):
            outcome = outcome.strip().lower().replace(" ", "_").replace("-", "_")
            outcome = {"notfound": "not_found", "none": "not_found", "missing": "not_found"}.get(
                outcome, outcome
            )
        elif outcome is None and any(data.get(k) for k in ("file_id", "id", "url", "repo_id", "repo")):
            outcome = "found"  # a file named without an outcome is a pick
        data["outcome"] = outcome
        return data

    @field_validator("candidate_ids", mode="before")
    @classmethod
    def _candidate_ids(cls, value: object) -> list[str]:
        return _ids(value)

    @field_validator("file_id", "url", "repo_id", "path", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value
