#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2089,SC2090
# comfyfixer download script 003: safe to run again at any time, from any folder.
#
# model:   x $(touch pwned) `id` it's\x0a# evil
# folder:  checkpoints
# file:    /srv/ComfyUI/models/loras/x $(touch pwned) `id` it's.safetensors
# source:  hint\u202e
# url:     http://127.0.0.1:8080/files/x.safetensors?a=1&b=$(id)
# why:     workflow hint\x0d\x0arm -rf /
# sha256:  not published (computed while downloading)
# size:    1234
# token:   none
# hosts:   the URL and every redirect must be on ALLOWED_HOSTS; redirects may also reach signed storage under REDIRECT_SUFFIXES (https); plain http only for HTTP_HOSTS
#
# Downloads to '<file>.part' (resumed by the next run), following redirects one checked hop
# at a time (ALLOWED_HOSTS below; the token only to the URL's own origin), never past the
# published size. Rejects HTML/JSON error pages and compressed answers, checks size, sha256
# and the file format, gates pickle files, then moves the file into place. Prints
# COMFYFIXER_SHA256=<hex> and writes '<file>.sha256' so nothing hashes the file twice.
# Environment: COMFYFIXER_ALLOW_PICKLE=1 installs a pickle the gate refused;
# COMFYFIXER_MAX_ATTEMPTS, COMFYFIXER_RETRY_DELAY and COMFYFIXER_RETRY_MAX_DELAY tune the retries.
#
# Exit codes:
#   0    installed, or already present and verified
#   2    a setting in the environment is invalid (see the message)
#   10   network or HTTP error (after retries, or a status that retrying cannot fix)
#   11   the server requires a login (HTTP 401/403): set HF_TOKEN or CIVITAI_API_TOKEN
#   12   the server sent an HTML page or JSON error instead of the model
#   13   the file has a different size than the source publishes (or the server sent more)
#   14   the file's sha256 differs from the one the source publishes
#   15   cannot write the file (disk full or no permission)
#   16   the pickle file imports globals weights do not use (or cannot be parsed)
#   17   a required tool is missing (curl or wget, python3, a sha256 tool)
#   18   a different file already sits at the destination; it was left untouched
#   20   another run is downloading the same file
#   21   the URL or a redirect points to a host that is not allowed; nothing came from it
#   22   the server sent the file compressed although it was asked not to
#   23   the file is not what its extension says (format check failed)
#   130  interrupted; the partial file is kept for resume
set -euo pipefail
umask 022

DEST='/srv/ComfyUI/models/loras/x $(touch pwned) `id` it'"'"'s.safetensors'
DEST_DIR=/srv/ComfyUI/models/loras
BASE_NAME='x $(touch pwned) `id` it'"'"'s.safetensors'
URL='http://127.0.0.1:8080/files/x.safetensors?a=1&b=$(id)'
EXPECTED_SIZE=1234
EXPECTED_SHA256=''
AUTH_VAR=''
PYTHON='/opt/py env/bin/python3'
USER_AGENT=comfyfixer/0.1.0
PICKLE_EXT=''
ALLOWED_HOSTS='127.0.0.1 cas-bridge.xethub.hf.co cdn-lfs-eu-1.hf.co cdn-lfs-us-1.hf.co cdn-lfs.hf.co civitai.com civitai.red github.com hf.co huggingface.co objects.githubusercontent.com raw.githubusercontent.com release-assets.githubusercontent.com us.aws.cdn.hf.co'
HTTP_HOSTS=127.0.0.1
REDIRECT_SUFFIXES='.hf.co .huggingface.co .r2.cloudflarestorage.com .backblazeb2.com .amazonaws.com .civitai.com .githubusercontent.com'
GRANTED_URL=''

# Programs this script carries (standard library only; run with $PYTHON -c).
# shellcheck disable=SC2016
SHA256_STDIN_PY='"""Print the sha256 of standard input: the hasher of a script when openssl is missing.

Carried verbatim by every download script and run as python -S -c <this file>: standard library only.
"""

import hashlib
import sys


def main() -> int:
    h = hashlib.sha256()
    for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
        h.update(block)
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
'
# shellcheck disable=SC2016
STREAM_PART_PY='"""Append one HTTP answer body to the partial file, only if it is the model, and print the sha256.

curl (or wget) writes the response headers to a file before it writes the first body byte to our
stdin, so once that byte (or the end of the stream) arrives the headers are read back to decide:
- not a 2xx answer (a redirect hop, an error page): the body is read and thrown away, the part is
  left alone, and "skip" is printed; the script decides what the status means;
- a compressed answer (Content-Encoding other than identity): nothing is written, exit 4;
- otherwise the bytes are appended while the whole part is hashed (what was already there is
  re-read first, a retry), and the transfer stops as soon as the part would grow past LIMIT (the
  published size, else the size this answer announces): exit 5, so an endless body cannot fill the
  disk. Unbuffered writes keep the part a clean prefix of the file even when the process is killed.

