"""The UI (litegraph) format: the root graph, subgraph definitions, legacy group nodes, notes.

Walks every graph once. Subgraph inner nodes are reported once per instance (`<instance>:<inner>`,
nested `a:b:c`) with the instance's promoted-widget values applied as overrides; a definition no
instance uses is still reported (`<definitionId>:<inner>`), as is an unused group-node definition.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from comfyfixer.models import normalise_name
from comfyfixer.workflow import heuristics
from comfyfixer.workflow.collect import Collector, NodeView, node_references
from comfyfixer.workflow.nodes import lookup

log = logging.getLogger(__name__)

# Subgraphs can nest; deeper than this is a hostile or broken file.
MAX_GRAPH_DEPTH = 16
_GROUP_PREFIXES = ("workflow>", "workflow/")
_BYPASS_MODES = (2, 4)

Overrides = dict[str, dict[str, object]]  # inner node id -> widget name -> value


def is_ui(doc: object) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("nodes"), list)


def walk_ui(doc: Mapping[str, object], col: Collector) -> None:
    walker = _Walker(doc, col)
    walker.walk_root()


class _Walker:
    def __init__(self, doc: Mapping[str, object], col: Collector) -> None:
        self.doc = doc
        self.col = col
        self.subgraphs: dict[str, Mapping[str, object]] = {}
        _collect_definitions(doc, self.subgraphs, 0)
        extra = doc.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        self.groups: dict[str, Mapping[str, object]] = (
            {k: v for k, v in groups.items() if isinstance(v, dict)} if isinstance(groups, dict) else {}
        )
        self.used: set[str] = set()

    def walk_root(self) -> None:
        self.walk(_nodes(self.doc), "", False, {}, ())
        for def_id, definition in self.subgraphs.items():
            if def_id not in self.used:
                self.walk(_nodes(definition), f"{def_id}:", False, {}, (def_id,))
        for name, group in self.groups.items():
            if f"group:{name}" not in self.used:
                self.walk(_nodes(group), f"{name}:", False, {}, (f"group:{name}",))
        self.col.apply_top_level_models(self.doc.get("models"))

    def walk(
        self,
        nodes: Sequence[object],
        prefix: str,
        bypassed: bool,
        overrides: Overrides,
        stack: tuple[str, ...],
    ) -> None:
        subgraphs = self.subgraphs
        stems = self.col.stems
        for node in nodes:
            if not isinstance(node, dict):
                continue
            node_type = node.get("type")
            if not isinstance(node_type, str) or not node_type:
                continue
            values = node.get("widgets_values")
            properties = node.get("properties")
            models = properties.get("models") if isinstance(properties, dict) else None
            # Fast path first: most nodes hold only numbers and prompts, and are not containers.
            if (
                not _always_read(node_type)
                and not overrides
                and not models
                and node_type not in subgraphs
                and not heuristics.may_hold_reference(values, stems)
            ):
                continue
            definition = subgraphs.get(node_type)
            is_group = node_type.startswith(_GROUP_PREFIXES)
            raw_id = node.get("id", node.get("index"))
            local_id = str(raw_id) if isinstance(raw_id, (int, str)) else "?"
            node_id = prefix + local_id
            node_bypassed = bypassed or node.get("mode") in _BYPASS_MODES
            node_overrides = overrides.get(local_id, {})
            if definition is not None:
                self._instance(node, definition, node_id, node_bypassed, node_overrides, stack, node_type)
                continue
            if is_group:
                self._group_instance(
                    node, node_id, node_bypassed, stack, node_type[len(_GROUP_PREFIXES[0]) :]
                )
                continue
            if _is_note(node_type):
                self._note(values)
                continue
            view = _view(node, node_id, node_type, node_bypassed, node_overrides)
            node_references(self.col, view)
            if models:
                self.col.apply_node_models(view, models)

    def _instance(
        self,
        node: Mapping[str, object],
        definition: Mapping[str, object],
        node_id: str,
        bypassed: bool,
        outer: Mapping[str, object],
        stack: tuple[str, ...],
        def_id: str,
    ) -> None:
        if def_id in stack or len(stack) >= MAX_GRAPH_DEPTH:
            log.warning("subgraph %s nests itself or too deeply; not expanded", def_id)
            return
        self.used.add(def_id)
        inner, mapped = _instance_overrides(node, definition, outer)
        self.walk(_nodes(definition), f"{node_id}:", bypassed, inner, (*stack, def_id))
        if not mapped:
            # Values we could not map to inner widgets are still scanned, without a folder.
            self._scan_instance_values(node, node_id, bypassed)

    def _group_instance(
        self, node: Mapping[str, object], node_id: str, bypassed: bool, stack: tuple[str, ...], name: str
    ) -> None:
        key = f"group:{name}"
        group = self.groups.get(name)
        if group is not None and key not in stack and len(stack) < MAX_GRAPH_DEPTH:
            self.used.add(key)
            self.walk(_nodes(group), f"{node_id}:", bypassed, {}, (*stack, key))
        # Instance values are the inner nodes' visible widgets, concatenated; positions are fragile.
        self._scan_instance_values(node, node_id, bypassed)

    def _scan_instance_values(self, node: Mapping[str, object], node_id: str, bypassed: bool) -> None:
        """Model-looking values of a container instance that none of its inner nodes reported."""
        values = node.get("widgets_values")
        if not heuristics.may_hold_model(values):
            return
        inner = f"{node_id}:"
        found = {normalise_name(r.name) for r in self.col.refs if r.node_id and r.node_id.startswith(inner)}
        view = NodeView(node_id=node_id, node_type=str(node.get("type")), bypassed=bypassed)
        for name in heuristics.model_strings(values):
            if normalise_name(name) not in found:
                self.col.add(name, None, view=view, input_name=None, strategy="heuristic")

    def _note(self, values: object) -> None:
        for text in heuristics.iter_strings(values):
            self.col.note_links.extend(heuristics.model_urls(text))


def _nodes(graph: Mapping[str, object]) -> Sequence[object]:
    nodes = graph.get("nodes")
    return nodes if isinstance(nodes, list) else ()


def _collect_definitions(
    graph: Mapping[str, object], out: dict[str, Mapping[str, object]], depth: int
) -> None:
    definitions = graph.get("definitions")
    if depth > MAX_GRAPH_DEPTH or not isinstance(definitions, dict):
        return
    subgraphs = definitions.get("subgraphs")
    if not isinstance(subgraphs, list):
        return
    for sub in subgraphs:
        if isinstance(sub, dict) and isinstance(sub.get("id"), str) and sub["id"] not in out:
            out[sub["id"]] = sub
            _collect_definitions(sub, out, depth + 1)


def _is_note(node_type: str) -> bool:
    lowered = node_type.lower()
    return lowered.startswith("note") or lowered.endswith("note") or "markdown" in lowered


# Node type -> whether its node is read whatever its values hold; a workflow repeats few types.
_ALWAYS_READ: dict[str, bool] = {}
_ALWAYS_READ_MAX = 4096  # a hostile file with endless distinct types must not grow it without bound


def _always_read(node_type: str) -> bool:
    """A loader (its table inputs), a note (a link anywhere is a download hint) or a group node."""
    known = _ALWAYS_READ.get(node_type)
    if known is None:
        known = lookup(node_type) is not None or _is_note(node_type) or node_type.startswith(_GROUP_PREFIXES)
        if len(_ALWAYS_READ) >= _ALWAYS_READ_MAX:
            _ALWAYS_READ.clear()
        _ALWAYS_READ[node_type] = known
    return known


def _view(
    node: Mapping[str, object], node_id: str, node_type: str, bypassed: bool, overrides: Mapping[str, object]
) -> NodeView:
    values = node.get("widgets_values")
    named: dict[str, object] = {}
    positional: Sequence[object] = ()
    if isinstance(values, list):
        positional = values
    elif isinstance(values, dict):
        named.update(values)
    elif isinstance(values, str):
        positional = (values,)
    widget_names = _widget_names(node.get("inputs"))
    if overrides:
        named.update(overrides)
        positional = _overridden(positional, widget_names, node_type, overrides)
    return NodeView(
        node_id=node_id,
        node_type=node_type,
        bypassed=bypassed,
        named=named,
        positional=positional,
        widget_names=widget_names,
    )


def _overridden(
    positional: Sequence[object], widget_names: Sequence[str], node_type: str, overrides: Mapping[str, object]
) -> Sequence[object]:
    """The positional values with an instance's overrides written in, so the replaced value is gone."""
    if not positional:
        return positional
    out = list(positional)
    spec = lookup(node_type)
    aligned = len(widget_names) == len(out)
    for name, value in overrides.items():
        position: int | None = None
        if aligned and name in widget_names:
            position = list(widget_names).index(name)
        elif spec is not None:
            inp = spec.spec_for(name)
            position = inp.index if inp is not None else None
        if position is not None and 0 <= position < len(out):
            out[position] = value
    return out


