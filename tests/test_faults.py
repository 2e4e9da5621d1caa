"""Intercom's faults and rate limits, over real HTTP, and the fault matrix end to end into PostgreSQL.

- Every retried fault, when it never stops: the run gives up after 8 tries with one line naming the
  endpoint and the last status (fast retries: the waits are 10 ms, see tests/helpers.py).
- A fault that stops is retried with the real backoff and the run completes.
- 429s are waited out until X-RateLimit-Reset and use up no retry.
- The matrix, tap | target-postgres into PostgreSQL: errors (some HTML), dropped and reset connections,
  answers slower than the timeout, truncated JSON, conversations changing while the tap pages, an
  enforced rate limit the run must spread over windows, and a window another client of the app has
  spent (429s); then one more run once the changes stop: the table equals the simulator's truth,
  every conversation once. Each case prints a `FAULT MATRIX {...}` line (pytest -s) with its retries,
  429s, rate-limit waits and durations.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import typing as t
from dataclasses import dataclass, field

import psycopg
import pytest

from tests.helpers import (
    LOADER,
    STREAM,
    TARGET_POSTGRES,
    ForkRunner,
    TapRun,
    assert_fails_with_one_line,
    assert_state_never_ahead,
    conversations,
    load,
    run_all,
    run_tap,
    scratch_schema,
    tap_config,
)
from tests.intercom_simulator import Faults, IntercomSimulator

HTML_503 = "<html><head><title>503 Service Temporarily Unavailable</title></head><body>nginx</body></html>"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _every_search(status, body):
    return lambda method, path, payload: (status, body) if path == "/conversations/search" else None


GIVE_UP_CASES = {
    # id: (simulator options, on_request, settings, expected line (regex), search requests expected)
    "503-html": (
        {},
        _every_search(503, HTML_503),
        {},
        r"^POST /conversations/search answered 503 Service Unavailable \(gave up after 8 tries\)$",
        8,
    ),
    "5xx-mixed": (
        {"faults": Faults(seed=2, error_rate=1.0)},
        None,
        {},
        r"^POST /conversations/search answered 50[023] [A-Za-z ]+ \(gave up after 8 tries\)$",
        8,
    ),
    "408": (
        {},
        _every_search(408, {"type": "error.list", "errors": [{"code": "request_timeout", "message": "slow"}]}),
        {},
        r"^POST /conversations/search answered 408 Request Timeout \(gave up after 8 tries\)$",
        8,
    ),
    "200-html-not-json": (
        {},
        _every_search(200, "<html><body>Intercom is down for maintenance</body></html>"),
        {},
        r"^POST /conversations/search answered 200 with a body that is not valid JSON \(gave up after 8 tries\)$",
        8,
    ),
    "200-truncated-json": (
        {"faults": Faults(seed=3, bad_json_rate=1.0)},
        None,
        {},
        r"^POST /conversations/search answered 200 with a body that is not valid JSON \(gave up after 8 tries\)$",
        8,
    ),
    "dropped": (
        {"faults": Faults(seed=4, drop_rate=1.0)},
        None,
        {},
        r"^POST /conversations/search: the connection to 127\.0\.0\.1:\d+ was closed without an answer "
        r"\(gave up after 8 tries\)$",
        8,
    ),
    "reset": (
        {"faults": Faults(seed=5, drop_rate=1.0, reset_fraction=1.0)},
        None,
        {},
        r"^POST /conversations/search: the connection to 127\.0\.0\.1:\d+ was reset \(gave up after 8 tries\)$",
        8,
    ),
    "slower-than-timeout": (
        {"faults": Faults(seed=6, slow_rate=1.0, slow_seconds=2)},
        None,
        {"request_timeout_seconds": 1},
        r"^POST /conversations/search got no answer within request_timeout_seconds \(1 s\) "
        r"\(gave up after 8 tries\)$",
        8,
    ),
    "refused": (
        {},
        None,
        {"api_url": f"http://127.0.0.1:{_closed_port()}"},
        r"^POST /conversations/search: the connection to 127\.0\.0\.1:\d+ was refused \(gave up after 8 tries\)$",
        0,
    ),
    "hydration-thread-503": (
        {},
        "hydration",
        {},
        r"^GET /conversations/(?P<id>\d+) answered 503 Service Unavailable \(gave up after 8 tries\)$",
        None,
    ),
}


def _give_up_case(case, runner):
    options, answer, settings, _, _ = GIVE_UP_CASES[case]
    simulator = IntercomSimulator(conversations=300, seed=9, **options).start()
    bad = simulator.ids()[200]
    if answer == "hydration":
        simulator.on_request = lambda method, path, body: (503, HTML_503) if path == f"/conversations/{bad}" else None
    elif answer is not None:
        simulator.on_request = answer
    try:
        run = run_tap(tap_config(simulator, **settings), fast_retries=True, runner=runner)
        updated = {i: simulator.search_row(i)["updated_at"] for i in simulator.ids()}
        return run, simulator.stats, bad, updated
    finally:
        simulator.stop()


@pytest.fixture(scope="module")
def give_up_runs():
    runner = ForkRunner()
    try:
        calls = [lambda case=case: _give_up_case(case, runner) for case in GIVE_UP_CASES]
        runs = run_all(calls, workers=len(calls))
    finally:
        runner.close()
    return dict(zip(GIVE_UP_CASES, runs, strict=True))


@pytest.mark.parametrize("case", list(GIVE_UP_CASES))
@pytest.mark.slow
def test_a_fault_that_never_stops_gives_up_after_8_tries_in_one_line(case, give_up_runs):
    run, stats, bad, updated = give_up_runs[case]
    expected, searches = GIVE_UP_CASES[case][3], GIVE_UP_CASES[case][4]

    message = assert_fails_with_one_line(run)
    match = re.match(expected, message)
    assert match, message
    retried = [line for line in run.stderr.splitlines() if "Retrying after try" in line]
    assert len(retried) == 7, retried  # 8 tries: the first and 7 retries, each one warning line
    if searches is not None:
        assert stats["by_route"]["search"] == searches
    else:  # in a hydration thread: the records before it went out, and STATE never ran ahead of them
        assert match["id"] == bad
        emitted = [record["intercom_id"] for record in conversations(run)]
        assert bad not in emitted and emitted
        assert_state_never_ahead(run, updated)
    assert re.search(r"Run summary: .* 7 retries, ", run.stderr)


@pytest.mark.slow
def test_faults_that_stop_are_retried_with_backoff_and_the_run_completes():
    failures = iter(
        [
            (503, HTML_503),
            (502, {"type": "error.list", "errors": [{"code": "bad_gateway", "message": "Bad Gateway"}]}),
            (408, {"type": "error.list", "errors": [{"code": "request_timeout", "message": "Request Timeout"}]}),
            (200, "<html>not json</html>"),
        ]
    )

    with IntercomSimulator(conversations=300, seed=12, faults=Faults(seed=12)) as sim:
        sim.on_request = lambda method, path, body: next(failures, None)
        run = run_tap(tap_config(sim, max_concurrent_requests=4))  # the real console script and backoff

        assert run.returncode == 0, run.stderr[-3000:]
        latest = {record["intercom_id"]: record["data"] for record in conversations(run)}
        assert latest == sim.truth()
        assert sim.stats["intercepted"] == 4
        assert re.search(r"Run summary: .* 4 retries, \d+ waits for the rate limit \(0 answered 429", run.stderr)
        assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr


@pytest.mark.slow
def test_429s_are_waited_out_until_the_reset_and_use_up_no_retry():
    """Every call of a window answers 429 (as when another client spent the window): the tap waits, then goes on."""
    with IntercomSimulator(conversations=200, seed=13, rate_limit=10_000) as sim:
        window = {"until": None, "next_call": None}
        lock = threading.Lock()

        def spent_window(method, path, body):
            if method != "GET":
                return None
            with lock:
                now = time.time()
                if window["until"] is None:
                    window["until"] = (int(now) // 10 + 1) * 10  # the simulator's window end, X-RateLimit-Reset
                if now < window["until"]:
                    body = {
                        "type": "error.list",
                        "errors": [
                            {"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 10000 in 10_seconds"}
                        ],
                    }
                    return 429, body, {"X-RateLimit-Remaining": "0"}
                window["next_call"] = window["next_call"] or now
            return None

        sim.on_request = spent_window
        run = run_tap(tap_config(sim, max_concurrent_requests=16))

        assert run.returncode == 0, run.stderr[-3000:]
        assert {r["intercom_id"]: r["data"] for r in conversations(run)} == sim.truth()
        refused = sim.stats["by_status"].get(429, 0)
        assert refused >= 1
        assert window["until"] <= window["next_call"] < window["until"] + 3  # waited for the reset, not much longer
        summary = re.search(
            r"Run summary: .* (\d+) retries, \d+ waits for the rate limit \((\d+) answered 429", run.stderr
        )
        assert summary and summary.groups() == ("0", str(refused)), summary and summary.group(0)
        assert "Traceback" not in run.stderr and "| ERROR" not in run.stderr


# ---- the fault matrix, end to end -----------------------------------------------------------------


class SpentWindow:
    """on_request: from the first hydration on, every call of that rate-limit window answers 429, as when
    another client of the same app has spent the window; the next window is served normally."""

    BODY: t.ClassVar[dict] = {
        "type": "error.list",
        "request_id": None,
        "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded rate limit in 10_seconds"}],
    }

    def __init__(self) -> None:
        self.until: float | None = None
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, body: object) -> tuple | None:
        if method != "GET" or not path.startswith("/conversations/") or path == "/conversations/deleted":
            return None
        with self._lock:
            now = time.time()
            if self.until is None:
                self.until = (int(now) // 10 + 1) * 10  # the window's end: the simulator's X-RateLimit-Reset
            if now >= self.until:
                return None
            self.refused += 1
        return 429, self.BODY, {"X-RateLimit-Remaining": "0"}


def _table(pg_url: str, schema: str) -> tuple[dict[str, dict], int, int]:
    with psycopg.connect(pg_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f'SELECT * FROM "{schema}".{STREAM}')
        rows = cur.fetchall()
    return {row["intercom_id"]: row for row in rows}, len(rows), len({row["pk"] for row in rows})


def _stale(rows: dict[str, dict], truth: dict[str, dict]) -> list[str]:
    """Ids whose row is not exactly the conversation as Intercom has it now."""
    stale = []
    for conversation_id, payload in truth.items():
        row = rows.get(conversation_id)
        if row is None or row["data"] != payload or int(row["updated_at"].timestamp()) != payload["updated_at"]:
            stale.append(conversation_id)
            continue
        if (row["title"], row["state"], row["open"], row["read"]) != (
            payload["title"],
            payload["state"],
            payload["open"],
            payload["read"],
        ) or int(row["created_at"].timestamp()) != payload["created_at"]:
            stale.append(conversation_id)
    return stale


def _truth(sim: IntercomSimulator, config: dict) -> dict[str, dict]:
    """What each row's data must be: the GET payload, or the search row without conversation parts."""
    if config.get("include_conversation_parts", True):
        return sim.truth()
    return {conversation_id: sim.search_row(conversation_id) for conversation_id in sim.ids()}


