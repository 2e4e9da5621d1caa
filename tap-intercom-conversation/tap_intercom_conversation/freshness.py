"""Which `updated_at` second a fetched payload is known to hold every change of.

`updated_at` has one-second resolution, so a payload read during second U may miss a later change made
in that same second, which a search then shows with the same `updated_at` U. A payload is complete for
its second only if it was read after that second ended. Intercom's own clock tells: every answer
carries a `Date` header, and a request sent after an answer dated D was read at D or later. Our clock
is never used, so its skew does not matter.
"""

from __future__ import annotations

import threading
import time
import typing as t
from email.utils import parsedate_to_datetime

if t.TYPE_CHECKING:
    from collections.abc import Mapping


class ServerClock:
    """The latest `Date` Intercom has answered with: a lower bound of its clock for the next request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: int | None = None
        self._first_seen = 0.0  # time.monotonic() when the latest Date first arrived
        self.answered_at = 0.0  # time.time() of the latest answer, Date or not: the fallback without one

    def floor(self) -> int | None:
        """A second that Intercom's clock has reached (None before the first answer)."""
        return self._latest

    def latest(self) -> tuple[int, float] | None:
        """The latest Date, and the monotonic time it first arrived: Intercom's clock had reached it then."""
        with self._lock:
            return None if self._latest is None else (self._latest, self._first_seen)

    def observe(self, headers: Mapping[str, str]) -> None:
        self.answered_at = time.time()
        try:
            second = int(parsedate_to_datetime(headers.get("Date", "")).timestamp())
        except (TypeError, ValueError, IndexError):  # absent or malformed: no information
            return
        with self._lock:
            if self._latest is None or second > self._latest:
                self._latest, self._first_seen = second, time.monotonic()


def complete_through(updated_at: int, sent_after: int | None) -> int:
    """The last second whose changes a payload with this `updated_at` holds, read after `sent_after`."""
    return updated_at if sent_after is not None and updated_at < sent_after else updated_at - 1


class Fetched(t.NamedTuple):
    """A search row or a hydrated payload, and the second Intercom's clock had reached when it was asked."""

    payload: dict
    sent_after: int | None


SERVER_CLOCK = ServerClock()
