"""The window and bookmark rules of docs/how-it-works.md, one test each, on window.Windows alone (no HTTP).

The integration tests (test_tap.py, test_clock_skew.py, test_resume.py) show the same rules end to end
against the simulator; these say which rule a failure breaks.
"""

from __future__ import annotations

from tap_intercom_conversation.freshness import ServerClock
from tap_intercom_conversation.window import RECENT_LIMIT, Windows

STARTED = 1_700_000_000.4  # this machine's clock when the run started
BOOKMARK = 1_699_990_000
LOOKBACK = 600


def windows(bookmark: int | None = BOOKMARK, start: int | None = None, recent: dict | None = None) -> Windows:
    return Windows(bookmark=bookmark, lookback=LOOKBACK, start=start, recent=recent)


# Windows of updated_at: where the first one starts and ends


def test_the_first_window_reads_from_the_bookmark_minus_the_lookback_to_the_second_before_the_run():
    assert windows().first(STARTED) == (BOOKMARK - LOOKBACK, 1_699_999_999)


def test_without_a_bookmark_the_first_window_reads_all_history():
    assert windows(bookmark=None).first(STARTED) == (None, 1_699_999_999)


def test_start_date_raises_the_first_windows_start_but_never_lowers_it():
    assert windows(bookmark=None, start=1_600_000_000).first(STARTED)[0] == 1_600_000_000
    assert windows(start=BOOKMARK - 60).first(STARTED)[0] == BOOKMARK - 60
    assert windows(start=1_600_000_000).first(STARTED)[0] == BOOKMARK - LOOKBACK


# Where a window ends: Intercom's clock decides


def test_a_window_whose_answers_came_from_a_clock_in_step_is_complete_and_needs_no_catch_up():
    rules = windows()
    rules.open(*rules.first(STARTED))
    rules.note_date(1_700_000_001)  # Intercom's Date on the window's first answer
    assert rules.end(STARTED, clock_offset=0.3) == (1_699_999_999, False)
    assert rules.position == 1_699_999_999


def test_when_intercoms_clock_is_behind_the_window_is_complete_only_up_to_its_first_answers_date():
    rules = windows()
    rules.open(*rules.first(STARTED))
    rules.note_date(1_699_999_950)  # Intercom is 50 s behind: the seconds after this had not happened there
    rules.note_date(1_699_999_990)  # a later answer of the same window does not move it
    covered, catch_up = rules.end(STARTED, clock_offset=-50.0)
    assert (covered, catch_up) == (1_699_999_950, True)
    assert rules.next_lower(covered) == 1_699_999_950  # the catch-up window reads on from there


def test_when_intercoms_clock_is_ahead_a_catch_up_window_reads_up_to_intercoms_present():
    rules = windows()
    rules.open(*rules.first(STARTED))
    rules.note_date(1_700_000_030)
    assert rules.end(STARTED, clock_offset=30.0) == (1_699_999_999, True)


def test_a_catch_up_window_already_ends_by_intercoms_clock_so_ahead_or_behind_no_longer_matters():
    rules = windows()
    rules.open(*rules.first(STARTED))
    rules.end(STARTED, clock_offset=30.0)
    rules.open(1_699_999_999, 1_700_000_031)
    assert rules.end(STARTED, clock_offset=30.0) == (1_700_000_031, False)


def test_a_catch_up_window_never_starts_before_the_window_it_follows():
    rules = windows()
    rules.open(1_699_999_000, 1_699_999_999)
    assert rules.next_lower(1_699_998_000) == 1_699_999_000
    rules.open(None, 1_699_999_999)
    assert rules.next_lower(1_699_998_000) == 1_699_998_000