def _widget_names(inputs: object) -> list[str]:
    if not isinstance(inputs, list):
        return []
    names = []
    for item in inputs:
        if isinstance(item, dict):
            widget = item.get("widget")
            if isinstance(widget, dict) and isinstance(widget.get("name"), str):
                names.append(widget["name"])
    return names


def _instance_overrides(
    node: Mapping[str, object], definition: Mapping[str, object], outer: Mapping[str, object]
) -> tuple[Overrides, bool]:
    """Inner-node widget values an instance sets, and whether its own values could all be mapped.

    Two layouts exist: `properties.proxyWidgets` ([innerId, widgetName] per value, frontend ~1.28-1.4x)
    and, in newer files, one value per definition input that feeds a widget, in definition-input order.
    """
    overrides: Overrides = {}
    values = node.get("widgets_values")
    properties = node.get("properties")
    proxies = properties.get("proxyWidgets") if isinstance(properties, dict) else None
    # The definition's links are read only when a layout needs them: proxy widgets name their targets.
    targets: list[tuple[str, list[tuple[str, str]]]] | None = None
    mapped = True
    if isinstance(values, list) and values:
        if isinstance(proxies, list) and proxies:
            for proxy, value in zip(proxies, values, strict=False):
                if isinstance(proxy, list) and len(proxy) == 2 and str(proxy[0]) != "-1":
                    overrides.setdefault(str(proxy[0]), {})[str(proxy[1])] = value
            mapped = len(proxies) >= len(values)
        else:
            targets = _input_targets(definition)
            widget_inputs = [name for name, tgts in targets if tgts]
            mapped = len(widget_inputs) == len(values)
            if mapped:
                by_input = dict(zip(widget_inputs, values, strict=True))
                _apply_inputs(by_input, targets, overrides)
    if outer:
        _apply_inputs(outer, targets if targets is not None else _input_targets(definition), overrides)
    return overrides, mapped


