"""Safe destinations: sub-folders kept, escapes refused, hostile-but-harmless names allowed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyfixer.errors import UnsafePathError
from comfyfixer.layout import safe_destination
from comfyfixer.safe_names import safe_file_component, safe_relative_name
from comfyfixer.scripts.render import script_file_name


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI" / "models"
    (root / "checkpoints").mkdir(parents=True)
    return root


def test_subfolders_are_kept(models: Path) -> None:
    dest = safe_destination(models / "checkpoints", [models], "sd15/realisticVision_v60.safetensors")
    assert dest == models / "checkpoints" / "sd15" / "realisticVision_v60.safetensors"


def test_windows_backslashes_become_folders(models: Path) -> None:
    dest = safe_destination(models / "checkpoints", [models], r"SDXL\juggernaut\jug_v9.safetensors")
    assert dest == models / "checkpoints" / "SDXL" / "juggernaut" / "jug_v9.safetensors"


def test_dot_components_and_double_slashes_collapse(models: Path) -> None:
    dest = safe_destination(models / "checkpoints", [models], "./a//./b.safetensors")
    assert dest == models / "checkpoints" / "a" / "b.safetensors"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../../etc/passwd", "'..'"),
        ("sd15/../../x.safetensors", "'..'"),
        (r"..\..\x.ckpt", "'..'"),
        ("/etc/passwd", "absolute"),
        (r"\\server\share\x.ckpt", "absolute"),
        ("C:\\models\\x.ckpt", "drive letter"),
        ("c:x.ckpt", "drive letter"),
        ("x\x00.ckpt", "NUL"),
        ("x\n.ckpt", "control character"),
        ("x\r.ckpt", "control character"),
        ("x\x1b[31m.ckpt", "control character"),
        ("x\u2028.ckpt", "control character"),
        ("", "empty"),
        ("   ", "empty"),
        ("sd15/", "folder separator"),
        (".", "no file component"),
        ("a" * 300 + ".safetensors", "longer than"),
    ],
)
def test_unsafe_names_are_refused_with_a_reason(models: Path, name: str, why: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_destination(models / "checkpoints", [models], name)
    assert why in info.value.reason
    assert "refusing unsafe file name" in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "x $(touch pwned).safetensors",
        "x `id`.safetensors",
        'it\'s "quoted".safetensors',
        "semi;colon & amp | pipe.safetensors",
        "-leading-dash.safetensors",
        "ünïcödé 模型.safetensors",
        "*glob?[x].ckpt",
    ],
)
def test_shell_metacharacters_are_allowed_verbatim(models: Path, name: str) -> None:
    dest = safe_destination(models / "checkpoints", [models], name)
    assert dest.parent == models / "checkpoints"
    assert dest.name == name


def test_target_folder_outside_the_roots_is_refused(models: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError, match="not inside a models folder"):
        safe_destination(tmp_path / "elsewhere", [models], "x.safetensors")


def test_no_roots_is_refused(models: Path) -> None:
    with pytest.raises(UnsafePathError, match="no models folder"):
        safe_destination(models / "checkpoints", [], "x.safetensors")


def test_symlinked_subfolder_cannot_lead_outside(models: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (models / "checkpoints" / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the models folders"):
        safe_destination(models / "checkpoints", [models], "link/x.safetensors")


def test_symlinked_model_folder_is_a_deliberate_setup(models: Path, tmp_path: Path) -> None:
    big_disk = tmp_path / "big_disk" / "loras"
    big_disk.mkdir(parents=True)
    (models / "loras").symlink_to(big_disk)
    dest = safe_destination(models / "loras", [models], "style/x.safetensors")
    assert dest == models / "loras" / "style" / "x.safetensors"
    assert dest.resolve() == big_disk.resolve() / "style" / "x.safetensors"


def test_second_models_root_is_accepted(models: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra_models"
    dest = safe_destination(extra / "vae", [models, extra], "ae.safetensors")
    assert dest == extra / "vae" / "ae.safetensors"


def test_relative_roots_are_made_absolute(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(models.parent)
    dest = safe_destination(Path("models/checkpoints"), [Path("models")], "x.safetensors")
    assert dest == models / "checkpoints" / "x.safetensors"
    assert dest.is_absolute()


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_any_name_is_refused_or_stays_inside(name: str) -> None:
    root = Path("/srv/comfy/models")
    try:
        dest = safe_destination(root / "checkpoints", [root], name)
    except UnsafePathError:
        return
    assert os.path.normpath(dest) == str(dest)
    assert dest.is_relative_to(root / "checkpoints")
    assert dest != root / "checkpoints"
    assert "\n" not in str(dest) and "\x00" not in str(dest)


def test_relative_name_is_posix() -> None:
    assert str(safe_relative_name(r"a\b\c.pt")) == "a/b/c.pt"


@pytest.mark.parametrize(
    ("number", "name", "expected"),
    [
        (7, "flux1-dev-fp8.safetensors", "download_007_flux1-dev-fp8.safetensors.sh"),
        (12, "sd15/realisticVision_v60.safetensors", "download_012_realisticVision_v60.safetensors.sh"),
        (3, r"SDXL\x $(rm -rf ~) `id`.ckpt", "download_003_x_rm_-rf_id_.ckpt.sh"),
        (1000, "a.pt", "download_1000_a.pt.sh"),
        (1, "../../.hidden.pt", "download_001_hidden.pt.sh"),
        (2, "模型.safetensors", "download_002_safetensors.sh"),
        (4, "", "download_004_model.sh"),
    ],
)
def test_script_file_names(number: int, name: str, expected: str) -> None:
    assert script_file_name(number, name) == expected


def test_script_file_name_is_bounded() -> None:
    component = safe_file_component("x" * 500 + ".safetensors")
    assert len(component) <= 80
    assert script_file_name(1, "x" * 500).startswith("download_001_x")
