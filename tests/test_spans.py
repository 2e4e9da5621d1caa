"""Search-only runs search disjoint spans of `updated_at` at once, and still emit in search order."""

from __future__ import annotations

import threading
import time

import pytest

from tap_intercom_conversation.concurrency import SEARCHES_IN_FLIGHT
from tap_intercom_conversation.spans import SPAN_ROWS, Span, Split, ordered_pages, split_span
from tests.helpers import ServerProbe, run_tap, tap_config
from tests.intercom_simulator import IntercomSimulator

# ---- the tap against the threaded simulator -----------------------------------------------------------------


@pytest.mark.parametrize("date_comparison", ["strict", "inclusive"])
@pytest.mark.slow
def test_search_only_searches_spans_at_once_and_emits_every_conversation_once_in_search_order(date_comparison):
    with IntercomSimulator(conversations=3000, seed=31, latency_ms=60, date_comparison=date_comparison) as sim:
        probe = ServerProbe(sim, route="search")

        run = run_tap(tap_config(sim, include_conversation_parts=False, max_concurrent_requests=48))

        search_order, searches = sim.ids(), sim.stats["by_route"]["search"]
        truth = {conversation_id: sim.search_row(conversation_id) for conversation_id in search_order}
    assert run.returncode == 0, run.stderr[-2000:]
    assert [record["intercom_id"] for record in run.records] == search_order  # each once, (updated_at, id) order
    assert all(record["data"] == truth[record["intercom_id"]] for record in run.records)
    assert 2 <= probe.max_in_flight <= SEARCHES_IN_FLIGHT  # spans searched at once, never more
    assert searches <= 3000 / 150 * 1.5  # split spans cost few searches beyond one per page
    bookmarks = [state["bookmarks"]["intercom_conversation_v1"].get("replication_key_value") for state in run.states]
    assert [b for b in bookmarks if b] == sorted(b for b in bookmarks if b)


@pytest.mark.slow
def test_a_burst_of_conversations_in_one_second_is_read_whole_by_its_span():
    with IntercomSimulator(conversations=2500, seed=32, latency_ms=20) as sim:
        burst = int(time.time()) - 3600
        for conversation_id in sim.ids()[:1500]:  # pages and pages in one second, which no split can cut
            sim.touch(conversation_id, at=burst)

        run = run_tap(tap_config(sim, include_conversation_parts=False, max_concurrent_requests=8))

        search_order = sim.ids()
    assert run.returncode == 0, run.stderr[-2000:]
    assert [record["intercom_id"] for record in run.records] == search_order


# ---- split_span and ordered_pages -------------------------------------------------------------------------------


def test_split_span_cuts_the_seconds_into_contiguous_spans_of_about_span_rows():
    spans = split_span(100, 200, 4 * SPAN_ROWS)

    assert spans == [Span(100, 125), Span(125, 150), Span(150, 175), Span(175, 200)]
    assert split_span(0, 3, 100 * SPAN_ROWS) == [Span(0, 1), Span(1, 2), Span(2, 3)]  # never below one second
    assert split_span(7, 8, 100 * SPAN_ROWS) == [Span(7, 8)]


def test_span_holds_only_its_own_seconds():
    span = Span(10, 20)

    assert [second for second in range(8, 23) if span.holds(second)] == list(range(10, 20))
    assert Span(None, 20).holds(-(10**9))


def test_ordered_pages_keeps_span_order_when_later_spans_answer_first():
    root = Span(None, 40)
    parts = split_span(0, 40, 4 * SPAN_ROWS)
    lock, in_flight, most = threading.Lock(), [0], [0]

    def fetch(span, put):
        if span == root:
            put("root page")
            put(Split(parts))
            return
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05 * (40 - span.through) / 10)  # the last span answers first
        with lock:
            in_flight[0] -= 1
        for page in range(3):
            put((span.lower, page))

    pages = list(ordered_pages(root, fetch, workers=4))

    assert pages == ["root page"] + [(part.lower, page) for part in parts for page in range(3)]
    assert most[0] == 4


def test_ordered_pages_reads_a_split_span_in_place_of_the_span_it_came_from():
    def fetch(span, put):  # one page per span: its first second; the rest split in two, recursively
        put(span.lower)
        rest = Span(span.lower + 1, span.through)
        if rest.lower < rest.through:
            middle = (rest.lower + rest.through + 1) // 2
            halves = (Span(rest.lower, middle), Span(middle, rest.through))
            put(Split([half for half in halves if half.lower < half.through]))

    pages = list(ordered_pages(Span(0, 16), fetch, workers=3))

    assert pages == list(range(16))


def test_ordered_pages_raises_a_failure_in_its_turn_after_the_pages_before_it():
    def fetch(span, put):
        if span.lower == 20:
            raise RuntimeError("span 20 failed")
        put(span.lower)

    seen = []
    with pytest.raises(RuntimeError, match="span 20 failed"):
        for page in ordered_pages(Span(0, 40), _split_then(fetch), workers=4):
            seen.append(page)

    assert seen == [0, 10]


def test_ordered_pages_stops_its_threads_when_the_reader_stops():
    def fetch(span, put):
        for page in range(100):
            put(page)

    pages = ordered_pages(Span(0, 40), _split_then(fetch), workers=4)
    assert next(pages) == 0
    pages.close()

    deadline = time.monotonic() + 3
    while any(thread.name == "search" for thread in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [thread for thread in threading.enumerate() if thread.name == "search"]


def _split_then(fetch):
    """The root Span(0, 40) handed back as 4 spans of 10 seconds, each fetched by `fetch`."""

    def split_root(span, put):
        if span == Span(0, 40):
            put(Split([Span(start, start + 10) for start in range(0, 40, 10)]))
        else:
            fetch(span, put)

    return split_root
