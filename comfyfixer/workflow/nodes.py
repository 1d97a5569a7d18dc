"""The loader-node table: which input of which node type names a model file, in which folder.

The table itself is data (`loaders.json`, shipped in the package); it is read once, on first use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from comfyfixer.folders import canonical


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One model input of a loader node."""

    name: str  # input name; may be a pattern when `pattern` is set
    index: int | None  # position in a UI `widgets_values` array, None when only the name is reliable
    folder: str  # canonical folder key
    pattern: re.Pattern[str] | None = None
    directory_type: bool = False  # the value names a folder (diffusers, snapshots), not a file

    def matches(self, input_name: str) -> bool:
        if self.pattern is not None:
            return self.pattern.fullmatch(input_name) is not None
        return input_name == self.name


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A loader node: its model inputs, and the folder for any other model-looking value it holds."""

    node_type: str
    inputs: tuple[InputSpec, ...]
    any_folder: str | None = None

    @property
    def single_folder(self) -> str | None:
        """The folder of every model input, when they all share one."""
        folders = {spec.folder for spec in self.inputs}
        return next(iter(folders)) if len(folders) == 1 else None

    def spec_for(self, input_name: str) -> InputSpec | None:
        for spec in self.inputs:
            if spec.matches(input_name):
                return spec
        return None


def _pattern(name: str) -> re.Pattern[str] | None:
    if "#" not in name:
        return None
    return re.compile(re.escape(name).replace("\\#", "#").replace("#", r"\d+"))


def _parse(raw: dict[str, object]) -> dict[str, NodeSpec]:
    table: dict[str, NodeSpec] = {}
    nodes = raw.get("nodes")
    if not isinstance(nodes, dict):
        raise ValueError("loaders.json has no 'nodes' object")
    for node_type, entry in nodes.items():
        if not isinstance(entry, dict):
            raise ValueError(f"loaders.json: entry for {node_type!r} is not an object")
        dir_inputs = set(entry.get("dir") or ())
        specs = []
        for name, index, folder in entry.get("inputs") or ():
            specs.append(
                InputSpec(
                    name=name,
                    index=index,
                    folder=canonical(folder),
                    pattern=_pattern(name),
                    directory_type=name in dir_inputs,
                )
            )
        any_folder = entry.get("any")
        table[node_type] = NodeSpec(
            node_type=node_type,
            inputs=tuple(specs),
            any_folder=canonical(any_folder) if isinstance(any_folder, str) else None,
        )
    return table


@lru_cache(maxsize=1)
def loader_table() -> dict[str, NodeSpec]:
    """The shipped table, parsed once."""
    text = resources.files("comfyfixer.workflow").joinpath("loaders.json").read_text(encoding="utf-8")
    return _parse(json.loads(text))


def lookup(node_type: str) -> NodeSpec | None:
    return loader_table().get(node_type)

