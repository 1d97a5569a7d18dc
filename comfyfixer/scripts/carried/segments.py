"""Download one large file over several ranged connections into a single preallocated part file.

Carried verbatim by every download script, with the modules it imports (outcome, rules, pieces,
http_client, prefix_hash, transfer: one concept each), and run through `loader.py` as
`python -S -c <loader> NAMES TEXTS... -- ARGS` (standard library only: a script runs alone, with no
comfyfixer installed). The script calls it for files
above a size threshold; it answers with exit code 3 ("use the single stream") when the server does
not serve ranges, when a proxy is configured, or when this Python cannot verify the server's TLS
certificate, and the script's curl stream takes over with an empty part.

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
  bytes asked for of a file of the expected size, never a byte written past the file's end. The
  token goes only to the original URL's origin, never to a redirect target.
- A signed redirect target that stops working (401/403/410 mid-download: the signature expired) is
  re-resolved from the original URL, once per expiry, shared by all connections.
- Resume: `<part>.segments` (JSON) lists the byte ranges on disk, the file's size, validator and
  URL. It is written before the part is extended, then every 0.25 s and on exit (Ctrl-C, SIGTERM,
  errors). Without a published sha256 nothing would catch a part that a crash left with holes, so
  then the part is fdatasync'ed before each record write. A part without a record is a prefix
  (the curl stream's resume rule). Any doubt about the record means starting from zero.

Arguments: PART URL EXPECTED_SIZE SEGMENTS MIN_SIZE USER_AGENT DURABLE ALLOWED_HOSTS HTTP_HOSTS
REDIRECT_SUFFIXES GRANTED_URL HOSTS_PY NAME FORMATS_PY PICKLES_PY PICKLE_EXT (lists space-separated;
EXPECTED_SIZE may be empty; DURABLE 1 or 0; the *_PY arguments the texts of `checks/hosts.py`,
`checks/formats.py` and `checks/pickles.py`, NAME the file name the format check judges by,
PICKLE_EXT the file's extension when it is a pickle one, else empty).
The token, if any, is the first line of standard input (never an argument: `ps` shows those).
Prints `size N`, `sha256 HEX` and `format NAME CODE` (the format check's answer, with `why REASON`
when it fails; then `pickle CODE` and `pickle_why REASON` from the pickle gate for a pickle) on
success;
`http_status N` before an HTTP failure.
Exit codes follow the script's: 0 done, 3 use the single stream, 10 network/HTTP, 11 login needed,
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
                prefix = os.path.getsize(self.part)  # the curl stream's part: a clean prefix
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
    # Everything is on disk and reported; the interpreter's teardown (modules, sockets, threads)
    # would only add tens of milliseconds to every download.
    os._exit(code)
