"""Append one HTTP answer body to the partial file, only if it is the model, and print the sha256.

curl (or wget) writes the response headers to a file before it writes the first body byte to our
stdin, so once that byte (or the end of the stream) arrives the headers are read back to decide:
- not a 2xx answer (a redirect hop, an error page): the body is read and thrown away, the part is
  left alone, and "skip" is printed; the script decides what the status means;
- a compressed answer (Content-Encoding other than identity): nothing is written, exit 4;
- otherwise the bytes are appended while the whole part is hashed (what was already there is
  re-read first, a retry), and the transfer stops as soon as the part would grow past LIMIT (the
  published size, else the size this answer announces): exit 5, so an endless body cannot fill the
  disk. Unbuffered writes keep the part a clean prefix of the file even when the process is killed.

It also does the checks that would otherwise each cost the script an interpreter start (tens of
ms), with the very modules the script carries, executed from their text:
- first the hop itself, with `checks/hosts.py` (its own arguments: the download URL, or the target
  of a Location from the previous hop), before anything is requested: the fetch on the left of the
  pipeline waits for the verdict on fd 3 (a FIFO): "go TOKEN URL" (TOKEN 1 when the token may go
  there), or nothing. Printed as `hop URL`, or `refused REASON` (then nothing else happens);
- once the part holds all LIMIT bytes: the format check of `checks/formats.py` on it, printed as
  `format NAME CODE` and, when it fails, `why REASON`; then for a pickle (PICKLE_EXT set, or the
  format says so) the gate of `checks/pickles.py`: `pickle CODE`, `pickle_why REASON` (the part
  does not change after these answers).

Run by every download script as:
    python -S -c <this file> PART HEADERS LIMIT NAME FORMATS_PY PICKLES_PY PICKLE_EXT HOSTS_PY
        ALLOWED HTTP_HOSTS SUFFIXES GRANTED START CURRENT [LOCATION]
(LIMIT may be empty; NAME the file name the format check judges by; PICKLE_EXT the file's extension
when it is a pickle one, else empty; the *_PY arguments the texts of the checks; the rest the
arguments of `checks/hosts.py`.) Standard library only. Prints the lines
above and `sha256 HEX` (or `skip`). Exit 1: the part cannot be written; 0 otherwise.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from types import ModuleType

CHUNK = 1 << 20
# A body we throw away (redirect, error page) is read this far, then the pipe is simply closed.
DISCARD_LIMIT = 1 << 20
EXIT_COMPRESSED = 4
EXIT_TOO_LARGE = 5
GATE = 3  # the fd of the FIFO the fetch waits on


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


def load_module(name: str, text: str) -> ModuleType:
    """A carried check run from its text as a module of its own (not __main__: its program part is idle)."""
    module = ModuleType(name)
    sys.modules[name] = module
    exec(compile(text, f"{name}.py", "exec"), module.__dict__)
    return module


def run_check(name: str, text: str, argv: list[str]) -> tuple[int, str, str]:
    """`main(argv)` of a carried check: its exit code, what it printed, its reason (one line)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = load_module(name, text).main(argv)
    why = " ".join(err.getvalue().replace("comfyfixer: ", "").split())
    return int(code), out.getvalue(), why


def check_hop(hosts_py: str, hosts_args: list[str]) -> bool:
    """Check this hop before it is requested (`checks/hosts.py`), and open or keep shut the gate."""
    code, out, why = run_check("comfyfixer_hosts", hosts_py, hosts_args)
    lines = out.split()
    allowed = code == 0 and len(lines) == 2
    if allowed:
        verdict = f"go {1 if lines[1] == 'token' else 0} {lines[0]}\n"
        print(f"hop {lines[0]}")
    else:
        verdict = "no\n"
        print(f"refused {why or 'the URL was refused'}")
    sys.stdout.flush()
    try:  # the gate: fd 3, the FIFO the fetch waits on (closed at once: the fetch reads one line)
        os.write(GATE, verdict.encode())
        os.close(GATE)
    except OSError:
        return False  # no gate, no fetch: nothing will come
    return allowed


def check_part(part: str, name: str, formats_py: str, pickles_py: str, pickle_ext: str) -> None:
    """The format check of the finished part (`checks/formats.py`), then the pickle gate
    (`checks/pickles.py`) for a pickle: the script's own checks, in its order."""
    code, out, why = run_check("comfyfixer_formats", formats_py, [part, name])
    fmt = out.strip() or "unknown"
    print(f"format {fmt} {code}")
    if why:
        print(f"why {why}")
    if code == 0 and (pickle_ext or fmt in ("pickle", "pickle-zip")):
        code, _, why = run_check("comfyfixer_pickles", pickles_py, [part])
        print(f"pickle {code}")
        if why:
            print(f"pickle_why {why}")


def announced_total(status: int, headers: dict[str, str]) -> int | None:
    if status == 206:
        total = headers.get("content-range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def main(argv: list[str]) -> int:
    part, header_file, limit_arg, name, formats_py, pickles_py, pickle_ext, hosts_py = argv[:8]
    if not check_hop(hosts_py, argv[8:]):
        return 0
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
                complete = limit is not None and out.tell() == limit
        except OSError as exc:
            sys.stderr.write(f"comfyfixer: cannot write the partial file: {exc}\n")
            return 1
    print(f"sha256 {h.hexdigest()}")
    if complete:
        check_part(part, name, formats_py, pickles_py, pickle_ext)
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (15, 16):
        sys.stderr.write(f"comfyfixer: stream_part: expected 14 or 15 arguments, got {len(sys.argv) - 1}\n")
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
