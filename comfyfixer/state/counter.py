"""The script counter: `output/download_counter.txt` holds the last script number used.

Numbers are handed out under a file lock, so two runs started at once never get the same one, and
a number is never reused: the next number is also above every `download_NNN_*.sh` already in the
folder, which keeps the promise when the counter file was deleted or damaged. Scripts are created
with a hard link from a finished temp file, which is atomic and refuses to replace an existing file.

One script per model and destination: when a later run needs a model again (its download failed,
or a dry run only planned it), `create_script(..., owns=...)` finds the script that already belongs
to it and rewrites that one under its own number, so output/ holds one script per model, not one per
attempt. The number still was used once and only once; the counter does not move.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from comfyfixer.errors import StateError, StateLocked
from comfyfixer.state.atomic import atomic_write_text

log = logging.getLogger(__name__)

COUNTER_FILE = "download_counter.txt"
LOCK_FILE = ".download_counter.lock"
_SCRIPT_NUMBER = re.compile(r"^download_([0-9]+)_")


@dataclass(frozen=True, slots=True)
class ScriptFile:
    number: int
    path: Path
    reused: bool = False  # the model's own script from an earlier run, rewritten in place


class ScriptCounter:
    """Hands out script numbers for one output folder; safe across threads and processes."""

    def __init__(self, output_dir: Path, *, lock_timeout: float = 60.0) -> None:
        self.output_dir = output_dir
        self.path = output_dir / COUNTER_FILE
        self._lock_path = output_dir / LOCK_FILE
        self._lock_timeout = lock_timeout

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self._lock_path), timeout=self._lock_timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise StateLocked(
                str(self.path), "the script counter is locked by another run", lock_path=str(self._lock_path)
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def last(self) -> int:
        """The last number used (0 when none), without taking a new one."""
        return max(self._read_counter(), self._highest_script())

    def take(self) -> int:
        """Take the next number and persist it before returning."""
        with self._locked():
            return self._advance()

    def create_script(
        self, render: Callable[[int], tuple[str, str]], *, owns: Callable[[Path], bool] | None = None
    ) -> ScriptFile:
        """Create the script `render(number)` returns as `(file_name, text)`.

        When `owns` accepts an existing `download_NNN_*.sh` (the model's own script from an earlier
        run), that script is rewritten atomically under its number. Otherwise a new number is taken;
        the file is complete and executable when it appears, and an existing file is never
        replaced: on a name clash the next number is taken.
        """
        with self._locked():
            own = self._owned_script(owns) if owns is not None else None
            if own is not None:
                number, old = own
                file_name, text = render(number)
                path = self.output_dir / _plain_name(file_name)
                atomic_write_text(path, text, mode=0o755)
                if old != path:
                    with contextlib.suppress(OSError):
                        old.unlink()
                return ScriptFile(number, path, reused=True)
            while True:
                number = self._advance()
                file_name, text = render(number)
                path = self.output_dir / _plain_name(file_name)
                if _create_exclusive(path, text):
                    return ScriptFile(number, path)
                log.warning("script %s already exists; taking the next number", path)

    def scripts(self) -> list[Path]:
        """Every `download_NNN_*.sh` in the folder, by number."""
        try:
            names = os.listdir(self.output_dir)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), name) for name in names if (m := _SCRIPT_NUMBER.match(name))]
        return [self.output_dir / name for _, name in sorted(found) if name.endswith(".sh")]

    def _owned_script(self, owns: Callable[[Path], bool]) -> tuple[int, Path] | None:
        # The highest number wins when (by hand) several scripts claim the same destination.
        for path in reversed(self.scripts()):
            if path.is_file() and owns(path):
                match = _SCRIPT_NUMBER.match(path.name)
                assert match is not None
                return int(match.group(1)), path
        return None

    def _advance(self) -> int:
        number = max(self._read_counter(), self._highest_script()) + 1
        atomic_write_text(self.path, f"{number}\n")
        return number

    def _read_counter(self) -> int:
        try:
            raw = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StateError(str(self.path), f"cannot read the script counter: {exc.strerror}") from exc
        # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
        if raw and raw.isascii() and raw.isdigit():
            return int(raw)
        # A damaged counter is recovered from the scripts on disk; the next number taken rewrites it.
        log.warning(
            "%s holds %r, not a number (ASCII digits): numbering continues after the highest "
            "download_NNN_*.sh in %s and the file is rewritten with the next number taken",
            self.path,
            raw[:40],
            self.output_dir,
        )
        return 0

    def _highest_script(self) -> int:
        highest = 0
        try:
            names = os.listdir(self.output_dir)
        except FileNotFoundError:
            return 0
        for name in names:
            match = _SCRIPT_NUMBER.match(name)
            if match:
                highest = max(highest, int(match.group(1)))
        return highest


def _plain_name(file_name: str) -> str:
    if "/" in file_name or file_name.startswith("."):
        raise StateError(file_name, "a script name must be a plain file name")
    return file_name


def _create_exclusive(path: Path, text: str) -> bool:
    """Write `text` to `path` only if nothing is there; False if the name is taken."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here (some network and FUSE file systems): an exclusive open still
            # refuses to replace an existing script.
            try:
                with open(path, "xb") as out:
                    out.write(text.encode("utf-8"))
                    out.flush()
                    os.fsync(out.fileno())
            except FileExistsError:
                return False
            os.chmod(path, 0o755)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
