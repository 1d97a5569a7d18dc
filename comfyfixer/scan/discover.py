"""Which files a scan reads: workflow files under the paths given, our own output folder left out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from comfyfixer.errors import WorkflowPathError
from comfyfixer.tree import iter_tree

WORKFLOW_SUFFIXES = (".json", ".png", ".webp")


def discover(paths: Sequence[Path], *, exclude: Sequence[Path] = ()) -> list[Path]:
    """Workflow files under `paths`: files as given, directories searched recursively.

    In a directory only `.json`, `.png` and `.webp` files count; hidden entries and anything under an
    `exclude` directory (our own output folder) are skipped. A path that does not exist is an error.
    """
    excluded = [os.path.normpath(os.path.abspath(p)) for p in exclude]
    found: dict[str, Path] = {}
    for given in paths:
        if not given.exists():
            raise WorkflowPathError(str(given), "missing")
        if not given.is_dir():
            found.setdefault(os.path.abspath(given), given)
            continue
        if not os.access(given, os.R_OK | os.X_OK):
            raise WorkflowPathError(str(given), "unreadable")
        for path, is_dir in iter_tree(str(given)):
            if is_dir or not path.lower().endswith(WORKFLOW_SUFFIXES):
                continue
            absolute = os.path.abspath(path)
            if any(absolute.startswith(ex + os.sep) for ex in excluded):
                continue
            found.setdefault(absolute, Path(path))
    return sorted(found.values(), key=lambda p: str(p))
