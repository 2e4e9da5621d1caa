"""Issue #5: deletions, truncated conversation parts, regions, API versions, progress and the summary."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from intercom_conversation_shared.settings import REGION_URLS
from tap_intercom_conversation.tap import TapIntercomConversation
from tests.helpers import STREAM, apply_table, load, run_tap, table_rows, tap_config
from tests.intercom_simulator import IntercomSimulator

DELETIONS = "intercom_conversation_v1_deletion"


def records_of(run, stream: str) -> list[dict]:
    return [m["record"] for m in run.messages if m["type"] == "RECORD" and m["stream"] == stream]


def test_a_conversation_over_500_parts_is_loaded_as_sent_and_reported():
    with IntercomSimulator(conversations=40, seed=2, long_conversation_parts=620) as sim:
        run = run_tap(tap_config(sim))
        truth = sim.truth()
    [long_one] = [r for r in records_of(run, STREAM) if r["data"]["conversation_parts"]["total_count"] > 500]
    assert long_one["data"] == truth[long_one["intercom_id"]]
    assert len(long_one["data"]["conversation_parts"]["conversation_parts"]) == 500
    warning = f"Conversation {long_one['intercom_id']} has 620 parts; Intercom returned only the 500 most recent"
    assert warning in run.stderr
    assert "1 truncated" in summary_line(run)


@pytest.mark.parametrize(("region", "url"), sorted(REGION_URLS.items()))
def test_region_picks_the_api_host_and_api_url_overrides_it(region, url):
    tap = TapIntercomConversation(config={"access_token": "t", "region": region}, validate_config=True)
    assert {stream.url_base for stream in tap.streams.values()} == {url}
    custom = TapIntercomConversation(
        config={"access_token": "t", "region": region, "api_url": "https://intercom.example.test/"},
        validate_config=True,
    )
    assert {stream.url_base for stream in custom.streams.values()} == {"https://intercom.example.test"}


def test_progress_lines_and_one_summary_line():
    with IntercomSimulator(conversations=700, seed=4) as sim:
        sim.delete(sim.ids()[0])
        run = run_tap(tap_config(sim))
    progress = [line for line in run.stderr.splitlines() if "Progress intercom_conversation_v1:" in line]
    assert progress, run.stderr[-2000:]
    assert re.search(
        r"Progress intercom_conversation_v1: 699 of 699 conversations \(100\.0 %\), [\d,.]+/s, ETA \S+, "
        r"[\d.]+ s waiting for the rate limit",
        progress[-1],
    )
    line = summary_line(run)
    for part in (
        "699 emitted",
        "699 hydrated",
        "0 skipped (404)",
        "0 truncated",
        "1 deletions",
        "0 retries",
        "0 waits for the rate limit",
    ):
        assert part in line, line


def summary_line(run) -> str:
    [line] = [line for line in run.stderr.splitlines() if "Run summary:" in line]
    return line


@pytest.mark.slow
def test_deletions_are_replicated_incrementally():
    with IntercomSimulator(conversations=100, seed=6) as sim:
        gone = sim.ids()[:3]
        for conversation_id in gone:
            sim.delete(conversation_id, at=1_760_000_000 + int(conversation_id) % 1000)
        first = run_tap(tap_config(sim))
        assert {r["intercom_id"] for r in records_of(first, DELETIONS)} == set(gone)
        assert all(r["remove_row"] is False for r in records_of(first, DELETIONS))

        sim.reset_stats()
        quiet = run_tap(tap_config(sim), first.states[-1])
        assert records_of(quiet, DELETIONS) == []
        assert sim.stats["by_route"]["deleted"] == 1
        assert sim.stats["requests"] <= 2  # search + deleted: an incremental run when nothing changed

        another = sim.ids()[0]
        sim.delete(another)
        later = run_tap(tap_config(sim, deleted_conversations="remove"), quiet.states[-1])
        latest = {r["intercom_id"]: r for r in records_of(later, DELETIONS)}
        assert set(latest) == {*gone, another}  # every deletion on the page read is emitted again: harmless
        assert all(r["remove_row"] is True for r in latest.values())


def test_before_2_16_deletions_are_skipped_with_a_warning():
    with IntercomSimulator(conversations=30, seed=1) as sim:
        sim.delete(sim.ids()[0])
        run = run_tap(tap_config(sim, api_version="2.15"))
        assert run.returncode == 0, run.stderr[-2000:]
        assert sim.stats["by_route"].get("deleted", 0) == 0
    assert "api_version 2.15 is older than 2.16" in run.stderr
    assert records_of(run, DELETIONS) == []
    assert len(records_of(run, STREAM)) == 29


@pytest.mark.slow
def test_a_conversation_deleted_in_intercom_is_marked_in_the_table(pg_url, pg_schema):
    with IntercomSimulator(conversations=200, seed=8) as sim:
        _, state = load(pg_url, pg_schema, tap_config(sim))
        before = table_rows(pg_url, pg_schema)
        gone = {conversation_id: 1_770_000_000 + n for n, conversation_id in enumerate(sim.ids()[:3])}
        for conversation_id, deleted_at in gone.items():
            sim.delete(conversation_id, at=deleted_at)

        load(pg_url, pg_schema, tap_config(sim), json.loads(state))

    after = table_rows(pg_url, pg_schema)
    assert set(after) == set(before)
    for conversation_id, row in after.items():
        if conversation_id in gone:
            marked = {**before[conversation_id]["data"], "deleted": True, "deleted_at": gone[conversation_id]}
            assert row == {**before[conversation_id], "data": marked}
        else:
            assert row == before[conversation_id]


@pytest.mark.slow
def test_with_deleted_conversations_remove_their_rows_go(pg_url, pg_schema):
    with IntercomSimulator(conversations=200, seed=9) as sim:
        _, state = load(pg_url, pg_schema, tap_config(sim, deleted_conversations="remove"))
        gone = set(sim.ids()[:4])
        for conversation_id in gone:
            sim.delete(conversation_id)

        load(pg_url, pg_schema, tap_config(sim, deleted_conversations="remove"), json.loads(state))

        assert set(table_rows(pg_url, pg_schema)) == set(sim.ids())


@pytest.mark.parametrize("remove_row", [False, True])
def test_a_payload_loaded_after_the_deletion_does_not_bring_it_back(pg_url, pg_schema, remove_row):
    """The loader drains its two tables in no particular order: the deletion may land first."""
    apply_table(pg_url, pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {pg_schema}")
        conn.execute(
            "INSERT INTO intercom_conversation_v1_deletion VALUES ('42', '2026-01-01T00:00:00Z', false, %s)",
            [remove_row],
        )
        conn.execute(
            "INSERT INTO intercom_conversation_v1 (intercom_id, updated_at, data) VALUES "
            """('42', '2025-12-31T00:00:00Z', '{"id": "42", "title": "before"}')"""
        )
        conn.execute(
            """UPDATE intercom_conversation_v1 SET data = '{"id": "42", "title": "again"}' WHERE intercom_id = '42'"""
        )
        rows = conn.execute("SELECT data FROM intercom_conversation_v1").fetchall()
    if remove_row:
        assert rows == []
    else:
        assert rows == [({"id": "42", "title": "again", "deleted": True, "deleted_at": 1767225600},)]
