"""The tap alone, over real HTTP against the Intercom simulator."""

from __future__ import annotations

import atexit
import datetime as dt
import json
import time

import pytest
from singer_sdk.testing import get_tap_test_class

from tap_intercom_conversation.tap import TapIntercomConversation
from tests.helpers import PARTS, STREAM, run_tap, tap_config
from tests.intercom_simulator import IntercomSimulator

_standard_sim = IntercomSimulator(conversations=200, seed=7)
_standard_sim.start()
for _gone in _standard_sim.ids()[:3]:  # so that the deletions stream has records too
    _standard_sim.delete(_gone)
atexit.register(_standard_sim.stop)

TestSingerStandard = get_tap_test_class(
    TapIntercomConversation,
    config=tap_config(_standard_sim, max_concurrent_requests=4),
)


def iso_seconds(value: str) -> int:
    return int(dt.datetime.fromisoformat(value).timestamp())


@pytest.fixture(params=["strict", "inclusive"])
def sim(request):
    """Intercom's docs do not say whether `>`/`<` on dates are strict: every test runs under both."""
    with IntercomSimulator(conversations=400, seed=3, date_comparison=request.param) as simulator:
        yield simulator


@pytest.mark.slow
def test_a_first_sync_emits_every_conversation_once_as_intercom_returns_it(sim):
    run = run_tap(tap_config(sim))

    assert run.returncode == 0, run.stderr[-2000:]
    ids = [record["intercom_id"] for record in run.records]
    assert sorted(ids) == sorted(sim.ids())
    truth = sim.truth()
    for record in run.records:
        payload = truth[record["intercom_id"]]
        assert record["data"] == payload
        assert record["title"] == payload["title"]
        assert record["state"] == payload["state"]
        assert record["open"] == payload["open"]
        assert record["read"] == payload["read"]
        assert iso_seconds(record["created_at"]) == payload["created_at"]
        assert iso_seconds(record["updated_at"]) == payload["updated_at"]
        assert record["updated_at"].endswith("+00:00")
    assert "conversation_parts" in run.records[0]["data"]


@pytest.mark.slow
def test_without_parts_data_is_the_search_payload_and_no_conversation_is_fetched(sim):
    run = run_tap(tap_config(sim, include_conversation_parts=False))

    assert run.returncode == 0, run.stderr[-2000:]
    assert {r["intercom_id"]: r["data"] for r in run.records} == {i: sim.search_row(i) for i in sim.ids()}
    assert sim.stats["by_route"].get("retrieve", 0) == 0


@pytest.mark.slow
def test_records_leave_in_search_order_and_state_follows_them(sim):
    run = run_tap(tap_config(sim))

    positions = [iso_seconds(r["updated_at"]) for r in run.records]
    assert positions == sorted(positions)
    bookmarks = [iso_seconds(s["bookmarks"][STREAM]["replication_key_value"]) for s in run.states]
    assert bookmarks == sorted(bookmarks)
    assert len(run.states) >= len(run.records) // 150  # a killed run resumes near where it stopped


