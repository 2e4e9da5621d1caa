"""records.to_iso writes exactly what `datetime.fromtimestamp(s, tz=UTC).isoformat()` writes, for every second.

to_iso builds the string from a day's date and a looked-up time of day (it runs two to three times a
record); these compare it with datetime itself across the seconds a tap can meet and datetime's limits.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tap_intercom_conversation import records
from tap_intercom_conversation.records import to_iso

UTC = dt.timezone.utc
FIRST = int(dt.datetime(1, 1, 1, tzinfo=UTC).timestamp())  # the first second datetime can hold
LAST = int(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())  # and the last


def by_datetime(unix_seconds: int) -> str:
    return dt.datetime.fromtimestamp(unix_seconds, tz=UTC).isoformat()


def mismatches(seconds: list[int]) -> list[tuple[int, str, str]]:
    return [(s, to_iso(s), by_datetime(s)) for s in seconds if to_iso(s) != by_datetime(s)]


@pytest.mark.parametrize(
    "day",
    [
        dt.date(1970, 1, 1),  # the epoch, and the second before it (below)
        dt.date(2000, 2, 29),  # a leap day in a year divisible by 400
        dt.date(2024, 2, 29),
        dt.date(2023, 12, 31),  # a year's last day
        dt.date(1, 1, 1),
        dt.date(9999, 12, 31),
    ],
)
def test_every_second_of_a_day_is_written_as_datetime_writes_it(day):
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    assert mismatches(list(range(start - 1 if day.year > 1 else start, start + 86400))) == []


def test_the_first_and_last_second_of_every_day_from_1900_to_2200_are_written_as_datetime_writes_them():
    start, end = (int(dt.datetime(year, 1, 1, tzinfo=UTC).timestamp()) for year in (1900, 2200))
    assert mismatches([s for day in range(start, end, 86400) for s in (day, day + 86399)]) == []


def test_random_seconds_across_datetimes_years_are_written_as_datetime_writes_them():
    draw = random.Random(25)
    seconds = [draw.randrange(FIRST, LAST + 1) for _ in range(50_000)]
    seconds += [draw.randrange(0, records.MAX_UNIX_SECONDS) for _ in range(50_000)]  # what a payload may hold
    assert len({s // 86400 for s in seconds}) > 2 * records._DAY_LIMIT  # the days remembered are forgotten, too
    assert mismatches(seconds) == []


def test_the_same_second_again_gives_the_same_string():
    assert to_iso(1_700_000_000) == to_iso(1_700_000_000) == "2023-11-14T22:13:20+00:00"
    assert to_iso(0) == "1970-01-01T00:00:00+00:00"
    assert to_iso(-1) == "1969-12-31T23:59:59+00:00"


@pytest.mark.parametrize("unix_seconds", [FIRST - 1, LAST + 1, 10**20, -(10**20)])
def test_a_second_outside_datetimes_years_fails_as_datetime_fails(unix_seconds):
    with pytest.raises((ValueError, OverflowError, OSError)) as expected:
        by_datetime(unix_seconds)
    with pytest.raises(type(expected.value), match=f"^{expected.value}$"):
        to_iso(unix_seconds)
