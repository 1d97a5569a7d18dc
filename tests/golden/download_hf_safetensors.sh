#!/usr/bin/env bash
# comfyfixer download script 007: safe to run again at any time, from any folder.
#
# model:   flux1-dev-fp8.safetensors
# folder:  checkpoints
# file:    /srv/ComfyUI/models/checkpoints/flux1-dev-fp8.safetensors
# source:  huggingface
# url:     https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev-fp8.safetensors
# why:     exact file name in Comfy-Org/flux1-dev; sha256 from LFS metadata
# sha256:  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
# size:    17246524772
# token:   HF_TOKEN from the environment, sent only when set
# hosts:   the URL and every redirect must be on ALLOWED_HOSTS; redirects may also reach signed storage under REDIRECT_SUFFIXES (https)
#
# Downloads to '<file>.part' (resumed by the next run), following redirects one checked hop
# at a time (ALLOWED_HOSTS below; the token only to the URL's own origin), never past the
# published size. Rejects HTML/JSON error pages and compressed answers, checks size, sha256
# and the file format, gates pickle files, then moves the file into place. Prints
# COMFYFIXER_SHA256=<hex> and writes '<file>.sha256' so nothing hashes the file twice.
# Environment: COMFYFIXER_ALLOW_PICKLE=1 installs a pickle the gate refused;
# COMFYFIXER_MAX_ATTEMPTS, COMFYFIXER_RETRY_DELAY and COMFYFIXER_RETRY_MAX_DELAY tune the retries.
# Files of COMFYFIXER_SEGMENT_MIN_MIB (32) MiB and more come over COMFYFIXER_SEGMENTS (16, at
# most 32) connections at once, resumable piece by piece ('<file>.part.segments').
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

DEST=/srv/ComfyUI/models/checkpoints/flux1-dev-fp8.safetensors
DEST_DIR=/srv/ComfyUI/models/checkpoints
BASE_NAME=flux1-dev-fp8.safetensors
URL=https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev-fp8.safetensors
EXPECTED_SIZE=17246524772
EXPECTED_SHA256=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
AUTH_VAR=HF_TOKEN
PYTHON=/usr/bin/python3
USER_AGENT=comfyfixer/0.1.0
PICKLE_EXT=''
ALLOWED_HOSTS='cas-bridge.xethub.hf.co cdn-lfs-eu-1.hf.co cdn-lfs-us-1.hf.co cdn-lfs.hf.co civitai.com civitai.red github.com hf.co huggingface.co objects.githubusercontent.com raw.githubusercontent.com release-assets.githubusercontent.com us.aws.cdn.hf.co'
HTTP_HOSTS=''
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
STREAM_PART_PY='"""One attempt of the single stream: follow the URL'"'"'s redirects one checked hop at a time, running
the script'"'"'s fetch (curl or wget) for each hop, and append the model'"'"'s body to the partial file.

