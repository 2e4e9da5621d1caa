"""What one tap instance shares between its streams: the rate budget, Intercom's clock, the counters.

Built once per tap (TapIntercomConversation.__init__) and read by each stream from its tap, so two taps
in one process never share a rate budget or a clock by accident, and a test builds a fresh tap instead
of resetting module globals.
"""

from __future__ import annotations

import threading

from tap_intercom_conversation.concurrency import Concurrency
from tap_intercom_conversation.freshness import ServerClock
from tap_intercom_conversation.governor import RateGovernor


class RequestStats:
    """Retries of this tap's requests, for the run's summary line (429s are the governor's count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0

    def add_retry(self) -> None:
        with self._lock:
            self.retries += 1


class Runtime:
    """The state one tap's streams share: governor, server clock, request counters, concurrency."""

    def __init__(self) -> None:
        self.governor = RateGovernor()
        self.clock = ServerClock()
        self.stats = RequestStats()
        self.concurrency = Concurrency(self.governor)
