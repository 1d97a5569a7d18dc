"""Inventory: folder registry (defaults, models/ sub-folders, extra_model_paths.yaml) and classification."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfyfixer.cli.errors import explain
from comfyfixer.errors import InputError
from comfyfixer.inventory import Inventory
from comfyfixer.models import Reference
from comfyfixer.tree import iter_tree


def _files_walked(top: Path) -> list[str]:
    """Every file the inventory's walk of `top` reaches."""
    return [path for path, is_dir in iter_tree(str(top)) if not is_dir]

def touch(path: Path, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "ComfyUI"
    (r / "models").mkdir(parents=True)
    return r


def status(inv: Inventory, directory: str | None, name: str) -> tuple[str, str | None]:
    return inv.locate(directory, name)


def test_present_with_subfolder_and_windows_separators(root: Path) -> None:
    f = touch(root / "models/checkpoints/sd15/realisticVision_v60.safetensors")
    inv = Inventory.load(root)
    assert status(inv, "checkpoints", "sd15/realisticVision_v60.safetensors") == ("present", str(f))
    assert status(inv, "checkpoints", "sd15\\realisticVision_v60.safetensors") == ("present", str(f))
    assert status(inv, "checkpoints", "other.safetensors") == ("missing", None)


def test_folder_aliases(root: Path) -> None:
    clip = touch(root / "models/clip/t5xxl_fp16.safetensors")
    unet = touch(root / "models/unet/flux1-dev.safetensors")
    t2i = touch(root / "models/t2i_adapter/t2iadapter_depth.pth")
    inv = Inventory.load(root)
    for key in ("text_encoders", "clip"):
        assert status(inv, key, "t5xxl_fp16.safetensors") == ("present", str(clip))
    for key in ("diffusion_models", "unet"):
        assert status(inv, key, "flux1-dev.safetensors") == ("present", str(unet))
    assert status(inv, "controlnet", "t2iadapter_depth.pth") == ("present", str(t2i))


def test_misplaced_in_other_folder_other_subfolder_and_other_case(root: Path) -> None:
    in_loras = touch(root / "models/loras/detail_tweaker.safetensors")
    in_sub = touch(root / "models/vae/old/ae.safetensors")
    upper = touch(root / "models/upscale_models/4x-UltraSharp.pth")
    inv = Inventory.load(root)
    assert status(inv, "checkpoints", "detail_tweaker.safetensors") == ("misplaced", str(in_loras))
    assert status(inv, "vae", "flux/ae.safetensors") == ("misplaced", str(in_sub))
    assert status(inv, "upscale_models", "4x-ultrasharp.pth") == ("misplaced", str(upper))


def test_misplaced_prefers_a_copy_in_its_own_folder(root: Path) -> None:
    touch(root / "models/checkpoints/model_x.safetensors")
    own = touch(root / "models/loras/z/model_x.safetensors")
    inv = Inventory.load(root)
    assert status(inv, "loras", "a/model_x.safetensors") == ("misplaced", str(own))


def test_generic_snapshot_names_are_not_evidence(root: Path) -> None:
    touch(root / "models/LLM/Florence-2-base/model.safetensors")
    inv = Inventory.load(root)
    assert status(inv, "vae", "model.safetensors") == ("missing", None)


def test_tiny_embedding_and_extensionless_names(root: Path) -> None:
    emb = touch(root / "models/embeddings/easynegative.safetensors", size=30_000)
    lora = touch(root / "models/loras/styles/add_detail.pt", size=10)
    inv = Inventory.load(root)
    assert status(inv, "embeddings", "easynegative") == ("present", str(emb))
    assert status(inv, "loras", "styles/add_detail") == ("present", str(lora))
    assert status(inv, "embeddings", "badhands") == ("missing", None)


def test_hidden_temp_and_partial_files_do_not_count(root: Path) -> None:
    touch(root / "models/checkpoints/.hidden.safetensors")
    touch(root / "models/checkpoints/.git/objects/in_git.safetensors")
    touch(root / "models/checkpoints/big.safetensors.part")
    touch(root / "models/checkpoints/bad.safetensors.rejected")
    inv = Inventory.load(root)
    for name in (".hidden.safetensors", "in_git.safetensors", "big.safetensors", "bad.safetensors"):
        assert status(inv, "checkpoints", name) == ("missing", None), name
    assert _files_walked(root / "models") == []


def test_directory_models_are_checked_as_directories(root: Path) -> None:
    touch(root / "models/diffusers/stable-diffusion-v1-5/model_index.json")
    touch(root / "models/LLM/Florence-2-base/config.json")
    inv = Inventory.load(root)
    assert status(inv, "diffusers", "stable-diffusion-v1-5")[0] == "present"
    assert status(inv, "LLM", "Florence-2-base")[0] == "present"
    assert status(inv, "LLM", "Florence-2-large") == ("missing", None)


def test_unknown_directory_is_looked_up_everywhere(root: Path) -> None:
    f = touch(root / "models/sams/sam_vit_b_01ec64.pth")
    touch(root / "models/loras/elsewhere/only_base.safetensors")
    inv = Inventory.load(root)
    assert status(inv, None, "sam_vit_b_01ec64.pth") == ("present", str(f))
    # Without a folder a base-name match elsewhere proves nothing: missing, not misplaced.
    assert status(inv, None, "only_base.safetensors") == ("missing", None)


def test_pack_folder_under_models_is_a_key(root: Path) -> None:
    f = touch(root / "models/grounding-dino/groundingdino_swint_ogc.pth")
    inv = Inventory.load(root)
    assert "grounding-dino" in inv.layout.keys
    assert status(inv, "grounding-dino", "groundingdino_swint_ogc.pth") == ("present", str(f))


def test_names_climbing_out_are_never_present(root: Path) -> None:
    touch(root / "models/vae/x.safetensors")
    inv = Inventory.load(root)
    assert status(inv, "loras", "../vae/x.safetensors") == ("missing", None)


def test_classify_sets_status_and_path(root: Path) -> None:
    f = touch(root / "models/vae/ae.safetensors")
    inv = Inventory.load(root)
    ref = Reference(workflow="w.json", name="ae.safetensors", directory="vae")
    inv.classify(ref)
    assert (ref.status, ref.local_path) == ("present", str(f))


def test_symlink_loop_terminates_and_linked_files_are_found(root: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared_loras"
    f = touch(shared / "linked.safetensors")
    (root / "models/loras").mkdir(parents=True)
    os.symlink(shared, root / "models/loras/linked")
    os.symlink(root / "models", root / "models/loras/loop")  # points back up the tree
    inv = Inventory.load(root)
    via_link = root / "models/loras/linked" / f.name
    assert status(inv, "loras", "linked/linked.safetensors") == ("present", str(via_link))
    # The loop was entered once at most: no path runs through it twice.
    assert _files_walked(root / "models") == [str(via_link)]


def test_target_dir_defaults_to_folder_named_after_key(root: Path) -> None:
    inv = Inventory.load(root)
    assert inv.layout.target_dir("unet") == root / "models" / "diffusion_models"
    assert inv.layout.target_dir("clip") == root / "models" / "text_encoders"
    assert inv.layout.target_dir("sams") == root / "models" / "sams"
    assert inv.layout.target_dir("brand_new_key") == root / "models" / "brand_new_key"


YAML = """\
a111:
    base_path: ~/sd-webui
    checkpoints: models/Stable-diffusion
    loras: |
        models/Lora
        models/LyCORIS

    embeddings: embeddings
empty_section:
comfy_desktop:
    base_path: $SHARED_MODELS
    is_default: true
    unet: unet_here
    clip: clip_here
    my_pack_models: pack
relative:
    vae: ../elsewhere/vae
"""


def test_extra_model_paths_yaml(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    shared = tmp_path / "shared"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHARED_MODELS", str(shared))
    (root / "extra_model_paths.yaml").write_text(YAML)
    ckpt = touch(home / "sd-webui/models/Stable-diffusion/v1-5.safetensors")
    lyco = touch(home / "sd-webui/models/LyCORIS/sub/lyco.safetensors")
    emb = touch(home / "sd-webui/embeddings/tiny.pt", size=3)
    unet = touch(shared / "unet_here/flux.gguf")
    clip = touch(shared / "clip_here/clip_l.safetensors")
    pack = touch(shared / "pack/thing.bin")
    vae = touch(tmp_path / "elsewhere/vae/ae.sft")
    inv = Inventory.load(root)
    assert status(inv, "checkpoints", "v1-5.safetensors") == ("present", str(ckpt))
    assert status(inv, "loras", "sub/lyco.safetensors") == ("present", str(lyco))
    assert status(inv, "embeddings", "tiny") == ("present", str(emb))
    assert status(inv, "diffusion_models", "flux.gguf") == ("present", str(unet))
    assert status(inv, "text_encoders", "clip_l.safetensors") == ("present", str(clip))
    assert status(inv, "my_pack_models", "thing.bin") == ("present", str(pack))
    assert status(inv, "vae", "ae.sft") == ("present", str(vae))
    # is_default sections become the download target and come first in lookup order.
    assert inv.layout.target_dir("unet") == shared / "unet_here"
    assert inv.layout.dir_paths("clip")[0] == str(shared / "clip_here")
    assert inv.layout.target_dir("checkpoints") == root / "models" / "checkpoints"
    roots = set(inv.layout.models_roots)
    assert {shared / "unet_here", home / "sd-webui/models/Stable-diffusion", root / "models"} <= roots


def test_extra_yaml_argument_and_missing_extra_yaml(root: Path, tmp_path: Path) -> None:
    desktop = tmp_path / "desktop"
    f = touch(desktop / "loras/x.safetensors")
    cfg = tmp_path / "extra_models_config.yaml"
    cfg.write_text("comfyui_desktop:\n  base_path: desktop\n  is_default: true\n  loras: loras\n")
    inv = Inventory.load(root, [cfg])
    assert status(inv, "loras", "x.safetensors") == ("present", str(f))
    assert inv.layout.target_dir("loras") == desktop / "loras"
    with pytest.raises(InputError, match="does not exist"):
        Inventory.load(root, [tmp_path / "nope.yaml"])


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("a:\n  checkpoints: [x, y\n  vae: z\n", 3, "not valid YAML"),
        ("a:\n  base_path: /x\n  loras:\n    - one\n    - two\n", 3, "lists are not read"),
        ("a:\n  is_default: maybe\n", 2, "is_default"),
        ("- just\n- a list\n", 1, "expected sections"),
        ("a: just a string\n", 1, "section 'a'"),
    ],
)
def test_malformed_yaml_says_which_line(root: Path, text: str, line: int, what: str) -> None:
    (root / "extra_model_paths.yaml").write_text(text)
    with pytest.raises(InputError) as info:
        Inventory.load(root)
    assert f"extra_model_paths.yaml:{line}:" in info.value.message
    assert what in info.value.message


def test_root_without_models_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        Inventory.load(tmp_path)
    assert "no models/ folder" in info.value.message
    assert "--comfyui" in explain(info.value).next_step
    assert explain(info.value).exit_code == 2
    with pytest.raises(InputError, match="does not exist"):
        Inventory.load(tmp_path / "absent")
    touch(tmp_path / "file")
    with pytest.raises(InputError, match="is not a folder"):
        Inventory.load(tmp_path / "file")


def test_models_folder_given_as_root_points_at_its_parent(root: Path) -> None:
    (root / "models/checkpoints").mkdir()
    with pytest.raises(InputError) as info:
        Inventory.load(root / "models")
    assert f"pass its parent, {root}" in explain(info.value).next_step