Run by every download script as: python -S -c <this file> PART HEADERS LIMIT (LIMIT may be empty).
Standard library only. Exit 1: the part cannot be written; 0 otherwise (the digest, or "skip").
"""

from __future__ import annotations

import hashlib
import sys
import time

CHUNK = 1 << 20
# A body we throw away (redirect, error page) is read this far, then the pipe is simply closed.
DISCARD_LIMIT = 1 << 20
EXIT_COMPRESSED = 4
EXIT_TOO_LARGE = 5


def last_response(text: str) -> tuple[int | None, dict[str, str]]:
    """Status and headers (lower-case names) of the last response in a curl -D / wget -S dump."""
    status: int | None = None
    headers: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("HTTP/"):
            fields = line.split()
            status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
            headers = {}
        elif ":" in line and status is not None:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def read_headers(path: str, waited_for_body: bool) -> tuple[int | None, dict[str, str]]:
    # The dump is complete by the time the body starts; a short grace covers a slow flush.
    deadline = time.monotonic() + (2.0 if waited_for_body else 0.5)
    while True:
        try:
            with open(path, encoding="latin-1") as fh:
                status, headers = last_response(fh.read())
        except OSError:
            status, headers = None, {}
        if status is not None or time.monotonic() > deadline:
            return status, headers
        time.sleep(0.05)


def announced_total(status: int, headers: dict[str, str]) -> int | None:
    if status == 206:
        total = headers.get("content-range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def main(part: str, header_file: str, limit_arg: str) -> int:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as src:
        first = src.readinto(buf) or 0
        status, headers = read_headers(header_file, waited_for_body=first > 0)
        if status is None or not 200 <= status < 300:
            seen = first
            while first and seen < DISCARD_LIMIT:
                first = src.readinto(buf) or 0
                seen += first
            print("skip")
            return 0
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            sys.stderr.write(f"comfyfixer: the server compressed the answer ({encoding}); refusing it\n")
            return EXIT_COMPRESSED
        limit = int(limit_arg) if limit_arg.isdigit() else announced_total(status, headers)
        h = hashlib.sha256()
        try:
            old_buf = bytearray(CHUNK)  # buf still holds the first chunk of the answer
            old_view = memoryview(old_buf)
            with open(part, "rb") as old:
                for n in iter(lambda: old.readinto(old_buf), 0):
                    h.update(old_view[:n])
            with open(part, "ab", buffering=0) as out:
                n = first
                while n:
                    if limit is not None and out.tell() + n > limit:
                        sys.stderr.write(
                            f"comfyfixer: the server sent more than the {limit} bytes the file has; stopped\n"
                        )
                        return EXIT_TOO_LARGE
                    done = 0
                    while done < n:
                        done += out.write(view[done:n])
                    h.update(view[:n])
                    n = src.readinto(buf) or 0
        except OSError as exc:
            sys.stderr.write(f"comfyfixer: cannot write the partial file: {exc}\n")
            return 1
    print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
'
# shellcheck disable=SC2016
HOSTS_PY='"""Which hosts a download may touch: one rule for the run'"'"'s probe and for every redirect hop of a script.

A URL may start a download when its host is on the allowed list (plain http only for hosts the user
configured: local mirrors, tests), or when it is the exact URL a curated catalogue names (granted).
A redirect may also land on signed-storage hosts that end with one of the suffixes (https only).

As a program, run by a download script for every hop before it is requested:
    python -S -c <this file> ALLOWED HTTP_HOSTS SUFFIXES GRANTED START CURRENT [LOCATION]
The lists are space-separated. Without LOCATION it checks CURRENT as the first hop; with it, it
resolves LOCATION against CURRENT and checks the target as a redirect. On success it prints the URL
to request, then "token" when that URL has the origin of START (the only origin a token may go to)
or "no-token". Exit 1 (with a sentence naming the host on stderr) when the URL is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port): what a token is bound to. Hosts are compared lower-case."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, 0))


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def host_allowed(
    url: str,
    *,
    allowed: frozenset[str] | set[str],
    http_hosts: frozenset[str] | set[str],
    suffixes: tuple[str, ...],
    redirect: bool = False,
    granted: tuple[str, ...] = (),
) -> bool:
    """Whether `url` may be requested; `redirect=True` also accepts signed-storage hosts (https only)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return False
    host = host_of(url)
    if not host or parts.username is not None or parts.password is not None:
        return False
    try:
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return False
    if url in granted:
        return True
    if host in allowed:
        return scheme == "https" or host in http_hosts
    if redirect and scheme == "https":
        return any(host.endswith(sfx) for sfx in suffixes)
    return False


@dataclass(frozen=True)
class HostRule:
    """The allowed-host data of one run: what `Settings` decides, and what a script carries."""

    allowed: frozenset[str]
    http_hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    def allows(self, url: str, *, redirect: bool = False, granted: tuple[str, ...] = ()) -> bool:
        return host_allowed(
            url,
            allowed=self.allowed,
            http_hosts=self.http_hosts,
            suffixes=self.suffixes,
            redirect=redirect,
            granted=granted,
        )


def _words(value: str) -> list[str]:
    return [w for w in value.split() if w]


def main(argv: list[str]) -> int:
    if len(argv) not in (6, 7):
        sys.stderr.write("comfyfixer: usage: hosts ALLOWED HTTP SUFFIXES GRANTED START CURRENT [LOCATION]\n")
        return 2
    allowed = {h.lower() for h in _words(argv[0])}
    http_hosts = {h.lower() for h in _words(argv[1])}
    suffixes = tuple(s.lower() for s in _words(argv[2]))
    granted = tuple(_words(argv[3]))
    start, current = argv[4], argv[5]
    redirect = len(argv) == 7
    target = urljoin(current, argv[6].strip()) if redirect else current
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        sys.stderr.write("comfyfixer: the server redirected to a malformed URL\n")
        return 1
    if not host_allowed(
        target, allowed=allowed, http_hosts=http_hosts, suffixes=suffixes, redirect=redirect, granted=granted
    ):
        host = host_of(target) or target[:80]
        what = "the server redirected to" if redirect else "the download URL is on"
        scheme = urlsplit(target).scheme
        sys.stderr.write(
            f"comfyfixer: refused: {what} {host} ({scheme}), a host that is not allowed;"
            " nothing was requested from it\n"
        )
        return 1
    print(target)
    print("token" if origin(target) == origin(start) else "no-token")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'
# shellcheck disable=SC2016
FORMATS_PY='"""Is the file what its extension says? Header checks for weights files, read from the first bytes.

