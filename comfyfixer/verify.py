"""Deterministic checks of a downloaded file: size, sha256, format header, error pages, pickle safety.

`verify_download` never raises for a bad file: it returns a `FileChecks` whose `checks` say what
passed, failed or was skipped, and whose `reason` names the first failure. `quarantine` moves a
failed file aside so it never stays at the path ComfyUI loads from.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from comfyfixer.checks import pickles
from comfyfixer.checks.formats import (
    EXPECTED_FORMATS,
    PICKLE_EXTENSIONS,
    detect_format,
    format_problem,
    looks_like_error_page,
)
from comfyfixer.models import Check, FileChecks
from comfyfixer.state.store import DownloadRecord

__all__ = [
    "EXPECTED_FORMATS",
    "PICKLE_EXTENSIONS",
    "check_installed",
    "detect_format",
    "looks_like_error_page",
    "pickle_verdict",
    "quarantine",
    "recorded_damage",
    "sha256_file",
    "sidecar_sha256",
    "verify_download",
]

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The file's sha256, read once in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {int(st.st_mtime)} {st.st_ino}"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def sidecar_sha256(path: Path) -> str | None:
    """The digest the download script recorded, if its size/mtime/inode stamp still matches the file."""
    try:
        lines = sidecar_path(path).read_text(encoding="utf-8").splitlines()
        stamp = _stamp(path)
    except (OSError, UnicodeDecodeError):
        return None
    if len(lines) < 2 or lines[1] != f"# comfyfixer {stamp}":
        return None
    digest = lines[0].split(" ", 1)[0]
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return digest
    return None


def verify_download(
    path: Path,
    *,
    name: str,
    directory: str | None,
    expected_size: int | None,
    expected_sha256: str | None,
    actual_sha256: str | None = None,
    allow_pickle: bool = False,
    source: str | None = None,
    url: str | None = None,
    trust_sidecar: bool = True,
) -> FileChecks:
    """Check one downloaded file without raising; `report.ok` and `report.checks` say how it went.

    The sha256 comes from `actual_sha256` (what the script computed while downloading), else from
    the script's `<file>.sha256` sidecar when its size/mtime/inode stamp still matches and
    `trust_sidecar` is set, else from hashing the file once. A re-check for bit rot passes
    `trust_sidecar=False`.
    """
    report = FileChecks(
        name=name,
        directory=directory,
        path=str(path),
        ok=False,
        expected_size=expected_size,
        expected_sha256=expected_sha256.lower() if expected_sha256 else None,
        source=source,
        url=url,
    )
    checks = report.checks
    if not path.is_file():
        checks["exists"] = Check("failed", "no file at the destination")
        report.reason = f"{path} does not exist"
        return report
    checks["exists"] = Check("ok")
    report.size = path.stat().st_size
    checks["size"] = _size_check(report.size, expected_size)
    extension = PurePosixPath(name).suffix.lower() or path.suffix.lower()
    report.format, checks["format"] = _format_check(path, name if PurePosixPath(name).suffix else path.name)

    digest = (actual_sha256 or "").lower() or (sidecar_sha256(path) if trust_sidecar else None)
    if digest is None and (expected_sha256 or not checks["format"].failed):
        digest = sha256_file(path)
    report.sha256 = digest
    checks["sha256"] = _sha256_check(digest, report.expected_sha256)
    if extension in PICKLE_EXTENSIONS or report.format in ("pickle", "pickle-zip"):
        checks["pickle"] = _pickle_check(path, allow_pickle)
    else:
        checks["pickle"] = Check("skipped", "not a pickle format")

    failures = [f"{k}: {c.detail}" for k, c in checks.items() if c.failed]
    report.ok = not failures
    report.reason = failures[0] if failures else ""
    if failures:
        log.info("verification failed for %s: %s", path, "; ".join(failures))
    return report


def _size_check(size: int, expected: int | None) -> Check:
    if expected is None:
        return Check("skipped", "size not published")
    if size == expected:
        return Check("ok")
    return Check("failed", f"{size} bytes, expected {expected}")


def _format_check(path: Path, name: str) -> tuple[str, Check]:
    """`(format, check)`: what the header says the file is, and whether that fits its name."""
    fmt, problem = detect_format(path)
    reason = format_problem(fmt, problem, name)
    if reason:
        return fmt, Check("failed", reason)
    if fmt == "unknown":
        return fmt, Check("skipped", "no known header to check")
    return fmt, Check("ok")


def _sha256_check(digest: str | None, expected: str | None) -> Check:
    if expected is None:
        return Check("skipped", "sha256 not published")
    if digest == expected:
        return Check("ok")
    return Check("failed", f"{digest}, expected {expected}")


def pickle_verdict(path: Path) -> tuple[str, str]:
    """`("ok"|"refused"|"unreadable", detail)` from the pickle gate the download scripts carry."""
    try:
        refused = pickles.refused_globals(str(path))
    except pickles.Unreadable as exc:
        return "unreadable", str(exc)
    except OSError as exc:
        return "unreadable", f"cannot read the file ({exc.strerror or exc})"
    if refused:
        return "refused", ", ".join(refused)
    return "ok", ""


def _pickle_check(path: Path, allow_pickle: bool) -> Check:
    verdict, detail = pickle_verdict(path)
    if verdict == "ok":
        return Check("ok")
    if allow_pickle:
        return Check("skipped", f"{verdict} ({detail}), allowed by COMFYFIXER_ALLOW_PICKLE")
    if verdict == "refused":
        return Check(
            "failed",
            f"the pickle imports globals that weights files do not use: {detail};"
            " set COMFYFIXER_ALLOW_PICKLE=1 only if you trust the source",
        )
    return Check("failed", f"the pickle could not be checked: {detail}")


def quarantine(path: Path) -> Path:
    """Move a failed file to `<path>.rejected` (replacing an older one) and drop its sidecar."""
    target = path.with_name(path.name + ".rejected")
    os.replace(path, target)
    with contextlib.suppress(FileNotFoundError):
        sidecar_path(path).unlink()
    log.info("moved %s aside to %s", path, target)
    return target


def recorded_damage(record: DownloadRecord) -> str | None:
    """Why an installed file its record lists can no longer be trusted, or None when it still can.

    The size is compared always (cheap); the sha256 is read again only when the file was modified after
    it was verified (its mtime is later than the record's time), so an unchanged install costs no hashing.
    """
    path = Path(record.path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None  # gone: the scan reports it missing and the run fetches it again
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if record.size is not None and st.st_size != record.size:
        return f"is {st.st_size:,} bytes, not the {record.size:,} verified"
    verified = record.verified_at()
    if record.sha256 and (verified is None or st.st_mtime > verified + 1.0):
        try:
            digest = sha256_file(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if digest != record.sha256.lower():
            return "changed since it was verified (its sha256 no longer matches)"
    return None


def check_installed(records: list[DownloadRecord], roots: Sequence[Path]) -> list[tuple[DownloadRecord, str]]:
    """Check the recorded files in `roots`; move each damaged one aside (`<file>.rejected`).

    Returns (record, what is wrong and what was done) per damaged file, so the caller can say it; the
    model then shows as missing to the scan and is fetched again when a workflow needs it.
    """
    damaged: list[tuple[DownloadRecord, str]] = []
    for record in records:
        if not record.under(roots):
            continue
        why = recorded_damage(record)
        if why is None:
            continue
        try:
            target = quarantine(Path(record.path))
        except OSError as exc:
            damaged.append(
                (record, f"{why}; it could not be moved aside ({exc.strerror}): remove it by hand")
            )
            continue
        damaged.append((record, f"{why}; moved aside to {target.name}"))
    return damaged
