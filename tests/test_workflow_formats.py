"""Parser behaviour on hand-made fixtures: subgraphs, group nodes, dict widgets, hints, API, PNG and WebP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfixer.models import Reference, WorkflowResult, normalise_name
from comfyfixer.workflow import parse_bytes, parse_document, parse_file
from tests.fixtures import media

SYNTHETIC = Path(__file__).parent / "fixtures" / "workflows" / "synthetic"


def load(name: str) -> object:
    return json.loads((SYNTHETIC / name).read_text(encoding="utf-8"))


def refs_of(result: WorkflowResult) -> dict[tuple[str | None, str], Reference]:
    assert result.error is None
    return {(r.node_id, r.name): r for r in result.references}


def names(result: WorkflowResult) -> set[str]:
    return {normalise_name(r.name) for r in result.references}


# --- subgraphs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subgraphs() -> dict[tuple[str | None, str], Reference]:
    return refs_of(parse_file(SYNTHETIC / "subgraphs.json"))


def test_proxy_widget_override_replaces_inner_value(
    subgraphs: dict[tuple[str | None, str], Reference],
) -> None:
    ref = subgraphs[("10:1", "override\\flux-dev-override.safetensors")]
    assert ref.directory == "diffusion_models" and ref.input_name == "unet_name"
    assert ("10:1", "flux-dev.safetensors") not in subgraphs  # overridden, so not selected there
    assert ref.url is None  # the inner node's properties.models names the replaced file


def test_instance_without_values_uses_inner_values_and_metadata(
    subgraphs: dict[tuple[str | None, str], Reference],
) -> None:
    ref = subgraphs[("11:1", "flux-dev.safetensors")]
    assert ref.url == "https://huggingface.co/org/repo/resolve/main/flux-dev.safetensors"
    assert ref.bypassed  # the instance (mode 4) bypasses everything inside it


def test_nested_subgraph_ids_and_bypass_inheritance(
    subgraphs: dict[tuple[str | None, str], Reference],
) -> None:
    assert subgraphs[("10:2:7", "t5xxl_fp16.safetensors")].bypassed is False
    assert subgraphs[("11:2:7", "t5xxl_fp16.safetensors")].bypassed is True
    assert subgraphs[("10:2:7", "t5xxl_fp16.safetensors")].directory == "text_encoders"


def test_definition_input_order_values_override_inner_widgets(
    subgraphs: dict[tuple[str | None, str], Reference],
) -> None:
    assert subgraphs[("20:5", "instance-vae.safetensors")].directory == "vae"
    assert not any(name == "inner-default-vae.safetensors" for _, name in subgraphs)
    assert subgraphs[("20:6", "styles/ink.safetensors")].directory == "loras"


def test_unused_definition_is_reported_under_its_id(
    subgraphs: dict[tuple[str | None, str], Reference],
) -> None:
    ref = subgraphs[("44444444-4444-4444-8444-444444444444:8", "4x-UltraSharp.pth")]
    assert ref.directory == "upscale_models"


# --- group nodes -------------------------------------------------------------------------------------


def test_group_node_inner_nodes_use_the_table_and_instance_mode() -> None:
    refs = refs_of(parse_file(SYNTHETIC / "group_nodes.json"))
    assert refs[("3:0", "sd15/dreamshaper_8.safetensors")].directory == "checkpoints"
    assert refs[("3:1", "vae-ft-mse.safetensors")].directory == "vae"
    assert refs[("3:0", "sd15/dreamshaper_8.safetensors")].bypassed  # instance is muted (mode 2)
    # The instance's concatenated values repeat what the inner nodes hold: not reported twice.
    assert not any(node == "3" for node, _ in refs)
    assert refs[("Upscale:0", "RealESRGAN_x4plus.pth")].directory == "upscale_models"


# --- widgets, sentinels, hints ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def widgets() -> WorkflowResult:
    return parse_file(SYNTHETIC / "widgets.json")


def test_power_lora_loader_dicts_keep_subfolders_and_backslashes(widgets: WorkflowResult) -> None:
    refs = refs_of(widgets)
    on = refs[("1", "flux\\detailer.safetensors")]
    assert on.directory == "loras" and on.strategy == "table"
    assert refs[("1", "off-lora.safetensors")].directory == "loras"  # toggled off is still named


def test_pysssss_content_dict_and_dict_form_widgets(widgets: WorkflowResult) -> None:
    refs = refs_of(widgets)
    assert refs[("2", "pixel-art.safetensors")].directory == "loras"
    vae = refs[("3", "Wan2_1_VAE_bf16.safetensors")]
    assert vae.directory == "vae" and vae.input_name == "model_name" and vae.bypassed


def test_sentinels_and_input_files_are_not_models(widgets: WorkflowResult) -> None:
    found = names(widgets)
    for not_a_model in ("Baked VAE", "None", "taesd", "photo.png"):
        assert not_a_model not in found
    assert "dreamshaper.safetensors" in found
    assert not any(r.node_id in {"8", "9", "10"} for r in widgets.references)


def test_unknown_node_value_has_no_folder(widgets: WorkflowResult) -> None:
    ref = refs_of(widgets)[("5", "mystery_model.safetensors")]
    assert ref.directory is None and ref.strategy == "heuristic" and not ref.folder_guessed
    assert widgets.unknown_nodes == ["SomeCustomLoader"]


def test_top_level_models_and_note_links_become_hints(widgets: WorkflowResult) -> None:
    unet = refs_of(widgets)[("7", "flux-dev.safetensors")]
    sources = [h.source for h in unet.hints]
    assert sources == ["top-level models", "note"]
    assert unet.hash == "ab" * 32 and unet.hints[0].hash_type == "SHA256"
    # A link in a note is a hint only; the other linked file is no reference.
    assert "other.safetensors" not in names(widgets)


def test_top_level_model_no_node_uses_plans_nothing(widgets: WorkflowResult) -> None:
    # The list is a hint (ComfyUI frontend rule): an entry no node uses creates no reference.
    assert "extra-upscaler.pth" not in names(widgets)
    unused = [h for h in widgets.unused_hints if h.name == "extra-upscaler.pth"]
    assert len(unused) == 1 and unused[0].reason == "no node uses this name"
    assert unused[0].url == "https://huggingface.co/org/repo/resolve/main/extra-upscaler.pth"


def _graph_with_hints(top: list[dict[str, str]], node_models: list[dict[str, str]]) -> WorkflowResult:
    doc = {
        "nodes": [
            {
                "id": 1,
                "type": "VAELoader",
                "widgets_values": ["ae.safetensors"],
                "properties": {"models": node_models},
            }
        ],
        "models": top,
    }
    return parse_document(doc, "w.json")


def test_hint_lends_nothing_when_its_folder_disagrees_with_the_node() -> None:
    wrong = {"name": "ae.safetensors", "url": "https://huggingface.co/a/b/resolve/main/ae.safetensors",
             "directory": "checkpoints"}  # fmt: skip
    result = _graph_with_hints([wrong], [wrong])
    (ref,) = result.references
    assert ref.directory == "vae" and ref.hints == []
    assert [h.source for h in result.unused_hints] == ["properties.models", "top-level models"]
    assert all("vae/" in h.reason for h in result.unused_hints)


def test_hint_with_the_node_folder_lends_its_url_and_hash() -> None:
    right = {"name": "ae.safetensors", "url": "https://huggingface.co/a/b/resolve/main/ae.safetensors",
             "directory": "vae", "hash": "cd" * 32, "hash_type": "sha256"}  # fmt: skip
    result = _graph_with_hints([right], [])
    (ref,) = result.references
    assert ref.url == right["url"] and ref.hash == "cd" * 32
    assert result.unused_hints == []


def test_primitive_value_takes_the_folder_of_the_same_file(widgets: WorkflowResult) -> None:
    ref = refs_of(widgets)[("12", "flux-dev.safetensors")]
    assert ref.directory == "diffusion_models"


def test_text_stems_only_on_request(widgets: WorkflowResult) -> None:
    assert "EasyNegative" not in names(widgets)
    doc = load("widgets.json")
    with_stems = parse_document(doc, "w.json", stems=True)
    refs = {r.name: r for r in with_stems.references}
    assert refs["EasyNegative"].directory == "embeddings" and refs["EasyNegative"].strategy == "text"
    assert refs["detail_tweaker"].directory == "loras"


def test_stale_properties_models_entry_is_ignored() -> None:
    doc = {
        "nodes": [
            {
                "id": 1,
                "type": "CLIPLoader",
                "widgets_values": ["umt5-other.safetensors", "wan"],
                "properties": {
                    "models": [
                        {
                            "name": "umt5_xxl.safetensors",
                            "url": "https://x/umt5_xxl.safetensors",
                            "directory": "text_encoders",
                        }
                    ]
                },
            },
            {
                "id": 2,
                "type": "VAELoader",
                "widgets_values": ["WAN\\wan_2.1_vae.safetensors"],
                "properties": {
                    "models": [{"name": "wan_2.1_vae.safetensors", "url": "https://x/v", "directory": "vae"}]
                },
            },
        ]
    }
    refs = refs_of(parse_document(doc, "p.json"))
    assert refs[("1", "umt5-other.safetensors")].hints == []
    assert set(refs) == {("1", "umt5-other.safetensors"), ("2", "WAN\\wan_2.1_vae.safetensors")}
    # The same file moved into a sub-folder keeps its download link.
    assert refs[("2", "WAN\\wan_2.1_vae.safetensors")].url == "https://x/v"


def test_properties_models_give_a_folder_to_an_unknown_loader() -> None:
    doc = {
        "nodes": [
            {
                "id": 3,
                "type": "BrandNewLoader",
                "widgets_values": ["new_model.safetensors"],
                "properties": {
                    "models": [{"name": "new_model.safetensors", "url": "https://x/n", "directory": "clip"}]
                },
            }
        ]
    }
    (ref,) = parse_document(doc, "n.json").references
    assert ref.directory == "text_encoders"  # legacy folder name mapped
    assert ref.strategy == "properties.models"


def test_file_widget_names_beat_a_stale_table_index() -> None:
    # A newer CheckpointLoader with an extra widget first; the file's own input names say where the file is.
    doc = {
        "nodes": [
            {
                "id": 1,
                "type": "CheckpointLoaderSimple",
                "inputs": [
                    {"name": "mode", "type": "COMBO", "widget": {"name": "mode"}, "link": None},
                    {"name": "ckpt_name", "type": "COMBO", "widget": {"name": "ckpt_name"}, "link": None},
                ],
                "widgets_values": ["fast", "model.safetensors"],
            }
        ]
    }
    (ref,) = parse_document(doc, "c.json").references
    assert ref.directory == "checkpoints" and ref.strategy == "names" and ref.input_name == "ckpt_name"


# --- API -----------------------------------------------------------------------------------------------


def test_api_wrapped_merges_ui_hints_and_reads_inputs_by_name() -> None:
    result = parse_file(SYNTHETIC / "api_wrapped.json")
    assert result.format == "api-wrapped"
    refs = refs_of(result)
    ckpt = refs[("4", "SDXL\\juggernaut.safetensors")]
    assert ckpt.directory == "checkpoints" and ckpt.url == "https://civitai.com/api/download/models/1"
    assert len([r for r in result.references if r.node_id == "4"]) == 1  # UI and API views merged
    assert refs[("5", "add-detail.safetensors")].directory == "loras"
    assert refs[("6", "a.safetensors")].input_name == "loras.1.lora_name"
    assert refs[("6", "b.safetensors")].directory == "loras"
    assert refs[("7", "weird/model.gguf")].directory is None
    assert "pixel_space" not in names(result)
    assert result.unknown_nodes == ["UnknownThing"]


def test_bare_api_format() -> None:
    doc = {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
        }
    }
    result = parse_document(doc, "a.json")
    assert result.format == "api"
    (ref,) = result.references
    assert (ref.directory, ref.input_name, ref.node_id, ref.bypassed) == (
        "diffusion_models",
        "unet_name",
        "1",
        False,
    )


# --- embedded in images ---------------------------------------------------------------------------------


def ui_text() -> str:
    return json.dumps(load("widgets.json"))


def api_text() -> str:
    return json.dumps(load("api_wrapped.json")["prompt"])  # type: ignore[index]


@pytest.mark.parametrize("kind", ["tEXt", "zTXt", "iTXt", "iTXt-z"])
def test_png_text_chunks(kind: str) -> None:
    data = media.png(
        media.text_chunk("workflow", ui_text(), kind), media.text_chunk("prompt", api_text(), kind)
    )
    result = parse_bytes(data, "image.png")
    assert result.format == "png:ui+api"
    found = names(result)
    assert {"flux-dev.safetensors", "SDXL/juggernaut.safetensors", "a.safetensors"} <= found


def test_png_with_prompt_only() -> None:
    result = parse_bytes(media.png(media.text_chunk("prompt", api_text())), "p.png")
    assert result.format == "png:api"
    assert "add-detail.safetensors" in names(result)


def test_png_without_workflow_is_a_clean_error() -> None:
    result = parse_bytes(media.png(media.text_chunk("parameters", "a photo, Steps: 20")), "a1111.png")
    assert result.references == []
    assert result.error is not None and "no ComfyUI workflow" in result.error and "\n" not in result.error


def test_png_truncated_after_metadata_still_reads() -> None:
    data = media.png(media.text_chunk("workflow", ui_text()))
    cut = data.index(b"IDAT") + 2
    assert "flux-dev.safetensors" in names(parse_bytes(data[:cut], "cut.png"))


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("prefix", [False, True])
def test_webp_exif_tags(big_endian: bool, prefix: bool) -> None:
    exif = media.exif(
        {0x010F: "workflow:" + ui_text(), 0x0110: "Prompt:" + api_text()},
        big_endian=big_endian,
        prefix=prefix,
    )
    result = parse_bytes(media.webp(exif), "anim.webp")
    assert result.format == "webp:ui+api"
    assert {"flux-dev.safetensors", "b.safetensors"} <= names(result)


def test_webp_without_exif_is_a_clean_error() -> None:
    result = parse_bytes(media.webp(b"not exif"), "x.webp")
    assert result.error is not None and "WEBP" in result.error


def test_committed_media_fixtures() -> None:
    png_result = parse_file(SYNTHETIC / "embedded.png")
    webp_result = parse_file(SYNTHETIC / "embedded.webp")
    assert png_result.format == "png:ui+api" and webp_result.format == "webp:ui+api"
    assert names(png_result) == names(webp_result)
    assert "override/flux-dev-override.safetensors" in names(png_result)


def test_note_link_mid_sentence_is_still_a_hint() -> None:
    # Real notes go on after the link ("... and put it in models/vae"): the note must still be read.
    url = "https://huggingface.co/org/repo/resolve/main/foo.safetensors?download=true"
    doc = {
        "version": 0.4,
        "links": [],
        "nodes": [
            {"id": 1, "type": "MarkdownNote", "mode": 0, "widgets_values": [f"Get [foo]({url}) for vae."]},
            {"id": 2, "type": "VAELoader", "mode": 0, "widgets_values": ["foo.safetensors"]},
        ],
    }
    (ref,) = parse_document(doc, "note.json").references
    assert [(h.source, h.directory) for h in ref.hints] == [("note", "vae")]
    assert ref.url is not None and ref.url.startswith(url.split("?")[0])
