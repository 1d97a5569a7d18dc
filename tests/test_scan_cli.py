"""`comfyfixer scan` as a user runs it: JSON shape, tables, exit codes, the plan file, start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from comfyfixer.cli import scan as scan_cmd
from tests.test_scan import make_install, make_workflows, write

REPO = Path(__file__).resolve().parents[1]

WORKFLOW_KEYS = {"path", "format", "error"}
REFERENCE_KEYS = {
    "workflow",
    "node_id",
    "node_type",
    "name",
    "directory",
    "url",
    "hash",
    "bypassed",
    "status",
    "local_path",
}
MISSING_KEYS = {"name", "directory", "workflows", "url", "hash"}


def cli_app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command("scan")(scan_cmd.scan)

    @app.callback()
    def _root() -> None:
        """Keeps `scan` a sub-command, as in the real application."""

    return app


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process: error mapping and exit codes included."""
    full_env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "comfyfixer", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def no_comfyui_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMFYUI_PATH", raising=False)


@pytest.mark.usefixtures("no_comfyui_env")
def test_json_has_the_documented_shape(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    wf = make_workflows(tmp_path / "wf")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli_app(), ["scan", str(wf), "--comfyui", str(root), "--json", "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    assert {"workflows", "references", "missing"} <= set(data)
    assert len(data["workflows"]) == 3
    for wf_row in data["workflows"]:
        assert set(wf_row) >= WORKFLOW_KEYS
    assert data["references"]
    for ref_row in data["references"]:
        assert set(ref_row) >= REFERENCE_KEYS
        assert ref_row["status"] in ("present", "misplaced", "missing")
    assert [m["name"] for m in data["missing"]] == ["detail.safetensors"]
    assert set(data["missing"][0]) >= MISSING_KEYS
    misplaced = [r for r in data["references"] if r["name"] == "ae.safetensors"]
    assert misplaced[0]["local_path"] == str(root / "models/loras/ae.safetensors")
    broken = [w for w in data["workflows"] if w["path"].endswith("broken.json")]
    assert broken[0]["error"] and broken[0]["format"] is None
    plan = json.loads((out / "missing_models.json").read_text(encoding="utf-8"))
    assert plan["missing"] == data["missing"]
    assert data["plan_file"] == str(out / "missing_models.json")


@pytest.mark.usefixtures("no_comfyui_env")
def test_tables_group_by_status_and_list_unreadable_files(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    wf = make_workflows(tmp_path / "wf")
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        cli_app(), ["scan", str(wf), "--comfyui", str(root), "--output-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    for title in (
        "missing (1)",
        "misplaced",
        "present (1)",
        "on bypassed or muted nodes",
        "could not be read (1)",
    ):
        assert title in text, title
    assert "detail.safetensors" in text
    assert str(Path("models/loras/ae.safetensors")) in text  # where the misplaced copy was found
    assert "broken.json" in text
    assert "1 model to download" in text


def test_without_install_every_model_is_planned_and_the_user_is_told(tmp_path: Path) -> None:
    make_workflows(tmp_path / "wf")
    result = run_cli(["scan", "wf", "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {r["status"] for r in data["references"]} == {"unknown"}
    assert len(data["missing"]) == 4
    assert "--comfyui" in result.stderr and "COMFYUI_PATH" in result.stderr
    # Default output folder, relative to where the command runs; written atomically (no temp left).
    assert os.listdir(tmp_path / "output") == ["missing_models.json"]


def test_comfyui_path_from_the_environment(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    make_workflows(tmp_path / "wf")
    result = run_cli(["scan", "wf", "--json"], cwd=tmp_path, env={"COMFYUI_PATH": str(root)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["comfyui_root"] == str(root)
    assert "--comfyui" not in result.stderr


def test_include_bypassed_plans_bypassed_models(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    make_workflows(tmp_path / "wf")
    result = run_cli(["scan", "wf", "--comfyui", str(root), "--json", "--include-bypassed"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [m["name"] for m in json.loads(result.stdout)["missing"]]
    assert names == ["only_bypassed.safetensors", "detail.safetensors"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["scan", "wf", "nowhere.json"], "nowhere.json does not exist"),
        (["scan", "wf", "--comfyui", "no_such_dir"], "no_such_dir does not exist"),
        (["scan", "wf", "--comfyui", "wf"], "has no models/ folder"),
        (["scan"], "Missing argument"),
        (["scan", "wf", "--bogus"], "No such option"),
    ],
)
def test_usage_and_input_errors_exit_2_with_one_clear_message(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    make_workflows(tmp_path / "wf")
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["ten minutes", "0", "-5", "nan"])
def test_an_llm_timeout_that_is_not_a_positive_number_is_a_usage_error(tmp_path: Path, value: str) -> None:
    # Once it silently meant the default 600 s; now the user hears which variable and what it needs.
    make_workflows(tmp_path / "wf")
    result = run_cli(["scan", "wf"], cwd=tmp_path, env={"COMFYFIXER_LLM_TIMEOUT": value})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"COMFYFIXER_LLM_TIMEOUT={value!r} is not a positive number of seconds" in result.stderr
    assert "Set COMFYFIXER_LLM_TIMEOUT to a positive number of seconds, or unset it." in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    ok = run_cli(["scan", "wf"], cwd=tmp_path, env={"COMFYFIXER_LLM_TIMEOUT": " 45.5 "})
    assert ok.returncode == 0, ok.stderr


def test_malformed_extra_model_paths_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    root = make_install(tmp_path / "ComfyUI")
    write(root / "extra_model_paths.yaml", "a111:\n  base_path: /x\n  loras: [unclosed\n")
    make_workflows(tmp_path / "wf")
    result = run_cli(["scan", "wf", "--comfyui", str(root)], cwd=tmp_path)
    assert result.returncode == 2
    assert "extra_model_paths.yaml:3: not valid YAML" in result.stderr  # where the bracket opened
    assert "Traceback" not in result.stderr


def test_scan_never_imports_network_or_validation_libraries(tmp_path: Path) -> None:
    make_workflows(tmp_path / "wf")
    result = run_cli(["scan", "wf", "--json"], cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "comfyfixer.scan" in imported  # the profile really covers the scan
    heavy = {"httpx", "huggingface_hub", "openai", "pydantic"}
    assert not heavy & imported, sorted(heavy & imported)
