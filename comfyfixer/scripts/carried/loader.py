"""Run a carried program made of several modules, from their texts (the streamer, the segmented downloader).

A download script runs alone, with no comfyfixer installed, so it carries each module's text and runs
    python -S -c <this file> NAMES TEXT... -- ARGS
NAMES: the modules' names, space-separated, each imported only by those after it; the last one is
the program, run as __main__ with ARGS as its arguments. Every module is installed under the package
it comes from (`comfyfixer.scripts.carried`), so its relative imports work as they do there. Nothing
is read from or written to disk (no cache to poison): each text is compiled from the argument.
Standard library only; one module per concept costs no more start-up than one long text.
"""

from __future__ import annotations

import sys
from types import ModuleType

PACKAGE = "comfyfixer.scripts.carried"


def install(name: str, qualified: str, text: str) -> None:
    module = ModuleType(qualified)
    module.__package__ = PACKAGE
    sys.modules[qualified] = module
    exec(compile(text, f"{name}.py", "exec"), module.__dict__)


def main(argv: list[str]) -> int:
    names = argv[0].split() if argv else []
    texts = argv[1 : 1 + len(names)]
    if not names or len(texts) != len(names) or argv[1 + len(names) : 2 + len(names)] != ["--"]:
        sys.stderr.write("comfyfixer: usage: loader NAMES TEXT... -- ARGS\n")
        return 2
    for parent in ("comfyfixer", "comfyfixer.scripts", PACKAGE):  # what the relative imports resolve in
        package = ModuleType(parent)
        package.__path__ = []
        sys.modules.setdefault(parent, package)
    sys.argv = [names[-1], *argv[2 + len(names) :]]
    for name, text in zip(names[:-1], texts[:-1], strict=True):
        install(name, f"{PACKAGE}.{name}", text)
    install(names[-1], "__main__", texts[-1])  # the program: its `if __name__ == "__main__"` part runs
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
