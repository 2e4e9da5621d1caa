"""Data real workspaces hold: U+0000, half an emoji, numbers a float cannot hold, bodies only Python's json reads.

The simulator's `bad_data` adds one conversation per case (tests/intercom_simulator/data.py DEFECTS). What
PostgreSQL cannot store becomes U+FFFD; everything else arrives as Intercom sent it.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

import msgspec
import psycopg
import pytest

from tap_intercom_conversation.bodies import LONE_SURROGATE, NOT_A_NUMBER, NUL, readable, rewritten
from tests.helpers import (
    PARTS,
    REPLACED_IN_SEARCH_ROWS,
    REPLACED_WHEN_HYDRATED,
    STREAM,
    assert_table_holds_what_was_sent,
    defects,
    exact,
    expected_data,
    load,
    run_tap,
    tap_config,
)
from tests.intercom_simulator import IntercomSimulator
from tests.intercom_simulator.render import NUMBER


@pytest.fixture(scope="module")
def bad_sim():
    with IntercomSimulator(conversations=150, seed=21, bad_data=True) as sim:
        yield sim


@pytest.mark.parametrize("hydrated", [True, False], ids=["hydrated", "search-only"])
@pytest.mark.slow
def test_every_case_is_read_replaced_and_warned_once_and_the_rest_is_as_sent(bad_sim, hydrated):
    run = run_tap(tap_config(bad_sim, include_conversation_parts=hydrated))

    assert run.returncode == 0, run.stderr[-3000:]
    assert "Retrying" not in run.stderr
    messages = [exact(line) for line in run.stdout.splitlines()]
    records = {
        m["record"]["intercom_id"]: m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == STREAM
    }
    parts = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == PARTS]
    assert set(records) == set(bad_sim.ids())
    for conversation_id, record in records.items():
        assert record["data"] == expected_data(bad_sim, conversation_id, hydrated), conversation_id
    cases = defects(bad_sim)
    assert records[cases["nul_in_title"]]["title"] == "Pasted from Word\ufffd and a NUL"
    assert records[cases["lone_high_surrogate"]]["title"] == "Cut in half \ufffd"
    assert records[cases["escaped_backslash"]]["title"] == "C:\\u0000 is a path, not a NUL"
    custom = records[cases["huge_numbers"]]["data"]["custom_attributes"]
    assert custom["Lifetime value"] == Decimal("1e400")
    assert custom["Account number"] == 1234567890123456789012345678901234567890
    assert '"Lifetime value": 1e400' in run.stdout  # the digits as Intercom wrote them
    if hydrated:  # the parts table's rows come from the same answer, replaced the same way
        bodies = [p["body"] for p in parts if p["conversation_intercom_id"] == cases["nul_in_part_body"]]
        assert "<p>Copied from a PDF\ufffd</p>" in bodies

    warnings = [line for line in run.stderr.splitlines() if "with U+FFFD" in line]
    changed = REPLACED_WHEN_HYDRATED if hydrated else REPLACED_IN_SEARCH_ROWS
    assert sorted(warnings) == sorted(
        line for line in warnings if any(f"Conversation {cases[d]}:" in line for d in changed)
    )
    assert len(warnings) == len(changed)
    assert f"Conversation {cases['nul_in_title']}: replaced 1 x U+0000 with U+FFFD" in run.stderr
    assert f"Conversation {cases['lone_high_surrogate']}: replaced 1 x lone surrogate with U+FFFD" in run.stderr
    assert "Pasted from Word" not in run.stderr and "Cut in half" not in run.stderr  # never the text
    assert f"{len(changed)} with characters replaced" in run.stderr


@pytest.mark.parametrize("hydrated", [True, False], ids=["hydrated", "search-only"])
@pytest.mark.slow
def test_target_postgres_loads_every_case_and_the_next_run_is_incremental(pg_url, pg_schema, hydrated):
    with IntercomSimulator(conversations=150, seed=22, bad_data=True) as sim:
        config = tap_config(sim, include_conversation_parts=hydrated)
        first, state = load(pg_url, pg_schema, config)
        assert first.returncode == 0, first.stderr[-3000:]
        assert_table_holds_what_was_sent(pg_url, pg_schema, sim, hydrated)

        touched = defects(sim)["nul_in_title"]
        changed_at = sim.touch(touched)
        while sim.clock() < changed_at + 2:  # a run reads changes made a second or more before it starts
            time.sleep(0.1)
        second, _ = load(pg_url, pg_schema, config, json.loads(state))

        assert second.returncode == 0, second.stderr[-3000:]
        assert "Run summary: 1 emitted" in second.stderr
        assert second.stderr.count("with U+FFFD") == 1
        assert_table_holds_what_was_sent(pg_url, pg_schema, sim, hydrated)


def test_bodies_only_pythons_json_reads_are_read(bad_sim):
    """NaN, surrogates as UTF-8 bytes and a byte order mark: msgspec refuses them, json does not."""
    conversation_id = bad_sim.ids()[0]
    sent = bad_sim.sent(conversation_id)
    odd = b"\xef\xbb\xbf" + sent.replace(
        b'"custom_attributes": {',
        b'"custom_attributes": {"Score": NaN, "Half": "\xed\xa0\xbd", "Whole": "\xed\xa0\xbd\xed\xb8\x80", ',
        1,
    )
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(odd)
    bad_sim.on_request = lambda method, path, body: (200, odd) if path == f"/conversations/{conversation_id}" else None
    try:
        run = run_tap(tap_config(bad_sim, max_concurrent_requests=4))
    finally:
        bad_sim.on_request = None

    assert run.returncode == 0, run.stderr[-3000:]
    [record] = [r for r in run.records if r["intercom_id"] == conversation_id]
    custom = record["data"]["custom_attributes"]
    assert (custom["Score"], custom["Half"], custom["Whole"]) == ("NaN", "\ufffd", "\U0001f600")
    assert f"Conversation {conversation_id}: replaced 1 x NaN/Infinity, 1 x lone surrogate with U+FFFD" in run.stderr


@pytest.mark.parametrize(
    ("sent", "read", "replaced"),
    [
        (rb'{"t":"a\u0000b"}', rb'{"t":"a\ufffdb"}', [NUL]),
        (rb'{"t\u0000":1}', rb'{"t\ufffd":1}', [NUL]),
        (rb'{"t":"\ud83d"}', rb'{"t":"\ufffd"}', [LONE_SURROGATE]),
        (rb'{"t":"\uDE00\uD83d"}', rb'{"t":"\ufffd\ufffd"}', [LONE_SURROGATE, LONE_SURROGATE]),
        (rb'{"t":"\ud83d\ude00"}', rb'{"t":"\ud83d\ude00"}', []),  # a pair is one character
        (rb'{"t":"\\u0000"}', rb'{"t":"\\u0000"}', []),  # a backslash, then text
        (rb'{"t":"\\\u0000"}', rb'{"t":"\\\ufffd"}', [NUL]),  # a backslash, then a NUL
        (b'{"t":\r\n1}', b'{"t":  1}', []),  # a record is one line
    ],
)
def test_only_what_postgresql_cannot_store_is_replaced_and_in_place(sent, read, replaced):
    body = readable(sent)
    assert body.content == read and len(body.content) == len(sent)
    assert [what for _, what in body.replaced] == replaced
    assert (json.loads(body.content) == json.loads(sent)) is (not replaced)


def test_a_body_written_again_keeps_every_number_as_written():
    body = rewritten(b'{"a": [1e400, 1234567890123456789012345678901234567890, 1.50, -0, Infinity, "\\u0000"]}')
    assert body.content == b'{"a":[1e400,1234567890123456789012345678901234567890,1.50,-0,"Infinity","\xef\xbf\xbd"]}'
    assert [what for _, what in body.replaced] == [NOT_A_NUMBER, NUL]


def test_what_used_to_stop_every_run_is_still_refused_below_the_tap(pg_url):
    """Pins why the tap replaces: should msgspec or PostgreSQL change, these say so."""
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(b'"Cut in half \\ud83d"')
    assert json.loads(b'"Cut in half \\ud83d"') == "Cut in half \ud83d"
    with psycopg.connect(pg_url) as conn:
        with pytest.raises(psycopg.DataError, match="NUL"):
            conn.execute("SELECT %s::text", ["Pasted\x00"])
        conn.rollback()
        with pytest.raises(psycopg.DataError):
            conn.execute("SELECT %s::jsonb", ['{"t": "\\u0000"}'])
        conn.rollback()
        with pytest.raises(psycopg.DataError):
            conn.execute("SELECT %s::jsonb", ['{"t": "\\ud83d"}'])


def test_the_deleted_list_is_read_whatever_it_holds_beside_what_the_tap_takes():
    """Fields the deletion stream does not load may hold U+0000, half an emoji or 1e400: the run goes on."""

    def odd_fields(route: str, payload: dict) -> dict:
        if route == "deleted":
            for row in payload["conversations"]:
                row.update(note="Pasted\x00", cut="Half \ud83d", weight=NUMBER + "1e400")
        return payload

    with IntercomSimulator(conversations=40, seed=23) as sim:
        gone = sim.ids()[:2]
        for conversation_id in gone:
            sim.delete(conversation_id)
        sim.on_payload = odd_fields
        run = run_tap(tap_config(sim))

    assert run.returncode == 0, run.stderr[-3000:]
    deletions = [m["record"] for m in run.messages if m["type"] == "RECORD" and m["stream"] == f"{STREAM}_deletion"]
    assert {r["intercom_id"] for r in deletions} == set(gone)
    assert "Retrying" not in run.stderr
