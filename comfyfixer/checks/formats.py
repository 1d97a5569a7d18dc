"""Is the file what its extension says? Header checks for weights files, read from the first bytes.

Safetensors: the 8-byte header length must be sane (below the file size and a cap), the header JSON
must parse and every tensor's data_offsets must lie inside the file. GGUF: magic and version. Pickle:
the protocol opcode, or a zip (torch's format). An HTML page, a JSON error body or compressed bytes
(gzip, zstd, xz, bzip2) saved under a weights extension fail.

As a program, run by a download script on the partial file before it is moved into place:
    python -S -c <this file> PATH NAME
It prints the format it found (safetensors, gguf, pickle, pickle-zip, onnx, error-page, gzip, ...,
unknown). Exit 0: the file passes; 1: it fails (the reason on stderr); 2: it cannot be read; 3: it is an HTML
page or a JSON error (a login page, most often), not a model.
"""

from __future__ import annotations

import json
import os
import struct
import sys

# Annotations only (postponed): importing typing would cost every download script's check ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

SNIFF_BYTES = 512
# A safetensors JSON header above this is not plausible (real ones are KBs to a few MB).
MAX_SAFETENSORS_HEADER = 100 << 20
# Pickle-based files (or zips of pickles): gated by `pickles.py` before install.
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
WEIGHTS_EXTENSIONS = frozenset(EXPECTED_FORMATS) | PICKLE_EXTENSIONS
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
_HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--")
_JSON_ERROR_KEYS = (b'"error', b'"message', b'"detail', b'"code')


def extension_of(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


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
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            return f"safetensors tensor {key!r} has no valid data_offsets"
        end = max(end, offsets[1])
    if end > data_len:
        return f"safetensors tensors need {end} data bytes but the file holds {data_len} (truncated?)"
    return None


def detect_format(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """`(format, problem)`: what the header says the file is, and why it is broken (None if it is not)."""
    size = os.stat(path).st_size
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if looks_like_error_page(head):
            return "error-page", "the file is an HTML page or a JSON error, not a model"
        for magic, kind in _COMPRESSED:
            if head.startswith(magic):
                return kind, f"the file is {kind}-compressed data, not a model"
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


def format_problem(fmt: str, problem: str | None, name: str) -> str | None:
    """Why a file of format `fmt` cannot be installed as `name` (None: it can)."""
    extension = extension_of(name)
    allowed = EXPECTED_FORMATS.get(extension)
    if problem and (fmt not in ("gzip", "zstd", "xz", "bzip2") or extension in WEIGHTS_EXTENSIONS):
        return problem
    if allowed is not None and fmt not in allowed:
        return f"a {extension} file should be {'/'.join(sorted(allowed))}, this is {fmt}"
    return None


def check(path: str | os.PathLike[str], name: str) -> str | None:
    """The one format check, for the script (on the partial file) and for `verify`: a reason, or None."""
    fmt, problem = detect_format(path)
    return format_problem(fmt, problem, name)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("comfyfixer: usage: formats PATH NAME\n")
        return 2
    try:
        fmt, problem = detect_format(argv[0])
        problem = format_problem(fmt, problem, argv[1])
        print(fmt)
    except OSError as exc:
        sys.stderr.write(f"comfyfixer: cannot read the file to check its format: {exc}\n")
        return 2
    if problem:
        sys.stderr.write(f"comfyfixer: format check failed: {problem}\n")
        return 3 if fmt == "error-page" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
