"""How many requests to keep in flight: what the rate limit needs at the latency Intercom answers with.

Little's law: to send R calls per second when each one takes L seconds to be answered, R x L calls
must be in flight. Intercom's limit (`X-RateLimit-Limit` per 10 s, read by the rate governor) gives R;
the answers give L, averaged as they arrive. The tap keeps HEADROOM times that in flight, plus SPARE,
so that slower answers (jitter, a long conversation) do not leave the window's budget unspent; the
rate governor, not this number, keeps every window under the limit: with more in flight than needed,
a window's budget is spent before it ends and the calls wait for its reset.

At the start it ramps up from START, two more calls per answer (doubling each round trip), so one
slow first answer (a new connection) does not send hundreds at once.

`max_concurrent_requests` is the upper bound (the pool of threads and connections never grows past
it); below it, the number follows latency, up as answers slow down and down as they speed up.

Search-only runs (no GETs) search spans of `updated_at` at once; each yields 150 rows per round trip,
so at 1 s 16 spans would give at most 2,400 rows/s, less than target-postgres loads: the spans in
flight also follow latency, from SEARCHES_IN_FLIGHT up to MAX_SEARCHES_IN_FLIGHT. That bound is the
tap's memory: each span's thread reads its two pages ahead of the sync thread (about 460 KB each,
decoded), and latency that the searches themselves cause (a simulator or a machine they saturate)
drives the count up as far as the window has spans, so a workspace of 100,000 conversations held
64 spans' pages where one of 10,000 (33 spans) could not (issue 25: 124 MB against 73 MB). At 32,
1 s a search still gives 4,800 rows/s (docs/benchmarks.md, figure 3).
"""

from __future__ import annotations

import math
import threading

from tap_intercom_conversation.governor import WINDOW_SECONDS, RateGovernor

HEADROOM = 1.5  # in flight, as a multiple of limit rate x latency
SPARE = 4  # and a few more: at low latency, the sync thread's own pauses
START = 16  # before any GET has told the latency
SMOOTHING = 0.05  # weight of each new answer in the average latency (about the last 20 answers)
SEARCHES_IN_FLIGHT = 16  # spans searched at once when nothing is hydrated, at least (see docs/benchmarks.md)
MAX_SEARCHES_IN_FLIGHT = 32  # and at most: the pages read ahead are the tap's memory (see above)
SEARCH_ROWS_PER_SECOND = 8000  # what the spans in flight aim at: twice what target-postgres loads (docs/benchmarks.md)
ROWS_PER_PAGE = 150


class Concurrency:
    """The number of requests worth having in flight now, from the rate limit and the observed latency."""

    def __init__(self, governor: RateGovernor) -> None:
        self._governor = governor
        self._lock = threading.Lock()
        self._averages: dict[bool, float] = {}  # a search page (150 rows) or not -> its average latency
        self._answers: dict[bool, int] = {}

    @property
    def latency(self) -> float | None:
        """Seconds from sending a GET to its answer, averaged over the latest answers."""
        return self._averages.get(False)

    @property
    def search_latency(self) -> float | None:
        return self._averages.get(True)

    def observe(self, seconds: float, *, search: bool = False) -> None:
        """An answer came `seconds` after its request was sent (waits for the rate limit not included).

        Searches are averaged apart: a page of 150 rows takes longer than one conversation.
        """
        with self._lock:
            answers = self._answers[search] = self._answers.get(search, 0) + 1
            weight = max(SMOOTHING, 1 / answers)  # the plain mean of the first answers (the first is often slow)
            previous = self._averages.get(search, seconds)
            self._averages[search] = previous + weight * (seconds - previous)

    def target(self) -> int:
        """GETs to keep in flight (the caller caps it at max_concurrent_requests)."""
        latency, limit = self.latency, self._governor.limit
        if latency is None:
            return START
        ramp = START + 2 * self._answers.get(False, 0)  # each answer lets two more go: doubling per round trip
        if limit is None:
            return ramp
        return min(ramp, math.ceil(limit / WINDOW_SECONDS * latency * HEADROOM) + SPARE)

    def summary(self, ceiling: int) -> str:
        """One log line: what the run kept in flight, and why."""
        limit = f"{self._governor.limit:,}" if self._governor.limit else "unknown"
        latency = self.latency or self.search_latency or 0.0
        return (
            f"Requests in flight: at most {self._governor.max_in_flight} (max_concurrent_requests {ceiling}), "
            f"latency {latency:.2f} s lately, limit {limit} per 10 s"
        )

    def searches(self, *, hydrating: bool = False) -> int:
        """Spans to search at once (the caller caps it at max_concurrent_requests).

        Hydrating, one query's 150 rows per round trip can be fewer than the limit lets the GETs fetch
        (at 1 s, 150 a second of 417): then as many spans as the limit's rate needs, with headroom.
        """
        latency = self.search_latency or 0.0
        if hydrating:
            limit = self._governor.limit or 0
            wanted = math.ceil(limit / WINDOW_SECONDS * latency * HEADROOM / ROWS_PER_PAGE)
            return min(SEARCHES_IN_FLIGHT, max(1, wanted))
        wanted = math.ceil(SEARCH_ROWS_PER_SECOND * latency / ROWS_PER_PAGE)
        return min(MAX_SEARCHES_IN_FLIGHT, max(SEARCHES_IN_FLIGHT, wanted))
