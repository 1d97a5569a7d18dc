"""One attempt of the single stream: follow the URL's redirects one checked hop at a time, running
the script's fetch (curl or wget) for each hop, and append the model's body to the partial file.

Every hop is checked with `checks/hosts.py` (executed from its text: the URL itself, then each
Location's target) before its fetch is started, and the token goes only where that check says (to
the URL's own origin): to curl through a pipe (`--header @/dev/fd/3`), never on a command line.
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
  Once the part holds all LIMIT bytes it runs the script's checks of the finished part: the format
  check of `checks/formats.py` (`format NAME CODE`, `why REASON`), then for a pickle (PICKLE_EXT set,
  or the format says so) the gate of `checks/pickles.py` (`pickle CODE`, `pickle_why REASON`). The
  part does not change after these answers.
One program for all of it because every Python start costs a download tens of ms: an attempt is one.

Run by every download script, installed after `gates.py` by `loader.py`, as:
    python -S -c <loader.py> "gates stream_part" <gates.py> <this file> -- PART HEADERS LIMIT NAME
        FORMATS_PY PICKLES_PY PICKLE_EXT HOSTS_PY MAX_HOPS ALLOWED HTTP_HOSTS SUFFIXES GRANTED URL -- FETCH...
(LIMIT may be empty; HEADERS the file the fetch dumps headers into; PICKLE_EXT the file's extension
when it is a pickle one, else empty; the *_PY arguments the texts of the checks; ALLOWED..GRANTED
the host lists of `checks/hosts.py`; FETCH the script's curl or wget command without its URL.) The
token, if any, is the first line of standard input. Standard library only. Prints `hop URL` for
every hop fetched (or `refused REASON`, then nothing is fetched), `fetch_rc N` (the last fetch's exit
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
        print(f"refused {why or 'the URL was refused'}")
        return None
    print(f"hop {lines[0]}")
    return lines[0], lines[1] == "token"


def start_fetch(command: list[str], url: str, token: str, header_file: str) -> tuple[int, int]:
    """Start the fetch of `url` (pid, the read end of its stdout). The token, when it may go there,
    travels through a pipe on fd 3; wget's header dump is its stderr."""
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
    """The fetch's exit code (128 + N when a signal N ended it, as the shell says)."""
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
    """One answer's body from `src_fd`: (exit code, status, headers); prints the sha256 or "skip"."""
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
