"""Deterministic checks of a downloaded file: size, sha256, format header, error pages, pickle safety.

`verify_download` never raises for a bad file: it returns a `FileChecks` whose `checks` say what
passed, failed or was skipped, and whose `reason` names the first failure. `quarantine` moves a
failed file aside so it never stays at the path ComfyUI loads from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from comfyfixer.models import Check, FileChecks

log = logging.getLogger(__name__)

CHUNK = 1 << 20
SNIFF_BYTES = 512
# A safetensors JSON header above this is not plausible (real ones are KBs to a few MB).
MAX_SAFETENSORS_HEADER = 100 << 20
# Pickle-based files (or zips of pickles): scanned before install, by the script and again here.
PICKLE_EXTENSIONS = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2"})
# What each extension must look like; a format outside the set fails the check.
EXPECTED_FORMATS: dict[str, frozenset[str]] = {
    ".safetensors": frozenset({"safetensors"}),
    ".sft": frozenset({"safetensors"}),
    ".gguf": frozenset({"gguf"}),
    ".ckpt": frozenset({"pickle-zip", "pickle"}),
    ".pt": frozenset({"pickle-zip", "pickle"}),
    ".pth": frozenset({"pickle-zip", "pickle"}),
    ".pkl": frozenset({"pickle-zip", "pickle"}),
    ".pt2": frozenset({"pickle-zip"}),
    ".onnx": frozenset({"onnx"}),
}
_HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--")
_JSON_ERROR_KEYS = (b'"error', b'"message', b'"detail', b'"code')


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


def looks_like_error_page(head: bytes) -> bool:
    """An HTML page or a JSON error body, judged from the first bytes of a file."""
    text = head[:SNIFF_BYTES].lstrip().lower()
    if text.startswith(_HTML_PREFIXES):
        return True
    if text.startswith(b"{"):
        return text[1:].lstrip().startswith(_JSON_ERROR_KEYS)
    return False


def _safetensors_problem(fh: BinaryIO, size: int) -> str | None:
    raw = fh.read(8)
    if len(raw) < 8:
        return "shorter than a safetensors header"
    (length,) = struct.unpack("<Q", raw)
    if length < 2 or length > MAX_SAFETENSORS_HEADER:
        return f"implausible safetensors header length {length}"
    if 8 + length > size:
        return f"safetensors header length {length} runs past the end of the file"
    try:
        header = json.loads(fh.read(length))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"safetensors header is not valid JSON ({exc.__class__.__name__})"
    if not isinstance(header, dict):
        return "safetensors header is not a JSON object"
    data_len = size - 8 - length
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"safetensors tensor {key!r} has no valid data_offsets"
        end = max(end, offsets[1])
    if end > data_len:
        return f"safetensors tensors need {end} data bytes but the file holds {data_len} (truncated?)"
    return None


def detect_format(path: Path) -> tuple[str, str | None]:
    """`(format, problem)`: what the header says the file is, and why it is broken (None if it is not)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if looks_like_error_page(head):
            return "error-page", "the file is an HTML page or a JSON error, not a model"
        if head[:4] == b"GGUF":
            version = struct.unpack("<I", head[4:8])[0] if len(head) >= 8 else 0
            return "gguf", None if 1 <= version <= 16 else f"unknown GGUF version {version}"
        if head[:4] == b"PK\x03\x04":
            return "pickle-zip", None
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return "pickle", None
        if len(head) >= 9 and head[8:9] == b"{":
            fh.seek(0)
            return "safetensors", _safetensors_problem(fh, size)
        if head[:1] == b"\x08":  # protobuf field 1 (ir_version), varint: how every ONNX model starts
            return "onnx", None
    return "unknown", None


def scan_pickle(path: Path, extension: str) -> tuple[str, str]:
    """`("ok"|"dangerous"|"unreadable"|"unavailable", detail)` from picklescan."""
    try:
        from picklescan.scanner import scan_bytes
    except ImportError as exc:
        return "unavailable", f"picklescan cannot be imported ({exc})"
    try:
        with open(path, "rb") as fh:
            result = scan_bytes(fh, str(path), extension)
    except Exception as exc:  # the scanner raises many types on malformed input
        return "unreadable", f"{exc.__class__.__name__}: {exc}"
    dangerous = sorted(
        {f"{g.module}.{g.name}" for g in result.globals if getattr(g.safety, "name", "") == "Dangerous"}
    )
    if result.issues_count:
        return "dangerous", ", ".join(dangerous) or f"{result.issues_count} dangerous imports"
    if result.scan_err:
        return "unreadable", "the pickle could not be parsed"
    return "ok", ""


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
    report.format, checks["format"] = _format_check(path, extension)

    digest = (actual_sha256 or "").lower() or (sidecar_sha256(path) if trust_sidecar else None)
    if digest is None and (expected_sha256 or not checks["format"].failed):
        digest = sha256_file(path)
    report.sha256 = digest
    checks["sha256"] = _sha256_check(digest, report.expected_sha256)
    if extension in PICKLE_EXTENSIONS or report.format in ("pickle", "pickle-zip"):
        checks["pickle"] = _pickle_check(path, extension, allow_pickle)
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


def _format_check(path: Path, extension: str) -> tuple[str, Check]:
    """`(format, check)`: what the header says the file is, and whether that fits its extension."""
    fmt, problem = detect_format(path)
    allowed = EXPECTED_FORMATS.get(extension)
    if problem:
        return fmt, Check("failed", problem)
    if allowed is not None and fmt not in allowed:
        should = "/".join(sorted(allowed))
        return fmt, Check("failed", f"a {extension} file should be {should}, this is {fmt}")
    if fmt == "unknown":
        return fmt, Check("skipped", "no known header to check")
    return fmt, Check("ok")


def _sha256_check(digest: str | None, expected: str | None) -> Check:
    if expected is None:
        return Check("skipped", "sha256 not published")
    if digest == expected:
        return Check("ok")
    return Check("failed", f"{digest}, expected {expected}")


def _pickle_check(path: Path, extension: str, allow_pickle: bool) -> Check:
    verdict, detail = scan_pickle(path, extension)
    if verdict == "ok":
        return Check("ok")
    if allow_pickle:
        return Check("skipped", f"{verdict} ({detail}), allowed by COMFYFIXER_ALLOW_PICKLE")
    if verdict == "dangerous":
        return Check("failed", f"dangerous imports: {detail}")
    if verdict == "unavailable":
        return Check("failed", f"cannot scan the pickle: {detail}")
    return Check("failed", f"the pickle could not be scanned: {detail}")


def quarantine(path: Path) -> Path:
    """Move a failed file to `<path>.rejected` (replacing an older one) and drop its sidecar."""
    target = path.with_name(path.name + ".rejected")
    os.replace(path, target)
    with contextlib.suppress(FileNotFoundError):
        sidecar_path(path).unlink()
    log.info("moved %s aside to %s", path, target)
    return target
