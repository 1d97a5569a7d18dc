"""The state files that survive runs: `downloaded_models.json` and `status.json`.

`downloaded_models.json` records every verified download and doubles as the local catalogue the
resolvers read on later runs; its entry keys are fixed (`RECORD_KEYS`). `status.json` is the live
download status, merged per model so two runs can share the folder, with dead entries shown as stale.

Both are read-modify-written under a file lock and written atomically with a `schema` field.
Loading is forgiving where that is safe: an unversioned (schema 0) list is migrated, a damaged
file is moved aside (never silently overwritten) and reported, and a file from a newer version
is refused with a clear error instead of being clobbered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from filelock import FileLock, Timeout

from comfyfixer.errors import StateDamaged, StateError, StateLocked, StateTooNew, redact
from comfyfixer.models import normalise_name
from comfyfixer.state.atomic import SCHEMA_VERSION, atomic_write_json

log = logging.getLogger(__name__)

DOWNLOADED_FILE = "downloaded_models.json"
STATUS_FILE = "status.json"
RECORD_KEYS = ("name", "directory", "path", "url", "source", "sha256", "size", "script", "time")
# A model's state in `status.json`: the first four while a run works on it, then how it ended;
# `stale` is what a reader shows for an active entry whose run or download process is gone.
EntryState = Literal[
    "queued", "searching", "downloading", "verifying", "done", "failed", "interrupted", "stale"
]
_ENTRY_STATES: dict[str, EntryState] = {state: state for state in get_args(EntryState)}
ACTIVE_STATES: frozenset[EntryState] = frozenset({"queued", "searching", "downloading", "verifying"})


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_key(directory: str | None, name: str) -> str:
    """One string per model (folder + normalised name), used as the key in state files."""
    return f"{directory or '?'}/{normalise_name(name).lower()}"


@contextlib.contextmanager
def _locked(lock_path: Path, what: Path, timeout: float) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise StateLocked(str(what), "locked by another comfyfixer run", lock_path=str(lock_path)) from exc
    try:
        yield
    finally:
        lock.release()


def _read_payload(path: Path, warnings: list[str]) -> Any:
    """The parsed JSON of `path`, or None when absent; a damaged file is moved aside and reported."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(str(path), f"cannot read: {exc.strerror}") from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        aside = _move_aside(path)
        message = (
            f"{path} was damaged ({type(exc).__name__}: {exc}); it was moved to {aside.name} "
            "and a fresh file is started"
        )
        log.warning(message)
        warnings.append(message)
        return None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, aside)
    return aside


def _schema_of(path: Path, payload: Any) -> int:
    if isinstance(payload, list):
        return 0
    if not isinstance(payload, dict):
        raise StateDamaged(str(path), "is not a JSON object")
    schema = payload.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        raise StateDamaged(str(path), f"has an invalid schema field {schema!r}")
    if schema > SCHEMA_VERSION:
        raise StateTooNew(str(path), schema=schema, supported=SCHEMA_VERSION)
    return schema


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# ---------------------------------------------------------------- downloaded_models.json


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    """One verified download, exactly the keys of `downloaded_models.json`."""

    name: str
    directory: str | None
    path: str
    url: str | None
    source: str | None
    sha256: str | None
    size: int | None
    script: str | None
    time: str

    @property
    def key(self) -> str:
        return model_key(self.directory, self.name)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RECORD_KEYS}

    def under(self, roots: Sequence[Path]) -> bool:
        """Whether the recorded file lies in one of `roots` (this run's models folders)."""
        path = os.path.abspath(self.path)
        for root in roots:
            base = os.path.abspath(root)
            if path == base or path.startswith(base.rstrip(os.sep) + os.sep):
                return True
        return False

    def verified_at(self) -> float | None:
        """The verification time as a POSIX timestamp (None when the record has none or it is unreadable)."""
        try:
            return datetime.strptime(self.time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return None

    def file_intact(self) -> bool:
        """The recorded file is still there with the recorded size (a cheap check, no hashing)."""
        try:
            size = Path(self.path).stat().st_size
        except OSError:
            return False
        return self.size is None or size == self.size

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, schema: int) -> DownloadRecord | None:
        name, path = raw.get("name"), raw.get("path")
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            return None
        sha = _opt_str(raw.get("sha256") if schema >= 1 else raw.get("sha256", raw.get("hash")))
        when = raw.get("time") if schema >= 1 else raw.get("time", raw.get("downloaded_at"))
        return cls(
            name=name,
            directory=_opt_str(raw.get("directory")),
            path=path,
            url=_opt_str(raw.get("url")),
            source=_opt_str(raw.get("source")),
            sha256=sha.lower() if sha else None,
            size=_opt_int(raw.get("size")),
            script=_opt_str(raw.get("script")),
            time=when if isinstance(when, str) and when else "",
        )


