"""Intercom's clock decides: a run against an Intercom whose clock is minutes off ours is the run at no skew."""

from __future__ import annotations

import datetime as dt
import math
import time
from email.utils import formatdate

import pytest

from tap_intercom_conversation.governor import WAKE_JITTER, RateGovernor
from tests.helpers import FakeClock, run_tap, tap_config, window
from tests.intercom_simulator import IntercomSimulator

RATE_LIMIT = 25  # calls per 10-second window: the backfill below needs three windows


@pytest.mark.parametrize("offset", [0, -120, -5, 5, 120])
@pytest.mark.slow
def test_a_run_under_a_tight_limit_is_the_same_at_any_clock_offset(offset):
    with IntercomSimulator(conversations=60, seed=31, rate_limit=RATE_LIMIT, clock_offset=offset) as sim:
        config = tap_config(sim, max_concurrent_requests=8)
        started = time.monotonic()
        first = run_tap(config, timeout=240)
        took = time.monotonic() - started

        assert first.returncode == 0, first.stderr[-3000:]
        assert {r["intercom_id"] for r in first.records} == set(sim.ids())
        assert sim.stats["rate_limited"] == 0, first.stderr[-3000:]  # the governor waited by Intercom's clock
        windows = math.ceil(sim.stats["requests"] / (RATE_LIMIT - 1))  # one call per window is left in reserve
        assert took < 10 * (windows + 2), took  # without the offset: 120 s per window, or 429s

        changed = sim.ids()[:2]
        for conversation_id in changed:
            changed_at = sim.touch(conversation_id)
        created = sim.create()
        while sim.clock() < changed_at + 2:  # made before the next run starts, by Intercom's clock
            time.sleep(0.1)
        sim.reset_stats()
        second = run_tap(config, first.states[-1], timeout=240)

        assert second.returncode == 0, second.stderr[-3000:]
        assert {r["intercom_id"] for r in second.records} == {*changed, created}
        assert sim.stats["rate_limited"] == 0
        bookmark = dt.datetime.fromisoformat(second.bookmark["replication_key_value"]).timestamp()
        assert bookmark <= sim.clock()  # never in Intercom's future, whichever clock is ahead


def date(unix: float) -> str:
    return formatdate(unix, usegmt=True)


@pytest.mark.parametrize("offset", [-600, -120, -5, 0, 5, 120, 600])
def test_the_governor_waits_for_the_reset_by_intercoms_clock(offset):
    clock = FakeClock(1_000_000.0)
    governor = RateGovernor(reserve=0, clock=clock, sleep=clock.sleep)
    intercom_now = 1_000_000 + offset
    reset = intercom_now + 4
    governor.acquire()
    governor.observe({**window(2, 1, reset), "Date": date(intercom_now)})
    governor.acquire()  # the window's last call
    governor.observe({**window(2, 0, reset), "Date": date(intercom_now)})

    governor.acquire()  # the window is spent: wait for its reset, 4 s away on Intercom's clock

    assert governor.clock_offset == offset
    assert len(clock.sleeps) == 1 and clock.sleeps[0] == pytest.approx(4, abs=WAKE_JITTER[1])
    assert governor.rate_limited == 0
