"""Loads the versioned prompt files (`prompts/<name>_v<N>.md`).

Installed, they ship inside the wheel as `comfyfixer/prompts/` (hatch force-include) and are read
with importlib.resources; in a source checkout they are read from `<repo>/prompts/`. Placeholders are
`$name` (string.Template), so JSON examples in a prompt need no escaping.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from string import Template

SEARCH_PROMPT = "search_v2.md"
SEARCH_TASK_PROMPT = "search_task_v1.md"
TEXT_TOOLS_PROMPT = "text_tools_v1.md"
VERIFY_PROMPT = "verify_v2.md"

_SOURCE_CHECKOUT = Path(__file__).resolve().parents[2] / "prompts"


@functools.cache
def load_prompt(name: str) -> str:
    """The text of one prompt file; FileNotFoundError names both places looked in."""
    try:
        return resources.files("comfyfixer.prompts").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    path = _SOURCE_CHECKOUT / name
    if not path.is_file():
        raise FileNotFoundError(f"prompt {name!r} is in neither comfyfixer/prompts nor {path.parent}")
    return path.read_text(encoding="utf-8")


def render_prompt(prompt_file: str, /, **values: str) -> str:
    """The prompt with its `$placeholders` filled; unknown placeholders are left as they are."""
    return Template(load_prompt(prompt_file)).safe_substitute(values)