Safetensors: the 8-byte header length must be sane (below the file size and a cap), the header JSON
must parse and every tensor'"'"'s data_offsets must lie inside the file. GGUF: magic and version. Pickle:
the protocol opcode, or a zip (torch'"'"'s format). An HTML page, a JSON error body or compressed bytes
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
_JSON_ERROR_KEYS = (b'"'"'"error'"'"', b'"'"'"message'"'"', b'"'"'"detail'"'"', b'"'"'"code'"'"')


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
        return f"a {extension} file should be {'"'"'/'"'"'.join(sorted(allowed))}, this is {fmt}"
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
'
# shellcheck disable=SC2016
PICKLES_PY='"""The pickle gate: a pickle (or torch'"'"'s zip of pickles) passes only if every global it names is one
that weights files legitimately use.

The allowlist is what `torch.load(weights_only=True)` accepts (OrderedDict, the tensor, parameter and
storage rebuild functions, storages, dtypes, layouts, numpy array reconstruction) plus the few
globals ComfyUI adds to it for old checkpoints (comfy/utils.py). Anything else, a scanner'"'"'s
"suspicious" included, is refused: an allowlist cannot miss a new way to run code, a denylist can.
The walk uses `pickletools` and never unpickles. Globals pushed by STACK_GLOBAL are resolved from
the strings just before it; when they cannot be (built at load time), the file is refused.

As a program, run by a download script on the partial file before it is moved into place:
    python -S -c <this file> PATH
Exit 0: every global is allowed; 1: refused (the globals on stderr); 2: not a pickle or unreadable.
"""

from __future__ import annotations

import pickletools
import sys
import zipfile
from typing import IO


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_TORCH_UTILS = "torch._utils."
_REBUILDS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor",
    "_rebuild_qtensor",
    "_rebuild_device_tensor_from_cpu_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_wrapper_subclass",
)
_BUILTINS = _words("set frozenset bytearray complex slice")
_STORAGES = _words(
    "Float Double Half BFloat16 Long Int Short Char Byte Bool ComplexFloat ComplexDouble QUInt8 "
    "QInt8 QInt32 QUInt4x2 QUInt2x4 Untyped"
)
_DTYPES = _words(
    "float32 float float64 double float16 half bfloat16 uint8 uint16 uint32 uint64 int8 int16 "
    "short int32 int int64 long bool complex32 complex64 cfloat complex128 cdouble quint8 qint8 "
    "qint32 quint4x2 quint2x4 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz"
)
_TORCH_NAMES = _words(
    "Size Tensor device strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn "
    "contiguous_format channels_last channels_last_3d preserve_format per_tensor_affine "
    "per_channel_affine per_tensor_symmetric per_channel_symmetric "
    "per_channel_affine_float_qparams"
)
_NUMPY_DTYPES = _words(
    "Float16 Float32 Float64 LongDouble Int8 Int16 Int32 Int64 UInt8 UInt16 UInt32 UInt64 Bool "
    "Complex64 Complex128 Byte UByte Short UShort Int UInt Long ULong LongLong ULongLong Str "
    "Bytes"
)

ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        # Protocol 2 names the builtins module __builtin__ (Python 2 spelling); pickle maps it back.
        *(f"{module}.{name}" for module in ("builtins", "__builtin__") for name in _BUILTINS),
        "_codecs.encode",  # how protocol 2 stores bytes under Python 3
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch._tensor._rebuild_from_type_v2",
        *(_TORCH_UTILS + name for name in _REBUILDS),
        *(f"torch.{kind}Storage" for kind in _STORAGES),
        *(f"torch.cuda.{kind}Storage" for kind in _STORAGES),
        *(f"torch.{name}" for name in _DTYPES + _TORCH_NAMES),
        *(
            f"{module}.{name}"
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        "numpy.ndarray",
        "numpy.dtype",
        *(f"numpy.dtypes.{kind}DType" for kind in _NUMPY_DTYPES),
        # ComfyUI'"'"'s own additions (comfy/utils.py): old SD checkpoints pickle a Lightning callback.
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    }
)
_STRING_OPS = frozenset(
    {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
_NO_STACK_EFFECT = frozenset({"PROTO", "FRAME"})
# The legacy torch format is five pickles in a row (magic, protocol, sys info, the data, storage keys)
# followed by raw storage bytes; torch reads exactly these, so the walk does too.
LEGACY_PICKLES = 5


class Unreadable(Exception):
    """Not a pickle, or one the walk cannot follow."""


def _index(arg: object) -> int:
    if isinstance(arg, int):
        return arg
    if isinstance(arg, str) and arg.isdigit():
        return int(arg)
    raise Unreadable(f"a memo index that is not a number: {arg!r}")


def globals_in(stream: IO[bytes]) -> list[str]:
    """Every `module.name` one pickle imports, in order (`Unreadable` when one cannot be resolved)."""
    found: list[str] = []
    recent: list[object] = []  # the values on top of the stack, as far as strings are concerned
    memo: dict[int, object] = {}
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append(f"{module}.{attr}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) < 2 or not isinstance(recent[-1], str) or not isinstance(recent[-2], str):
                    raise Unreadable("a STACK_GLOBAL whose module and name are built at load time")
                found.append(f"{recent[-2]}.{recent[-1]}")
                recent[-2:] = [None]
            elif name in _STRING_OPS:
                recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[_index(arg)] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(_index(arg)))
            elif name in ("EXT1", "EXT2", "EXT4"):
                found.append(f"copyreg extension code {arg}")
                recent.append(None)
            elif name not in _NO_STACK_EFFECT:
                recent.append(None)  # anything else: the top of the stack is no longer a known string
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise Unreadable(f"the pickle cannot be parsed ({exc})") from exc
    return found


def _legacy_globals(fh: IO[bytes]) -> list[str]:
    found: list[str] = []
    for index in range(LEGACY_PICKLES):
        start = fh.tell()
        if fh.read(1) != b"\x80":
            if index == 0:
                raise Unreadable("the file is neither a pickle nor a zip of pickles")
            break
        fh.seek(start)
        found += globals_in(fh)
    return found


def _zip_globals(path: str) -> list[str]:
    found: list[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.endswith(".pkl")]
            if not pickles:
                raise Unreadable("the zip holds no pickle (not a torch checkpoint)")
            for info in pickles:
                with archive.open(info) as member:
                    found += globals_in(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise Unreadable(f"the zip cannot be read ({exc})") from exc
    return found


def refused_globals(path: str) -> list[str]:
    """The globals of the file that are not on the allowlist, sorted (empty: it passes).

    `Unreadable` when the file is not a pickle or the walk cannot follow it; `OSError` as usual.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        found = _zip_globals(path) if magic == b"PK\x03\x04" else _legacy_globals(fh)
    return sorted({g for g in found if g not in ALLOWED_GLOBALS})


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("comfyfixer: usage: pickles PATH\n")
        return 2
    try:
        refused = refused_globals(argv[0])
    except Unreadable as exc:
        sys.stderr.write(f"comfyfixer: the pickle could not be checked: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"comfyfixer: cannot read the pickle: {exc}\n")
        return 2
    if refused:
        shown = ", ".join(refused[:8]) + (f" and {len(refused) - 8} more" if len(refused) > 8 else "")
        sys.stderr.write(f"comfyfixer: the pickle imports globals that weights files do not use: {shown}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'

PART="$DEST.part"
REJECTED="$DEST.rejected"
SIDECAR="$DEST.sha256"
LOCK="$DEST.part.lock"
MAX_ATTEMPTS="${COMFYFIXER_MAX_ATTEMPTS:-5}"
RETRY_DELAY="${COMFYFIXER_RETRY_DELAY:-2}"
RETRY_MAX_DELAY="${COMFYFIXER_RETRY_MAX_DELAY:-300}"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
WORK=""
OUT=""
WHY=""
HOLD_LOCK=0
HASHER=""
FORMAT=""
MAX_HOPS=10

say() { printf 'comfyfixer: %s\n' "$*" >&2; }
fail() {
  local code=$1
  shift
  say "$*"
  exit "$code"
}
cleanup() {
  if [ -n "$WORK" ]; then rm -rf -- "$WORK"; fi
  if [ -f "$PART" ] && [ ! -s "$PART" ]; then rm -f -- "$PART"; fi
  if [ "$HOLD_LOCK" = 1 ]; then rm -f -- "$LOCK"; fi
}
trap cleanup EXIT
trap 'say "interrupted; the partial file is kept and the next run resumes it: $PART"; exit 130' INT TERM HUP

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
if ! is_uint "$MAX_ATTEMPTS" || [ "$MAX_ATTEMPTS" -lt 1 ]; then
  fail 2 "COMFYFIXER_MAX_ATTEMPTS must be a whole number >= 1"
fi
is_uint "$RETRY_DELAY" || fail 2 "COMFYFIXER_RETRY_DELAY must be a whole number of seconds"
is_uint "$RETRY_MAX_DELAY" || fail 2 "COMFYFIXER_RETRY_MAX_DELAY must be a whole number of seconds"

# "size mtime inode" of a file (GNU stat, then BSD stat).
file_stamp() { stat -c '%s %Y %i' -- "$1" 2>/dev/null || stat -f '%z %m %i' -- "$1"; }
file_size() {
  local stamp
  stamp=$(file_stamp "$1")
  printf '%s\n' "${stamp%% *}"
}

hash_stream() {
  case $HASHER in
    openssl) openssl dgst -sha256 -r ;;
    python) "$PYTHON" -S -c "$SHA256_STDIN_PY" ;;
    sha256sum) sha256sum ;;
    shasum) shasum -a 256 ;;
  esac
}
pick_hasher() {
  local out
  for HASHER in openssl python sha256sum shasum; do
    out=$(hash_stream </dev/null 2>/dev/null) || continue
    if [ "${out%% *}" = "$EMPTY_SHA256" ]; then return 0; fi
  done
  fail 17 "no working sha256 tool (openssl, python, sha256sum or shasum); install one and run again"
}
hash_file() {
  local out
  if [ -z "$HASHER" ]; then pick_hasher; fi
  out=$(hash_stream <"$1") || fail 15 "cannot read $1"
  printf '%s\n' "${out%% *}"
}