Every hop is checked with `checks/hosts.py` (executed from its text: the URL itself, then each
Location'"'"'s target) before its fetch is started, and the token goes only where that check says (to
the URL'"'"'s own origin): to curl through a pipe (`--header @/dev/fd/3`), never on a command line.
The fetch writes the response headers to a file before the first body byte reaches us, so once
that byte (or the end of the stream) arrives the headers are read back to decide:
- a redirect with a Location: its body is thrown away and the next hop is checked and fetched;
- another non-2xx answer (an error page): the body is read and thrown away, the part is left alone,
  and "skip" is printed; the script decides what the status means;
- a compressed answer (Content-Encoding other than identity): nothing is written, exit 4;
- otherwise the bytes are appended while the whole part is hashed (what was already there is
  re-read first, a retry), and the transfer stops as soon as the part would grow past LIMIT (the
  published size, else the size this answer announces): exit 5, so an endless body cannot fill the
  disk. Unbuffered writes keep the part a clean prefix of the file even when the process is killed.
  Once the part holds all LIMIT bytes it runs the script'"'"'s checks of the finished part: the format
  check of `checks/formats.py` (`format NAME CODE`, `why REASON`), then for a pickle (PICKLE_EXT set,
  or the format says so) the gate of `checks/pickles.py` (`pickle CODE`, `pickle_why REASON`). The
  part does not change after these answers.
One program for all of it because every Python start costs a download tens of ms: an attempt is one.

Run by every download script, installed after `gates.py` by `loader.py`, as:
    python -S -c <loader.py> "gates stream_part" <gates.py> <this file> -- PART HEADERS LIMIT NAME
        FORMATS_PY PICKLES_PY PICKLE_EXT HOSTS_PY MAX_HOPS ALLOWED HTTP_HOSTS SUFFIXES GRANTED URL -- FETCH...
(LIMIT may be empty; HEADERS the file the fetch dumps headers into; PICKLE_EXT the file'"'"'s extension
when it is a pickle one, else empty; the *_PY arguments the texts of the checks; ALLOWED..GRANTED
the host lists of `checks/hosts.py`; FETCH the script'"'"'s curl or wget command without its URL.) The
token, if any, is the first line of standard input. Standard library only. Prints `hop URL` for
every hop fetched (or `refused REASON`, then nothing is fetched), `fetch_rc N` (the last fetch'"'"'s exit
code) and the lines above, `sha256 HEX` or `skip`. Exit 1: the part cannot be written; 0 otherwise.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

from .gates import check_part, run_main

CHUNK = 1 << 20
# A body we throw away (redirect, error page) is read this far, then the pipe is simply closed.
DISCARD_LIMIT = 1 << 20
EXIT_COMPRESSED = 4
EXIT_TOO_LARGE = 5
REDIRECTS = (301, 302, 303, 307, 308)


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


def check_hop(hosts_py: str, hosts_args: list[str]) -> tuple[str, bool] | None:
    """Check a hop before it is requested (`checks/hosts.py`): (URL, token may go there), or None."""
    code, out, why = run_main("comfyfixer_hosts", hosts_py, hosts_args)
    lines = out.split()
    if code != 0 or len(lines) != 2:
        print(f"refused {why or '"'"'the URL was refused'"'"'}")
        return None
    print(f"hop {lines[0]}")
    return lines[0], lines[1] == "token"


def start_fetch(command: list[str], url: str, token: str, header_file: str) -> tuple[int, int]:
    """Start the fetch of `url` (pid, the read end of its stdout). The token, when it may go there,
    travels through a pipe on fd 3; wget'"'"'s header dump is its stderr."""
    open(header_file, "w").close()  # a fetch that fails early must not leave old headers
    body_r, body_w = os.pipe()
    actions: list[tuple[object, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, body_w, 1),
    ]
    args = list(command)
    token_r = -1
    if os.path.basename(args[0]) == "wget":
        actions.append((os.POSIX_SPAWN_OPEN, 2, header_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        args += ["--", url]
    else:
        if token:
            token_r, token_w = os.pipe()
            os.write(token_w, f"Authorization: Bearer {token}\n".encode())
            os.close(token_w)
            actions.append((os.POSIX_SPAWN_DUP2, token_r, 3))
            args += ["--header", "@/dev/fd/3"]
        args += ["--url", url]
    try:
        pid = os.posix_spawnp(args[0], args, os.environ, file_actions=actions)
    finally:
        os.close(body_w)
        if token_r >= 0:
            os.close(token_r)
    return pid, body_r


def finish_fetch(pid: int) -> int:
    """The fetch'"'"'s exit code (128 + N when a signal N ended it, as the shell says)."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def announced_total(status: int, headers: dict[str, str]) -> int | None:
    if status == 206:
        total = headers.get("content-range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


Answer = tuple[int, "int | None", "dict[str, str]"]  # exit code, status, headers


def stream(src_fd: int, part: str, header_file: str, limit_arg: str) -> Answer:
    """One answer'"'"'s body from `src_fd`: (exit code, status, headers); prints the sha256 or "skip"."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(src_fd, "rb", buffering=0, closefd=False) as src:
        first = src.readinto(buf) or 0
        status, headers = read_headers(header_file, waited_for_body=first > 0)
        if status is None or not 200 <= status < 300:
            seen = first
            while first and seen < DISCARD_LIMIT:
                first = src.readinto(buf) or 0
                seen += first
            print("skip")
            return 0, status, headers
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            sys.stderr.write(f"comfyfixer: the server compressed the answer ({encoding}); refusing it\n")
            return EXIT_COMPRESSED, status, headers
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
                        return EXIT_TOO_LARGE, status, headers
                    done = 0
                    while done < n:
                        done += out.write(view[done:n])
                    h.update(view[:n])
                    n = src.readinto(buf) or 0
                complete = limit is not None and out.tell() == limit
        except OSError as exc:
            sys.stderr.write(f"comfyfixer: cannot write the partial file: {exc}\n")
            return 1, status, headers
    print(f"sha256 {h.hexdigest()}")
    return (0 if not complete else -1), status, headers  # -1: complete, the checks are due


def main(argv: list[str]) -> int:
    part, header_file, limit_arg, name, formats_py, pickles_py, pickle_ext, hosts_py, max_hops = argv[:9]
    rules, command = argv[9:14], argv[15:]
    # Ctrl-C and SIGTERM reach the whole group: end quietly (the script says what happened).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    token = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.readline().strip()
    current, location, fetch_rc, code = rules[4], "", 125, 0
    for _ in range(int(max_hops) + 1 if max_hops.isdigit() else 11):
        hop = check_hop(hosts_py, [*rules, current, *([location] if location else [])])
        if hop is None:
            break  # nothing is fetched from a refused host
        url, token_ok = hop
        pid, body = start_fetch(command, url, token if token_ok else "", header_file)
        try:
            code, status, headers = stream(body, part, header_file, limit_arg)
        finally:
            os.close(body)  # a body we stopped reading: the fetch ends on its closed pipe
            fetch_rc = finish_fetch(pid)
        if code == -1:
            code = 0
            print(f"fetch_rc {fetch_rc}")
            sys.stdout.flush()
            check_part(part, name, formats_py, pickles_py, pickle_ext)
            return 0
        location = headers.get("location", "")
        if code != 0 or status not in REDIRECTS or not location:
            break
        current = url
    print(f"fetch_rc {fetch_rc}")
    return code


if __name__ == "__main__":
    if len(sys.argv) < 17 or sys.argv[15] != "--":
        sys.stderr.write("comfyfixer: stream_part: expected 14 arguments, then -- and the fetch command\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
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


class HostRule:
    """The allowed-host data of one run: what `Settings` decides, and what a script carries.

    A plain value class, not a dataclass: this module is carried in every script, and importing
    `dataclasses` there costs each Python start of a download ~12 ms.
    """

    __slots__ = ("allowed", "http_hosts", "suffixes")

    def __init__(
        self,
        allowed: frozenset[str],
        http_hosts: frozenset[str] = frozenset(),
        suffixes: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "http_hosts", http_hosts)
        object.__setattr__(self, "suffixes", suffixes)

    allowed: frozenset[str]
    http_hosts: frozenset[str]
    suffixes: tuple[str, ...]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"HostRule is immutable: cannot set {name}")

    def _key(self) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
        return (self.allowed, self.http_hosts, self.suffixes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostRule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"HostRule({self.allowed!r}, {self.http_hosts!r}, {self.suffixes!r})"

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

# Annotations only (postponed): importing typing would cost every download script'"'"'s check ~3 ms.
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

# Annotations only (postponed): importing typing would cost every download script'"'"'s gate ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
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
# shellcheck disable=SC2016
LOADER_PY='"""Run a carried program made of several modules, from their texts (the streamer, the segmented downloader).

A download script runs alone, with no comfyfixer installed, so it carries each module'"'"'s text and runs
    python -S -c <this file> NAMES TEXT... -- ARGS
NAMES: the modules'"'"' names, space-separated, each imported only by those after it; the last one is
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
'
# shellcheck disable=SC2016
OUTCOME_PY='"""How a segmented download ends: the exit codes it shares with the script, and the two exceptions.

Part of the segmented downloader a script carries (`segments.py`; `loader.py` installs the parts).
Standard library only.
"""

from __future__ import annotations

import os
import sys

OK, FALLBACK, NETWORK, AUTH, NOT_MODEL, SIZE, WRITE, HOST, COMPRESSED = 0, 3, 10, 11, 12, 13, 15, 21, 22
INTERRUPTED = 130
MIB = 1 << 20


class Stop(Exception):
    """Ends the download with an exit code and a sentence for the user."""

    def __init__(self, code: int, message: str, status: int | None = None, *, restart: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.restart = restart  # what is on disk cannot be resumed


class Retry(Exception):
    """A failure worth another attempt (network error, 429/5xx), after `delay` seconds if given."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


def say(message: str) -> None:
    sys.stderr.write(f"comfyfixer: {message}\n")
    sys.stderr.flush()


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default
'
# shellcheck disable=SC2016
GATES_PY='"""The script'"'"'s checks (`comfyfixer/checks/`, carried as texts) run inside a Python step that is
already running, the single stream'"'"'s `stream_part.py` or the segmented `segments.py`: each would
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
    """The script'"'"'s checks of a finished part, in its order: the format check (`checks/formats.py`),
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
'
# shellcheck disable=SC2016
RULES_PY='"""Where requests may go (the host rule of `checks/hosts.py`, executed from its text) and URL parts.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import os

from .gates import load_module


class Rules:
    """Where requests may go: the host lists the script carries (space-separated), one rule for all.

    The decision is `host_allowed` of `checks/hosts.py`, the module the run'"'"'s validator imports and
    the script'"'"'s curl hops run; its text comes as an argument and is executed here, so there is one
    implementation of the rule.
    """

    def __init__(self, allowed: str, http_hosts: str, suffixes: str, granted: str, hosts_py: str) -> None:
        self.allowed = frozenset(allowed.lower().split())
        self.http_hosts = frozenset(http_hosts.lower().split())
        self.suffixes = tuple(suffixes.lower().split())
        self.granted = tuple(granted.split())
        self.rule = load_module("comfyfixer_hosts", hosts_py).host_allowed

    def allows(self, url: str, *, redirect: bool) -> bool:
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
            return False  # a malformed target is never requested (it could split the request line)
        return bool(
            self.rule(
                url,
                allowed=self.allowed,
                http_hosts=self.http_hosts,
                suffixes=self.suffixes,
                redirect=redirect,
                granted=self.granted,
            )
        )


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, lower-case host, port, path?query) of an absolute http(s) URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return scheme, "", 0, ""
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return scheme, (parts.hostname or "").lower(), port, target


def origin(url: str) -> tuple[str, str, int]:
    scheme, host, port, _ = split_url(url)
    return scheme, host, port


def proxied(url: str) -> bool:
    """Whether the environment routes this URL through a proxy (curl honours proxies; we do not)."""
    scheme, host, _, _ = split_url(url)
    names = (scheme + "_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return False
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    for entry in no_proxy.split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return False
    return True
'
# shellcheck disable=SC2016
PIECES_PY='"""The piece plan (what is on disk, being fetched, left; handed out in file order) and the resume record.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

from .outcome import MIB

# Annotations only (postponed): importing typing would cost every download'"'"'s start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

READ_BLOCK = MIB
MAX_PIECE = 64 * MIB
MIN_STEAL = 512 << 10


class Piece:
    """A byte range [start, end) being fetched; `done` bytes from `start` are on disk."""

    __slots__ = ("done", "end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.done = 0


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class Plan:
    """What is on disk, what is being fetched and what is left; shared by the connections (one lock)."""

    def __init__(self, size: int, done: list[tuple[int, int]], connections: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.done = merge(done)
        self.active: list[Piece] = []
        gaps, pos = [], 0
        for a, b in self.done:
            if a > pos:
                gaps.append((pos, a))
            pos = b
        if pos < size:
            gaps.append((pos, size))
        self.gaps = gaps
        base = size // (connections * 8) if connections else size
        self.base_piece = max(MIB, min(16 * MIB, base // MIB * MIB))
        # Pieces grow with a far server'"'"'s round trip, but stay small enough that the pieces in flight
        # at the end (hashed after the last byte) are a small share of the file.
        self.max_piece = max(self.base_piece, min(MAX_PIECE, size // (max(connections, 1) * 4)))
        self.progress = threading.Event()  # set after every write: wakes the hasher

    def missing(self) -> int:
        return sum(b - a for a, b in self.gaps)

    def take(self, wanted: int) -> Piece | None:
        """The next piece in file order; when none is left, half of the largest piece still running."""
        with self.lock:
            if not self.gaps:
                return self.steal()
            a, b = self.gaps[0]
            end = min(b, a + max(self.base_piece, min(wanted, self.max_piece)))
            if b - end < self.base_piece // 4:  # no sliver left behind for a connection of its own
                end = b
            if end == b:
                self.gaps.pop(0)
            else:
                self.gaps[0] = (end, b)
            piece = Piece(a, end)
            self.active.append(piece)
            return piece

    def steal(self) -> Piece | None:
        # Without this the last pieces end one by one and the link idles; splitting the slowest keeps
        # every connection busy to the end. The owner may be reading one block past its done mark.
        best, left = None, 0
        for p in self.active:
            rest = p.end - (p.start + p.done + READ_BLOCK)
            if rest > left:
                best, left = p, rest
        if best is None or left < 2 * MIN_STEAL:
            return None
        mid = best.end - left // 2
        piece = Piece(mid, best.end)
        best.end = mid
        self.active.append(piece)
        return piece

    def finish(self, piece: Piece) -> None:
        with self.lock:
            self.active.remove(piece)
            self.done = merge([*self.done, (piece.start, piece.start + piece.done)])
            if piece.done < piece.end - piece.start:  # given up: hand the rest back
                self.gaps = merge([*self.gaps, (piece.start + piece.done, piece.end)])
        self.progress.set()

    def snapshot(self) -> list[tuple[int, int]]:
        with self.lock:
            return merge(self.done + [(p.start, p.start + p.done) for p in self.active])

    def prefix(self) -> int:
        """Bytes from 0 that are all on disk."""
        ranges = self.snapshot()
        return ranges[0][1] if ranges and ranges[0][0] == 0 else 0

    def bytes_on_disk(self) -> int:
        return sum(b - a for a, b in self.snapshot())


class Record:
    """`<part>.segments`: the resume record, replaced atomically (temp file + rename)."""

    def __init__(self, part: str, url: str) -> None:
        self.path = part + ".segments"
        self.url = url

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, size: int, validator: str, done: list[tuple[int, int]]) -> None:
        tmp = f"{self.path}.tmp.{os.getpid()}"
        body = {
            "version": 1,
            "url": self.url,
            "size": size,
            "validator": validator,
            "done": [[a, b] for a, b in done],
            "bytes": sum(b - a for a, b in done),
        }
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(body, fh, separators=(",", ":"))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        for path in (self.path, f"{self.path}.tmp.{os.getpid()}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def usable_ranges(
    data: dict[str, Any] | None, url: str, size: int | None
) -> tuple[list[tuple[int, int]], str] | None:
    """The done ranges and validator of a record that matches this download, else None."""
    if not data or data.get("version") != 1 or data.get("url") != url:
        return None
    total = data.get("size")
    if not isinstance(total, int) or total <= 0 or (size is not None and total != size):
        return None
    ranges: list[tuple[int, int]] = []
    for item in data.get("done") or []:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, int) for x in item)):
            return None
        a, b = item
        if not 0 <= a <= b <= total:
            return None
        ranges.append((a, b))
    validator = data.get("validator")
    return merge(ranges), validator if isinstance(validator, str) else ""
'
# shellcheck disable=SC2016
HTTP_CLIENT_PY='"""A small HTTP/1.1 client for ranged GETs, with the script'"'"'s rules on every request and redirect hop.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from .outcome import AUTH, COMPRESSED, FALLBACK, HOST, INTERRUPTED, NETWORK, NOT_MODEL, SIZE, Retry, Stop
from .rules import Rules, origin, split_url

# Annotations only (postponed): importing typing would cost every download'"'"'s start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_HEADER = 64 << 10
MAX_HOPS = 10
TIMEOUT = 30.0  # seconds without a byte before a connection counts as failed
TLS_RECORD = 16384 + 2048 + 5  # the largest TLS record on the wire (TLS 1.2: payload, expansion, header)
BAD_TYPES = ("text/html", "application/json", "application/problem+json", "application/xhtml")


def marks_fit() -> bool:
    """Whether a read mark always fits the receive buffer: Linux from 4.19 grows the buffer to hold
    the mark (and caps it at half of the largest buffer). Older kernels do not, so a mark above the
    buffer would never be met; elsewhere it was not checked. Without that, reads wake for any byte."""
    if not sys.platform.startswith("linux"):
        return False
    import os

    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (4, 19)


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken directly on the socket.

    http.client would cost 50 ms of imports (email.parser, datetime) in a program whose start-up is
    part of every download, and a header parse per piece; this needs GET, a status line, headers
    and a Content-Length body only (anything else is not a ranged model download: the single
    stream takes over).
    """

    def __init__(self, scheme: str, host: str, port: int, context: Any) -> None:
        import socket

        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        default = 443 if scheme == "https" else 80
        self.host_header = host if port == default else f"{host}:{port}"
        if ":" in host and port == default:
            self.host_header = f"[{host}]"
        elif ":" in host:
            self.host_header = f"[{host}]:{port}"
        self.extra = bytearray()  # body bytes that arrived with the headers
        # Bytes the kernel waits for before it wakes a read (SO_RCVLOWAT); see `wake_at`.
        self.low_water = 1
        # Over TLS, OpenSSL may already hold the start of a record it could not finish: what the
        # kernel still gets for a body can fall short of what the body owes by up to one record.
        self.slack = TLS_RECORD if scheme == "https" else 0
        self.batching = hasattr(socket, "SO_RCVLOWAT") and marks_fit()

    def request(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        self.wake_at(1)  # headers: any byte
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = self.extra
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEADER:
                raise OSError("the server'"'"'s headers are too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("the server closed the connection")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        self.extra = bytearray(rest)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise OSError(f"not an HTTP/1.x answer: {status_line[:60]!r}")
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        return int(parts[1]), fields

    def wake_at(self, count: int, owed: int | None = None) -> None:
        """Let the kernel wake this connection'"'"'s reads only once `count` bytes are waiting.

        A body is read in 1 MiB blocks: woken for every few hundred KiB that arrive, 16 receiving
        threads cost a thread switch, a GIL hand-off and a pass of Python per wake-up (a tenth of
        the segmented download'"'"'s CPU on 256 MiB); woken once per block, they do not. The mark never
        exceeds what the body still sends (`owed`, less a TLS record), so it is always met unless
        the link stalls (then the read times out as before).
        """
        if owed is not None:
            count = min(count, owed - self.slack)
        count = max(1, count) if self.batching else 1
        if count != self.low_water:
            import socket

            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
            except OSError:
                self.batching = False
                return
            self.low_water = count

    def readinto(self, view: memoryview) -> int:
        if self.extra:
            n = min(len(view), len(self.extra))
            view[:n] = self.extra[:n]
            del self.extra[:n]
            return n
        try:
            return int(self.sock.recv_into(view))
        except OSError as exc:
            import socket

            if self.low_water == 1 or not isinstance(exc, socket.timeout):  # TimeoutError from 3.10 on
                raise
        # Fewer bytes than the mark in TIMEOUT: a slow link, not a dead one. From now on any byte
        # wakes a read, and TIMEOUT without one fails the connection as before.
        self.batching = False
        self.wake_at(1)
        return int(self.sock.recv_into(view))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Response:
    """An answer'"'"'s status and headers, and its body still to be read from the connection."""

    def __init__(self, conn: Connection, status: int, headers: dict[str, str], url: str) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self.url = url
        length = headers.get("content-length", "")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.remaining: int | None = int(length) if length.isdigit() and not chunked else None
        self.reusable = self.remaining is not None and "close" not in headers.get("connection", "").lower()

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def readinto(self, view: memoryview) -> int:
        """Body bytes into `view` (never past the body'"'"'s end); 0 when the connection closed early."""
        if self.remaining is not None:
            view = view[: self.remaining]
            self.conn.wake_at(len(view), self.remaining)
        n = self.conn.readinto(view) if len(view) else 0
        if self.remaining is not None:
            self.remaining -= n
        return n


class Fetcher:
    """Requests with the script'"'"'s rules: one keep-alive connection per (thread, origin)."""

    def __init__(self, url: str, token: str, user_agent: str, rules: Rules) -> None:
        self.url = url
        self.token = token
        self.user_agent = user_agent
        self.rules = rules
        self.lock = threading.Lock()  # short sections only: never held across a request
        self.resolve_lock = threading.Lock()
        self.resolved = ""  # the final hop of the last resolve
        self.generation = 0
        self.resolves = 0
        self.validator = ""
        self.local = threading.local()
        self.open_conns: set[Connection] = set()
        self.stopping = False
        self._ssl: Any = None

    def connection(self, url: str) -> Connection:
        key = origin(url)
        conns: dict[tuple[str, str, int], Connection] = self.local.__dict__.setdefault("conns", {})
        conn = conns.get(key)
        if conn is None:
            scheme, host, port = key
            if scheme == "https" and self._ssl is None:
                import ssl

                self._ssl = ssl.create_default_context()
            conn = Connection(scheme, host, port, self._ssl)
            conns[key] = conn
            with self.lock:
                self.open_conns.add(conn)
                if self.stopping:
                    raise Stop(INTERRUPTED, "interrupted")
        return conn

    def drop(self, url: str) -> None:
        conns: dict[tuple[str, str, int], Connection] = self.local.__dict__.setdefault("conns", {})
        conn = conns.pop(origin(url), None)
        if conn is not None:
            with self.lock:
                self.open_conns.discard(conn)
            conn.close()

    def close_all(self) -> None:
        """From the signal handler: cut every connection so blocked reads return at once."""
        import socket

        with self.lock:
            self.stopping = True
            conns = list(self.open_conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def request(self, url: str, first: int, last: int) -> Response:
        """One GET of bytes first..last (inclusive) on `url`, without following redirects."""
        headers = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": "identity",
            "Range": f"bytes={first}-{last}",
        }
        if self.token and origin(url) == origin(self.url):
            headers["Authorization"] = "Bearer " + self.token
        for fresh in (False, True):
            try:
                conn = self.connection(url)
                status, fields = conn.request(split_url(url)[3], headers)
                return Response(conn, status, fields, url)
            except Stop:
                raise
            except Exception as exc:  # OSError, ssl errors, a garbled answer
                self.drop(url)
                if self.stopping:
                    raise Stop(INTERRUPTED, "interrupted") from exc
                if type(exc).__name__ == "SSLCertVerificationError":
                    raise Stop(
                        FALLBACK, f"this Python cannot verify the server'"'"'s certificate: {exc}"
                    ) from exc
                if not fresh and isinstance(exc, OSError):
                    continue  # a kept-alive connection the server closed meanwhile: one more, at once
                raise Retry(f"network error: {exc or type(exc).__name__}") from exc
        raise Retry("network error")

    def done_with(self, r: Response) -> None:
        """After a body was read to its end: keep the connection for the next request, or close it."""
        if not (r.reusable and r.remaining == 0):
            self.drop(r.url)

    def discard(self, r: Response) -> None:
        """Finish an answer we do not use: a short body is read, a long one closes the connection."""
        if r.remaining is not None and r.remaining <= 65536:
            buf = memoryview(bytearray(65536))
            try:
                while r.remaining and r.readinto(buf):
                    pass
            except OSError:
                self.drop(r.url)
                return
        self.done_with(r)

    def resolve(self, first: int, last: int) -> Response:
        """GET the original URL, following redirects one hop at a time, each hop checked."""
        url = self.url
        if not self.rules.allows(url, redirect=False):
            raise Stop(HOST, f"refusing to download from {split_url(url)[1]}: the host is not allowed")
        for _ in range(MAX_HOPS + 1):
            r = self.request(url, first, last)
            if r.status in (301, 302, 303, 307, 308):
                location = r.header("Location")
                self.discard(r)
                if not location:
                    raise Stop(NETWORK, f"HTTP {r.status} without a Location from {split_url(url)[1]}")
                from urllib.parse import urljoin

                target = urljoin(url, location)
                if not self.rules.allows(target, redirect=True):
                    host = split_url(target)[1] or target
                    raise Stop(HOST, f"refusing the redirect to {host}: the host is not allowed")
                url = target
                continue
            return r
        raise Stop(NETWORK, f"more than {MAX_HOPS} redirects")


def check_answer(r: Response, first: int, last: int, size: int | None) -> int:
    """Validate a ranged answer; returns the file'"'"'s total size. Raises Stop/Retry/Expired otherwise."""
    status = r.status
    if status == 206:
        ctype = r.header("Content-Type").lower()
        if ctype.startswith(BAD_TYPES):
            raise Stop(
                NOT_MODEL, f"the server answered with a web page or an error message ({ctype}), not the model"
            )
        encoding = r.header("Content-Encoding").lower()
        if encoding not in ("", "identity"):
            raise Stop(
                COMPRESSED, f"the server compressed the model ({encoding}) although it was asked not to"
            )
        spec = r.header("Content-Range")
        try:
            unit, rest = spec.split(" ", 1)
            span, total_text = rest.split("/", 1)
            a, b = (int(x) for x in span.split("-", 1))
            total = int(total_text)
        except ValueError:
            raise Stop(NETWORK, f"the server sent an unreadable Content-Range: {spec[:80]!r}") from None
        if unit.lower() != "bytes" or a != first or b != min(last, total - 1) or total <= 0:
            raise Stop(NETWORK, f"the server sent bytes {span[:40]}, not the {first}-{last} asked for")
        if size is not None and total != size:
            raise Stop(SIZE, f"the server'"'"'s file has {total} bytes, expected {size}")
        length = r.header("Content-Length")
        if length and (not length.isdigit() or int(length) != b - a + 1):
            raise Stop(NETWORK, f"the server'"'"'s Content-Length {length[:20]} does not match its Content-Range")
        return total
    if status == 200:
        raise Stop(FALLBACK, "the server does not send byte ranges")
    if status in (408, 425, 429, 500, 502, 503, 504):
        after = r.header("Retry-After")
        raise Retry(f"HTTP {status} from the server", float(after) if after.isdigit() else None)
    raise Stop(NETWORK, f"HTTP {status} from the server", status)


def auth_stop(exc: Stop) -> Stop:
    """A 401/403 from the original URL means a login is missing (the script says which token)."""
    if exc.status in (401, 403):
        return Stop(AUTH, f"the server refused access (HTTP {exc.status})", exc.status)
    return exc


def strong_validator(r: Response) -> str:
    etag = r.header("ETag")
    return "" if not etag or etag.startswith("W/") else etag
'
# shellcheck disable=SC2016
PREFIX_HASH_PY='"""The sha256 of the part, computed while the transfer runs: it follows the contiguous prefix on disk.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import hashlib
import os

from .outcome import MIB

# Annotations only (postponed): importing typing would cost every download'"'"'s start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

    from .pieces import Plan


def hash_prefix(fd: int, plan: Plan, stop: threading.Event) -> str:
    """sha256 of the file, following the contiguous prefix on disk as it grows.

    The part is mapped rather than read: hashing from the page cache without a copy costs a
    fifth less CPU on a 256 MiB file (preadv is the fallback where mapping fails).
    """
    h = hashlib.sha256()
    try:
        import mmap

        mapped: Any = mmap.mmap(fd, plan.size, prot=mmap.PROT_READ)
    except (ImportError, OSError, ValueError, OverflowError):
        mapped = None
    buf = bytearray(0 if mapped is not None else 4 * MIB)
    view = memoryview(mapped if mapped is not None else buf)
    pos = 0
    try:
        while pos < plan.size:
            plan.progress.clear()  # before reading the prefix: a write after it wakes the wait
            end = plan.prefix()
            if end <= pos:
                if stop.is_set():
                    return ""
                plan.progress.wait(0.05)
                continue
            while pos < end:
                step = min(4 * MIB, end - pos)
                if mapped is not None:
                    h.update(view[pos : pos + step])
                    pos += step
                    continue
                n = os.preadv(fd, [view[:step]], pos)
                if n <= 0:
                    raise OSError(f"unexpected end of file at byte {pos}")
                h.update(view[:n])
                pos += n
    finally:
        view.release()
        if mapped is not None:
            mapped.close()
    return h.hexdigest()
'
# shellcheck disable=SC2016
TRANSFER_PY='"""One segmented download'"'"'s state and its transfer: N connections fetching pieces, the hash, the record.

Part of the segmented downloader a script carries (`segments.py`, whose `Download` adds the start:
probe, resume record, preallocation). Standard library only.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from .gates import check_part
from .http_client import Fetcher, Response, auth_stop, check_answer, strong_validator
from .outcome import INTERRUPTED, MIB, NETWORK, OK, WRITE, Retry, Stop, env_int, say
from .pieces import READ_BLOCK, Piece, Plan, Record
from .prefix_hash import hash_prefix
from .rules import Rules

# Annotations only (postponed): importing typing would cost every download'"'"'s start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_RESOLVES = 20  # signed URLs re-resolved in one run (each expiry costs one)
RECORD_EVERY = 0.25


class Transfer:
    """The state every connection shares, and the transfer itself (`Download` in `segments.py` starts it)."""

    def __init__(self, args: list[str], token: str) -> None:
        (self.part, url, expected, segments, min_size, user_agent, durable) = args[:7]
        rules = Rules(*args[7:12])
        self.name, self.formats_py, self.pickles_py, self.pickle_ext = args[12:16]
        self.expected = int(expected) if expected.isdigit() else None
        self.connections = max(1, min(32, int(segments) if segments.isdigit() else 16))
        self.min_size = int(min_size) if min_size.isdigit() else 32 * MIB
        self.durable = durable == "1"
        self.fetcher = Fetcher(url, token, user_agent, rules)
        self.record = Record(self.part, url)
        self.max_attempts = max(1, env_int("COMFYFIXER_MAX_ATTEMPTS", 5))
        self.retry_delay = env_int("COMFYFIXER_RETRY_DELAY", 2)
        self.retry_max = env_int("COMFYFIXER_RETRY_MAX_DELAY", 300)
        self.stop = threading.Event()
        self.idle = threading.Event()  # set when the last connection has ended
        self.running = 0
        self.failure: Stop | None = None
        self.fd = -1
        self.plan: Plan | None = None
        self.owns_part = False  # a record exists (found or written): the part is laid out by pieces
        self.sha256 = ""
        self.hash_error: BaseException | None = None
        self.tty = sys.stderr.isatty()

    # -- outcome of a thread -----------------------------------------------------------------------
    def fail(self, stop: Stop) -> None:
        with self.fetcher.lock:
            if self.failure is None:
                self.failure = stop
        self.stop.set()

    def interrupt(self, signum: int, frame: Any) -> None:
        self.fail(Stop(INTERRUPTED, "interrupted"))
        self.fetcher.close_all()

    def backoff(self, attempt: int, exc: Retry) -> None:
        """Sleep before the next attempt; raises Stop when interrupted meanwhile."""
        if self.stop.is_set():
            raise self.failure or Stop(INTERRUPTED, "interrupted")
        delay = float(self.retry_delay * (1 << min(attempt - 1, 10)))
        if exc.delay is not None and exc.delay > delay:
            delay = exc.delay
        delay = min(delay, float(self.retry_max))
        say(f"{exc}; retrying in {delay:g}s (attempt {attempt + 1} of {self.max_attempts})")
        if self.stop.wait(delay):
            raise self.failure or Stop(INTERRUPTED, "interrupted")

    # -- the transfer -------------------------------------------------------------------------------
    def transfer(self, first_answer: Response | None, head: Piece | None) -> int:
        plan = self.plan
        assert plan is not None
        pending = plan.missing() + (head.end - head.start if head else 0)
        count = min(self.connections, max(1, -(-pending // plan.base_piece)))
        # The probe'"'"'s answer is the first piece: its bytes are already on their way.
        jobs: list[tuple[Response | None, Piece | None]] = [(first_answer, head)] + [(None, None)] * (
            count - 1
        )
        self.running = count
        workers = [threading.Thread(target=self.worker, args=job, daemon=True) for job in jobs]
        hasher = threading.Thread(target=self.hash_thread, daemon=True)
        for t in workers:
            t.start()
        hasher.start()
        shown = time.monotonic()
        while not self.idle.wait(RECORD_EVERY):
            if self.stop.is_set():
                # Blocked connects and reads were cut; do not wait on a straggler for long.
                for t in workers:
                    t.join(max(0.0, 2.0 / len(workers)))
                break
            self.checkpoint()
            if self.tty and time.monotonic() - shown >= 1.0:
                shown = time.monotonic()
                self.show_progress()
        if self.tty:
            sys.stderr.write("\n")
        if self.failure is None and plan.missing() == 0 and not plan.active:
            hasher.join()
            if self.hash_error is not None:
                raise Stop(WRITE, f"cannot read {self.part} back to hash it: {self.hash_error}")
            return self.report()
        self.stop.set()
        self.checkpoint()
        if self.failure is None:
            raise Stop(NETWORK, "the download stopped early; run this script again to resume")
        raise self.failure

    def checkpoint(self) -> None:
        assert self.plan is not None
        done = self.plan.snapshot()  # taken before the sync: it claims only bytes written by then
        try:
            if self.durable and self.fd >= 0:
                os.fdatasync(self.fd)
            self.record.save(self.plan.size, self.fetcher.validator, done)
        except OSError as exc:
            self.fail(
                Stop(WRITE, f"cannot write the resume record {self.record.path}: {exc.strerror or exc}")
            )

    def show_progress(self) -> None:
        assert self.plan is not None
        have = self.plan.bytes_on_disk()
        sys.stderr.write(
            f"\rcomfyfixer: {have >> 20} of {self.plan.size >> 20} MiB,"
            f" {len(self.plan.active)} connections   "
        )
        sys.stderr.flush()

    def worker(self, answer: Response | None, piece: Piece | None) -> None:
        plan = self.plan
        assert plan is not None
        buf = bytearray(READ_BLOCK)
        wanted = plan.base_piece
        try:
            while not self.stop.is_set():
                if piece is None:
                    piece = plan.take(wanted)
                    if piece is None:
                        return
                wanted = self.fetch_piece(piece, answer, buf, wanted)
                plan.finish(piece)
                piece = None
                answer = None
        except Stop as exc:
            self.fail(exc)
        except BaseException as exc:  # a thread'"'"'s failure becomes the download'"'"'s outcome
            self.fail(Stop(NETWORK, f"unexpected error: {exc!r}"))
        finally:
            if piece is not None:
                plan.finish(piece)
            with self.fetcher.lock:
                self.running -= 1
                if self.running == 0:
                    self.idle.set()

    def fetch_piece(self, piece: Piece, answer: Response | None, buf: bytearray, wanted: int) -> int:
        """Fetch the rest of `piece` (retries, expired signed URLs); returns the next piece size to ask."""
        failures = 0
        while piece.done < piece.end - piece.start:
            if self.stop.is_set():
                return wanted
            first, last = piece.start + piece.done, piece.end - 1
            before = piece.done
            try:
                t0 = time.monotonic()
                if answer is None:
                    answer = self.request_piece(first, last)
                t1 = time.monotonic()
                self.read_body(answer, piece, buf)
                t2 = time.monotonic()
                if t2 > t1 and answer is not None:
                    # Grow pieces so a request'"'"'s round trip stays a small share of each piece'"'"'s time.
                    speed = (piece.done - before) / (t2 - t1)
                    wanted = int(min(2 * wanted, max(MIB, 16 * speed * (t1 - t0))))
            except Retry as exc:
                answer = None
                failures = 1 if piece.done > before else failures + 1
                if failures >= self.max_attempts:
                    raise Stop(
                        NETWORK,
                        f"{exc} after {failures} attempts; run this script again later: the download resumes",
                    ) from None
                self.backoff(failures, exc)
        return wanted

    def request_piece(self, first: int, last: int) -> Response:
        f = self.fetcher
        for _ in range(MAX_RESOLVES + 1):
            with f.lock:
                url, generation = f.resolved, f.generation
            answer = f.request(url, first, last)
            if answer.status in (401, 403, 410) and url != f.url:
                f.discard(answer)
                self.re_resolve(generation)
                continue
            try:
                check_answer(answer, first, last, self.plan.size if self.plan else None)
            except Stop as exc:
                f.discard(answer)
                raise auth_stop(exc) from None
            except Retry:
                f.discard(answer)
                raise
            validator = strong_validator(answer)
            if f.validator and validator and validator != f.validator:
                f.discard(answer)
                raise Stop(
                    NETWORK,
                    "the file changed on the server during the download; run this script again",
                    restart=True,
                )
            return answer
        raise Stop(NETWORK, "the download link kept expiring; run this script again")

    def re_resolve(self, generation: int) -> None:
        """The signed URL expired: one connection resolves the original again, the others wait for it."""
        f = self.fetcher
        with f.resolve_lock:
            with f.lock:
                if f.generation != generation:
                    return  # another connection already did it
                if f.resolves >= MAX_RESOLVES:
                    raise Stop(
                        NETWORK,
                        f"the download link kept expiring ({f.resolves} times); run this script again",
                    )
                f.resolves += 1
            answer = f.resolve(0, 0)
            try:
                check_answer(answer, 0, 0, self.plan.size if self.plan else None)
            except Stop as exc:
                raise auth_stop(exc) from None
            finally:
                f.discard(answer)
            with f.lock:
                f.resolved = answer.url
                f.generation += 1
        say("the signed download link expired; resolved it again from the original URL")

    def read_body(self, answer: Response, piece: Piece, buf: bytearray) -> None:
        """Read the answer into the part: blocks of up to 1 MiB, each written once it is full."""
        view = memoryview(buf)
        fd = self.fd
        assert self.plan is not None
        progress = self.plan.progress
        try:
            while piece.done < piece.end - piece.start:
                pos = piece.start + piece.done
                want = min(len(buf), piece.end - pos)  # `end` may shrink meanwhile: a steal
                n = 0
                while n < want:
                    got = answer.readinto(view[n:want])
                    if not got:
                        break
                    n += got
                written = 0
                while written < n:
                    try:
                        written += os.pwrite(fd, view[written:n], pos + written)
                    except OSError as exc:
                        raise Stop(
                            WRITE, f"cannot write {self.part} (disk full?): {exc.strerror or exc}"
                        ) from None
                piece.done += n
                progress.set()
                if n < want:
                    raise Retry("the connection closed early")
        except Stop:
            self.fetcher.drop(answer.url)
            raise
        except Exception as exc:  # OSError, a timeout, an early end
            self.fetcher.drop(answer.url)
            if self.fetcher.stopping:
                raise Stop(INTERRUPTED, "interrupted") from None
            raise Retry(f"network error: {exc or type(exc).__name__}") from None
        # Kept alive when read to its end; closed when the piece was cut short by a steal.
        self.fetcher.done_with(answer)

    # -- the hash -------------------------------------------------------------------------------------
    def hash_thread(self) -> None:
        try:
            assert self.plan is not None
            self.sha256 = hash_prefix(self.fd, self.plan, self.stop)
        except BaseException as exc:
            self.hash_error = exc

    def report(self) -> int:
        assert self.plan is not None
        if len(self.sha256) != 64:
            raise Stop(WRITE, f"could not compute the sha256 of {self.part}; run this script again")
        self.record.remove()
        sys.stdout.write(f"size {self.plan.size}\nsha256 {self.sha256}\n")
        self.check_format()
        return OK

    def check_format(self) -> None:
        """The script'"'"'s checks of the finished part, run here to spare the script an interpreter start."""
        check_part(self.part, self.name, self.formats_py, self.pickles_py, self.pickle_ext)
'
# shellcheck disable=SC2016
SEGMENTS_PY='"""Download one large file over several ranged connections into a single preallocated part file.

Carried verbatim by every download script, with the modules it imports (outcome, rules, pieces,
http_client, prefix_hash, transfer: one concept each), and run through `loader.py` as
`python -S -c <loader> NAMES TEXTS... -- ARGS` (standard library only: a script runs alone, with no
comfyfixer installed). The script calls it for files
above a size threshold; it answers with exit code 3 ("use the single stream") when the server does
not serve ranges, when a proxy is configured, or when this Python cannot verify the server'"'"'s TLS
certificate, and the script'"'"'s curl stream takes over with an empty part.

How it works (why, not what):
- The file is cut into pieces handed out in file order to N connections (keep-alive, one request
  per piece). Pieces arrive almost in order, so the sha256 of the contiguous prefix is computed
  while the transfer runs (re-read from the page cache) and only the last few pieces are hashed
  after it: equal static segments would leave 15/16 of the file to hash at the end.
- Pieces start at 1 MiB (file size / 16 per connection, at most 16 MiB) and grow with the measured
  request latency x speed of each connection, so a far CDN does not spend its time on round trips.
- Every request and redirect hop is checked: the host rule (allowed hosts; signed storage hosts by
  suffix only as redirect targets; plain http only for configured hosts), `Accept-Encoding:
  identity` with any other encoding refused, no HTML/JSON answer, `Content-Range` exactly the
  bytes asked for of a file of the expected size, never a byte written past the file'"'"'s end. The
  token goes only to the original URL'"'"'s origin, never to a redirect target.
- A signed redirect target that stops working (401/403/410 mid-download: the signature expired) is
  re-resolved from the original URL, once per expiry, shared by all connections.
- Resume: `<part>.segments` (JSON) lists the byte ranges on disk, the file'"'"'s size, validator and
  URL. It is written before the part is extended, then every 0.25 s and on exit (Ctrl-C, SIGTERM,
  errors). Without a published sha256 nothing would catch a part that a crash left with holes, so
  then the part is fdatasync'"'"'ed before each record write. A part without a record is a prefix
  (the curl stream'"'"'s resume rule). Any doubt about the record means starting from zero.

Arguments: PART URL EXPECTED_SIZE SEGMENTS MIN_SIZE USER_AGENT DURABLE ALLOWED_HOSTS HTTP_HOSTS
REDIRECT_SUFFIXES GRANTED_URL HOSTS_PY NAME FORMATS_PY PICKLES_PY PICKLE_EXT (lists space-separated;
EXPECTED_SIZE may be empty; DURABLE 1 or 0; the *_PY arguments the texts of `checks/hosts.py`,
`checks/formats.py` and `checks/pickles.py`, NAME the file name the format check judges by,
PICKLE_EXT the file'"'"'s extension when it is a pickle one, else empty).
The token, if any, is the first line of standard input (never an argument: `ps` shows those).
Prints `size N`, `sha256 HEX` and `format NAME CODE` (the format check'"'"'s answer, with `why REASON`
when it fails; then `pickle CODE` and `pickle_why REASON` from the pickle gate for a pickle) on
success;
`http_status N` before an HTTP failure.
Exit codes follow the script'"'"'s: 0 done, 3 use the single stream, 10 network/HTTP, 11 login needed,
12 not the model (a page), 13 size differs, 15 cannot write, 21 host not allowed, 22 compressed
answer, 130 interrupted (the record is saved).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from .http_client import Response, auth_stop, check_answer, strong_validator
from .outcome import (
    AUTH,
    COMPRESSED,
    FALLBACK,
    HOST,
    INTERRUPTED,
    NETWORK,
    NOT_MODEL,
    SIZE,
    WRITE,
    Retry,
    Stop,
    say,
)
from .pieces import Piece, Plan, usable_ranges
from .prefix_hash import hash_prefix
from .rules import proxied
from .transfer import Transfer

__all__ = ["AUTH", "COMPRESSED", "FALLBACK", "HOST", "INTERRUPTED", "NETWORK", "NOT_MODEL", "SIZE", "main"]


class Download(Transfer):
    """One segmented download: the start (probe, resume record, preallocation), then `Transfer`."""

    def stream_prefix(self) -> int:
        """How much of the part the single stream may keep (a clean prefix) if it takes over."""
        if self.plan is not None:
            return self.plan.prefix()
        return 0 if self.owns_part else -1  # -1: leave the part as it is

    # -- start: probe, record, preallocation ------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.interrupt)
        url = self.fetcher.url
        saved = self.record.load()
        self.owns_part = saved is not None
        if proxied(url):
            raise Stop(FALLBACK, "a proxy is configured; curl honours it")
        reuse = usable_ranges(saved, url, self.expected)
        done: list[tuple[int, int]] = []
        validator = ""
        if reuse is not None:
            done, validator = reuse
        elif saved is None:
            try:
                prefix = os.path.getsize(self.part)  # the curl stream'"'"'s part: a clean prefix
            except OSError:
                prefix = 0
            if prefix and (self.expected is None or prefix <= self.expected):
                done = [(0, prefix)]
        else:
            say("the resume record does not match this download; starting from zero")
        head: Piece | None = None
        if self.expected is not None:
            plan = self.plan = Plan(self.expected, done, self.connections)
            if not plan.gaps:
                return self.finish_from_disk()
            head = plan.take(plan.base_piece)
            assert head is not None
            answer, total = self.probe(head.start, head.end - 1)
        else:
            answer, total = self.probe(0, 0)
            self.fetcher.discard(answer)  # the one byte: keeps the connection for the next request
            if total < self.min_size:
                raise Stop(FALLBACK, "small file")
            plan = Plan(total, [r for r in done if r[1] <= total], self.connections)
        new_validator = strong_validator(answer)
        if done and validator and new_validator and validator != new_validator:
            say("the file changed on the server since the last run; starting from zero")
            if head is not None:
                self.fetcher.discard(answer)
            plan = Plan(total, [], self.connections)
            head = None
        self.fetcher.validator = new_validator
        self.plan = plan
        self.open_part(total)
        return self.transfer(answer if head is not None else None, head)

    def probe(self, first: int, last: int) -> tuple[Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self.fetcher.resolve(first, last)
                try:
                    total = check_answer(answer, first, last, self.expected)
                except (Stop, Retry):
                    self.fetcher.discard(answer)
                    raise
            except Retry as exc:
                if attempt >= self.max_attempts:
                    raise Stop(NETWORK, f"{exc} after {attempt} attempts") from None
                self.backoff(attempt, exc)
                continue
            except Stop as exc:
                raise auth_stop(exc) from None
            self.fetcher.resolved = answer.url
            return answer, total

    def open_part(self, total: int) -> None:
        assert self.plan is not None
        try:
            # The record comes first: a part extended before it exists would look like a full prefix.
            self.record.save(total, self.fetcher.validator, self.plan.snapshot())
            self.owns_part = True
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
            have = os.fstat(self.fd).st_size
            if have < total:
                st = os.statvfs(self.part)
                room = st.f_bavail * st.f_frsize
                if room < total - have:
                    raise Stop(
                        WRITE,
                        f"not enough free space for {self.part}: {total - have} more bytes needed,"
                        f" {room} free",
                    )
            if have != total:
                os.ftruncate(self.fd, total)
        except OSError as exc:
            raise Stop(WRITE, f"cannot write {self.part}: {exc.strerror or exc}") from None

    def finish_from_disk(self) -> int:
        """Every byte arrived before an interruption: only the hash is missing."""
        try:
            self.fd = os.open(self.part, os.O_RDONLY)
        except OSError as exc:
            raise Stop(WRITE, f"cannot read {self.part}: {exc.strerror or exc}") from None
        assert self.plan is not None
        self.sha256 = hash_prefix(self.fd, self.plan, self.stop)
        return self.report()


def settle(job: Download, stop: Stop) -> None:
    """Leave the part as the script expects after a failure: a part without a record is a clean prefix.

    Interrupted and network failures keep the record (the next run resumes every piece). Otherwise
    the part is cut back to the prefix that is all on disk (the single stream appends to it, or the
    script moves it aside) and the record goes, so no hole can ever pass for downloaded bytes.
    """
    if stop.code in (INTERRUPTED, NETWORK, AUTH, WRITE) and not stop.restart:
        return
    keep = 0 if stop.restart else job.stream_prefix()
    if keep >= 0:
        with contextlib.suppress(OSError):
            os.truncate(job.part, keep)
    job.record.remove()


def main(argv: list[str]) -> int:
    if len(argv) != 16:
        say(f"segments: expected 16 arguments, got {len(argv)}")
        return 2
    token = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.readline().strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in token):
        say("the token contains a control character; fix it and run again")
        return 2
    job = Download(argv, token)
    try:
        return job.run()
    except Stop as stop:
        settle(job, stop)
        if stop.code == FALLBACK:
            say(f"using a single connection: {stop.message}")
        elif stop.code != INTERRUPTED:
            say(stop.message)
        if stop.status is not None:
            sys.stdout.write(f"http_status {stop.status}\n")
        return stop.code
    finally:
        if job.fd >= 0:
            os.close(job.fd)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk and reported; the interpreter'"'"'s teardown (modules, sockets, threads)
    # would only add tens of milliseconds to every download.
    os._exit(code)
'

PART="$DEST.part"
REJECTED="$DEST.rejected"
SIDECAR="$DEST.sha256"
LOCK="$DEST.part.lock"
MAX_ATTEMPTS="${COMFYFIXER_MAX_ATTEMPTS:-5}"
RETRY_DELAY="${COMFYFIXER_RETRY_DELAY:-2}"
RETRY_MAX_DELAY="${COMFYFIXER_RETRY_MAX_DELAY:-300}"
SEGMENTS="${COMFYFIXER_SEGMENTS:-16}"
SEGMENT_MIN_MIB="${COMFYFIXER_SEGMENT_MIN_MIB:-32}"
SEGMENT_SHA=""
PART_FORMAT=""
PART_WHY=""
PART_PICKLE=""
PART_PICKLE_WHY=""
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
if ! is_uint "$SEGMENTS" || [ "$SEGMENTS" -lt 1 ]; then
  fail 2 "COMFYFIXER_SEGMENTS must be a whole number >= 1 (1: one connection; at most 32 are used)"
fi
if [ "$SEGMENTS" -gt 32 ]; then SEGMENTS=32; fi
is_uint "$SEGMENT_MIN_MIB" || fail 2 "COMFYFIXER_SEGMENT_MIN_MIB must be a whole number of MiB"

# "size mtime inode" of a file (GNU stat, then BSD stat).
file_stamp() { stat -c '%s %Y %i' -- "$1" 2>/dev/null || stat -f '%z %m %i' -- "$1"; }
file_size() {
  local stamp
  stamp=$(file_stamp "$1")
  printf '%s\n' "${stamp%% *}"
}

# "python3 is needed": no interpreter on PATH or at $PYTHON.
python_missing() {
  fail 17 "python3 is needed to check the file before it is installed; install it and run again"
}
# After a Python step ended with $1: 126/127 mean the interpreter never started (gone, broken, not
# executable). Then python3 from PATH is tried once (return 0: run the step again); otherwise the
# script stops before anything was requested. Any other code is the step's own answer (return 1).
python_failed() {
  case $1 in 126 | 127) ;; *) return 1 ;; esac
  if [ "$PYTHON" != python3 ] && command -v python3 >/dev/null 2>&1; then
    say "note: $PYTHON cannot run; using python3 from PATH"
    PYTHON=python3
    return 0
  fi
  python_missing
}

# The temporary folder (headers, the streamer's answers, a check's reason), made on first use:
# every function that uses $WORK calls this first (an empty WORK would mean files in /).
need_work() {
  if [ -z "$WORK" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/comfyfixer.XXXXXX") || fail 15 "cannot create a temporary folder"
  fi
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
  local rc
  need_work
  while :; do
    rc=0
    OUT=$("$PYTHON" -S -c "$@" 2>"$WORK/why") || rc=$?
    python_failed "$rc" || break
  done
  WHY=""
  IFS= read -r -d '' WHY <"$WORK/why" || :
  WHY=${WHY%$'\n'}
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
# mtime and inode so a later run can trust it without re-reading a 27 GB file. $2: that stamp when
# already known (a rename keeps all three).
write_sidecar() {
  local tmp="$SIDECAR.tmp.$$" stamp=${2:-}
  if [ -z "$stamp" ]; then stamp=$(file_stamp "$DEST") || stamp=""; fi
  if [ -n "$stamp" ] && { printf '%s  %s\n' "$1" "$BASE_NAME" && printf '# comfyfixer %s\n' "$stamp"; } \
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
  if is_uint "$PART_PICKLE"; then
    rc=$PART_PICKLE WHY=$PART_PICKLE_WHY # the streamer or segments.py ran this very gate on the part
  else
    run_check "$PICKLES_PY" "$1" || rc=$?
  fi
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

# Sets HTTP_STATUS, CONTENT_TYPE (PAGE_TYPE=1 for a web page or an error message), RETRY_AFTER,
# RANGE_TOTAL and LOCATION from the last response in the header dump (curl -D, or wget -S whose
# lines are indented).
# Header names match in any case (nocasematch, only here: a fork of `tr` per line was ~2 ms each).
read_headers() {
  local line name value
  HTTP_STATUS="" CONTENT_TYPE="" PAGE_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" LOCATION=""
  [ -f "$WORK/headers" ] || return 0
  shopt -s nocasematch
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    case $line in
      HTTP/*)
        value="${line#* }"
        HTTP_STATUS="${value%% *}"
        CONTENT_TYPE="" PAGE_TYPE="" RETRY_AFTER="" RANGE_TOTAL="" LOCATION="" ;;
      *:*)
        name="${line%%:*}"
        value="${line#*:}"
        value="${value#"${value%%[![:space:]]*}"}"
        case $name in
          content-type)
            CONTENT_TYPE=$value PAGE_TYPE=""
            case $value in
              text/html* | application/json* | application/problem+json* | application/xhtml*) PAGE_TYPE=1 ;;
            esac ;;
          retry-after) if is_uint "$value"; then RETRY_AFTER=$value; fi ;;
          content-range) case $value in *'*/'*) RANGE_TOTAL="${value##*/}" ;; esac ;;
          location) LOCATION=$value ;;
        esac ;;
    esac
  done <"$WORK/headers"
  shopt -u nocasematch
  is_uint "$HTTP_STATUS" || HTTP_STATUS=""
  is_uint "$RANGE_TOTAL" || RANGE_TOTAL=""
}

# The fetch command for one attempt, without its URL (`stream_part.py` adds the URL of each checked
# hop, and the token through a pipe when that hop may have it): FETCH_ARGS. The body goes to stdout,
# the headers to $WORK/headers (wget: its stderr, which the streamer points there).
fetch_command() {
  local offset=$1
  if [ "$FETCHER" = curl ]; then
    # Run by hand on a terminal: curl's progress bar. comfyfixer sends stderr to a log, so not there.
    local meter=--silent
    if [ -t 2 ]; then meter=--progress-bar; fi
    FETCH_ARGS=(curl --fail "$meter" --show-error --proto '=http,https' --connect-timeout 30
      --speed-limit 1024 --speed-time 60 --user-agent "$USER_AGENT"
      --header 'Accept-Encoding: identity' --dump-header "$WORK/headers" --output -)
    if [ "$offset" -gt 0 ]; then FETCH_ARGS+=(--continue-at "$offset"); fi
  else
    FETCH_ARGS=(wget --no-verbose --server-response --tries=1 --max-redirect=0 --timeout=60
      --user-agent="$USER_AGENT" --header=Accept-Encoding:identity --output-document=-)
    if [ "$offset" -gt 0 ]; then FETCH_ARGS+=("--start-pos=$offset"); fi
  fi
}

# What the streamer printed: why it refused a hop (NEXT_REFUSED; the hops it fetched are `hop URL`),
# the last fetch's exit code (STREAM_FETCH_RC); STREAM_SHA; PART_FORMAT ("NAME CODE") and PART_WHY
# once the part is complete, and for a pickle PART_PICKLE (the gate's code) and PART_PICKLE_WHY.
read_stream() {
  local key value
  STREAM_SHA="" PART_FORMAT="" PART_WHY="" PART_PICKLE="" PART_PICKLE_WHY="" NEXT_REFUSED=""
  STREAM_FETCH_RC=125
  while read -r key value || [ -n "$key" ]; do
    case $key in
      refused) NEXT_REFUSED=$value ;;
      fetch_rc) STREAM_FETCH_RC=$value ;;
      sha256) STREAM_SHA=$value ;;
      format) PART_FORMAT=$value ;;
      why) PART_WHY=$value ;;
      pickle) PART_PICKLE=$value ;;
      pickle_why) PART_PICKLE_WHY=$value ;;
    esac
  done <"$WORK/stream"
}

# `carried/stream_part.py` with its arguments, installed after `carried/gates.py` (the checks it
# runs in-process) by `carried/loader.py`; the token (if any) on its stdin, through a pipe.
stream_part_py() {
  "$PYTHON" -S -c "$LOADER_PY" "gates stream_part" "$GATES_PY" "$STREAM_PART_PY" -- "$PART" "$WORK/headers" "$EXPECTED_SIZE" "$BASE_NAME" \
    "$FORMATS_PY" "$PICKLES_PY" "$PICKLE_EXT" "$HOSTS_PY" "$MAX_HOPS" "$ALLOWED_HOSTS" "$HTTP_HOSTS" \
    "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$URL" -- "${FETCH_ARGS[@]}"
}

# One attempt: one run of `stream_part.py`, which follows the URL's redirects one checked hop at a
# time (each checked with `checks/hosts.py` before its fetch starts; the token only to the URL's
# origin), appends the 2xx body to the part while the whole part streams through one sha256 pass,
# and checks the finished part (read_stream): one Python start per attempt. Leaves the last response
# in $WORK/headers and "fetch_rc stream_rc" in $WORK/status.
transfer() {
  local stream_rc
  need_work
  fetch_command "$1"
  while :; do
    stream_rc=0
    if [ -n "$TOKEN" ]; then
      stream_part_py < <(printf '%s\n' "$TOKEN") >"$WORK/stream" || stream_rc=$?
    else
      stream_part_py </dev/null >"$WORK/stream" || stream_rc=$?
    fi
    # The interpreter could not start (nothing was requested): python3, then the attempt again.
    python_failed "$stream_rc" || break
  done
  read_stream
  if [ -n "$NEXT_REFUSED" ]; then fail 21 "$NEXT_REFUSED"; fi # nothing came from that host
  printf '%s %s\n' "$STREAM_FETCH_RC" "$stream_rc" >"$WORK/status"
  read_headers
  case $HTTP_STATUS in 301 | 302 | 303 | 307 | 308) ;; *) return 0 ;; esac
  if [ -z "$LOCATION" ]; then fail 10 "the server redirected (HTTP $HTTP_STATUS) without saying where"; fi
  fail 10 "more than $MAX_HOPS redirects for $URL"
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

# Large files over several connections at once (`carried/segments.py`: ranged pieces written into
# the preallocated part, the same host, size, encoding and page rules per piece and per redirect,
# its resume record in "$PART.segments"). Sets SEGMENT_SHA when every byte is there. It answers 3
# when the server serves no ranges (or a proxy is set, or this Python cannot verify TLS): the
# single stream below takes over, the part cut back to a clean prefix. The token travels through a
# pipe, as for curl.
segmented() {
  local rc durable=0 out line
  # With no published sha256 nothing would notice a hole a crash left: sync before each record.
  if [ -z "$EXPECTED_SHA256" ]; then durable=1; fi
  while :; do
    rc=0
    if [ -n "$TOKEN" ]; then
      out=$(segments_py "$durable" < <(printf '%s\n' "$TOKEN")) || rc=$?
    else
      out=$(segments_py "$durable" </dev/null) || rc=$?
    fi
    python_failed "$rc" || break
  done
  # Its answer, one "key value" per line (parameter expansion: no file, no fork).
  out=$out$'\n'
  while [ -n "$out" ]; do
    line=${out%%$'\n'*}
    out=${out#*$'\n'}
    case $line in
      'sha256 '*) SEGMENT_SHA=${line#* } ;;
      'http_status '*) HTTP_STATUS=${line#* } ;;
      'format '*) PART_FORMAT=${line#* } ;;
      'why '*) PART_WHY=${line#* } ;;
      'pickle '*) PART_PICKLE=${line#* } ;;
      'pickle_why '*) PART_PICKLE_WHY=${line#* } ;;
    esac
  done
  case $rc in
    0) [ -n "$SEGMENT_SHA" ] || fail 15 "could not compute the sha256 of $PART; run this script again" ;;
    3) ;;
    11) auth_failure ;;
    12) error_page "the server answered with a web page or an error message, not the model" ;;
    13) reject 13 "the server's file does not have the published size ($EXPECTED_SIZE bytes)" ;;
    15) fail 15 "cannot write $PART (disk full?); free some space and run again: the download resumes" ;;
    21) exit 21 ;; # segments.py has named the refused host, nothing came from it (the part is kept)
    22) fail 22 "the server compressed the model (Content-Encoding) although it was asked not to;" \
      "nothing was installed" ;;
    130) say "interrupted; the partial file is kept and the next run resumes it: $PART"
      exit 130 ;;
    *) fail 10 "the download stopped (see above); run this script again later: the download resumes" ;;
  esac
}

