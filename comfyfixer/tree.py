"""Walking folder trees: hidden and unfinished files skipped, symlink loops cut, unreadable folders logged.

Both the scan (finding workflow files) and the inventory (indexing model files) walk trees this way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)

# Files a download leaves behind before it is verified (ours and common tools'); never models.
TEMP_SUFFIXES = (
    ".part",
    ".segments",  # a segmented download's resume record, `<name>.part.segments`
    ".rejected",
    ".tmp",
    ".partial",
    ".incomplete",
    ".crdownload",
    ".aria2",
)


def is_ignored(name: str) -> bool:
    """Hidden entries (`.git`, `.DS_Store`, our temp files) and unfinished downloads."""
    return name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES)


def iter_tree(root: str) -> Iterator[tuple[str, bool]]:
    """Yield `(path, is_dir)` for every entry under `root`, following symlinks without looping.

    Hidden and temporary entries are skipped. A directory is entered only if it is not one of its own
    ancestors (compared by device and inode), so a symlink back up the tree cannot loop forever.
    Unreadable directories are logged and skipped.
    """
    try:
        st = os.stat(root)
    except OSError:
        return
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [(root, frozenset({(st.st_dev, st.st_ino)}))]
    while stack:
        directory, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("cannot list %s: %s", directory, exc.strerror or exc)
            continue
        for entry in entries:
            if is_ignored(entry.name):
                continue
            try:
                if entry.is_dir():
                    est = entry.stat()  # of the target when it is a symlink: that is what could loop
                    ident = (est.st_dev, est.st_ino)
                    if ident in ancestors:
                        log.info("skipping symlink loop at %s", entry.path)
                        continue
                    yield entry.path, True
                    stack.append((entry.path, ancestors | {ident}))
                elif entry.is_file():
                    yield entry.path, False
            except OSError:
                continue  # a broken symlink or an entry that vanished while we looked
