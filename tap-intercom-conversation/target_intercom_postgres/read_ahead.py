"""The loader's console script: its input is read ahead from the first moment, while the loader starts.

The loader's start-up (imports: singer-sdk, target-postgres, SQLAlchemy; then the tables) takes 0.5-1 s. A tap
piped into it fills the pipe (1 MB, about 400 search rows) in a few milliseconds and then waits, with a CPU
idle, until the loader reads (issue 25). Here, before anything heavy is imported, a thread starts reading the
pipe into memory, up to READ_AHEAD_BYTES; the loader then reads its input from that memory, in the same
order, to its end. The tap works during the loader's start-up instead of after it.

Nothing else changes: a line is processed only when the loader reads it, so what is acknowledged is what
is committed; input read ahead but not processed when the loader stops is simply not acknowledged (the
next run reads it again). Only standard library modules are imported here.
"""

from __future__ import annotations

import collections
import io
import os
import signal
import stat
import sys
import threading
import typing as t

from typing_extensions import override

READ_AHEAD_BYTES = 32 << 20  # at most this much input waits in memory (the pipe holds 1 MB more)
_CHUNK_BYTES = 1 << 20
# Arguments with which the loader reads no input from stdin (or reads a file instead).
_NO_STDIN = {"--input", "--about", "--help", "--version"}


class ReadAhead(io.RawIOBase):
    """A file descriptor read by a thread of its own into memory (at most `limit` bytes ahead of the reader)."""

    def __init__(self, fd: int, limit: int = READ_AHEAD_BYTES) -> None:
        super().__init__()
        self._fd, self._limit = fd, limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0  # bytes in _chunks
        self._current = memoryview(b"")
        self._ended = False
        self._stopped = False  # the loader reads no more: the pump neither (the tap then waits on the full pipe)
        self._error: OSError | None = None
        self._changed = threading.Condition()
        self._pump = threading.Thread(target=self._read_all, name="read-ahead", daemon=True)
        self._pump.start()

    def _read_all(self) -> None:
        # Signals stay with the main thread: it runs their handlers, also while it waits here for input.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            while True:
                with self._changed:
                    while self._held >= self._limit and not self._stopped:
                        self._changed.wait()
                    if self._stopped:
                        return
                chunk = os.read(self._fd, _CHUNK_BYTES)
                with self._changed:
                    if chunk:
                        self._chunks.append(chunk)
                        self._held += len(chunk)
                    else:
                        self._ended = True
                    self._changed.notify_all()
                if not chunk:
                    return
        except OSError as error:  # handed to the reader, which raises it where it reads
            with self._changed:
                self._error, self._ended = error, True
                self._changed.notify_all()

    @override
    def readable(self) -> bool:
        return True

    def stop(self) -> None:
        """No more reading ahead (at most the read under way ends): the loader is done with its input."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    @override
    def readinto(self, buffer: t.Any) -> int:
        target = memoryview(buffer).cast("B")
        if not self._current:
            with self._changed:
                while not self._chunks and not self._ended:
                    self._changed.wait()
                if self._chunks:
                    chunk = self._chunks.popleft()
                    self._held -= len(chunk)
                    self._changed.notify_all()
                    self._current = memoryview(chunk)
                elif self._error is not None:
                    raise self._error
                else:
                    return 0  # the end of the input
        size = min(len(target), len(self._current))
        target[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


def read_stdin_ahead() -> ReadAhead | None:
    """sys.stdin read ahead, when it is a pipe the loader is going to read (see _NO_STDIN): the reader, or None."""
    if _NO_STDIN.intersection(arg.partition("=")[0] for arg in sys.argv[1:]):  # `--input=FILE` too
        return None
    try:
        fd = sys.stdin.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except (AttributeError, OSError, ValueError):  # no stdin, or not a file descriptor
        return None
    reader = ReadAhead(fd)
    buffered = io.BufferedReader(reader, buffer_size=_CHUNK_BYTES)
    sys.stdin = io.TextIOWrapper(buffered, encoding=sys.stdin.encoding, errors=sys.stdin.errors)
    return reader


def main() -> None:
    """target-intercom-postgres: its input read ahead, then the loader (target.py) imported and run."""
    reader = read_stdin_ahead()
    # imported only now: the input is read meanwhile
    from target_intercom_postgres.target import main as run_loader

    try:
        run_loader()
    finally:  # however the loader ends (a failure above all): the tap is not kept running while Python exits
        if reader is not None:
            reader.stop()