class DownloadedModels:
    """`output/downloaded_models.json`: load, look up, and add records under a lock."""

    def __init__(self, output_dir: Path, *, lock_timeout: float = 60.0) -> None:
        self.path = output_dir / DOWNLOADED_FILE
        self._lock_path = output_dir / ".downloaded_models.lock"
        self._lock_timeout = lock_timeout
        self.warnings: list[str] = []

    def load(self) -> list[DownloadRecord]:
        with _locked(self._lock_path, self.path, self._lock_timeout):
            return self._load_unlocked()

    def find(
        self, directory: str | None, name: str, *, roots: Sequence[Path] | None = None
    ) -> DownloadRecord | None:
        """The record of one model; with `roots`, only one whose file lies in them (one ComfyUI install)."""
        key = model_key(directory, name)
        return next((r for r in self.load() if r.key == key and (roots is None or r.under(roots))), None)

    def record(self, record: DownloadRecord) -> None:
        """Add or replace the record for one model at one path: another ComfyUI root gets its own record."""
        with _locked(self._lock_path, self.path, self._lock_timeout):
            same = os.path.abspath(record.path)
            records = [
                r
                for r in self._load_unlocked()
                if not (r.key == record.key and os.path.abspath(r.path) == same)
            ]
            records.append(replace(record, url=redact(record.url) if record.url else None))
            atomic_write_json(self.path, {"models": [r.to_json() for r in records]})

    def _load_unlocked(self) -> list[DownloadRecord]:
        payload = _read_payload(self.path, self.warnings)
        if payload is None:
            return []
        schema = _schema_of(self.path, payload)
        raw_models = payload if isinstance(payload, list) else payload.get("models", [])
        if not isinstance(raw_models, list):
            raise StateDamaged(str(self.path), "'models' is not a list")
        records: list[DownloadRecord] = []
        dropped = 0
        for raw in raw_models:
            rec = DownloadRecord.from_json(raw, schema=schema) if isinstance(raw, dict) else None
            if rec is None:
                dropped += 1
            else:
                records.append(rec)
        if dropped:
            message = f"{self.path}: ignored {dropped} entry(ies) without a name or path"
            log.warning(message)
            if message not in self.warnings:
                self.warnings.append(message)
        return records


# ---------------------------------------------------------------- status.json


@dataclass(slots=True)
class StatusEntry:
    """The live state of one model in one run."""

    key: str
    name: str
    directory: str | None
    state: EntryState
    bytes: int = 0
    total: int | None = None
    speed: float = 0.0
    eta: float | None = None
    pid: int | None = None  # the download script's process
    run_pid: int | None = None  # the comfyfixer run that owns the entry
    host: str = ""
    script: str | None = None
    reason: str = ""
    updated_at: str = field(default_factory=utc_now)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> StatusEntry | None:
        key, name, state = raw.get("key"), raw.get("name"), _entry_state(raw.get("state"))
        if not all(isinstance(v, str) and v for v in (key, name)) or state is None:
            return None
        speed = raw.get("speed")
        eta = raw.get("eta")
        return cls(
            key=str(key),
            name=str(name),
            directory=_opt_str(raw.get("directory")),
            state=state,
            bytes=_opt_int(raw.get("bytes")) or 0,
            total=_opt_int(raw.get("total")),
            speed=float(speed) if isinstance(speed, (int, float)) and not isinstance(speed, bool) else 0.0,
            eta=float(eta) if isinstance(eta, (int, float)) and not isinstance(eta, bool) else None,
            pid=_opt_int(raw.get("pid")),
            run_pid=_opt_int(raw.get("run_pid")),
            host=str(raw.get("host") or ""),
            script=_opt_str(raw.get("script")),
            reason=str(raw.get("reason") or ""),
            updated_at=str(raw.get("updated_at") or ""),
        )


