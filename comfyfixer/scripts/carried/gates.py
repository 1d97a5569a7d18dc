"""The script's checks (`comfyfixer/checks/`, carried as texts) run inside a Python step that is
already running, the single stream's `stream_part.py` or the segmented `segments.py`: each would
otherwise cost a download an interpreter start (tens of ms).

Installed before those programs by `loader.py`. Standard library only.
"""

from __future__ import annotations

import sys
from types import ModuleType


def load_module(name: str, text: str) -> ModuleType:
    """A carried check executed from its text as a module of its own.

    Registered under its own name (dataclasses look their module up) and not as __main__, so its
    command-line part stays idle. Loaded once per process: the host check runs on every hop.
    """
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    module = ModuleType(name)
    sys.modules[name] = module
    exec(compile(text, f"{name}.py", "exec"), module.__dict__)
    return module


def run_main(name: str, text: str, argv: list[str]) -> tuple[int, str, str]:
    """`main(argv)` of a carried check: its exit code, what it printed, its reason (one line)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = load_module(name, text).main(argv)
    return int(code), out.getvalue(), " ".join(err.getvalue().replace("comfyfixer: ", "").split())


def check_part(part: str, name: str, formats_py: str, pickles_py: str, pickle_ext: str) -> None:
    """The script's checks of a finished part, in its order: the format check (`checks/formats.py`),
    printed as `format NAME CODE` (and `why REASON` when it fails), then for a pickle (by extension
    or format) the pickle gate (`checks/pickles.py`), printed as `pickle CODE` (and `pickle_why
    REASON`)."""
    code, out, why = run_main("comfyfixer_formats", formats_py, [part, name])
    fmt = out.strip() or "unknown"
    sys.stdout.write(f"format {fmt} {code}\n")
    if why:
        sys.stdout.write(f"why {why}\n")
    if code == 0 and (pickle_ext or fmt in ("pickle", "pickle-zip")):
        code, _, why = run_main("comfyfixer_pickles", pickles_py, [part])
        sys.stdout.write(f"pickle {code}\n")
        if why:
            sys.stdout.write(f"pickle_why {why}\n")
