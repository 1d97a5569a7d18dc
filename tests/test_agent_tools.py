"""The agent's tools without any LLM: derived schemas, compact results, the ledger, and errors as results.

The tools wrap the real resolver sources (`resolvers.Finder`) pointed at the Hub and Civitai fakes.
The `world` fixture here is reused by the agent-loop tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.agent.ledger import Ledger
from comfyfixer.agent.tools import TOOLS, Toolbox, ToolContext
from comfyfixer.config import Settings
from comfyfixer.http import build_client
from comfyfixer.models import MissingModel
from comfyfixer.resolvers.catalogue import Catalogue
from comfyfixer.resolvers.finder import Finder
from comfyfixer.retry import RetryPolicy
from tests.fakes.civitai import FakeCivitai
from tests.fakes.fixtures import hf_env  # noqa: F401
from tests.fakes.hub import FakeHub
from tests.fakes.world import local_settings

FAST = RetryPolicy(attempts=2, base_wait=0.0, max_backoff=0.0, server_wait_scale=0.0)
T5 = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"t5xxl" * 300
T5_OTHER = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"other" * 300
API_KEY = "sk-test-secret-key"


@dataclass
class World:
    hub: FakeHub
    civitai: FakeCivitai
    finder: Finder
    settings: Settings

    def target(self, name: str = "t5xxl_fp16.safetensors", directory: str = "text_encoders") -> MissingModel:
        return MissingModel(name, directory, workflows=["flux_dev.json"], node_types=["DualCLIPLoader"])

    def context(self, target: MissingModel | None = None) -> ToolContext:
        return ToolContext(target=target or self.target(), sources=self.finder, secrets=self.settings.secrets)


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    request.getfixturevalue("hf_env")  # the real huggingface_hub client, isolated
    yield from make_world(tmp_path)


def make_world(tmp_path: Path) -> Iterator[World]:
    """Hub + Civitai fakes with a few files, and the real `Finder` over them."""
    with FakeHub() as hub, FakeCivitai() as civitai:
        hub.add_file("comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors", T5)
        hub.add_file("comfyanonymous/flux_text_encoders", "clip_l.safetensors", T5_OTHER)
        hub.add_file("someone/flux_text_encoders_mirror", "t5xxl_fp8_e4m3fn.safetensors", T5_OTHER)
        model = civitai.add_model("Flux LoRA Pack", type="LORA")
        version = civitai.add_version(model, "v1")
        civitai.add_file(version, T5_OTHER, "flux_pack.safetensors", name="flux_pack.safetensors")
        settings = local_settings(
            hub.url,
            civitai.url,
            log_dir=tmp_path / "log",
            llm_base_url="http://127.0.0.1:9/v1",
            llm_model="qwen3-8b",
            llm_api_key=API_KEY,
        )
        from huggingface_hub import HfApi

        catalogue = Catalogue.from_entries(
            settings,
            [
                {
                    "name": "t5 (catalogue)",
                    "type": "clip",
                    "save_path": "default",
                    "filename": "t5xxl_fp16.safetensors",
                    "url": hub.resolve_url("comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors"),
                }
            ],
        )
        with Finder(
            settings,
            http=build_client(),
            hf_api=HfApi(endpoint=hub.url),
            catalogue=catalogue,
            policy=FAST,
        ) as finder:
            yield World(hub, civitai, finder, settings)
        assert not hub.errors and not civitai.errors


def _run(world: World, ctx: ToolContext, name: str, args: str | dict[str, Any]) -> dict[str, Any]:
    result = Toolbox().run(name, args, ctx)
    payload: dict[str, Any] = json.loads(result.content)
    return payload


def test_schemas_are_derived_from_the_pydantic_models() -> None:
    for tool in TOOLS:
        params = tool.parameters()
        source = tool.args.model_json_schema()
        assert params["type"] == "object"
        assert set(params["properties"]) == set(source["properties"])
        assert params.get("required", []) == source.get("required", [])
        assert params["additionalProperties"] is False
        assert "title" not in json.dumps(params)
        assert tool.description  # from the model's docstring
    names = [t.schema()["function"]["name"] for t in TOOLS]
    assert len(names) == len(set(names))


def test_search_then_list_gives_ids_only_to_files_with_the_wanted_name(world: World) -> None:
    ctx = world.context()
    found = _run(world, ctx, "search_huggingface", {"query": "flux_text_encoders"})
    assert "comfyanonymous/flux_text_encoders" in found["repos"]
    listing = _run(world, ctx, "list_repo_files", {"repo_id": "comfyanonymous/flux_text_encoders"})
    assert [m["file"] for m in listing["matching"]] == ["t5xxl_fp16.safetensors"]
    first = listing["matching"][0]
    assert first["id"] == "f1" and first["size"] == len(T5) and len(first["sha256"]) == 64
    assert listing["other_weights"] == ["clip_l.safetensors"]
    mirror = _run(world, ctx, "list_repo_files", {"repo_id": "someone/flux_text_encoders_mirror"})
    assert mirror["matching"] == [] and "no file named" in mirror["note"]
    assert list(ctx.ledger.files) == ["f1"]
    assert ctx.ledger.by_repo_path("ComfyAnonymous/flux_text_encoders", "t5xxl_fp16.safetensors") is not None


def test_catalogue_and_civitai_tools_register_exact_names(world: World) -> None:
    ctx = world.context()
    cat = _run(
        world, ctx, "lookup_catalogue", {"file_name": "t5xxl_fp16.safetensors", "directory": "text_encoders"}
    )
    assert cat["entries"][0]["id"] == "f1" and cat["entries"][0]["url"].startswith(world.hub.url)
    lora = world.context(MissingModel("flux_pack.safetensors", "loras"))
    civ = _run(world, lora, "search_civitai", {"query": "Flux LoRA Pack", "type": "LORA"})
    version = civ["models"][0]["versions"][0]
    assert version["matching"][0]["file"] == "flux_pack.safetensors"
    again = _run(world, lora, "get_civitai_version", {"version_id": version["version_id"]})
    assert again["matching"][0]["id"] == version["matching"][0]["id"]  # same URL, same id
    missing = _run(world, lora, "get_civitai_version", {"version_id": 999999})
    assert "no model version" in missing["error"]


@pytest.mark.parametrize(
    ("name", "args", "error"),
    [
        ("search_huggingface", '{"query": ', "not valid JSON"),
        ("search_huggingface", "[1, 2]", "must be a JSON object"),
        ("search_huggingface", {"query": "x", "limit": 500}, "limit"),
        ("search_huggingface", {"query": "x", "url": "https://evil"}, "Extra inputs"),
        ("list_repo_files", {}, "repo_id"),
        ("download_file", {"url": "x"}, "unknown tool 'download_file'"),
    ],
)
def test_bad_calls_become_error_results(world: World, name: str, args: Any, error: str) -> None:
    result = Toolbox().run(name, args, world.context())
    assert not result.ok
    assert error in json.loads(result.content)["error"]
    assert error in result.summary


def test_a_failing_source_is_an_error_result_and_is_remembered(world: World) -> None:
    world.civitai.fail("/api/v1/models", 500, times=None)
    ctx = world.context()
    payload = _run(world, ctx, "search_civitai", {"query": "flux"})
    assert "the source failed" in payload["error"]
    assert ctx.source_errors


def test_a_missing_repo_lists_nothing_rather_than_failing(world: World) -> None:
    payload = _run(world, world.context(), "list_repo_files", {"repo_id": "nobody/nothing"})
    assert payload["matching"] == [] and payload["total_files"] == 0


def test_ledger_deduplicates_by_url_and_repo_path(world: World) -> None:
    ledger = Ledger()
    c = world.finder.huggingface.candidate_for(  # type: ignore[union-attr]
        "comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors"
    )
    assert ledger.add_candidate(c).id == ledger.add_candidate(c).id == "f1"
    assert ledger.by_url(c.url) is ledger.by_id("f1")
    assert ledger.by_repo_path(
        "comfyanonymous/flux_text_encoders", "/t5xxl_fp16.safetensors"
    ) is ledger.by_id("f1")


def test_every_prompt_loads_and_fills_its_placeholders() -> None:
    from comfyfixer.agent import prompts

    for name in (
        prompts.SEARCH_PROMPT,
        prompts.SEARCH_TASK_PROMPT,
        prompts.TEXT_TOOLS_PROMPT,
        prompts.VERIFY_PROMPT,
    ):
        assert prompts.load_prompt(name).strip()
    filled = prompts.render_prompt(prompts.TEXT_TOOLS_PROMPT, tools="TOOL-LIST")
    assert "TOOL-LIST" in filled and "$tools" not in filled