# `carried/segments.py` with its arguments; $1: DURABLE (1: sync the part before each record). It
# and the modules it imports (one concept each) are installed from their texts by `carried/loader.py`,
# in this order (render.py's SEGMENT_MODULES).
segments_py() {
  "$PYTHON" -S -c "$LOADER_PY" "outcome gates rules pieces http_client prefix_hash transfer segments" \
    "$OUTCOME_PY" "$GATES_PY" "$RULES_PY" "$PIECES_PY" "$HTTP_CLIENT_PY" "$PREFIX_HASH_PY" "$TRANSFER_PY" \
    "$SEGMENTS_PY" -- "$PART" "$URL" "$EXPECTED_SIZE" "$SEGMENTS" \
    "$((SEGMENT_MIN_MIB * 1048576))" "$USER_AGENT" "$1" "$ALLOWED_HOSTS" "$HTTP_HOSTS" \
    "$REDIRECT_SUFFIXES" "$GRANTED_URL" "$HOSTS_PY" "$BASE_NAME" "$FORMATS_PY" "$PICKLES_PY" "$PICKLE_EXT"
}

case $URL in
  https://* | http://*) ;;
  *) fail 2 "the URL is not http(s): $URL" ;;
esac
# The checks are Python (standard library only): the interpreter that wrote the script, else any
# python3 on PATH (a script copied to another machine). Looked up, not started: the first Python
# step, before any request, switches to python3 if this one cannot run (python_failed).
# -S: no site, a third of the start-up time.
if ! command -v -- "$PYTHON" >/dev/null 2>&1; then PYTHON=python3; fi
command -v -- "$PYTHON" >/dev/null 2>&1 || python_missing
TOKEN=""
case $AUTH_VAR in
  HF_TOKEN) TOKEN="${HF_TOKEN:-${HUGGING_FACE_HUB_TOKEN:-}}" ;;
  CIVITAI_API_TOKEN) TOKEN="${CIVITAI_API_TOKEN:-}" ;;
