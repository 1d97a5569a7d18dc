"""A model whose node is unknown gets a folder only from evidence, reported as inferred with the evidence.

Evidence: the same file loaded from one folder by another node (this workflow or another of the scan),
the node's own hint list, or — at resolve time — where the source files it (`split_files/<folder>/`,
the Civitai model type, the catalogue's save_path). Two folders for one name decide nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.http import build_client
from comfyfixer.models import MissingModel
from comfyfixer.resolvers.finder import Finder
from comfyfixer.resolvers.huggingface import Publishers
from comfyfixer.retry import RetryPolicy
from comfyfixer.scan import scan, scan_json
from tests.fakes.civitai import FakeCivitai
from tests.fakes.hub import FakeHub
from tests.fakes.world import local_settings
from tests.model_bytes import safetensors

FAST = RetryPolicy(attempts=2, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)


def _write(path: Path, *nodes: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"nodes": list(nodes)}), encoding="utf-8")
    return path


def _node(node_id: int, node_type: str, *values: object) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "widgets_values": list(values)}


def _refs(body: dict[str, Any], workflow: Path) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in body["references"] if r["workflow"] == str(workflow)}


def test_unknown_node_takes_the_folder_another_workflow_loads_its_file_from(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _node(1, "VAELoader", "special_vae.safetensors"))
    b = _write(tmp_path / "b.json", _node(7, "MysteryVaeThing", "special_vae.safetensors", 3))
    body = scan_json(scan([tmp_path], None))
    ref = _refs(body, b)["special_vae.safetensors"]
    assert ref["directory"] == "vae" and ref["directory_source"] == "inferred"
    assert "VAELoader" in ref["evidence"] and "another workflow" in ref["evidence"]
    assert _refs(body, a)["special_vae.safetensors"]["directory_source"] == "node"
    # One model is planned, in vae/.
    assert [(m["name"], m["directory"]) for m in body["missing"]] == [("special_vae.safetensors", "vae")]


def test_two_folders_for_one_name_infer_nothing(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", _node(1, "VAELoader", "thing.safetensors"))
    _write(tmp_path / "b.json", _node(1, "LoraLoader", "thing.safetensors", 1, 1))
    c = _write(tmp_path / "c.json", _node(2, "MysteryLoader", "thing.safetensors"))
    ref = _refs(scan_json(scan([tmp_path], None)), c)["thing.safetensors"]
    assert ref["directory"] is None and ref["directory_source"] is None and ref["evidence"] is None


def test_within_a_workflow_the_evidence_names_the_node(tmp_path: Path) -> None:
    wf = _write(
        tmp_path / "w.json",
        _node(1, "UNETLoader", "flux1-dev.safetensors", "default"),
        _node(2, "SomePackSampler", "flux1-dev.safetensors"),
    )
    refs = [r for r in scan_json(scan([wf], None))["references"] if r["node_id"] == "2"]
    assert refs[0]["directory"] == "diffusion_models" and refs[0]["directory_source"] == "inferred"
    assert "UNETLoader (node 1) in this workflow" in refs[0]["evidence"]


@pytest.fixture
def net(hf_env: Path) -> Iterator[tuple[FakeHub, FakeCivitai]]:
    with FakeHub() as hub, FakeCivitai() as civitai:
        yield hub, civitai
    assert not hub.errors and not civitai.errors


def _finder(hub: FakeHub, civitai: FakeCivitai) -> Finder:
    from huggingface_hub import HfApi

    settings = local_settings(hub.url, civitai.url)
    return Finder(
        settings,
        http=build_client(),
        hf_api=HfApi(endpoint=hub.url, token=False),
        policy=FAST,
        publishers=Publishers(frozenset({"comfy-org"}), ("Comfy-Org/Mystery_repackaged",)),
    )


def test_resolver_infers_the_folder_from_split_files(net: tuple[FakeHub, FakeCivitai]) -> None:
    hub, civitai = net
    hub.add_file(
        "Comfy-Org/Mystery_repackaged", "split_files/text_encoders/mystery_te.safetensors", safetensors()
    )
    with _finder(hub, civitai) as finder:
        r = finder.find(MissingModel("mystery_te.safetensors", None))
    assert r.outcome == "found" and r.candidate is not None
    assert r.candidate.directory_hint == "text_encoders"
    assert "folder text_encoders/ inferred from its place in the repo" in r.reason


def test_resolver_infers_the_folder_from_the_civitai_model_type(net: tuple[FakeHub, FakeCivitai]) -> None:
    hub, civitai = net
    model = civitai.add_model("Papercut Style", type="LORA")
    civitai.add_file(civitai.add_version(model, "v1"), safetensors(), "papercut_style.safetensors")
    with _finder(hub, civitai) as finder:
        r = finder.find(MissingModel("papercut_style.safetensors", None))
    assert r.outcome == "found" and r.candidate is not None
    assert r.candidate.directory_hint == "loras" and "the Civitai model type" in r.reason
