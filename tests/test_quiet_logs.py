"""A run's log is its progress lines, warnings and summary: per-request metrics only when asked for."""

from __future__ import annotations

import threading
import time

import pytest

from tap_intercom_conversation.governor import RateGovernor
from tests.helpers import run_tap, tap_config
from tests.intercom_simulator import IntercomSimulator


def test_the_wait_for_the_rate_limit_is_wall_time_not_summed_over_threads():
    governor = RateGovernor(reserve=0)
    governor.acquire()
    governor.observe(
        {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(time.time() + 1.0)}
    )  # the window is spent for one more second

    def call() -> None:
        governor.acquire()
        governor.observe(
            {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "90", "X-RateLimit-Reset": str(time.time() + 10)}
        )  # answered, in the next window

    threads = [threading.Thread(target=call) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started

    assert governor.limit_waits >= 4  # four requests waited about a second each, at the same time
    assert 0.5 < governor.waited_seconds <= elapsed + 0.1  # not about 4 s


@pytest.mark.slow
def test_metric_lines_only_when_asked_for():
    with IntercomSimulator(conversations=300, seed=5) as sim:
        quiet = run_tap(tap_config(sim))
        asked = run_tap(tap_config(sim, log_metrics="true"))  # as a Meltano string setting passes it

    assert quiet.returncode == 0 and asked.returncode == 0
    assert "METRIC" not in quiet.stderr
    assert "Run summary: 300 emitted" in quiet.stderr and "Progress intercom_conversation_v1" in quiet.stderr
    assert asked.stderr.count("http_request_duration") >= 300  # one per GET /conversations/{id}, and searches