# Runs one carried program (`python -S -c PROGRAM ARGS`): its output in OUT, its reason in WHY.
run_check() {
  local rc=0
  OUT=$("$PYTHON" -S -c "$@" 2>"$WORK/why") || rc=$?
  WHY=$(cat -- "$WORK/why" 2>/dev/null) || WHY=""
  WHY=${WHY//comfyfixer: /}
  return "$rc"
}

# The format check of `checks/formats.py` (the one `comfyfixer verify` runs): 0 passes, 1 fails,
# 2 unreadable, 3 an HTML page or JSON error; the reason in WHY, what the header says in FORMAT.
format_check() {
  local rc=0
  run_check "$FORMATS_PY" "$1" "$BASE_NAME" || rc=$?
  FORMAT=$OUT
  return "$rc"
}

reject() {
  local code=$1
  shift
  mv -f -- "$PART" "$REJECTED" 2>/dev/null || rm -f -- "$PART"
  say "$* (nothing was installed; the rejected file was moved aside to $REJECTED)"
  exit "$code"
}

report() {
  printf 'COMFYFIXER_SIZE=%s\n' "$1"
  if [ -n "$2" ]; then printf 'COMFYFIXER_SHA256=%s\n' "$2"; fi
}

# The sidecar is `sha256sum -c` compatible; its second line ties the digest to the file's size,
# mtime and inode so a later run can trust it without re-reading a 27 GB file.
write_sidecar() {
  local tmp="$SIDECAR.tmp.$$"
  if { printf '%s  %s\n' "$1" "$BASE_NAME" && printf '# comfyfixer %s\n' "$(file_stamp "$DEST")"; } \
    >"$tmp" 2>/dev/null && mv -f -- "$tmp" "$SIDECAR"; then
    return 0
  fi
  rm -f -- "$tmp"
  say "note: could not write $SIDECAR (the model itself is installed)"
}
sidecar_sha256() {
  local line1="" line2="" sha
  [ -f "$SIDECAR" ] || return 1
  { IFS= read -r line1 && IFS= read -r line2; } <"$SIDECAR" || return 1
  [ "$line2" = "# comfyfixer $(file_stamp "$DEST")" ] || return 1
  sha=${line1%% *}
  case $sha in *[!0-9a-f]* | '') return 1 ;; esac
  [ "${#sha}" = 64 ] || return 1
  printf '%s\n' "$sha"
}

