"""Running a download script: a bash subprocess in its own process group, watched from outside.

The script gets the user's environment (tokens included: that is how it authenticates) and writes
its output to a per-script log file, never to our stdout. Progress is the size of `<dest>.part`.
`terminate()` sends SIGTERM to the whole group (bash, curl, tee, the hasher); the script's trap
keeps the part, so the next run resumes. The script reports `COMFYFIXER_SHA256=<hex>` and
`COMFYFIXER_SIZE=<n>` on success, read back from the log so nothing hashes the file again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from comfyfixer.errors import redact
from comfyfixer.models import Outcome
from comfyfixer.scripts.render import (
    EXIT_AUTH,
    EXIT_BAD_FORMAT,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SHA256_MISMATCH,
    EXIT_SIZE_MISMATCH,
    EXIT_UNSAFE_PICKLE,
    describe_exit,
)

__all__ = ["EXIT_CODES", "ScriptProcess", "ScriptResult", "describe_exit", "script_destination"]

log = logging.getLogger(__name__)

_REPORT = re.compile(r"^COMFYFIXER_(SHA256|SIZE|ALREADY_PRESENT)=(\S+)$", re.MULTILINE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A script that failed names its outcome as DESIGN.md does: the bytes came but a check refused them
# (size, sha256, format, pickle gate) -> verify_failed; the source wants a login -> source_error.
_FAILURE_OUTCOMES: dict[int, Outcome] = {
    EXIT_SIZE_MISMATCH: "verify_failed",
    EXIT_SHA256_MISMATCH: "verify_failed",
    EXIT_UNSAFE_PICKLE: "verify_failed",
    EXIT_BAD_FORMAT: "verify_failed",
    EXIT_AUTH: "source_error",
}
# The last lines of a failed script's log usually say what happened; keep enough for one message.
TAIL_CHARS = 600


def script_destination(script: Path) -> Path:
    """The `DEST=` value a rendered script assigns (shell-unquoted)."""
    for line in script.read_text(encoding="utf-8").splitlines():
        if line.startswith("DEST="):
            words = shlex.split(line[len("DEST=") :])
            if len(words) == 1 and words[0].startswith("/"):
                return Path(words[0])
    raise ValueError(f"{script} is not a comfyfixer download script (no DEST= line)")


# `bash -c SUPERVISOR _ <our pid> bash <script>`: runs the script in the same process group, and a watcher
# that, once this process is gone (kill -9 included: the supervisor is re-parented), sends SIGTERM to the
# whole group within a second: the script's trap keeps the .part and releases its lock, curl stops. So a
# download never outlives its run. A SIGTERM to the group (terminate(), Ctrl-C) ends the script the same way,
# and the supervisor exits with the script's own code.
SUPERVISOR = r"""
parent=$1; shift
"$@" </dev/null & child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit $?' TERM INT HUP
orphaned() {
  if [ -r "/proc/$$/stat" ]; then
    read -r _ _ _ ppid _ <"/proc/$$/stat" && [ "$ppid" != "$parent" ]
  else
    ! kill -0 "$parent" 2>/dev/null
  fi
}
( while ! orphaned; do sleep 1; done
  echo "comfyfixer: the run that started this download is gone; stopping (the partial file is kept)"
  kill -TERM -- "-$$" ) </dev/null 2>/dev/null &
watcher=$!
wait "$child"; code=$?
kill "$watcher" 2>/dev/null
exit "$code"
"""


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """How a finished script ended: its exit code in words and what it reported."""

    returncode: int
    reason: str
    sha256: str | None
    size: int | None
    already_present: bool
    log_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == EXIT_OK

    @property
    def failure_outcome(self) -> Outcome:
        """What a failed script means for the model: verify_failed, source_error or download_failed."""
        return _FAILURE_OUTCOMES.get(self.returncode, "download_failed")


class ScriptProcess:
    """One running download script. Create with `ScriptProcess.start(...)`."""

    def __init__(self, popen: subprocess.Popen[bytes], script: Path, dest: Path, log_path: Path, offset: int):
        self._popen = popen
        self.script = script
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.log_path = log_path
        self._log_offset = offset
        self._report: dict[str, str] | None = None

    @classmethod
    def start(
        cls, script: Path, *, env: Mapping[str, str], log_path: Path, dest: Path | None = None
    ) -> ScriptProcess:
        """Start `bash <script>` in a new session; its stdout and stderr are appended to `log_path`."""
        script = script.absolute()
        dest = dest or script_destination(script)
        bash = shutil.which("bash", path=env.get("PATH")) or shutil.which("bash") or "/bin/bash"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            offset = log_file.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_file.write(f"== {stamp} bash {script}\n".encode())
            log_file.flush()
            popen = subprocess.Popen(
                [bash, "-c", SUPERVISOR, "comfyfixer-supervisor", str(os.getpid()), bash, str(script)],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=script.parent,
                start_new_session=True,  # our own group: terminate() reaches curl and tee too
            )
        log.info("started %s (pid %d), log %s", script.name, popen.pid, log_path)
        return cls(popen, script, dest, log_path, offset)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the script to end; `subprocess.TimeoutExpired` if it does not within `timeout`."""
        return self._popen.wait(timeout)

    def bytes_done(self) -> int:
        """Bytes on disk so far: the part while downloading, the destination once installed.

        A segmented download preallocates its part, so its size says nothing; the resume record
        beside it (rewritten four times a second) counts the bytes of every piece.
        """
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(self.part.with_name(self.part.name + ".segments").read_bytes())
            if isinstance(record, dict) and isinstance(record.get("bytes"), int):
                return int(record["bytes"])
        for path in (self.part, self.dest):
            with contextlib.suppress(OSError):
                return path.stat().st_size
        return 0

    def terminate(self, grace: float = 10.0) -> int:
        """Stop the script and its children (SIGTERM to the group, SIGKILL after `grace` s); part kept."""
        if self._popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._popen.wait()
        return self._popen.returncode

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def _read_report(self) -> dict[str, str]:
        if self._report is None:
            report: dict[str, str] = {}
            text = self._log_text()
            for key, value in _REPORT.findall(text):
                report[key] = value
            if self._popen.returncode is not None:
                self._report = report
            return report
        return self._report

    def _log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def reported_sha256(self) -> str | None:
        """The sha256 the script computed while downloading (None until it reports one)."""
        value = self._read_report().get("SHA256")
        return value if value and _SHA256.match(value) else None

    @property
    def reported_size(self) -> int | None:
        value = self._read_report().get("SIZE")
        return int(value) if value and value.isdigit() else None

    def result(self) -> ScriptResult:
        """The outcome of a finished script (call after `wait()` or once `poll()` is not None)."""
        code = self._popen.returncode
        if code is None:
            raise RuntimeError("the script is still running")
        if code < 0:  # killed by a signal before its trap ran
            code = EXIT_INTERRUPTED if -code in (signal.SIGTERM, signal.SIGINT) else 128 - code
        tail = redact(self._log_text()[-TAIL_CHARS:])
        return ScriptResult(
            returncode=code,
            reason=describe_exit(code),
            sha256=self.reported_sha256,
            size=self.reported_size,
            already_present=self._read_report().get("ALREADY_PRESENT") == "1",
            log_tail=tail,
        )
