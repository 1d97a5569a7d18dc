"""The API ("prompt") format: node id -> {class_type, inputs}; values are keyed by input name.

Muted and bypassed nodes are absent from this format, and subgraph inner nodes are already flattened
with `<instance>:<inner>` ids, so a single pass over the nodes is the whole walk.
"""

from __future__ import annotations

from collections.abc import Mapping

from comfyfixer.workflow.collect import Collector, NodeView, node_references


def _is_api_node(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("class_type"), str)


def is_api(doc: object) -> bool:
    """An object whose values are nodes with a `class_type` (non-node values are tolerated)."""
    return isinstance(doc, dict) and bool(doc) and any(_is_api_node(v) for v in doc.values())


def is_link(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def walk_api(prompt: Mapping[str, object], col: Collector) -> None:
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not _is_api_node(node):
            continue
        inputs = node.get("inputs")
        named = {k: v for k, v in inputs.items() if not is_link(v)} if isinstance(inputs, dict) else {}
        view = NodeView(node_id=str(node_id), node_type=node["class_type"], named=named)
        node_references(col, view)