check_existing() {
  local size sha=""
  [ -f "$DEST" ] || fail 18 "$DEST exists but is not a regular file; move it away and run again"
  size=$(file_size "$DEST")
  if [ -n "$EXPECTED_SIZE" ] && [ "$size" != "$EXPECTED_SIZE" ]; then
    fail 18 "$DEST already exists with $size bytes, expected $EXPECTED_SIZE;" \
      "it was left untouched: move it away and run again"
  fi
  if ! format_check "$DEST"; then
    fail 18 "$DEST already exists but is not a valid model file ($WHY); delete it and run again"
  fi
  if sha=$(sidecar_sha256); then
    :
  elif [ -n "$EXPECTED_SHA256" ]; then
    sha=$(hash_file "$DEST")
    if [ "$sha" = "$EXPECTED_SHA256" ]; then write_sidecar "$sha"; fi
  else
    sha=""
  fi
  if [ -n "$EXPECTED_SHA256" ] && [ "$sha" != "$EXPECTED_SHA256" ]; then
    fail 18 "$DEST already exists but its sha256 is $sha, expected $EXPECTED_SHA256;" \
      "it was left untouched: move it away and run again"
  fi
  say "already present and verified: $DEST"
  printf 'COMFYFIXER_ALREADY_PRESENT=1\n'
  report "$size" "$sha"
  exit 0
}