@pytest.mark.slow
def test_a_state_between_records_bookmarks_the_last_record_before_it_also_in_a_second_many_share(sim):
    crowded = int(time.time()) - 3600
    for index, conversation_id in enumerate(sim.ids()[:300]):  # 100 conversations in each of three seconds
        sim.touch(conversation_id, at=crowded + index // 100)

    run = run_tap(tap_config(sim, include_conversation_parts=False))

    assert run.returncode == 0, run.stderr[-2000:]
    last_record, between, checked = None, [], []
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == STREAM:
            if between:  # STATE written before this record: it bookmarks the record before it
                assert between[-1] == last_record["updated_at"], (between, last_record["intercom_id"])
                checked.append(last_record)
                between = []
            last_record = message["record"]
        elif message["type"] == "STATE" and last_record is not None:
            between.append(message["value"]["bookmarks"][STREAM]["replication_key_value"])
    in_a_crowd = [r for r in checked if sum(o["updated_at"] == r["updated_at"] for o in run.records) == 100]
    assert len(run.records) == 400 and len(in_a_crowd) >= 2  # a STATE every 150 records: two amid a crowd


@pytest.mark.slow
def test_an_incremental_run_when_nothing_changed_costs_two_calls_and_emits_nothing(sim):
    first = run_tap(tap_config(sim))
    sim.reset_stats()

    second = run_tap(tap_config(sim), first.states[-1])

    assert second.returncode == 0, second.stderr[-2000:]
    assert second.records == []
    assert sim.stats["by_route"] == {"search": 1, "deleted": 1, "retrieve": 0, "list": 0}
    assert second.bookmark["replication_key_value"] >= first.bookmark["replication_key_value"]


@pytest.mark.slow
def test_changes_in_the_bookmark_second_and_after_it_are_picked_up(sim):
    first = run_tap(tap_config(sim, lookback_window_seconds=0))
    bookmark = iso_seconds(first.bookmark["replication_key_value"])
    same_second, later = sim.ids()[:2]
    sim.touch(same_second, at=bookmark)
    sim.touch(later, at=bookmark + 1)
    while time.time() < bookmark + 3:  # both changes now lie before the next run starts
        time.sleep(0.1)

    second = run_tap(tap_config(sim, lookback_window_seconds=0), first.states[-1])

    emitted = {r["intercom_id"]: r["data"] for r in second.records}
    assert emitted[same_second] == sim.conversation(same_second)
    assert emitted[later] == sim.conversation(later)


@pytest.mark.slow
def test_a_conversation_changed_while_the_run_pages_is_neither_lost_nor_stale(sim):
    ids_by_position = sorted(sim.ids(), key=lambda i: (sim.search_row(i)["updated_at"], int(i)))
    already_paged, not_yet_paged = ids_by_position[3], ids_by_position[-3]

    def change_while_paging(page_index: int) -> None:
        if page_index == 1:
            sim.touch(already_paged)
            sim.touch(not_yet_paged)

    sim.on_search_page = change_while_paging
    run = run_tap(tap_config(sim))

    assert run.returncode == 0, run.stderr[-2000:]
    latest = {}
    for record in run.records:
        latest[record["intercom_id"]] = record["data"]
    assert set(latest) == set(sim.ids())
    assert latest[already_paged] == sim.conversation(already_paged)
    assert latest[not_yet_paged] == sim.conversation(not_yet_paged)


@pytest.mark.slow
def test_a_change_made_in_the_second_its_conversation_was_fetched_is_fetched_again(sim):
    changed = sim.ids()[10]
    seconds = []

    def changed_twice_in_one_second(route, payload):
        if route == "retrieve" and payload["id"] == changed and not seconds:
            seconds.append(int(time.time()))
            sim.touch(changed, at=seconds[0])
            payload = sim.conversation(changed)  # this GET answers the first change...
            sim.touch(changed, at=seconds[0])  # ...and a second one lands in the same second, after it
        return payload

    sim.on_payload = changed_twice_in_one_second
    run = run_tap(tap_config(sim))

    assert run.returncode == 0, run.stderr[-2000:]
    versions = [record["data"] for record in run.records if record["intercom_id"] == changed]
    assert versions[-1] == sim.conversation(changed)  # same updated_at as the first answer, yet fetched again
    assert versions[-1]["updated_at"] == seconds[0]


@pytest.mark.parametrize("parts", [True, False], ids=["hydrated", "search-only"])
@pytest.mark.slow
def test_a_catalog_that_deselects_a_column_or_a_key_inside_data_is_obeyed(sim, tmp_path, parts):
    config = tap_config(sim, include_conversation_parts=parts)
    catalog = json.loads(run_tap(config, None, "--discover").stdout)
    streams = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}
    stream = streams[STREAM]
    for entry in stream["metadata"]:
        if entry["breadcrumb"] == ["properties", "title"]:
            entry["metadata"]["selected"] = False
    for entry in streams[PARTS]["metadata"]:  # the parts stream writes its records through the same SDK path
        if entry["breadcrumb"] == ["properties", "body"]:
            entry["metadata"]["selected"] = False
    (tmp_path / "columns.json").write_text(json.dumps(catalog))
    stream["metadata"].append(
        {"breadcrumb": ["properties", "data", "properties", "statistics"], "metadata": {"selected": False}}
    )
    (tmp_path / "inside.json").write_text(json.dumps(catalog))

    columns = run_tap(config, None, "--catalog", str(tmp_path / "columns.json"))
    inside = run_tap(config, None, "--catalog", str(tmp_path / "inside.json"))

    truth = sim.truth() if parts else {key: sim.search_row(key) for key in sim.ids()}
    assert columns.returncode == inside.returncode == 0, columns.stderr[-1000:] + inside.stderr[-1000:]
    assert {record["intercom_id"] for record in columns.records} == set(truth)
    assert all("title" not in record and record["data"] == truth[record["intercom_id"]] for record in columns.records)
    parts_written = columns.records_of(PARTS)
    assert bool(parts_written) is parts
    assert all("body" not in part and "part_type" in part for part in parts_written)
    assert all("statistics" not in record["data"] and "title" not in record for record in inside.records)
    assert all(
        record["data"] == {key: value for key, value in truth[record["intercom_id"]].items() if key != "statistics"}
        for record in inside.records
    )


