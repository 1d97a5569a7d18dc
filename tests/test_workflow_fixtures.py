"""Real workflows committed with the project (MIT, see fixtures/README.md): run without ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfixer.models import normalise_name
from comfyfixer.workflow import parse_file

REAL = Path(__file__).parent / "fixtures" / "workflows" / "real"
EXPECTED: dict[str, dict[str, list[object]]] = json.loads(
    (REAL / "expected.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_fixture_references(name: str) -> None:
    result = parse_file(REAL / name)
    assert result.error is None
    expected = EXPECTED[name]
    neutral = {normalise_name(str(v)) for v in expected["neutral"]}
    got: dict[str, set[str | None]] = {}
    for ref in result.references:
        got.setdefault(normalise_name(ref.name), set()).add(ref.directory)
    want = {}
    for row in expected["references"]:
        assert isinstance(row, dict)
        want[normalise_name(row["name"])] = row
    assert set(want) <= set(got), f"missing {set(want) - set(got)}"
    assert set(got) - set(want) <= neutral, f"unexpected {set(got) - set(want) - neutral}"
    for key, row in want.items():
        assert got[key] == {row["directory"]}
        if row["url"]:
            urls = {h.url for r in result.references if normalise_name(r.name) == key for h in r.hints}
            assert row["url"] in urls


def test_bypassed_nodes_are_flagged_not_dropped() -> None:
    result = parse_file(REAL / "wt__video_wan2_2_5B_fun_control.json")
    doc = json.loads((REAL / "wt__video_wan2_2_5B_fun_control.json").read_text(encoding="utf-8"))
    bypassed_ids = {str(n["id"]) for n in doc["nodes"] if n.get("mode") in (2, 4)}
    assert bypassed_ids
    for ref in result.references:
        assert ref.bypassed == (ref.node_id in bypassed_ids)


def test_subgraph_instance_values_reach_the_inner_loader() -> None:
    result = parse_file(REAL / "wt__utility_moge3_geometry_estimation.json")
    (ref,) = [r for r in result.references if r.node_type == "LoadMoGeModel"]
    assert ref.directory == "geometry_estimation"
    assert ref.node_id is not None and ":" in ref.node_id