# Sets HTTP_STATUS, CONTENT_TYPE, RETRY_AFTER, RANGE_TOTAL and LOCATION from the last response in
# the header dump (curl -D, or wget -S whose lines are indented).
read_headers() {
  local line name value
  HTTP_STATUS="" CONTENT_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" LOCATION=""
  [ -f "$WORK/headers" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    case $line in
      HTTP/*)
        value="${line#* }"
        HTTP_STATUS="${value%% *}"
        CONTENT_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" LOCATION="" ;;
      *:*)
        name=$(printf '%s' "${line%%:*}" | LC_ALL=C tr '[:upper:]' '[:lower:]')
        value="${line#*:}"
        value="${value#"${value%%[![:space:]]*}"}"
        case $name in
          content-type) CONTENT_TYPE=$(printf '%s' "$value" | LC_ALL=C tr '[:upper:]' '[:lower:]') ;;
          retry-after) if is_uint "$value"; then RETRY_AFTER=$value; fi ;;
          content-range) case $value in *'*/'*) RANGE_TOTAL="${value##*/}" ;; esac ;;
          location) LOCATION=$value ;;
        esac ;;
    esac
  done <"$WORK/headers"
  is_uint "$HTTP_STATUS" || HTTP_STATUS=""
  is_uint "$RANGE_TOTAL" || RANGE_TOTAL=""
}

# One request, no redirect followed: the body of HOP_URL from byte `offset` on, to stdout, the
# headers to $WORK/headers. The token goes only where `next_hop` said it may (HOP_TOKEN=1).
fetch() {
  local offset=$1
  if [ "$FETCHER" = curl ]; then
    local -a args=(--fail --silent --show-error --proto '=http,https' --connect-timeout 30
      --speed-limit 1024 --speed-time 60 --user-agent "$USER_AGENT"
      --header 'Accept-Encoding: identity' --dump-header "$WORK/headers" --output -)
    if [ "$offset" -gt 0 ]; then args+=(--continue-at "$offset"); fi
    if [ -n "$TOKEN" ] && [ "$HOP_TOKEN" = 1 ]; then
      curl "${args[@]}" --header @<(printf 'Authorization: Bearer %s\n' "$TOKEN") --url "$HOP_URL"
    else
      curl "${args[@]}" --url "$HOP_URL"
    fi
  else
    local -a args=(--no-verbose --server-response --tries=1 --max-redirect=0 --timeout=60
      --user-agent="$USER_AGENT" --header=Accept-Encoding:identity --output-document=-)
    if [ "$offset" -gt 0 ]; then args+=("--start-pos=$offset"); fi
    wget "${args[@]}" -- "$HOP_URL" 2>"$WORK/headers"
  fi
}

# Checks a hop with `checks/hosts.py` before it is requested: the download URL itself (no
# location), or the target of a redirect from HOP_URL. Sets HOP_URL and HOP_TOKEN; a refused host
# ends the script with exit 21 and the host named (nothing was requested from it).
next_hop() {
  run_check "$HOSTS_PY" "$ALLOWED_HOSTS" "$HTTP_HOSTS" "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$URL" "$@" ||
    fail 21 "$WHY"
  HOP_URL=${OUT%$'\n'*}
  case ${OUT##*$'\n'} in token) HOP_TOKEN=1 ;; *) HOP_TOKEN=0 ;; esac
}

# One attempt: request the URL and follow its redirects one checked hop at a time; the 2xx body is
# appended to the part while the whole part streams through one sha256 pass (`stream_part.py`).
# Leaves the last response in $WORK/headers and "fetch_rc stream_rc" in $WORK/status.
transfer() {
  local offset=$1 hops=0
  next_hop "$URL"
  while :; do
    rm -f -- "$WORK/status" "$WORK/sha" "$WORK/headers"
    set +e
    fetch "$offset" | "$PYTHON" -S -c "$STREAM_PART_PY" "$PART" "$WORK/headers" "$EXPECTED_SIZE" >"$WORK/sha"
    printf '%s %s\n' "${PIPESTATUS[0]}" "${PIPESTATUS[1]}" >"$WORK/status"
    set -e
    read_headers
    case $HTTP_STATUS in 301 | 302 | 303 | 307 | 308) ;; *) return 0 ;; esac
    hops=$((hops + 1))
    if [ "$hops" -gt "$MAX_HOPS" ]; then fail 10 "more than $MAX_HOPS redirects for $URL"; fi
    if [ -z "$LOCATION" ]; then fail 10 "the server redirected (HTTP $HTTP_STATUS) without saying where"; fi
    next_hop "$HOP_URL" "$LOCATION"
  done
}

backoff() {
  local exponent=$((attempt - 1)) delay
  if [ "$exponent" -gt 10 ]; then exponent=10; fi
  delay=$((RETRY_DELAY * (1 << exponent)))
  if [ -n "$RETRY_AFTER" ] && [ "$RETRY_AFTER" -gt "$delay" ]; then delay=$RETRY_AFTER; fi
  if [ "$delay" -gt "$RETRY_MAX_DELAY" ]; then delay=$RETRY_MAX_DELAY; fi
  say "$1; retrying in ${delay}s (attempt $((attempt + 1)) of $MAX_ATTEMPTS)"
  sleep "$delay"
}

# Undo bytes an error response may have slipped into the part (curl --fail is not airtight on 401).
restore_part() {
  local offset=$1 size
  [ -f "$PART" ] || return 0
  size=$(file_size "$PART")
  [ "$size" -gt "$offset" ] || return 0
  if command -v truncate >/dev/null 2>&1; then
    truncate -s "$offset" -- "$PART"
  else
    "$PYTHON" -S -c 'import os, sys; os.truncate(sys.argv[1], int(sys.argv[2]))' "$PART" "$offset"
  fi
}

