"""Which STATE the loader may acknowledge: the newest one whose records are all committed.

A STATE covers every record the tap wrote before it. When the loader reads a STATE it notes, for each
sink still holding uncommitted records, how many records that sink had read by then; the STATE is
covered once each of those sinks has committed that many (a full batch of one stream, the timer's
commit of all of them). Acknowledging it then, rather than only when every sink is drained, lets
Meltano (or any scheduler reading the loader's stdout) keep a bookmark that is never ahead of the
table and at most one commit behind it.
"""

from __future__ import annotations

import functools
import threading
import typing as t
from collections import deque

from typing_extensions import override

from target_intercom_postgres.copy_load import RecordReader

if t.TYPE_CHECKING:
    from collections.abc import Callable


class Sink(t.Protocol):
    @property
    def current_size(self) -> int:
        """Records read and not yet committed (singer-sdk's Sink.current_size)."""


class CommitLedger:
    """STATE messages read and not yet acknowledged, numbered in the order read, each with what it waits for."""

    def __init__(self, records_read: Callable[[t.Any], int]) -> None:
        self._records_read = records_read  # how many records a sink has read in all
        self._pending: deque[tuple[int, dict, list[tuple[t.Any, int]]]] = deque()
        self._lock = threading.Lock()  # sinks are drained in threads
        self.latest_seq = 0

    def read(self, state: dict, sinks: t.Iterable[Sink]) -> None:
        """A STATE arrived; `sinks` are every sink of the loader."""
        waits = [(sink, self._records_read(sink)) for sink in sinks if sink.current_size > 0]
        with self._lock:
            self.latest_seq += 1
            self._pending.append((self.latest_seq, state, waits))

    def _committed(self, sink: t.Any) -> int:
        return self._records_read(sink) - sink.current_size

    def covered(self) -> tuple[int, dict] | None:
        """The newest STATE whose records are all committed, and its number (dropped with the older ones)."""
        with self._lock:
            newest = None
            while self._pending and all(self._committed(sink) >= count for sink, count in self._pending[0][2]):
                seq, state, _ = self._pending.popleft()
                newest = (seq, state)
            return newest

    def clear(self) -> None:
        """Everything read so far is committed (a full drain)."""
        with self._lock:
            self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)


class GuardedReader(RecordReader):
    """The loader's reader (copy_load), telling its target when a message is being handled and when it is done.

    Between two messages (blocked on its input above all) the target may commit or stop from a signal
    handler; while a message is handled it only notes the signal and acts after that message.
    """

    guard: Callable[[Callable[[dict], None], dict], None] | None = None

    @override
    def process_lines(
        self, file_input: t.IO[bytes] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> t.Counter[str]:
        guard = self.guard
        if guard is not None:
            callbacks = {kind: functools.partial(guard, callback) for kind, callback in callbacks.items()}
        return super().process_lines(file_input, callbacks)
