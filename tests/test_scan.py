"""The scan stage: discovery, planning (de-duplication), classification, the plan file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from comfyfixer.cli.errors import explain
from comfyfixer.errors import InputError
from comfyfixer.models import Hint, Reference, normalise_name
from comfyfixer.scan import PLAN_FILE, discover, parallel_workers, plan, scan, scan_json, write_plan

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus" / "workflows"

HF_URL = "https://huggingface.co/org/repo/resolve/main/a.safetensors"


def node(node_id: int, node_type: str, *values: Any, mode: int = 0, **props: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": node_type,
        "mode": mode,
        "widgets_values": list(values),
        "properties": props,
    }


def ui_workflow(*nodes: dict[str, Any]) -> str:
    return json.dumps({"version": 0.4, "nodes": list(nodes), "links": []})


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_install(root: Path) -> Path:
    """A ComfyUI folder: one model present, one in the wrong folder, one with the wrong case."""
    write(root / "models/checkpoints/sd15/a.safetensors", b"x")
    write(root / "models/loras/ae.safetensors", b"x")
    write(root / "models/diffusion_models/FLUX.safetensors", b"x")
    return root


def make_workflows(folder: Path) -> Path:
    hint = {"name": "sd15\\a.safetensors", "url": HF_URL, "directory": "checkpoints"}
    write(
        folder / "one.json",
        ui_workflow(
            node(1, "CheckpointLoaderSimple", "sd15\\a.safetensors", models=[hint]),
            node(2, "VAELoader", "ae.safetensors"),
            node(3, "UNETLoader", "flux.safetensors", "default"),
            node(4, "LoraLoader", "only_bypassed.safetensors", 1, 1, mode=4),
        ),
    )
    write(
        folder / "sub/two.json",
        ui_workflow(
            node(7, "LoraLoader", "detail.safetensors", 1, 1),
            node(8, "CheckpointLoaderSimple", "sd15/A.safetensors"),
        ),
    )
    write(folder / "sub/broken.json", "{ not json")
    write(folder / "notes.txt", "not a workflow")
    write(folder / ".hidden/three.json", ui_workflow(node(1, "VAELoader", "hidden.safetensors")))
    return folder


def ref(name: str, directory: str | None, workflow: str = "w.json", **kw: Any) -> Reference:
    return Reference(workflow=workflow, name=name, directory=directory, **kw)


# ---------------------------------------------------------------- discovery


def test_discover_recurses_filters_and_skips_hidden_and_output(tmp_path: Path) -> None:
    wf = make_workflows(tmp_path / "wf")
    write(wf / "output/missing_models.json", "{}")
    write(wf / "img.PNG", b"\x89PNG")
    odd = write(tmp_path / "given.workflow", "{}")
    found = discover([wf, odd, wf / "one.json"], exclude=[wf / "output"])
    names = sorted(p.name for p in found)
    assert names == ["broken.json", "given.workflow", "img.PNG", "one.json", "two.json"]


def test_discover_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        discover([tmp_path, tmp_path / "nowhere"])
    assert "nowhere does not exist" in info.value.message
    assert explain(info.value).exit_code == 2


# ---------------------------------------------------------------- planning


def test_plan_deduplicates_across_workflows_and_merges_hints() -> None:
    h1 = Hint(url=HF_URL, source="properties.models")
    h2 = Hint(url=None, hash="ab" * 32, hash_type="sha256", source="top-level models")
    refs = [
        ref("sd15\\a.safetensors", "checkpoints", "one.json", node_type="CheckpointLoaderSimple", hints=[h1]),
        ref("sd15/A.safetensors", "checkpoints", "two.json", node_type="CheckpointLoader", hints=[h1, h2]),
        ref("sd15/a.safetensors", "checkpoints", "two.json", node_type="CheckpointLoaderSimple"),
        ref("clip_l.safetensors", "clip", "one.json"),
        ref("clip_l.safetensors", "text_encoders", "two.json"),
    ]
    models = plan(refs)
    assert [(m.name, m.directory) for m in models] == [
        ("sd15/a.safetensors", "checkpoints"),
        ("clip_l.safetensors", "text_encoders"),
    ]
    first = models[0]
    assert first.workflows == ["one.json", "two.json"]
    assert first.node_types == ["CheckpointLoaderSimple", "CheckpointLoader"]
    assert first.hints == [h1, h2]
    assert (first.url, first.hash) == (HF_URL, "ab" * 32)
    assert models[1].workflows == ["one.json", "two.json"]


def test_plan_counts_missing_and_unknown_but_not_present_or_misplaced() -> None:
    refs = [
        ref("a.safetensors", "vae", status="missing"),
        ref("b.safetensors", "vae", status="unknown"),
        ref("c.safetensors", "vae", status="present"),
        ref("d.safetensors", "vae", status="misplaced"),
    ]
    assert [m.name for m in plan(refs)] == ["a.safetensors", "b.safetensors"]


def test_plan_bypassed_only_with_include_bypassed() -> None:
    refs = [
        ref("only_bypassed.safetensors", "loras", "one.json", bypassed=True),
        ref("both.safetensors", "loras", "one.json", bypassed=True),
        ref("both.safetensors", "loras", "two.json"),
    ]
    assert [(m.name, m.bypassed_only, m.workflows) for m in plan(refs)] == [
        ("both.safetensors", False, ["two.json"])
    ]
    included = plan(refs, include_bypassed=True)
    assert [(m.name, m.bypassed_only) for m in included] == [
        ("only_bypassed.safetensors", True),
        ("both.safetensors", False),
    ]
    assert included[1].workflows == ["one.json", "two.json"]


def test_plan_folds_stems_and_unknown_folders_into_the_known_model() -> None:
    refs = [
        ref("add_detail", "loras", "text.json", strategy="text"),
        ref("add_detail.safetensors", "loras", "ui.json"),
        ref("sam_vit_b.pth", None, "x.json", strategy="heuristic"),
        ref("sam_vit_b.pth", "sams", "y.json"),
        ref("lonely_stem", "loras", "z.json"),
    ]
    models = plan(refs)
    assert [(m.name, m.directory, m.workflows) for m in models] == [
        ("add_detail.safetensors", "loras", ["ui.json", "text.json"]),
        ("sam_vit_b.pth", "sams", ["y.json", "x.json"]),
        ("lonely_stem", "loras", ["z.json"]),
    ]


# ---------------------------------------------------------------- the stage


def test_scan_classifies_against_the_install(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    (root / "models").joinpath("vae").mkdir()
    report = scan([make_workflows(tmp_path / "wf")], root)
    by_name = {(r.workflow.rsplit(os.sep, 1)[-1], r.name): r for r in report.references}
    assert by_name[("one.json", "sd15\\a.safetensors")].status == "present"
    assert by_name[("two.json", "sd15/A.safetensors")].status == "misplaced"  # other case
    vae = by_name[("one.json", "ae.safetensors")]
    assert (vae.status, vae.local_path) == ("misplaced", str(root / "models/loras/ae.safetensors"))
    assert by_name[("one.json", "flux.safetensors")].status == "misplaced"
    bypassed = by_name[("one.json", "only_bypassed.safetensors")]
    assert (bypassed.status, bypassed.bypassed) == ("missing", True)
    assert [(m.name, m.directory) for m in report.missing] == [("detail.safetensors", "loras")]
    assert report.target_dir(report.missing[0]) == root / "models" / "loras"
    # The broken file is recorded with a reason; the others were read all the same.
    errors = {Path(w.path).name: w.error for w in report.workflows if w.error}
    assert list(errors) == ["broken.json"] and errors["broken.json"]
    assert report.counts()["workflows"] == 3


def test_scan_without_install_plans_everything(tmp_path: Path) -> None:
    report = scan([make_workflows(tmp_path / "wf")], None)
    assert {r.status for r in report.references} == {"unknown"}
    assert all(r.local_path is None for r in report.references)
    assert sorted(m.name for m in report.missing) == [
        "ae.safetensors",
        "detail.safetensors",
        "flux.safetensors",
        "sd15/a.safetensors",
    ]
    a = next(m for m in report.missing if m.name == "sd15/a.safetensors")
    assert len(a.workflows) == 2 and a.url == HF_URL
    assert report.target_dir(a) is None


def test_scan_fails_fast_on_a_bad_install(tmp_path: Path) -> None:
    wf = make_workflows(tmp_path / "wf")
    with pytest.raises(InputError, match="no models/ folder"):
        scan([wf], tmp_path)


def test_parallel_parse_gives_the_same_report(tmp_path: Path) -> None:
    wf = tmp_path / "many"
    for i in range(70):
        write(wf / f"w{i:03d}.json", ui_workflow(node(1, "LoraLoader", f"l{i % 9}.safetensors", 1, 1)))
    write(wf / "w999.json", "[]")
    if threading.active_count() == 1:  # another test's server thread makes forking unsafe
        assert parallel_workers(71, 2) == 2
    assert parallel_workers(71, 1) == 1
    assert parallel_workers(10, 4) == 1
    sequential = scan_json(scan([wf], None, jobs=1))
    parallel = scan_json(scan([wf], None, jobs=2))
    assert parallel == sequential
    assert len(parallel["missing"]) == 9
    assert len(parallel["missing"][0]["workflows"]) == 8
    assert parallel["counts"]["unreadable"] == 1


# ---------------------------------------------------------------- the plan file


def test_write_plan_is_atomic_and_complete(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    report = scan([make_workflows(tmp_path / "wf")], root)
    out = tmp_path / "out"
    write(out / PLAN_FILE, "old contents")
    path = write_plan(report, out)
    assert path == out / PLAN_FILE
    assert os.listdir(out) == [PLAN_FILE]  # no temp file left behind
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == 1
    assert data["comfyui_root"] == str(root)
    assert data["generated_at"].endswith("Z")
    assert data["missing"] == [
        {
            "name": "detail.safetensors",
            "directory": "loras",
            "file_name": "detail.safetensors",
            "kind": "file",
            "workflows": [str(tmp_path / "wf/sub/two.json")],
            "node_types": ["LoraLoader"],
            "url": None,
            "hash": None,
            "hints": [],
            "bypassed_only": False,
            "target_dir": str(root / "models/loras"),
        }
    ]


# ---------------------------------------------------------------- the real corpus


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent: corpus scan not run")
def test_corpus_scan_is_consistent(figures: list[str]) -> None:
    report = scan([CORPUS], None)
    data = scan_json(report)
    counts = data["counts"]
    figures.append(
        f"scan of the corpus: {counts['workflows']} files ({counts['unreadable']} unreadable), "
        f"{counts['references']} references ({counts['bypassed']} on bypassed nodes) -> "
        f"{len(report.missing)} distinct models planned"
    )
    assert data["counts"]["workflows"] >= 400
    keys = [(m["directory"], m["name"].lower()) for m in data["missing"]]
    assert len(keys) == len(set(keys)), "a model is planned twice"
    paths = {w["path"] for w in data["workflows"]}
    for model in data["missing"]:
        assert model["workflows"] and set(model["workflows"]) <= paths
    # Every active reference is planned (as itself, or folded into the same name with an extension).
    planned: dict[str, set[str]] = {}
    for m in report.missing:
        planned.setdefault(m.name.lower(), set()).update(m.workflows)
    for r in report.references:
        if r.bypassed:
            continue
        name = normalise_name(r.name).lower()
        homes = [n for n in planned if n == name or n.startswith(name + ".")]
        assert any(r.workflow in planned[n] for n in homes), (r.workflow, r.name)
