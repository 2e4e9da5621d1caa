"""The window and bookmark rules of a run, with no HTTP: seconds and ids in, bounds and decisions out.

docs/how-it-works.md tells them in prose and tests/test_window.py pins each one down. A run reads
windows of `updated_at` seconds: the first from the bookmark minus the lookback (or `start_date`, or
all history) up to the second before the run started, then catch-up windows for what changed while
the previous one ran (at most MAX_PASSES in all). Intercom's clock decides where a window ends. The
bookmark is the search position, never a hydrated `updated_at` (which can be newer), and never moves
back while the lookback re-reads older rows. Conversations already emitted at the bookmark's tail are
remembered in STATE, so the next run's lookback does not fetch them again.
"""

from __future__ import annotations

import time
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tap_intercom_conversation.freshness import ServerClock

MAX_PASSES = 5  # the first window, then catch-up windows for what changed while it ran
RECENT_LIMIT = 5000  # conversations remembered in STATE as already loaded at the bookmark's tail


class Windows:
    """One run's windows, its search position and the conversations it has seen."""

    def __init__(
        self, *, bookmark: int | None, lookback: int, start: int | None, recent: Mapping[str, int] | None = None
    ) -> None:
        self.bookmark = bookmark  # where the last run stopped
        self.lookback = lookback
        self.start = start
        self.position = bookmark or 0  # the updated_at of the last search row emitted
        self.seen: dict[str, int] = dict(recent or {})  # id -> last second whose changes were emitted
        self.lower: int | None = None
        self.through = 0  # a window is [lower, through]
        self.first_date: int | None = None  # the Date of the window's first search answer
        self.passes = 0

    def first(self, started: float) -> tuple[int | None, int]:
        """The first window: from the bookmark minus the lookback (never before start_date) to before `started`.

        Intercom's clock is not known before its first answer, so this one ends by this machine's (see `end`).
        """
        lower = None if self.bookmark is None else self.bookmark - self.lookback
        if self.start is not None:
            lower = self.start if lower is None else max(lower, self.start)
        return lower, int(started) - 1

    def open(self, lower: int | None, through: int) -> None:
        self.lower, self.through, self.first_date = lower, through, None
        self.passes += 1

    def note_date(self, second: int | None) -> None:
        """The earliest `Date` among the window's search answers (the first, unless threads race)."""
        if second is not None and (self.first_date is None or second < self.first_date):
            self.first_date = second

    def end(self, started: float, clock_offset: float | None) -> tuple[int, bool]:
        """Where the window just read ends by Intercom's clock, and whether a catch-up window must follow.

        The first window ends by this machine's clock, before any answer told Intercom's. If Intercom's is
        behind, that end lies in Intercom's future, and only the seconds before the window's first answer
        (its Date) are known complete: the bookmark stops there and a catch-up window reads on. If
        Intercom's is ahead, the window ended before the second the run started in at Intercom, and a
        catch-up window reads the changes made just before the run. Catch-up windows end by Intercom's
        clock already, so neither applies to them. The whole window is in: the position moves to its end.
        """
        covered = self.through if self.first_date is None else min(self.through, self.first_date)
        ahead = clock_offset is not None and self.through < int(started + clock_offset) - 1
        self.position = covered
        return covered, covered < self.through or (self.passes == 1 and ahead)

    def next_lower(self, covered: int) -> int:
        """The catch-up window starts where the last one is known complete, never before that one's start."""
        return covered if self.lower is None else max(covered, self.lower)

    @staticmethod
    def catch_up_through(
        clock: ServerClock,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> int:
        """Where the next window ends: after every second in which the last one read anything.

        Intercom's clock decides, from the `Date` of its latest answer (the reads it answered happened
        in that second or before): once one more second has passed since that answer arrived, that
        second is over at Intercom. Without a `Date`, this machine's clock, with a second's margin.
        """
        latest = clock.latest()
        if latest is None:
            sleep(max(0.0, int(clock.answered_at) + 2 - now()))
            return int(now()) - 1
        second, first_seen = latest
        sleep(max(0.0, first_seen + 1 - monotonic()))
        return second + 1

    def first_sight(self, conversation_id: str, updated_at: int) -> bool:
        """False for a row whose version (or a newer one) this run or the last one already emitted."""
        if self.seen.get(conversation_id, -1) >= updated_at:
            return False
        self.seen[conversation_id] = updated_at
        if len(self.seen) > 4 * RECENT_LIMIT:  # rows far behind the search position cannot come back
            horizon = self.position - self.lookback
            self.seen = {key: value for key, value in self.seen.items() if value >= horizon}
        return True

    def emitted(self, conversation_id: str, complete_through: int, search_updated_at: int) -> None:
        """A record went out: its payload holds every change up to `complete_through`; the search moved on."""
        self.seen[conversation_id] = complete_through
        self.position = search_updated_at

    def bookmark_now(self) -> int:
        """The search position reached, never before the bookmark the run started from."""
        return max(self.position, self.bookmark or 0)

    def recent(self) -> dict[str, int]:
        """What the next run's lookback may meet again and need not fetch twice: newest first, at most RECENT_LIMIT."""
        horizon = self.bookmark_now() - self.lookback
        newest = sorted(((v, k) for k, v in self.seen.items() if v >= horizon), reverse=True)[:RECENT_LIMIT]
        return {key: value for value, key in newest}