# Throw the part away and start from byte 0 (bounded by the attempts like every other retry).
restart_part() {
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    fail 10 "$1, and $attempt attempts are used up; run this script again later"
  fi
  say "$1; starting again from zero"
  : >"$PART"
}

auth_failure() {
  if [ -z "$AUTH_VAR" ]; then
    fail 11 "the server refused access (HTTP $HTTP_STATUS): this file needs a login" \
      "that the source does not offer to scripts"
  elif [ -z "$TOKEN" ]; then
    fail 11 "the server refused access (HTTP $HTTP_STATUS): set $AUTH_VAR in the environment and run again"
  fi
  fail 11 "the server refused access with your $AUTH_VAR (HTTP $HTTP_STATUS): check the token," \
    "accept the model's licence on its page, then run again"
}

# An HTML page instead of the model. From Civitai that is its login page (it answers 200 to a
# download it will not give anonymously): a login problem, exit 11, with what to do.
error_page() {
  if [ "$AUTH_VAR" = CIVITAI_API_TOKEN ]; then
    rm -f -- "$PART"
    if [ -n "$TOKEN" ]; then
      fail 11 "Civitai answered with its login page instead of the file although CIVITAI_API_TOKEN" \
        "was sent: check the token, then run again"
    fi
    fail 11 "Civitai answered with its login page instead of the file: set CIVITAI_API_TOKEN" \
      "to a Civitai API key and run again"
  fi
  reject 12 "$1"
}

# Same rule as the Python side: any value but empty or 0 allows.
pickle_allowed() { [ "${COMFYFIXER_ALLOW_PICKLE:-0}" = 1 ]; }

# The pickle gate of `checks/pickles.py` (the one `comfyfixer verify` runs): every global the
# pickle names must be one weights files use; anything else is refused unless the user allows it.
pickle_gate() {
  local rc=0
  run_check "$PICKLES_PY" "$1" || rc=$?
  [ "$rc" = 0 ] && return 0
  if pickle_allowed; then
    say "warning: installing a pickle file the gate refused ($WHY), because COMFYFIXER_ALLOW_PICKLE=1"
    return 0
  fi
  reject 16 "refusing to install: $WHY; set COMFYFIXER_ALLOW_PICKLE=1 only if you trust the source"
}

# What `checks/` says about the finished part, before it is moved into place: the format check
# (its exit code in $1, an error page already handled), then the pickle gate.
check_part() {
  case $1 in
    0) ;;
    2) fail 15 "cannot read $PART to check it; run this script again" ;;
    *) reject 23 "the download is not a valid model file: $WHY" ;;
  esac
  case $PICKLE_EXT/$FORMAT in ?*/* | */pickle | */pickle-zip) pickle_gate "$PART" ;; esac
}

case $URL in
  https://* | http://*) ;;
  *) fail 2 "the URL is not http(s): $URL" ;;
esac
# The checks are Python (standard library only): the interpreter that wrote the script, else any
# python3 on PATH (a script copied to another machine). -S: no site, a third of the start-up time.
if ! "$PYTHON" -S -c 'import hashlib, pickletools, zipfile' >/dev/null 2>&1; then
  PYTHON=python3
  "$PYTHON" -S -c 'import hashlib, pickletools, zipfile' >/dev/null 2>&1 ||
    fail 17 "python3 is needed to check the file before it is installed; install it and run again"
fi
TOKEN=""
case $AUTH_VAR in
  HF_TOKEN) TOKEN="${HF_TOKEN:-${HUGGING_FACE_HUB_TOKEN:-}}" ;;
  CIVITAI_API_TOKEN) TOKEN="${CIVITAI_API_TOKEN:-}" ;;
esac
case $TOKEN in *[[:cntrl:]]*) fail 2 "$AUTH_VAR contains a control character; fix it and run again" ;; esac

mkdir -p -- "$DEST_DIR" 2>/dev/null ||
  fail 15 "cannot create the folder $DEST_DIR; check permissions and free space"
if command -v flock >/dev/null 2>&1; then
  : >>"$LOCK" 2>/dev/null || fail 15 "cannot write in $DEST_DIR; check permissions and free space"
  exec 9>>"$LOCK"
  flock -n 9 || fail 20 "another download of $DEST is running; wait for it to finish"
  HOLD_LOCK=1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfyfixer.XXXXXX") || fail 15 "cannot create a temporary folder"
if [ -e "$DEST" ]; then check_existing; fi

if command -v curl >/dev/null 2>&1; then
  FETCHER=curl
elif command -v wget >/dev/null 2>&1; then
  FETCHER=wget
  if [ -n "$TOKEN" ]; then
    fail 17 "curl is needed to send $AUTH_VAR safely (wget would show it on its command line);" \
      "install curl and run again"
  fi
else
  fail 17 "neither curl nor wget is installed; install curl and run this script again"
fi
: >>"$PART" 2>/dev/null || fail 15 "cannot write $PART; check permissions and free space"

