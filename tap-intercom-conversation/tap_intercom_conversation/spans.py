"""A search window cut into spans of `updated_at` that are searched at the same time, read in order.

Search paging is sequential (each cursor comes from the previous answer), so one query yields at most
150 rows per round trip: 1,000 rows/s at 150 ms, half of what target-postgres loads. Disjoint spans
of seconds are independent queries, so several run at once, each in its own thread, while the sync
thread reads their pages span after span: rows still leave in `updated_at` order, and STATE still
covers only what was emitted. A span is cut again once its first page tells how many rows it holds
(`Split`), so the spans follow however `updated_at` is spread, without a request spent on counting.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import queue
import threading
import typing as t
from collections import deque
from dataclasses import dataclass

SPAN_ROWS = 300  # rows a span is cut to hold: 2 pages, searched in sequence by its thread
PAGES_AHEAD = 4  # pages a span's thread fetches before the sync thread reads them: a whole span, and a bit


@dataclass(frozen=True)
class Span:
    """Conversations updated in the seconds [lower, through); lower None is the beginning."""

    lower: int | None
    through: int

    def holds(self, updated_at: int) -> bool:
        """Whether a row belongs here: a search may also return a second either side (see search.py)."""
        return (self.lower is None or updated_at >= self.lower) and updated_at < self.through


def split_span(lower: int, through: int, rows: int) -> list[Span]:
    """[lower, through) cut into spans of whole seconds holding about SPAN_ROWS rows each if evenly spread."""
    seconds = through - lower
    count = max(1, min(seconds, math.ceil(rows / SPAN_ROWS)))
    edges = [lower + seconds * i // count for i in range(count + 1)]
    return [Span(start, end) for start, end in itertools.pairwise(edges)]


@dataclass
class SearchRows:
    """One search page's rows that belong to its span, and the span's total_count on its first page."""

    span: Span
    rows: list[dict]
    total: int
    first: bool
    sent_after: int | None = None  # see freshness.py
    cut: bool = False  # the span's search stopped early (a repeated cursor): nothing after it may be emitted


@dataclass
class Split:
    """A span's thread hands its remaining seconds back as these spans, to be read in their place."""

    spans: list[Span]


@dataclass
class Failed:
    error: BaseException


class Stopped(Exception):
    """The reader went away: a span's thread ends without finishing its span."""


_END = object()

# fetch(span, put): puts the span's pages in order (and at most one Split, last); it runs in the span's thread.
Fetch = t.Callable[[Span, t.Callable[[object], None]], None]


def ordered_pages(root: Span, fetch: Fetch, *, workers: int | t.Callable[[], int]) -> t.Iterator[object]:
    """Everything `fetch` puts for `root` and the spans it is split into, in span order.

    The first `workers` spans not yet read are searched at once (the span being read is always among
    them; a callable is asked again at each page). A failure is raised when its span's turn comes,
    after every page before it.
    """
    spans_at_once = workers if callable(workers) else lambda: workers
    stop = threading.Event()
    spans: deque[Span | queue.Queue] = deque([root])  # a span not started yet, or the pages of one that is

    def start(span: Span) -> queue.Queue:
        pages: queue.Queue = queue.Queue(maxsize=PAGES_AHEAD)

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue
            raise Stopped

        def run() -> None:
            try:
                fetch(span, put)
                put(_END)
            except Stopped:
                pass
            except BaseException as err:  # handed to the sync thread, raised there in its turn
                with contextlib.suppress(Stopped):
                    put(Failed(err))

        threading.Thread(target=run, name="search", daemon=True).start()
        return pages

    try:
        while spans:
            for index in range(min(len(spans), max(1, spans_at_once()))):
                entry = spans[index]
                if isinstance(entry, Span):
                    spans[index] = start(entry)
            head = spans[0]
            assert isinstance(head, queue.Queue)
            item = head.get()
            if item is _END:
                spans.popleft()
            elif isinstance(item, Split):
                spans.popleft()
                spans.extendleft(reversed(item.spans))
            elif isinstance(item, Failed):
                raise item.error
            else:
                yield item
    finally:
        stop.set()  # threads still searching end at their next page (daemons: an exit does not wait for them)