def _entry_state(value: object) -> EntryState | None:
    """The state a file names, or None when it names none we know (the entry is skipped, like one
    without a key)."""
    return _ENTRY_STATES.get(value) if isinstance(value, str) else None


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def mark_stale(entries: list[StatusEntry], *, host: str | None = None) -> list[StatusEntry]:
    """Entries still 'active' whose run (or download process) is gone on this host become `stale`."""
    here = host if host is not None else socket.gethostname()
    out: list[StatusEntry] = []
    for entry in entries:
        if entry.state in ACTIVE_STATES and (not entry.host or entry.host == here):
            owner_gone = entry.run_pid is not None and not pid_alive(entry.run_pid)
            download_gone = (
                entry.state == "downloading" and entry.pid is not None and not pid_alive(entry.pid)
            )
            if owner_gone or download_gone:
                entry = replace(entry, state="stale", speed=0.0, eta=None)
        out.append(entry)
    return out


class StatusFile:
    """`output/status.json`. Each run owns the entries it writes; other runs' entries are kept."""

    def __init__(
        self,
        output_dir: Path,
        *,
        run_pid: int | None = None,
        min_interval: float = 0.3,
        lock_timeout: float = 10.0,
    ) -> None:
        self.path = output_dir / STATUS_FILE
        self._lock_path = output_dir / ".status.lock"
        self._lock_timeout = lock_timeout
        self.run_pid = run_pid if run_pid is not None else os.getpid()
        self.host = socket.gethostname()
        self._min_interval = min_interval
        self._mine: dict[str, StatusEntry] = {}
        self._dirty = False
        self._last_flush: float | None = None
        self.warnings: list[str] = []

    def set(self, entry: StatusEntry) -> None:
        entry.run_pid = self.run_pid
        entry.host = self.host
        entry.updated_at = utc_now()
        self._mine[entry.key] = entry
        self._dirty = True

    def get(self, key: str) -> StatusEntry | None:
        return self._mine.get(key)

    def flush(self, *, force: bool = False) -> bool:
        """Write this run's entries if something changed and the last write is old enough."""
        now = time.monotonic()
        if not self._dirty:
            return False
        if not force and self._last_flush is not None and now - self._last_flush < self._min_interval:
            return False
        with _locked(self._lock_path, self.path, self._lock_timeout):
            others = [e for e in self._read_unlocked() if e.key not in self._mine]
            merged = others + list(self._mine.values())
            atomic_write_json(self.path, {"updated_at": utc_now(), "models": [e.to_json() for e in merged]})
        self._dirty = False
        self._last_flush = now
        return True

    def read(self) -> list[StatusEntry]:
        """Every entry in the file, with dead active entries marked stale."""
        with _locked(self._lock_path, self.path, self._lock_timeout):
            entries = self._read_unlocked()
        return mark_stale(entries, host=self.host)

    def _read_unlocked(self) -> list[StatusEntry]:
        payload = _read_payload(self.path, self.warnings)
        if payload is None:
            return []
        _schema_of(self.path, payload)
        raw = payload.get("models", []) if isinstance(payload, dict) else payload
        if not isinstance(raw, list):
            return []
        entries = [StatusEntry.from_json(r) for r in raw if isinstance(r, dict)]
        return [e for e in entries if e is not None]