def _summary(stderr: str) -> str:
    found = re.findall(r"Run summary: .*", stderr)
    return " | ".join(found)


# The matrix's mix of faults: errors (half of them HTML pages), dropped connections (some reset), slow answers,
# broken JSON, and conversations changing while the run pages through them.
MIXED_FAULTS = {
    "error_rate": 0.05,
    "html_fraction": 0.5,
    "drop_rate": 0.03,
    "reset_fraction": 0.3,
    "slow_rate": 0.02,
    "slow_seconds": 2,
    "bad_json_rate": 0.01,
    "change_rate": 0.3,
    "changes_per_event": 3,
}
HEAVIER = {"error_rate": 0.1, "drop_rate": 0.06, "slow_rate": 0.04, "bad_json_rate": 0.04, "change_rate": 0.5}


@dataclass(frozen=True)
class MatrixCase:
    conversations: int
    seed: int
    date_comparison: str
    faults: Faults
    settings: dict  # the tap's
    spend_a_window: bool = False  # a rate-limit window spent by another client
    rate_limit: int | None = None
    target: str = TARGET_POSTGRES
    target_settings: dict = field(default_factory=dict)  # else target-postgres's defaults


MATRIX = {
    "hydrated-rate-limited": MatrixCase(
        300, 21, "strict", Faults(seed=21, **MIXED_FAULTS), {"max_concurrent_requests": 8}, True, rate_limit=250
    ),
    # spans searched at once, split and retried; changes move rows between them
    "search-only-inclusive": MatrixCase(
        2500,
        22,
        "inclusive",
        Faults(seed=24, **{**MIXED_FAULTS, **HEAVIER, "changes_per_event": 5}),
        {"include_conversation_parts": False},
    ),
    # issue 25: the same mix into the project's loader (COPY + upsert, copy_load.py), whose batches now keep pace;
    # small batches: many COPY + upsert transactions
    "hydrated-into-target-intercom-postgres": MatrixCase(
        600,
        23,
        "strict",
        Faults(seed=25, **MIXED_FAULTS),
        {"max_concurrent_requests": 16},
        target=LOADER,
        target_settings={"batch_size_rows": 100},
    ),
}


