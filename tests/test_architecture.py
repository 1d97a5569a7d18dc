"""The import rule of ARCHITECTURE.md, checked on the source: dependencies point inward.

Every `comfyfixer` import counts, at module level, inside functions and under TYPE_CHECKING alike,
because a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "comfyfixer"
FOUNDATION = {"models", "errors", "events", "checks"}  # import nothing else of ours
# The stages, each the packages that do it; `state` (atomic files, records) serves every stage.
STAGES = {
    "scan": {"scan", "workflow"},
    "resolve": {"resolvers", "agent"},
    "script": {"scripts"},
    "verify": {"verify"},
    "state": {"state"},
}
STAGE_OF = {unit: stage for stage, units in STAGES.items() for unit in units}
# What the loop may know of the stages apart from `loop/wiring.py`: their data and state, never their code.
LOOP_REACHES = {"loop", "models", "errors", "events", "state", "verify"}


def _modules() -> dict[str, set[str]]:
    """Each module (dotted, under comfyfixer) -> the comfyfixer units it imports (first name under it)."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        units: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "comfyfixer":
                parts = node.module.split(".")
                units |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                units |= {a.name.split(".")[1] for a in node.names if a.name.startswith("comfyfixer.")}
        out[name] = units
    return out


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_rule_sees_the_tree() -> None:
    # A rule that parsed nothing would pass anything: the loop must be seen importing its own modules.
    assert "comfyfixer.loop.pipeline" in MODULES and "loop" in MODULES["comfyfixer.loop.pipeline"]
    assert "state" in MODULES["comfyfixer.loop.pipeline"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_edge_imports_the_cli_and_the_loop(module: str) -> None:
    unit = _unit(module)
    if unit in ("cli", "__main__"):
        return
    assert "cli" not in MODULES[module], f"{module} imports cli/: only __main__ may"
    if unit != "loop":
        assert "loop" not in MODULES[module], f"{module} imports loop/: only cli/ may"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _unit(m) == "loop"))
def test_the_loop_knows_its_stages_only_through_protocols(module: str) -> None:
    if module == "comfyfixer.loop.wiring":
        return  # the one file that builds the real stages
    outside = MODULES[module] - LOOP_REACHES
    assert not outside, f"{module} imports {sorted(outside)}: go through loop/stages.py (or loop/wiring.py)"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _unit(m) in FOUNDATION))
def test_the_foundation_imports_nothing_of_ours(module: str) -> None:
    unit = _unit(module)
    assert MODULES[module] <= {unit}, f"{module} imports {sorted(MODULES[module] - {unit})}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _unit(m) in STAGE_OF))
def test_a_stage_never_imports_another_stage(module: str) -> None:
    stage = STAGE_OF[_unit(module)]
    others = {STAGE_OF[u] for u in MODULES[module] if u in STAGE_OF} - {stage, "state"}
    assert not others, f"{module} ({stage}) imports the stages {sorted(others)}: the loop composes them"
