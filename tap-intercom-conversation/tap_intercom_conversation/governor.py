"""One rate governor per tap (runtime.Runtime), shared by every request and every thread of its streams.

The algorithm only: it reads headers and a clock and never sends anything (transport.GovernedAdapter does).

Intercom counts calls per app in fixed 10-second windows and reports the window on every response
(`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`). The governor admits a call only
while the window has room for it, counting the calls still in flight, and then sleeps until the
window resets, so requests slow down before Intercom has to refuse them; a 429 that still happens
(another client on the same app, a server clock behind ours) is waited out the same way.

Why in-flight calls count: with several requests outstanding, each answer reports the window's count
as it was when Intercom received that request, not the calls sent since. The count Intercom will
reach is at most the highest count reported plus the calls not answered yet, so admitting only while
that sum stays under the limit never exceeds it, however many requests run concurrently. A call sent
just before a reset may be counted in either window, so it counts against the new one until answered.

Clock skew: `X-RateLimit-Reset` is a second of Intercom's clock, so every wait is measured against
Intercom's clock, never this machine's: the governor reads it as its own clock plus the offset learned
from the `Date` header of every answer (freshness.ClockOffset; its own clock before any Date arrived).
A window is over when that reaches the reported reset plus a lag. The lag starts at zero and grows
whenever Intercom counts, in a window that had reset by that reckoning, a call sent after that reset
(Intercom's rounding of the reset, or a Date that runs behind its windows).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping

from tap_intercom_conversation.freshness import ClockOffset, date_seconds

WINDOW_SECONDS = 10.0
WAKE_JITTER = (0.0, 0.02)  # seconds after the reset at which a waiting request wakes, spread a little
LAG_MARGIN = 0.05  # added to a measured server lag, so the next window is not entered early again
STALE_SECONDS = 120.0  # an admitted call not answered by then has failed; it no longer holds budget
POLL_SECONDS = 0.05  # a wait for answers (tiny limits only: more calls in flight than the budget)


class RateGovernor:
    """Admits a request only while the current rate-limit window has room for it and every call in flight."""

    def __init__(
        self,
        *,
        reserve: int = 1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._reserve = reserve  # calls left unspent per window, for another client of the app
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._reset_at: float | None = None  # end of the latest window Intercom reported
        self._used = 0  # the highest count Intercom reported for that window
        self._lag = 0.0  # how long after a reported reset Intercom is seen in the next window
        self._in_flight: dict[int, float] = {}  # thread -> when its call was admitted (our clock), until answered
        self._blocked_until = 0.0  # after a 429: no call before then (plus the lag)
        self._intercom = ClockOffset()  # Intercom's clock minus self._clock, from Date headers
        self._waited = 0.0  # wall time (our clock) during which at least one request waited for the limit, waits over
        self._waiting = 0  # requests waiting now
        self._waiting_since = 0.0
        self.limit_waits = 0  # times a request waited for a window to reset, 429s included
        self.rate_limited = 0  # 429 answers seen
        self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def limit(self) -> int | None:
        """Calls per window, as Intercom last reported it (None before the first answer that says)."""
        return self._limit

    @property
    def waited_seconds(self) -> float:
        """Wall time during which at least one request waited for the limit (not summed over threads)."""
        with self._lock:
            ongoing = self._clock() - self._waiting_since if self._waiting else 0.0
            return self._waited + ongoing

    @property
    def lag(self) -> float:
        return self._lag

    @property
    def clock_offset(self) -> float | None:
        """How far Intercom's clock is ahead of ours, as learned (None before any Date)."""
        return self._intercom.offset

    def _now(self) -> float:
        """Intercom's clock, as best known: the one X-RateLimit-Reset is read on."""
        return self._clock() + (self._intercom.offset or 0.0)

    def acquire(self) -> None:
        """Block until a call fits in the current window, then count it as in flight."""
        me = threading.get_ident()
        while True:
            with self._lock:
                now = self._now()
                self._in_flight.pop(me, None)  # this thread's previous call is over, answered or not
                wait = self._admit_or_wait(me, now)
                if wait is None:
                    return
                self.limit_waits += 1
                if not self._waiting:
                    self._waiting_since = self._clock()  # our clock: now may be Intercom's
                self._waiting += 1
            try:
                self._sleep(wait)
            finally:
                with self._lock:
                    self._waiting -= 1
                    if not self._waiting:
                        self._waited += self._clock() - self._waiting_since

    def _admit_or_wait(self, me: int, now: float) -> float | None:
        """None when the call is admitted (and counted), else the seconds to wait before asking again."""
        if now < self._blocked_until + self._lag:  # a 429: its window is spent, whatever we counted
            return self._blocked_until + self._lag - now + self._rng.uniform(*WAKE_JITTER)
        if self._limit is None:  # nothing heard yet: the first answer tells the limit
            self._admit(me)
            return None
        local = self._clock()
        stale = [thread for thread, admitted in self._in_flight.items() if local - admitted > STALE_SECONDS]
        for thread in stale:
            del self._in_flight[thread]
        window_over = self._reset_at is None or now >= self._reset_at + self._lag
        used = 0 if window_over else self._used
        if used + len(self._in_flight) + 1 <= max(self._limit - self._reserve, 1):
            self._admit(me)
            return None
        if window_over:  # a new window that calls in flight fill (limits smaller than the pool)
            return POLL_SECONDS
        assert self._reset_at is not None
        return max(self._reset_at + self._lag - now, 0.0) + self._rng.uniform(*WAKE_JITTER)

    def _admit(self, me: int) -> None:
        self._in_flight[me] = self._clock()
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))

    def observe(self, headers: Mapping[str, str]) -> None:
        """An answer arrived: the call is no longer in flight, and Intercom's count is adopted."""
        with self._lock:
            admitted = self._in_flight.pop(threading.get_ident(), None)
            date = date_seconds(headers.get("Date"))
            if date is not None:
                self._intercom.observe(date, self._clock())
            try:
                limit = int(headers["X-RateLimit-Limit"])
                remaining = int(headers["X-RateLimit-Remaining"])
                reset_at = float(headers["X-RateLimit-Reset"])
            except (KeyError, ValueError):
                return
            self._limit = limit
            used = max(limit - remaining, 0)
            if self._reset_at is None or reset_at > self._reset_at:
                self._reset_at, self._used = reset_at, used
            elif reset_at == self._reset_at:
                self._used = max(self._used, used)
            if admitted is not None:  # on Intercom's clock, as now known (the offset may be new since)
                admitted += self._intercom.offset or 0.0
            if admitted is not None and admitted >= reset_at + self._lag:
                # Sent after this window was over by our clock, yet counted in it: Intercom is behind us.
                self._lag = min(admitted - reset_at + LAG_MARGIN, WINDOW_SECONDS)

    def rate_limited_until(self, headers: Mapping[str, str]) -> None:
        """A 429: nothing more goes out until the reported reset (observe() has already seen the answer)."""
        with self._lock:
            self.rate_limited += 1
            try:
                reset_at = float(headers["X-RateLimit-Reset"])
            except (KeyError, ValueError):
                self._blocked_until = max(self._blocked_until, self._now() + WINDOW_SECONDS)
                return
            if self._reset_at is None or reset_at >= self._reset_at:
                self._reset_at = reset_at
                self._used = self._limit if self._limit is not None else 0
                self._blocked_until = max(self._blocked_until, reset_at)
