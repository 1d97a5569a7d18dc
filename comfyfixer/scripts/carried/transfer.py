"""One segmented download's state and its transfer: N connections fetching pieces, the hash, the record.

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

# Annotations only (postponed): importing typing would cost every download's start ~3 ms.
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
        # The probe's answer is the first piece: its bytes are already on their way.
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
        except BaseException as exc:  # a thread's failure becomes the download's outcome
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
                    # Grow pieces so a request's round trip stays a small share of each piece's time.
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
        """The script's checks of the finished part, run here to spare the script an interpreter start."""
        check_part(self.part, self.name, self.formats_py, self.pickles_py, self.pickle_ext)
