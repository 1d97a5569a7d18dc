"""The shipped loader table (`loaders.json`): well formed, and it knows the loaders real workflows use.

The custom loaders below are the ones issue 13 found without a folder in other people's workflows;
each row was read from the node's `INPUT_TYPES` in its pack's public source.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from comfyfixer import folders
from comfyfixer.workflow import parse_document
from comfyfixer.workflow.nodes import loader_table, lookup


def _raw() -> dict[str, dict[str, Any]]:
    text = resources.files("comfyfixer.workflow").joinpath("loaders.json").read_text(encoding="utf-8")
    nodes = json.loads(text)["nodes"]
    assert isinstance(nodes, dict)
    return nodes


def test_every_entry_names_a_known_folder_and_has_something_to_read() -> None:
    known = set(folders.DEFAULT_DIRS) | set(folders.ALIASES)
    for node_type, entry in _raw().items():
        assert entry.get("inputs") or entry.get("any"), f"{node_type}: no inputs and no 'any' folder"
        for name, index, folder in entry.get("inputs") or ():
            assert isinstance(name, str) and name, node_type
            assert index is None or (isinstance(index, int) and index >= 0), node_type
            # A typo in a folder key would send files to models/<typo>: every key must be registered.
            assert folder in known, f"{node_type}.{name}: folder {folder!r} is not a known folder key"
        any_folder = entry.get("any")
        assert any_folder is None or any_folder in known, node_type
        for dir_input in entry.get("dir") or ():
            assert dir_input in {i[0] for i in entry.get("inputs") or ()}, node_type


def test_table_grew_past_the_core_and_common_packs() -> None:
    assert len(loader_table()) >= 250


@pytest.mark.parametrize(
    ("node_type", "input_name", "folder"),
    [
        ("NunchakuTextEncoderLoaderV2", "text_encoder1", "text_encoders"),
        ("NunchakuPuLIDLoaderV2", "pulid_file", "pulid"),
        ("NunchakuPuLIDLoaderV2", "eva_clip_file", "text_encoders"),
        ("LTXVGemmaCLIPModelLoader", "gemma_path", "text_encoders"),
        ("LTXVGemmaCLIPModelLoader", "ltxv_path", "checkpoints"),
        ("LTXICLoRALoaderModelOnly", "lora_name", "loras"),
        ("LowVRAMCheckpointLoader", "ckpt_name", "checkpoints"),
        ("LowVRAMAudioVAELoader", "ckpt_name", "checkpoints"),
        ("LowVRAMLatentUpscaleModelLoader", "model_name", "latent_upscale_models"),
        ("HyVideoLoraSelect", "lora", "loras"),
        ("CogVideoLoraSelect", "lora", "cogvideox_loras"),
        ("MZ_KolorsUNETLoaderV2", "unet_name", "diffusion_models"),
        ("MZ_KolorsControlNetLoader", "control_net_name", "controlnet"),
        ("WanVideoControlnetLoader", "model", "controlnet"),
        ("ConditioningLoader", "conditioning_name", "embeddings"),
    ],
)
def test_issue_loaders_have_their_folder(node_type: str, input_name: str, folder: str) -> None:
    spec = lookup(node_type)
    assert spec is not None, node_type
    inp = spec.spec_for(input_name)
    assert inp is not None and inp.folder == folder


def test_a_newly_covered_loader_gives_its_folder_in_a_workflow() -> None:
    doc = {
        "nodes": [
            {
                "id": 3,
                "type": "NunchakuTextEncoderLoaderV2",
                "widgets_values": ["flux.1", "t5xxl_fp16.safetensors", "clip_l.safetensors", 512],
            },
            {"id": 4, "type": "LowVRAMAudioVAELoader", "widgets_values": ["ltx-2-19b-dev.safetensors"]},
        ]
    }
    refs = {r.name: r for r in parse_document(doc, "w.json").references}
    assert refs["t5xxl_fp16.safetensors"].directory == "text_encoders"
    assert refs["clip_l.safetensors"].directory == "text_encoders"
    assert refs["ltx-2-19b-dev.safetensors"].directory == "checkpoints"
    assert all(not r.folder_guessed for r in refs.values())
