"""One rate governor per process, shared by every request and every thread.

Intercom counts calls per app in fixed 10-second windows and reports the window on every response
(`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`). The governor spends the window's
budget and then sleeps until the window resets, so requests slow down before Intercom has to refuse
them; a 429 that still happens (another client on the same app, a clock skew) is waited out the same way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping

WINDOW_SECONDS = 10.0


class RateGovernor:
    """Admits a request only while the current rate-limit window has budget left."""

    def __init__(self, *, reserve: int = 1, clock=time.time, sleep=time.sleep) -> None:
        self._reserve = reserve  # calls left unspent per window, a margin for clock skew
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._remaining: int | None = None  # our estimate for the current window
        self._reset_at: float | None = None
        self.waited_seconds = 0.0
        self.limit_waits = 0  # times a request waited for a window to reset, 429s included
        self.rate_limited = 0  # 429 answers seen

    def acquire(self) -> None:
        """Block until a call fits in the current window, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                if self._reset_at is not None and now >= self._reset_at:
                    self._remaining = self._limit  # a fresh window
                    self._reset_at = None
                if self._remaining is None or self._remaining > self._reserve:
                    if self._remaining is not None:
                        self._remaining -= 1
                    return
                wake_at = (self._reset_at or now + WINDOW_SECONDS) + random.uniform(0.05, 0.25)
                wait = max(wake_at - now, 0.0)
                self.waited_seconds += wait
                self.limit_waits += 1
            self._sleep(wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt the window Intercom reports; never raise our estimate within a window."""
        try:
            limit = int(headers["X-RateLimit-Limit"])
            remaining = int(headers["X-RateLimit-Remaining"])
            reset_at = float(headers["X-RateLimit-Reset"])
        except (KeyError, ValueError):
            return
        with self._lock:
            self._limit = limit
            if self._reset_at is None or reset_at > self._reset_at:
                self._reset_at = reset_at
                self._remaining = remaining
            elif reset_at == self._reset_at:
                self._remaining = min(self._remaining if self._remaining is not None else remaining, remaining)

    def rate_limited_until(self, headers: Mapping[str, str]) -> None:
        """A 429: nothing more goes out until the reported reset."""
        with self._lock:
            self.rate_limited += 1
            try:
                reset_at = float(headers["X-RateLimit-Reset"])
            except (KeyError, ValueError):
                reset_at = self._clock() + WINDOW_SECONDS
            self._reset_at = max(reset_at, self._reset_at or 0.0)
            self._remaining = 0


GOVERNOR = RateGovernor()