def _apply_inputs(
    values: Mapping[str, object], targets: list[tuple[str, list[tuple[str, str]]]], out: Overrides
) -> None:
    for name, tgts in targets:
        if name in values:
            for node_id, widget in tgts:
                out.setdefault(node_id, {})[widget] = values[name]


def _input_targets(definition: Mapping[str, object]) -> list[tuple[str, list[tuple[str, str]]]]:
    """For each definition input: the (inner node id, widget name) pairs it feeds."""
    inputs = definition.get("inputs")
    links = definition.get("links")
    if not isinstance(inputs, list) or not isinstance(links, list):
        return []
    by_id = {}
    for link in links:
        if isinstance(link, dict) and "id" in link:
            by_id[link["id"]] = link
    nodes = {}
    for inner in _nodes(definition):
        if isinstance(inner, dict) and isinstance(inner.get("id"), (int, str)):
            nodes[str(inner["id"])] = inner
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        tgts: list[tuple[str, str]] = []
        link_ids = item.get("linkIds")
        for link_id in link_ids if isinstance(link_ids, list) else ():
            link = by_id.get(link_id) if isinstance(link_id, (int, str)) else None
            widget = _linked_widget(link, nodes) if link is not None else None
            if link is not None and widget is not None:
                tgts.append((str(link.get("target_id")), widget))
        out.append((item["name"], tgts))
    return out


def _linked_widget(link: Mapping[str, object], nodes: Mapping[str, Mapping[str, object]]) -> str | None:
    """The widget name a definition link feeds on its inner target node, None when it feeds none."""
    target = nodes.get(str(link.get("target_id")))
    slot = link.get("target_slot")
    if target is None or not isinstance(slot, int):
        return None
    target_inputs = target.get("inputs")
    if isinstance(target_inputs, list) and 0 <= slot < len(target_inputs):
        socket = target_inputs[slot]
        widget = socket.get("widget") if isinstance(socket, dict) else None
        if isinstance(widget, dict) and isinstance(widget.get("name"), str):
            return str(widget["name"])
    return None
