"""Parsing many workflow files on every core: fork()ed helpers and this process share one work queue.

Owns the helper processes of a large scan. The queue is a pipe pre-filled with chunk numbers: every
process (helpers and the caller) reads one 4-byte number at a time until the pipe is empty, so the
work balances itself whatever else the caller or the machine is busy with. A helper pickles each
chunk's results as it finishes it and writes them all to its own pipe when the queue runs dry.

Lighter than `concurrent.futures.ProcessPoolExecutor` where it counts for a command that runs for
under a second: no manager thread competing with the caller for the GIL, no multiprocessing import,
no fixed split that leaves one core idle. Only for Linux and a single-threaded caller (see
`scan.stage.parallel_workers`): forking a threaded process could leave a lock held in the child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_ID = struct.Struct("<I")  # a chunk number in the queue
_FRAME = struct.Struct("<II")  # chunk number, pickle length: the header of a helper's answer
# The queue is written in full before any process reads it, so it must fit in the smallest buffer a
# pipe can get (one page, when the user's pipe quota is exhausted): 1,024 numbers = 4,096 bytes.
_MAX_CHUNKS = 1024


class ForkedMap(Generic[T, R]):
    """`[fn(item) for item in items]`, computed by `helpers` forked processes and the caller together.

    Use as a context manager: the helpers start working on entry; the caller may do other work (walk
    the models tree), then calls `run()`, which takes its share of the chunks and returns every result
    in `items` order. Chunks a helper did not deliver (it died, or `fn` raised there) are computed
    again in the caller, so an exception surfaces here exactly as in a sequential run. Leaving the
    block early (an error, Ctrl-C) kills the helpers.
    """

    def __init__(self, fn: Callable[[T], R], items: Sequence[T], helpers: int, chunk_size: int) -> None:
        self.fn = fn
        self.items = items
        self.helpers = helpers
        self.size = max(chunk_size, -(-len(items) // _MAX_CHUNKS), 1)
        self.n_chunks = -(-len(items) // self.size)
        self.pids: list[int] = []
        self.answers: list[int] = []  # read end of each helper's answer pipe
        self.queue = -1

    def __enter__(self) -> ForkedMap[T, R]:
        read_end, write_end = os.pipe()
        self.queue = read_end
        try:
            data = b"".join(_ID.pack(i) for i in range(self.n_chunks))
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view) :]
        finally:
            os.close(write_end)  # readers see end-of-file once the queue is empty
        # Whatever sits in our stdio buffers would be written a second time by a child.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            for _ in range(self.helpers):
                self._fork()
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._kill()

    def _fork(self) -> None:
        answer_read, answer_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the helper: never returns into the caller's code
            code = 1
            try:
                os.close(answer_read)
                for fd in self.answers:
                    os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
                self._serve(answer_write)
                code = 0
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()  # log lines this helper wrote; stdout is never written here
                # A forked child must not run the parent's exit handlers, finalizers or buffered
                # stdio again: _exit is how multiprocessing's fork start method ends its children too.
                os._exit(code)
        os.close(answer_write)
        self.pids.append(pid)
        self.answers.append(answer_read)

    def _take(self) -> int | None:
        data = os.read(self.queue, _ID.size)
        return _ID.unpack(data)[0] if len(data) == _ID.size else None

    def _chunk(self, number: int) -> Sequence[T]:
        return self.items[number * self.size : (number + 1) * self.size]

    def _serve(self, answer: int) -> None:
        frames = []
        while (number := self._take()) is not None:
            try:
                results = [self.fn(item) for item in self._chunk(number)]
            except Exception:  # the parent computes this chunk again and meets the error itself
                continue
            body = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
            frames.append(_FRAME.pack(number, len(body)) + body)
        with os.fdopen(answer, "wb") as out:
            out.write(b"".join(frames))

    def run(self, then: Callable[[R], object] | None = None) -> list[R]:
        """Compute this process's share, gather the helpers' answers, and return every result in order.

        `then`, if given, is applied here once to every result: to this process's own as soon as they
        are computed, while the helpers still work, and to the helpers' as they arrive.
        """
        chunks: dict[int, list[R]] = {}
        while (number := self._take()) is not None:
            chunks[number] = self._compute(number, then)
        for fd in list(self.answers):
            self._gather(fd, chunks, then)
        self._reap()
        missing = [n for n in range(self.n_chunks) if n not in chunks]
        if missing:
            log.warning(
                "parser helpers did not deliver %d chunk(s); parsing them in this process", len(missing)
            )
            for number in missing:
                chunks[number] = self._compute(number, then)
        return [result for number in range(self.n_chunks) for result in chunks[number]]

    def _compute(self, number: int, then: Callable[[R], object] | None) -> list[R]:
        results = [self.fn(item) for item in self._chunk(number)]
        if then is not None:
            for result in results:
                then(result)
        return results

    def _gather(self, fd: int, chunks: dict[int, list[R]], then: Callable[[R], object] | None) -> None:
        self.answers.remove(fd)
        with os.fdopen(fd, "rb") as stream:
            data = stream.read()
        pos = 0
        while pos + _FRAME.size <= len(data):
            number, length = _FRAME.unpack_from(data, pos)
            pos += _FRAME.size
            if pos + length > len(data):
                break  # a helper that died while writing: its last chunk is computed again
            results: list[R] = pickle.loads(data[pos : pos + length])
            pos += length
            if then is not None:
                for result in results:
                    then(result)
            chunks[number] = results

    def _reap(self, *, killed: bool = False) -> None:
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(pid, 0)
                if status and not killed:
                    log.warning("parser helper %d ended with status %d", pid, status)
        self.pids = []

    def _kill(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap(killed=True)
        for fd in [*self.answers, self.queue]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.answers = []
        self.queue = -1
