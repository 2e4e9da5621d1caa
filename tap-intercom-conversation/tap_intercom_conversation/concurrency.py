"""How many requests to keep in flight: what the rate limit needs at the latency Intercom answers with.

Little's law: to send R calls per second when each one takes L seconds to be answered, R x L calls
must be in flight. Intercom's limit (`X-RateLimit-Limit` per 10 s, read by the rate governor) gives R;
the answers give L, averaged as they arrive. The tap keeps HEADROOM times that in flight, plus SPARE,
so that slower answers (jitter, a long conversation) do not leave the window's budget unspent; the
rate governor, not this number, keeps every window under the limit: with more in flight than needed,
a window's budget is spent before it ends and the calls wait for its reset.

`max_concurrent_requests` is the upper bound (the pool of threads and connections never grows past
it); below it, the number follows latency, up as answers slow down and down as they speed up.

Search-only runs (no GETs) search spans of `updated_at` at once; each yields 150 rows per round trip,
so at 1 s 16 spans would give at most 2,400 rows/s, less than target-postgres loads: the spans in
flight also follow latency, from SEARCHES_IN_FLIGHT up to MAX_SEARCHES_IN_FLIGHT.
"""

from __future__ import annotations

import math
import threading

from tap_intercom_conversation.governor import GOVERNOR, WINDOW_SECONDS, RateGovernor

HEADROOM = 1.5  # in flight, as a multiple of limit rate x latency
SPARE = 4  # and a few more: at low latency, the sync thread's own pauses
START = 16  # before any answer has told the latency
SMOOTHING = 0.05  # weight of each new answer in the average latency (about the last 20 answers)
UNLIMITED = 1 << 30  # no rate limit reported: only the upper bound applies
SEARCHES_IN_FLIGHT = 16  # spans searched at once when nothing is hydrated, at least (see the README's benchmark)
MAX_SEARCHES_IN_FLIGHT = 64  # and at most: each holds up to 4 pages (150 rows, about 400 KB each) ahead
SEARCH_ROWS_PER_SECOND = 8000  # what the spans in flight aim at: twice what target-postgres loads (README)
ROWS_PER_PAGE = 150


class Concurrency:
    """The number of requests worth having in flight now, from the rate limit and the observed latency."""

    def __init__(self, governor: RateGovernor = GOVERNOR) -> None:
        self._governor = governor
        self._lock = threading.Lock()
        self._latency: float | None = None

    @property
    def latency(self) -> float | None:
        """Seconds from sending a request to its answer, averaged over the latest answers."""
        return self._latency

    def observe(self, seconds: float) -> None:
        """An answer came `seconds` after its request was sent (waits for the rate limit not included)."""
        with self._lock:
            previous = self._latency
            self._latency = seconds if previous is None else previous + SMOOTHING * (seconds - previous)

    def target(self) -> int:
        """Requests to keep in flight (the caller caps it at max_concurrent_requests)."""
        latency, limit = self._latency, self._governor.limit
        if latency is None:
            return START
        if limit is None:
            return UNLIMITED
        return math.ceil(limit / WINDOW_SECONDS * latency * HEADROOM) + SPARE

    def searches(self) -> int:
        """Spans to search at once in a search-only run (the caller caps it at max_concurrent_requests)."""
        wanted = math.ceil(SEARCH_ROWS_PER_SECOND * (self._latency or 0.0) / ROWS_PER_PAGE)
        return min(MAX_SEARCHES_IN_FLIGHT, max(SEARCHES_IN_FLIGHT, wanted))


CONCURRENCY = Concurrency()