@dataclass
class MatrixRun:
    """What one matrix case saw: each run's output and the table (and the truth) right after it."""

    first: TapRun
    first_state: str
    first_seconds: float
    first_stats: dict
    first_rows: tuple[dict[str, dict], int, int]
    first_truth: dict[str, dict]
    second: TapRun
    second_seconds: float
    second_stats: dict
    second_rows: tuple[dict[str, dict], int, int]
    second_truth: dict[str, dict]
    touched: list[str]
    spent_window_429s: int


def _matrix_case(case: str, pg_url: str) -> MatrixRun:
    matrix = MATRIX[case]
    with (
        IntercomSimulator(
            conversations=matrix.conversations,
            seed=matrix.seed,
            rate_limit=matrix.rate_limit,
            date_comparison=matrix.date_comparison,
            faults=matrix.faults,
        ) as sim,
        scratch_schema(pg_url) as schema,
    ):
        config = tap_config(sim, request_timeout_seconds=1, lookback_window_seconds=600, **matrix.settings)
        touched: list[str] = []

        def change_while_paging(page_index: int) -> None:  # besides the seeded change_rate, surely once
            if page_index == 1 and not touched:
                ids = sim.ids()
                touched.extend(ids[i] for i in (3, len(ids) // 2, -3))
                for conversation_id in touched:
                    sim.touch(conversation_id)

        sim.on_search_page = change_while_paging
        spent = SpentWindow()
        if matrix.spend_a_window:
            sim.on_request = spent
        started = time.monotonic()
        target, target_settings = matrix.target, matrix.target_settings
        first, first_state = load(pg_url, schema, config, target=target, **target_settings)
        first_seconds, first_stats = time.monotonic() - started, sim.stats
        first_rows, first_truth = _table(pg_url, schema), _truth(sim, config)

        sim.faults.change_rate = 0  # the changes stop; the faults go on
        sim.reset_stats()
        started = time.monotonic()
        second, _ = load(
            pg_url, schema, config, json.loads(first_state) if first_state else None, target=target, **target_settings
        )
        return MatrixRun(
            first,
            first_state,
            first_seconds,
            first_stats,
            first_rows,
            first_truth,
            second,
            time.monotonic() - started,
            sim.stats,
            _table(pg_url, schema),
            _truth(sim, config),
            touched,
            spent.refused,
        )


@pytest.fixture(scope="module")
def matrix_runs(pg_url):
    """Both cases at once: each mostly waits (backoff, timeouts, rate-limit windows)."""
    runs = run_all([lambda case=case: _matrix_case(case, pg_url) for case in MATRIX], workers=len(MATRIX))
    return dict(zip(MATRIX, runs, strict=True))


@pytest.mark.parametrize("case", list(MATRIX))
@pytest.mark.slow
def test_fault_matrix_end_to_end_the_table_equals_the_truth(case, matrix_runs):
    run = matrix_runs[case]
    report = {
        "case": case,
        "first_run_seconds": round(run.first_seconds, 1),
        "first_run": _summary(run.first.stderr),
        "simulator_first_run": run.first_stats,
        "429_from_the_spent_window": run.spent_window_429s,
        "touched_while_paging": len(run.touched) + run.first_stats["changes"],
        "second_run_seconds": round(run.second_seconds, 1),
        "second_run": _summary(run.second.stderr),
        "simulator_second_run": run.second_stats,
    }
    print("\nFAULT MATRIX", json.dumps(report))

    # The first run, while conversations kept changing: every conversation once, current unless it
    # changed after the run's last search window (the bookmark).
    assert run.first.returncode == 0, run.first.stderr[-3000:]
    assert "Traceback" not in run.first.stderr
    rows, count, pks = run.first_rows
    assert set(rows) == set(run.first_truth) and count == len(rows) and pks == count  # once each, pk unique
    bookmark = json.loads(run.first_state)["bookmarks"][STREAM]["replication_key_value"]
    bookmark_at = int(dt.datetime.fromisoformat(bookmark).timestamp())
    late = [i for i in _stale(rows, run.first_truth) if run.first_truth[i]["updated_at"] < bookmark_at - 1]
    assert not late, f"{len(late)} rows stale though changed before the last window, e.g. {late[:3]}"

    # One more run once the changes stop (the faults go on): the table is the truth.
    assert run.second.returncode == 0, run.second.stderr[-3000:]
    rows, count, pks = run.second_rows
    assert set(rows) == set(run.second_truth) and count == len(rows) and pks == count
    assert _stale(rows, run.second_truth) == []

    # The faults really happened.
    assert sum(run.first_stats["faults"].values()) >= 2 and run.touched
    assert int(re.search(r"Run summary: .* (\d+) retries, ", run.first.stderr)[1]) >= 1
    if MATRIX[case].spend_a_window:
        answered_429 = int(re.search(r"Run summary: .* \((\d+) answered 429", run.first.stderr)[1])
        assert answered_429 == run.spent_window_429s + run.first_stats["rate_limited"] > 0
