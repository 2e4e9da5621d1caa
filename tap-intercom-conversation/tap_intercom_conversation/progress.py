"""Progress lines while a stream runs: done of total, percent, rate, ETA, time spent waiting for the limit."""

from __future__ import annotations

import logging
import time
import typing as t

if t.TYPE_CHECKING:
    from tap_intercom_conversation.governor import RateGovernor
    from tap_intercom_conversation.runtime import Runtime

# A line when a tenth more of the total is done, or a minute has passed, and never twice in 5 s: a
# backfill's log stays within 40 + N/1,000 lines for N conversations at any rate (issue 24).
EVERY_SECONDS = 5.0
QUIET_SECONDS = 60.0
STEP = 0.1


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts conversations handled against the search's total_count and logs at a steady cadence."""

    def __init__(self, logger: logging.Logger, what: str, governor: RateGovernor) -> None:
        self._logger = logger
        self._governor = governor  # the tap's: its waits for the rate limit
        self._what = what
        self._started = time.monotonic()
        self._last_line = 0.0
        self._next_step = 0
        self.total = 0
        self.done = 0

    def expect(self, count: int) -> None:
        """A new window's total_count joins the total."""
        self.total += count

    def page(self) -> None:
        now = time.monotonic()
        if self._last_line:
            since = now - self._last_line
            if since < EVERY_SECONDS or (since < QUIET_SECONDS and self.done < self._next_step):
                return
        self._last_line = now
        self._next_step = self.done + max(1, int(STEP * max(self.total, self.done)))
        self._logger.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._started, 1e-6)
        rate = self.done / elapsed
        total = max(self.total, self.done)
        percent = 100.0 * self.done / total if total else 100.0
        eta = _duration((total - self.done) / rate) if rate > 0 else "unknown"
        return (
            f"Progress {self._what}: {self.done:,} of {total:,} conversations ({percent:.1f} %), "
            f"{rate:,.1f}/s, ETA {eta}, {self._governor.waited_seconds:.1f} s waiting for the rate limit"
        )


def run_summary(counts: dict[str, int], deletions: int, runtime: Runtime, seconds: float) -> str:
    """The one line a run ends with; each 429 is counted once, by the governor."""
    governor = runtime.governor
    return (
        f"Run summary: {counts['emitted']:,} emitted, {counts['hydrated']:,} hydrated, "
        f"{counts['skipped_deleted']:,} skipped (404), {counts['truncated']:,} truncated, {counts['parts']:,} parts, "
        f"{counts['replaced']:,} with characters replaced, {deletions:,} deletions, "
        f"{runtime.stats.retries:,} retries, {governor.limit_waits:,} waits for the rate limit "
        f"({governor.rate_limited:,} answered 429, "
        f"{governor.waited_seconds:.1f} s), {seconds:.1f} s"
    )