@pytest.mark.parametrize("parts", [True, False], ids=["hydrated", "search-only"])
@pytest.mark.slow
def test_stream_maps_and_flattening_read_inside_data(sim, parts):
    """A search row's `data` travels as the bytes Intercom sent: what reads inside it must still see it."""
    maps = {STREAM: {"channel": "data['source']['delivered_as']", "has_parts": "'conversation_parts' in data"}}
    mapped = run_tap(tap_config(sim, include_conversation_parts=parts, stream_maps=maps))
    flat = run_tap(tap_config(sim, include_conversation_parts=parts, flattening_enabled=True, flattening_max_depth=1))

    truth = sim.truth()
    assert mapped.returncode == flat.returncode == 0, mapped.stderr[-1000:] + flat.stderr[-1000:]
    assert {record["intercom_id"]: record["channel"] for record in mapped.records} == {
        key: payload["source"]["delivered_as"] for key, payload in truth.items()
    }
    assert all(record["has_parts"] is parts for record in mapped.records)
    assert {record["intercom_id"]: json.loads(record["data"]) for record in flat.records} == {
        key: truth[key] if parts else sim.search_row(key) for key in truth
    }


@pytest.mark.slow
def test_a_stream_map_that_copies_or_filters_the_stream_still_applies():
    """The identity map plus a copy (`__source__`), or a filter: each still decides what the tap writes."""
    with IntercomSimulator(conversations=30, seed=34) as simulator:
        copied = run_tap(tap_config(simulator, stream_maps={"copy": {"__source__": STREAM}}))
        filtered = run_tap(tap_config(simulator, stream_maps={STREAM: {"__filter__": "state == 'open'"}}))
        truth = {key: simulator.search_row(key) for key in simulator.ids()}

    assert copied.returncode == filtered.returncode == 0, copied.stderr[-1000:] + filtered.stderr[-1000:]
    assert {r["intercom_id"] for r in copied.records_of(STREAM)} == {
        r["intercom_id"] for r in copied.records_of("copy")
    }
    assert len(copied.records_of("copy")) == len(truth)
    open_ids = {key for key, row in truth.items() if row["state"] == "open"}
    assert 0 < len(open_ids) < len(truth)
    assert {r["intercom_id"] for r in filtered.records_of(STREAM)} == open_ids


def test_the_sdk_record_path_is_skipped_only_without_maps_flattening_or_deselection():
    """What sdk_adapter's StreamAdapter decides once per stream: its own RECORD message only where the SDK's steps
    (selection walk, type conformance, stream maps) would change nothing; the SDK's otherwise."""

    def unchanged(catalog: dict | None = None, **settings: object) -> dict[str, bool]:
        tap = TapIntercomConversation(config=tap_config(_standard_sim, **settings), catalog=catalog)
        return {name: tap.streams[name].records_pass_unchanged for name in (STREAM, PARTS)}  # type: ignore[attr-defined]

    catalog = TapIntercomConversation(config=tap_config(_standard_sim)).catalog_dict
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == PARTS:
            entry["metadata"].append(
                {"breadcrumb": ["properties", "data", "properties", "x"], "metadata": {"selected": False}}
            )

    assert unchanged() == {STREAM: True, PARTS: True}
    assert unchanged(stream_maps={PARTS: {"body": "__NULL__"}}) == {STREAM: True, PARTS: False}
    assert unchanged(stream_maps={"copy": {"__source__": STREAM}}) == {STREAM: False, PARTS: True}
    assert unchanged(stream_maps={STREAM: None}) == {STREAM: False, PARTS: True}
    assert unchanged(flattening_enabled=True, flattening_max_depth=1) == {STREAM: False, PARTS: False}
    assert unchanged(catalog=catalog) == {STREAM: True, PARTS: False}


@pytest.mark.slow
def test_a_change_while_paging_inside_a_second_that_holds_more_than_a_page_loses_nothing(sim):
    dense = int(time.time()) - 7200
    in_dense_second = sim.ids()[:200]
    for conversation_id in in_dense_second:  # a bulk action: 200 conversations updated in one second
        sim.touch(conversation_id, at=dense)
    start_date = dt.datetime.fromtimestamp(dense, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = {i for i in sim.ids() if sim.search_row(i)["updated_at"] >= dense}
    moved = []

    def change_while_paging(page_index: int) -> None:
        if page_index == 1 and not moved:  # one row of the first page leaves: the next page's offset skips one
            moved.append(min(in_dense_second, key=int))  # the dense second's first row, in (updated_at, id) order
            sim.touch(moved[0])

    sim.on_search_page = change_while_paging
    run = run_tap(tap_config(sim, start_date=start_date, include_conversation_parts=False))

    assert run.returncode == 0, run.stderr[-2000:]
    assert moved and f"restarting from updated_at {dense}" in run.stderr
    assert expected <= {record["intercom_id"] for record in run.records}


@pytest.mark.slow
def test_start_date_limits_the_first_sync_to_conversations_updated_since(sim):
    updated = sorted(sim.search_row(i)["updated_at"] for i in sim.ids())
    cutoff = updated[len(updated) // 2]
    start_date = dt.datetime.fromtimestamp(cutoff, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    run = run_tap(tap_config(sim, start_date=start_date))

    expected = {i for i in sim.ids() if sim.search_row(i)["updated_at"] >= cutoff}
    assert expected <= {r["intercom_id"] for r in run.records}
    assert all(iso_seconds(r["updated_at"]) >= cutoff - 1 for r in run.records)
