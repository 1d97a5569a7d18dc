"""Prompt text references (`embedding:NAME`, `<lora:NAME:w>`): planned, resolved by stem, installed right.

A stem accepts exactly `<stem>.safetensors|.pt|.bin|.ckpt`; the same place offering two formats gives
the `.safetensors`; two different files with the stem are ambiguous. Sources are the fakes at the wire.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfixer.http import build_client
from comfyfixer.layout import Layout
from comfyfixer.loop.wiring import LayoutPlacement
from comfyfixer.models import Candidate, MissingModel
from comfyfixer.resolvers.finder import Finder
from comfyfixer.resolvers.huggingface import Publishers
from comfyfixer.resolvers.names import accepted_names, best_extension_only, install_name
from comfyfixer.retry import RetryPolicy
from comfyfixer.scan import scan, scan_json
from tests.fakes.civitai import FakeCivitai
from tests.fakes.files import FileServer
from tests.fakes.hub import FakeHub
from tests.fakes.world import local_settings
from tests.model_bytes import safetensors


def safetensors_bytes(tag: bytes) -> bytes:
    """A valid safetensors file whose bytes differ per tag."""
    return safetensors(metadata={"tag": tag.decode()})


FAST = RetryPolicy(attempts=2, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)


class World:
    def __init__(self, hub: FakeHub, civitai: FakeCivitai, files: FileServer) -> None:
        self.hub, self.civitai, self.files = hub, civitai, files

    def finder(self, *, catalogue: bool = False) -> Finder:
        from huggingface_hub import HfApi

        settings = local_settings(
            self.hub.url,
            self.civitai.url,
            catalog_url=self.files.url_for("/model-list.json") if catalogue else None,
        )
        api = HfApi(endpoint=settings.hf_endpoint, token=False)
        return Finder(
            settings,
            http=build_client(),
            hf_api=api,
            policy=FAST,
            publishers=Publishers(frozenset({"comfy-org"}), ()),
        )


@pytest.fixture
def world(hf_env: Path) -> Iterator[World]:
    with FakeHub() as hub, FakeCivitai() as civitai, FileServer() as files:
        yield World(hub, civitai, files)
    for server in (hub, hub.cdn, civitai, civitai.storage, files):
        assert not server.errors


def test_stem_accepts_weights_extensions_safetensors_first() -> None:
    assert accepted_names("EasyNegative") == (
        "easynegative.safetensors",
        "easynegative.pt",
        "easynegative.bin",
        "easynegative.ckpt",
    )
    assert accepted_names("sub/Ulzzang-6500-v1.1")[0] == "ulzzang-6500-v1.1.safetensors"
    assert accepted_names("ae.safetensors") == ("ae.safetensors",)  # a file name stays exact
    assert accepted_names("v1-inference.yaml") == ("v1-inference.yaml",)  # so does any other file
    assert accepted_names("GroundingDINO_SwinT_OGC.cfg.py") == ("groundingdino_swint_ogc.cfg.py",)
    assert install_name("EasyNegative", "EasyNegative.safetensors") == "EasyNegative.safetensors"
    assert install_name("sub/bad-hands-5", "bad-hands-5.pt") == "sub/bad-hands-5.pt"
    assert install_name("ae.safetensors", "ae.safetensors") == "ae.safetensors"


def test_one_place_with_two_formats_keeps_the_safetensors() -> None:
    def c(name: str, repo: str) -> Candidate:
        return Candidate(url=f"https://x/{repo}/{name}", filename=name, source="civitai", repo=repo)

    kept = best_extension_only(
        "x", [c("x.pt", "civitai:1/2"), c("x.safetensors", "civitai:1/2"), c("x.pt", "c:9/9")]
    )
    assert sorted((k.filename, k.repo) for k in kept) == [("x.pt", "c:9/9"), ("x.safetensors", "civitai:1/2")]


def test_embedding_from_civitai_textual_inversion_prefers_safetensors(world: World) -> None:
    model = world.civitai.add_model("EasyNegative", type="TextualInversion")
    version = world.civitai.add_version(model, "v1")
    good = safetensors_bytes(b"easynegative")
    world.civitai.add_file(version, b"pickle-bytes" * 50, "EasyNegative.pt", name="EasyNegative.pt")
    world.civitai.add_file(version, good, "EasyNegative.safetensors", name="EasyNegative.safetensors")
    with world.finder() as finder:
        r = finder.find(MissingModel("EasyNegative", "embeddings"))
    assert r.outcome == "found" and r.candidate is not None, r.reason
    assert r.candidate.filename == "EasyNegative.safetensors"
    assert r.candidate.sha256 == hashlib.sha256(good).hexdigest()
    searches = world.civitai.requests_to("/api/v1/models")
    assert searches and all(q.params.get("types") == ["TextualInversion"] for q in searches)


def test_two_different_files_with_the_stem_are_ambiguous(world: World) -> None:
    for n, tag in enumerate((b"one", b"two")):
        m = world.civitai.add_model(f"badhandv4 pack {n}", type="TextualInversion")
        v = world.civitai.add_version(m, "v1")
        world.civitai.add_file(
            v, safetensors_bytes(tag), "badhandv4.safetensors", name="badhandv4.safetensors"
        )
    with world.finder() as finder:
        r = finder.find(MissingModel("badhandv4", "embeddings"))
    assert r.outcome == "ambiguous" and len(r.candidates) == 2


def test_lora_tag_from_a_publisher_repo_on_the_hub(world: World) -> None:
    data = safetensors_bytes(b"detail")
    f = world.hub.add_file("Comfy-Org/add_detail_lora", "loras/add_detail.safetensors", data)
    with world.finder() as finder:
        r = finder.find(MissingModel("add_detail", "loras"))
    assert r.outcome == "found" and r.candidate is not None, r.reason
    assert r.candidate.sha256 == f.sha256 and r.candidate.filename == "add_detail.safetensors"


def test_embedding_from_the_catalogue(world: World) -> None:
    data = safetensors_bytes(b"ulzzang")
    f = world.hub.add_file("someone/embeds", "Ulzzang-6500-v1.1.safetensors", data)
    url = f"{world.hub.url}/someone/embeds/resolve/main/Ulzzang-6500-v1.1.safetensors"
    entry = {
        "name": "ulzzang",
        "type": "embedding",
        "base": "SD1.5",
        "save_path": "default",
        "description": "",
        "reference": "",
        "filename": "Ulzzang-6500-v1.1.safetensors",
        "url": url,
    }
    world.files.set_catalogue([entry])
    with world.finder(catalogue=True) as finder:
        r = finder.find(MissingModel("Ulzzang-6500-v1.1", "embeddings"))
    assert r.outcome == "found" and r.candidate is not None, r.reason
    assert r.candidate.source == "catalogue" and r.candidate.url == url
    assert f.size == len(data)


def _prompt_workflow(folder: Path) -> Path:
    doc = {
        "nodes": [
            {
                "id": 1,
                "type": "CLIPTextEncode",
                "widgets_values": ["a cat, embedding:EasyNegative, <lora:add_detail:0.6>"],
            },
            {"id": 2, "type": "LoraLoader", "widgets_values": ["add_detail.safetensors", 1, 1]},
        ]
    }  # fmt: skip
    folder.mkdir(parents=True)
    path = folder / "w.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_scan_plans_prompt_stems_as_text_kind_and_joins_the_loaded_file(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    report = scan([_prompt_workflow(tmp_path / "wf")], root)
    planned = {(m.directory, m.name) for m in report.missing}
    # The lora tag folds into the LoraLoader's file; the embedding stands as its own need.
    assert planned == {("embeddings", "EasyNegative"), ("loras", "add_detail.safetensors")}
    body = scan_json(report)
    kinds = {m["name"]: m["kind"] for m in body["missing"]}
    assert kinds == {"EasyNegative": "text", "add_detail.safetensors": "file"}
    assert {r["kind"] for r in body["text_references"]} == {"text"}
    # An installed embedding (any weights extension) is present, so nothing is planned for it.
    (root / "models/embeddings").mkdir()
    (root / "models/embeddings/EasyNegative.pt").write_bytes(b"x")
    again = scan([tmp_path / "wf"], root)
    assert ("embeddings", "EasyNegative") not in {(m.directory, m.name) for m in again.missing}


def test_a_stem_is_installed_with_the_chosen_files_extension(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    placement = LayoutPlacement(Layout.load(tmp_path))
    chosen = Candidate(
        url="https://x/EasyNegative.safetensors", filename="EasyNegative.safetensors", source="civitai"
    )
    dest = placement.destination(MissingModel("EasyNegative", "embeddings"), chosen)
    assert dest == tmp_path / "models" / "embeddings" / "EasyNegative.safetensors"