esac
case $TOKEN in *[[:cntrl:]]*) fail 2 "$AUTH_VAR contains a control character; fix it and run again" ;; esac

[ -d "$DEST_DIR" ] || mkdir -p -- "$DEST_DIR" 2>/dev/null ||
  fail 15 "cannot create the folder $DEST_DIR; check permissions and free space"
if command -v flock >/dev/null 2>&1; then
  : >>"$LOCK" 2>/dev/null || fail 15 "cannot write in $DEST_DIR; check permissions and free space"
  exec 9>>"$LOCK"
  if ! flock -n 9; then
    # Another run (or one just killed, whose script is stopping) holds it: wait, then resume or find it done.
    LOCK_WAIT=${COMFYFIXER_LOCK_WAIT:-3600}
    say "another download of $DEST is running; waiting for it (up to $LOCK_WAIT s)"
    flock -w "$LOCK_WAIT" 9 || fail 20 "another download of $DEST is still running after $LOCK_WAIT s; run again later"
  fi
  HOLD_LOCK=1
fi

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

# A part with a record was laid out by pieces: only the segmented download may resume it. A file
# of unknown size keeps the single stream (the run's probe gives nearly every plan a size).
if [ -f "$PART.segments" ] || { [ "$SEGMENTS" -gt 1 ] && [ -n "$EXPECTED_SIZE" ] &&
  [ "$EXPECTED_SIZE" -ge $((SEGMENT_MIN_MIB * 1048576)) ]; }; then
  segmented
fi

attempt=0
SHA=""
while :; do
  if [ -n "$SEGMENT_SHA" ]; then
    SHA=$SEGMENT_SHA
    break
  fi
  attempt=$((attempt + 1))
  # A check of the finished part counts only from the attempt that finished it.
  PART_FORMAT="" PART_WHY="" PART_PICKLE="" PART_PICKLE_WHY=""
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
    if [ "$PAGE_TYPE" = 1 ]; then
      error_page "the server answered with a web page or an error message ($CONTENT_TYPE), not the model"
    fi
    SHA=$STREAM_SHA
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

stamp=$(file_stamp "$PART") || fail 15 "cannot read $PART; run this script again"
size=${stamp%% *}
format_rc=${PART_FORMAT##* }
if [ -n "$PART_FORMAT" ] && is_uint "$format_rc"; then
  # The streamer or segments.py ran this very check (checks/formats.py) on the finished part.
  FORMAT=${PART_FORMAT% *}
  WHY=$PART_WHY
else
  format_rc=0
  format_check "$PART" || format_rc=$?
fi
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
write_sidecar "$SHA" "$stamp" # the rename kept size, mtime and inode
say "installed $DEST ($size bytes, sha256 $SHA)"
report "$size" "$SHA"