def test_a_catch_up_window_ends_after_intercoms_latest_second_once_a_second_has_passed_since_it_arrived():
    clock = ServerClock()
    clock.observe({"Date": "Tue, 14 Nov 2023 22:13:20 GMT"})  # 1_700_000_000
    slept: list[float] = []
    (_, first_seen) = clock.latest() or (0, 0.0)
    through = Windows.catch_up_through(clock, sleep=slept.append, monotonic=lambda: first_seen + 0.25)
    assert through == 1_700_000_001
    assert slept == [0.75]  # until Intercom's second 1_700_000_000 is over


def test_without_a_date_header_the_catch_up_window_ends_by_this_machines_clock_with_a_seconds_margin():
    clock = ServerClock()
    clock.observe({})
    clock.answered_at = 1_700_000_000.5
    slept: list[float] = []
    through = Windows.catch_up_through(clock, sleep=slept.append, now=lambda: 1_700_000_000.5)
    assert slept == [1.5] and through == 1_699_999_999


# The bookmark: the search position, never backwards


def test_the_bookmark_is_the_search_position_of_the_last_record_not_its_hydrated_updated_at():
    rules = windows()
    rules.emitted("7", complete_through=1_699_999_500, search_updated_at=1_699_990_100)  # hydrated: newer
    assert rules.bookmark_now() == 1_699_990_100


def test_the_bookmark_never_moves_back_while_the_lookback_rereads_older_rows():
    rules = windows()
    rules.emitted("7", complete_through=BOOKMARK - 300, search_updated_at=BOOKMARK - 300)
    assert rules.bookmark_now() == BOOKMARK


# Conversations already seen


def test_a_conversation_is_fetched_once_per_version():
    rules = windows()
    assert rules.first_sight("7", 1_699_990_100) is True
    assert rules.first_sight("7", 1_699_990_100) is False  # the same version again (a shifted page, a span's seam)
    assert rules.first_sight("7", 1_699_990_050) is False  # an older one
    assert rules.first_sight("7", 1_699_990_101) is True  # changed since


def test_a_payload_read_within_its_own_second_is_seen_again_when_the_search_shows_that_second():
    rules = windows()
    rules.emitted("7", complete_through=1_699_990_099, search_updated_at=1_699_990_100)
    assert rules.first_sight("7", 1_699_990_100) is True


def test_conversations_the_last_run_loaded_within_the_lookback_are_not_fetched_again():
    rules = windows(recent={"7": BOOKMARK - 10})
    assert rules.first_sight("7", BOOKMARK - 10) is False
    assert rules.first_sight("8", BOOKMARK - 10) is True


def test_the_state_remembers_the_newest_conversations_within_the_lookback_before_the_bookmark():
    rules = windows()
    rules.emitted("old", complete_through=BOOKMARK - LOOKBACK - 1, search_updated_at=BOOKMARK - LOOKBACK - 1)
    rules.emitted("a", complete_through=BOOKMARK - LOOKBACK, search_updated_at=BOOKMARK - LOOKBACK)
    rules.emitted("b", complete_through=BOOKMARK, search_updated_at=BOOKMARK)
    assert rules.recent() == {"b": BOOKMARK, "a": BOOKMARK - LOOKBACK}


def test_the_remembered_conversations_are_bounded():
    rules = windows()
    for n in range(RECENT_LIMIT + 10):  # all within the lookback: 10 conversations a second
        rules.emitted(str(n), complete_through=BOOKMARK + n // 10, search_updated_at=BOOKMARK + n // 10)
    recent = rules.recent()
    assert len(recent) == RECENT_LIMIT
    assert min(recent.values()) == BOOKMARK + 1  # the newest kept: the first second's 10 are dropped


def test_conversations_far_behind_the_search_position_are_forgotten_during_a_long_run():
    rules = windows(bookmark=None)
    for n in range(4 * RECENT_LIMIT + 1):
        rules.emitted(str(n), complete_through=n, search_updated_at=n)
    rules.first_sight("new", 4 * RECENT_LIMIT + 1)
    assert len(rules.seen) <= LOOKBACK + 2
    assert rules.first_sight(str(4 * RECENT_LIMIT), 4 * RECENT_LIMIT) is False  # within the lookback: kept