attempt=0
SHA=""
while :; do
  attempt=$((attempt + 1))
  offset=$(file_size "$PART")
  if [ -n "$EXPECTED_SIZE" ] && [ "$offset" -gt "$EXPECTED_SIZE" ]; then
    say "the partial file is larger than the expected $EXPECTED_SIZE bytes; starting again"
    : >"$PART"
    offset=0
  fi
  if [ -n "$EXPECTED_SIZE" ] && [ "$offset" -gt 0 ] && [ "$offset" = "$EXPECTED_SIZE" ]; then
    SHA=$(hash_file "$PART")   # every byte arrived before an interruption; only the hash is missing
    break
  fi
  if [ "$offset" -gt 0 ]; then say "resuming at byte $offset"; fi
  transfer "$offset"
  if ! read -r fetch_rc stream_rc <"$WORK/status" 2>/dev/null; then
    fail 15 "the download pipeline stopped unexpectedly; run this script again to resume"
  fi
  case $stream_rc in
    0) ;;
    4) restore_part "$offset"
      fail 22 "the server compressed the model (Content-Encoding) although it was asked not to;" \
        "nothing was installed" ;;
    5) rm -f -- "$PART"
      fail 13 "the server sent more bytes than the file has (${EXPECTED_SIZE:-announced size});" \
        "the partial file was removed and nothing was installed" ;;
    *) fail 15 "cannot write $PART (disk full?); free some space and run again: the download resumes" ;;
  esac
  status=$HTTP_STATUS
  if [ "$fetch_rc" = 0 ] && [ -n "$status" ] && [ "$status" -ge 200 ] && [ "$status" -lt 300 ]; then
    case $CONTENT_TYPE in
      text/html* | application/json* | application/problem+json* | application/xhtml*)
        error_page "the server answered with a web page or an error message ($CONTENT_TYPE), not the model" ;;
    esac
    read -r SHA _ <"$WORK/sha" || SHA=""
    size=$(file_size "$PART")
    if [ -z "$EXPECTED_SIZE" ] || [ "$size" -ge "$EXPECTED_SIZE" ]; then break; fi
    if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
      fail 10 "the transfer kept ending early ($size of $EXPECTED_SIZE bytes);" \
        "run this script again later: the download resumes"
    fi
    backoff "the transfer ended early at $size of $EXPECTED_SIZE bytes"
    continue
  fi
  if [ "$status" = 416 ] && [ "$offset" -gt 0 ]; then
    if [ -n "$RANGE_TOTAL" ] && [ "$RANGE_TOTAL" = "$offset" ] && [ -z "$EXPECTED_SIZE" ]; then
      SHA=$(hash_file "$PART")   # the part was already complete
      break
    fi
    if [ -n "$EXPECTED_SIZE" ] && [ -n "$RANGE_TOTAL" ] && [ "$RANGE_TOTAL" != "$EXPECTED_SIZE" ]; then
      reject 13 "the server's file has $RANGE_TOTAL bytes, expected $EXPECTED_SIZE"
    fi
    restart_part "the server cannot resume at byte $offset"
    continue
  fi
  if [ "$FETCHER" = curl ] && [ "$fetch_rc" = 33 ]; then
    restart_part "the server does not support resuming"
    continue
  fi
  case $status in 2??) ;; ?*) restore_part "$offset" ;; esac
  case $status in
    401 | 403) auth_failure ;;
    408 | 425 | 429 | 500 | 502 | 503 | 504) reason="HTTP $status from the server" ;;
    4[0-9][0-9] | 5[0-9][0-9])
      fail 10 "HTTP $status from the server for $URL;" \
        "the file may have moved: run comfyfixer again to search anew" ;;
    *)
      if [ "$FETCHER" = curl ]; then
        case $fetch_rc in
          1) fail 10 "the server answered with a URL curl does not support (http and https only)" ;;
          23) fail 15 "cannot write $PART (disk full?); free some space and run again" ;;
          35 | 51 | 53 | 54 | 58 | 59 | 60 | 77 | 80 | 83 | 90 | 91)
            fail 10 "TLS error talking to the server (curl exit $fetch_rc);" \
              "check the system clock and CA certificates" ;;
        esac
      fi
      reason="network error ($FETCHER exit $fetch_rc)" ;;
  esac
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    fail 10 "$reason after $attempt attempts; run this script again later: the download resumes"
  fi
  backoff "$reason"
done

size=$(file_size "$PART")
format_rc=0
format_check "$PART" || format_rc=$?
if [ "$format_rc" = 3 ]; then
  error_page "the download is a web page or an error message, not the model (a login may be required)"
fi
if [ -n "$EXPECTED_SIZE" ] && [ "$size" != "$EXPECTED_SIZE" ]; then
  reject 13 "size mismatch: got $size bytes, expected $EXPECTED_SIZE"
fi
case $SHA in
  *[!0-9a-f]* | '') fail 15 "could not compute the sha256 of $PART; run this script again" ;;
esac
if [ -n "$EXPECTED_SHA256" ] && [ "$SHA" != "$EXPECTED_SHA256" ]; then
  reject 14 "sha256 mismatch: got $SHA, expected $EXPECTED_SHA256 (wrong or corrupted file)"
fi
check_part "$format_rc"
mv -f -- "$PART" "$DEST" || fail 15 "cannot move $PART into place; check permissions and free space"
write_sidecar "$SHA"
say "installed $DEST ($size bytes, sha256 $SHA)"
report "$size" "$SHA"
