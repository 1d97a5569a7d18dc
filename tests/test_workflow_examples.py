"""The six reference examples in ../shared/reference/examples, checked against its README."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyfixer.models import Reference, WorkflowResult, normalise_name
from comfyfixer.workflow import parse_file

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "examples"

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason=f"reference examples not found at {EXAMPLES} (../shared beside the repo)"
)


def parse(name: str, *, stems: bool = False) -> WorkflowResult:
    result = parse_file(EXAMPLES / name, stems=stems)
    assert result.error is None
    return result


def by_name(result: WorkflowResult) -> dict[str, Reference]:
    return {normalise_name(r.name): r for r in result.references}


def pairs(result: WorkflowResult) -> set[tuple[str | None, str]]:
    return {(r.directory, normalise_name(r.name)) for r in result.references}


def test_wan21_properties_models_give_three_references_with_urls() -> None:
    result = parse("ui_wan21_t2v_properties_models.json")
    assert result.format == "ui"
    assert pairs(result) == {
        ("diffusion_models", "wan2.1_t2v_1.3B_fp16.safetensors"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("vae", "wan_2.1_vae.safetensors"),
    }
    for ref in result.references:
        assert ref.url is not None and ref.url.startswith("https://huggingface.co/")
        assert ref.hints[0].source == "properties.models"


def test_flux_inpaint_urls_come_from_top_level_models() -> None:
    result = parse("ui_flux_inpaint_top_level_models.json")
    assert pairs(result) == {
        ("diffusion_models", "flux1-fill-dev.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
        ("text_encoders", "t5xxl_fp16.safetensors"),
        ("vae", "ae.safetensors"),
    }
    for ref in result.references:
        assert ref.url is not None
        assert {h.source for h in ref.hints} == {"top-level models"}
        assert ref.node_id is not None  # matched to the node, not a separate workflow-level entry


def test_subgraph_inner_nodes_and_stale_metadata() -> None:
    result = parse("ui_subgraph_zimage_proxywidgets.json")
    refs = by_name(result)
    assert set(refs) == {
        "qwen_3_4b.safetensors",
        "ZImageTurbo/z_image_turbo_int8_convrot.safetensors",
        "ae.safetensors",
        "Z-Image-Turbo-Fun-Controlnet-Union-2.1.safetensors",
    }
    unet = refs["ZImageTurbo/z_image_turbo_int8_convrot.safetensors"]
    assert unet.name == "ZImageTurbo\\z_image_turbo_int8_convrot.safetensors"  # back-slash kept as held
    assert unet.directory == "diffusion_models"
    assert unet.url is None  # the declared bf16 file is not the one selected
    assert refs["qwen_3_4b.safetensors"].directory == "text_encoders"
    assert refs["qwen_3_4b.safetensors"].url is not None
    assert refs["ae.safetensors"].directory == "vae" and refs["ae.safetensors"].url is not None
    patch = refs["Z-Image-Turbo-Fun-Controlnet-Union-2.1.safetensors"]
    assert patch.directory == "model_patches" and patch.url is None
    for ref in result.references:
        assert ref.node_id is not None and ":" in ref.node_id  # "<instance>:<inner>"


def test_group_node_file_with_lora_tags() -> None:
    result = parse("ui_groupnode_lora_tags_nunchaku.json")
    assert pairs(result) == {
        ("vae", "flux1/ae.safetensors"),
        ("text_encoders", "t5xxl_fp8_e4m3fn.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
    }
    # Stems (names without an extension) are reported only on request.
    with_stems = by_name(parse("ui_groupnode_lora_tags_nunchaku.json", stems=True))
    for stem in ("RetroAnimeFluxV1", "FLUX.1-Turbo-Alpha"):
        assert with_stems[stem].directory == "loras"
        assert with_stems[stem].strategy == "text"
    assert with_stems["svdq-int4-flux.1-dev"].directory == "diffusion_models"


def test_api_sdxl_two_checkpoints() -> None:
    result = parse("api_sdxl_default_graph.json")
    assert result.format == "api"
    assert pairs(result) == {
        ("checkpoints", "sd_xl_base_1.0.safetensors"),
        ("checkpoints", "sd_xl_refiner_1.0.safetensors"),
    }
    assert {r.node_type for r in result.references} == {"CheckpointLoaderSimple"}
    assert {r.input_name for r in result.references} == {"ckpt_name"}


def test_api_efficient_loader_subfolder_and_sentinel() -> None:
    result = parse("api_efficient_loader_lora_subfolder.json")
    assert pairs(result) == {
        ("checkpoints", "sd_xl_base_1.0.safetensors"),
        ("loras", "artificialguybr/3DRedmond-3DRenderStyle-3DRenderAF.safetensors"),
    }
    assert not any(r.directory == "vae" for r in result.references)  # "Baked VAE" is not a file
