"""Which `updated_at` second a fetched payload is known to hold every change of.

`updated_at` has one-second resolution, so a payload read during second U may miss a later change made
in that same second, which a search then shows with the same `updated_at` U. A payload is complete for
its second only if it was read after that second ended. Intercom's own clock tells: every answer
carries a `Date` header, and a request sent after an answer dated D was read at D or later. Our clock
is never used, so its skew does not matter.

The same headers tell how far Intercom's clock is from this machine's (ClockOffset): the rate governor
waits by it, and the first window of a run ends by it.
"""

from __future__ import annotations

import functools
import threading
import time
import typing as t
from email.utils import parsedate_to_datetime

if t.TYPE_CHECKING:
    from collections.abc import Mapping


@functools.lru_cache(maxsize=64)  # answers within one second share their Date
def date_seconds(text: str | None) -> int | None:
    """The unix second of a `Date` header; None when absent or malformed (no information)."""
    try:
        return int(parsedate_to_datetime(text or "").timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class ClockOffset:
    """How far Intercom's clock is ahead of a local one (negative: behind), learned from `Date` headers.

    A Date is Intercom's second, truncated, when it made the answer, which arrived later: Date minus the
    local time of arrival is never more than the true offset, and the largest seen comes within a few
    milliseconds of it once answers have arrived at many points of a second. So the estimate errs only
    towards Intercom's clock being behind (a wait a little too long, never a call too early). It decays
    by DECAY a second, so a clock that drifts, or is stepped, is followed.
    """

    DECAY = 0.001

    def __init__(self) -> None:
        self._offset: float | None = None
        self._at = 0.0

    @property
    def offset(self) -> float | None:
        return self._offset

    def observe(self, date: int, local: float) -> None:
        sample = date - local
        if self._offset is None:
            self._offset = sample
        else:
            self._offset = max(sample, self._offset - max(local - self._at, 0.0) * self.DECAY)
        self._at = local


class ServerClock:
    """The latest `Date` Intercom has answered with: a lower bound of its clock for the next request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: int | None = None
        self._first_seen = 0.0  # time.monotonic() when the latest Date first arrived
        self.answered_at = 0.0  # time.time() of the latest answer, Date or not: the fallback without one
        self._offset = ClockOffset()

    def floor(self) -> int | None:
        """A second that Intercom's clock has reached (None before the first answer)."""
        return self._latest

    def latest(self) -> tuple[int, float] | None:
        """The latest Date, and the monotonic time it first arrived: Intercom's clock had reached it then."""
        with self._lock:
            return None if self._latest is None else (self._latest, self._first_seen)

    def offset(self) -> float | None:
        """How far Intercom's clock is ahead of this machine's (never more than it is); None before a Date."""
        return self._offset.offset

    def observe(self, headers: Mapping[str, str]) -> None:
        self.answered_at = time.time()
        second = date_seconds(headers.get("Date"))
        if second is None:
            return
        with self._lock:
            self._offset.observe(second, self.answered_at)
            if self._latest is None or second > self._latest:
                self._latest, self._first_seen = second, time.monotonic()


def complete_through(updated_at: int, sent_after: int | None) -> int:
    """The last second whose changes a payload with this `updated_at` holds, read after `sent_after`."""
    return updated_at if sent_after is not None and updated_at < sent_after else updated_at - 1


class Fetched(t.NamedTuple):
    """A search row or a hydrated payload, and the second Intercom's clock had reached when it was asked."""

    payload: dict
    sent_after: int | None
