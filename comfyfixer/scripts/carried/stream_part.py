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
