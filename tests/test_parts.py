"""Issue #14: the stream and table intercom_conversation_part_v1, every part of every conversation, kept."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.helpers import (
    PARTS,
    REPO,
    STREAM,
    apply_table,
    load,
    run_psql,
    run_tap,
    scratch_database,
    table_rows,
    tap_config,
    truth_parts,
)
from tests.intercom_simulator import IntercomSimulator

PART_COLUMNS = {
    "pk": ("bigint", True),
    "intercom_id": ("text", True),
    "conversation_intercom_id": ("text", True),
    "part_type": ("text", False),
    "author_type": ("text", False),
    "author_id": ("text", False),
    "assigned_to_type": ("text", False),
    "assigned_to_id": ("text", False),
    "body": ("text", False),
    "redacted": ("boolean", False),
    "created_at": ("timestamp with time zone", False),
    "updated_at": ("timestamp with time zone", False),
    "data": ("jsonb", True),
}


def deselecting(catalog: dict, stream: str) -> dict:
    [entry] = [entry for entry in catalog["streams"] if entry["tap_stream_id"] == stream]
    for metadata in entry["metadata"]:
        if metadata["breadcrumb"] == []:
            metadata["metadata"]["selected"] = False
    return catalog


@pytest.mark.slow
def test_every_part_is_a_record_written_before_its_conversation_at_no_extra_request(tmp_path):
    with IntercomSimulator(conversations=150, seed=31, long_conversation_parts=620) as sim:
        config = tap_config(sim)
        run = run_tap(config)
        with_parts = sim.stats["by_route"]
        catalog = deselecting(json.loads(run_tap(config, None, "--discover").stdout), PARTS)
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        sim.reset_stats()
        without = run_tap(config, None, "--catalog", str(tmp_path / "catalog.json"))
        without_parts = sim.stats["by_route"]
        truth = truth_parts(sim)

    assert run.returncode == without.returncode == 0, run.stderr[-2000:] + without.stderr[-2000:]
    assert with_parts == without_parts  # the same searches, and one GET per conversation either way
    assert with_parts["retrieve"] == len(run.records) == 151
    assert without.records_of(PARTS) == [] and without.records == run.records
    assert all(m.get("stream") != PARTS for m in without.messages)  # not even its SCHEMA

    parts = run.records_of(PARTS)
    assert len(parts) == len(truth) > 1000  # each once, the long conversation's 500 most recent included
    assert {r["intercom_id"]: (r["conversation_intercom_id"], r["data"]) for r in parts} == truth
    for record in parts:
        part = record["data"]
        assert record["part_type"] == part["part_type"] and record["body"] == part["body"]
        assert (record["author_type"], record["author_id"]) == (part["author"]["type"], part["author"]["id"])
        assert record["assigned_to_id"] == (part["assigned_to"] or {}).get("id")
        assert record["redacted"] is part["redacted"]
        assert record["updated_at"] == _iso(part["updated_at"]) and record["created_at"] == _iso(part["created_at"])
    assert any(r["assigned_to_id"] for r in parts) and any(r["author_type"] == "bot" for r in parts)

    # A conversation's parts come right before its record, so before any STATE that covers it.
    pending: set[str] = set()
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == PARTS:
            pending.add(message["record"]["conversation_intercom_id"])
        elif message["type"] == "RECORD" and message["stream"] == STREAM:
            assert pending <= {message["record"]["intercom_id"]}
            pending = set()
        else:
            assert not pending, message
    assert f"{len(truth):,} parts" in run.stderr  # the run summary counts them


def _iso(unix_seconds: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(unix_seconds, tz=dt.timezone.utc).isoformat()


def test_without_conversation_parts_the_parts_stream_emits_nothing():
    with IntercomSimulator(conversations=60, seed=32) as sim:
        run = run_tap(tap_config(sim, include_conversation_parts=False))
    assert run.returncode == 0 and len(run.records) == 60
    assert all(m.get("stream") != PARTS for m in run.messages)


@pytest.mark.slow
def test_discovery_and_stream_maps_treat_the_parts_stream_like_any_other():
    with IntercomSimulator(conversations=40, seed=33) as sim:
        catalog = json.loads(run_tap(tap_config(sim), None, "--discover").stdout)
        maps = {PARTS: {"__alias__": "parts", "body": "__NULL__", "is_comment": "part_type == 'comment'"}}
        mapped = run_tap(tap_config(sim, stream_maps=maps))
        truth = truth_parts(sim)
    [entry] = [e for e in catalog["streams"] if e["tap_stream_id"] == PARTS]
    assert entry["key_properties"] == ["intercom_id"]
    assert set(entry["schema"]["properties"]) == set(PART_COLUMNS) - {"pk"}
    records = mapped.records_of("parts")
    assert mapped.returncode == 0 and {r["intercom_id"] for r in records} == set(truth)
    assert all("body" not in r and r["is_comment"] == (r["part_type"] == "comment") for r in records)


# The table and its triggers


def _part_row(conn: psycopg.Connection, part_id: str) -> tuple | None:
    return conn.execute(
        "SELECT pk, updated_at, data FROM intercom_conversation_part_v1 WHERE intercom_id = %s", [part_id]
    ).fetchone()


def test_psql_f_applies_both_files_into_public_twice(pg_url):
    with scratch_database(pg_url) as database:
        for _ in range(2):  # the second run must succeed and change nothing
            done = run_psql(database, REPO / "schemas" / f"{STREAM}.sql", REPO / "schemas" / f"{PARTS}.sql")
            assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
        with psycopg.connect(database) as conn:
            columns = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
                " WHERE attrelid = 'public.intercom_conversation_part_v1'::regclass AND attnum > 0"
                " AND NOT attisdropped"
            ).fetchall()
            constraints = conn.execute(
                "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'public.intercom_conversation_part_v1'::regclass"
            ).fetchall()
            triggers = conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1").fetchall()
            indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [PARTS]).fetchall()
    assert {name: (kind, notnull) for name, kind, notnull in columns} == PART_COLUMNS
    assert sorted(constraints) == [("p", "PRIMARY KEY (pk)"), ("u", "UNIQUE (intercom_id)")]
    assert [name for (name,) in triggers if name.startswith(PARTS)] == [
        f"{PARTS}_apply_deletion",
        f"{PARTS}_insert_pk",
        f"{PARTS}_keep_pk_and_newest",
    ]
    assert any("(conversation_intercom_id, created_at)" in definition for (definition,) in indexes)


def test_an_older_part_never_replaces_a_newer_one(pg_url, pg_schema):
    apply_table(pg_url, pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {pg_schema}")
        # target-postgres's upsert: INSERT with its staged pk (1 in every batch), then UPDATE of every row.
        for part_id in ("p1", "p2"):
            conn.execute(
                "INSERT INTO intercom_conversation_part_v1"
                " (pk, intercom_id, conversation_intercom_id, updated_at, data)"
                """ VALUES (1, %s, 'c1', '2026-01-02T00:00:00Z', '{"v": "newer"}')""",
                [part_id],
            )
        pk, _, _ = _part_row(conn, "p1")
        conn.execute("""UPDATE intercom_conversation_part_v1 SET updated_at = '2026-01-01T00:00:00Z',
                        data = '{"v": "older"}', pk = 1 WHERE intercom_id = 'p1'""")
        assert _part_row(conn, "p1")[2] == {"v": "newer"}
        conn.execute("""UPDATE intercom_conversation_part_v1 SET updated_at = '2026-01-03T00:00:00Z',
                        data = '{"v": "edited"}', pk = 1 WHERE intercom_id = 'p1'""")
        assert _part_row(conn, "p1")[::2] == (pk, {"v": "edited"})
        assert _part_row(conn, "p2")[0] == pk + 1


@pytest.mark.parametrize("remove_row", [False, True], ids=["mark", "remove"])
def test_a_deleted_conversations_parts_follow_its_rule_in_either_drain_order(pg_url, pg_schema, remove_row):
    """The loader drains its tables in no particular order: the deletion may land before or after the parts."""
    apply_table(pg_url, pg_schema)
    insert_part = (
        "INSERT INTO intercom_conversation_part_v1 (intercom_id, conversation_intercom_id, updated_at, data)"
        " VALUES (%s, %s, '2025-12-31T00:00:00Z', %s)"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {pg_schema}")
        conn.execute(insert_part, ["before-1", "42", json.dumps({"id": "before-1"})])
        conn.execute(insert_part, ["other", "43", json.dumps({"id": "other"})])
        conn.execute(
            "INSERT INTO intercom_conversation_v1_deletion VALUES ('42', '2026-01-01T00:00:00Z', false, %s)",
            [remove_row],
        )
        conn.execute(insert_part, ["after-1", "42", json.dumps({"id": "after-1"})])
        conn.execute("""UPDATE intercom_conversation_part_v1 SET data = data || '{"again": true}'""")
        rows = dict(conn.execute("SELECT intercom_id, data FROM intercom_conversation_part_v1").fetchall())
    mark = {"deleted": True, "deleted_at": 1767225600}
    if remove_row:
        assert rows == {"other": {"id": "other", "again": True}}
    else:
        assert rows == {
            "before-1": {"id": "before-1", "again": True, **mark},
            "after-1": {"id": "after-1", "again": True, **mark},
            "other": {"id": "other", "again": True},
        }


@pytest.mark.slow
def test_a_parts_table_target_postgres_created_itself_is_migrated_keeping_its_rows(pg_url, pg_schema):
    with IntercomSimulator(conversations=80, seed=35) as sim:
        # A careless run: no table step, target-postgres's own metadata columns, its own table.
        load(pg_url, pg_schema, tap_config(sim), applied=False, add_record_metadata=True)
        with psycopg.connect(pg_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            careless = cur.execute(f'SELECT * FROM "{pg_schema}".{PARTS}').fetchall()
        assert "pk" not in careless[0] and "_sdc_batched_at" in careless[0]

        line = apply_table(pg_url, pg_schema).stdout
        assert f"with {PARTS} (migrated " in line and "_sdc_batched_at" in line, line
        migrated = table_rows(pg_url, pg_schema, PARTS)
        assert sorted(row["pk"] for row in migrated.values()) == list(range(1, len(careless) + 1))
        assert {i: (r["conversation_intercom_id"], r["data"]) for i, r in migrated.items()} == truth_parts(sim)
        for part_id, row in migrated.items():  # UTC wall-clock time became the same instant
            assert int(row["updated_at"].timestamp()) == row["data"]["updated_at"], part_id
        assert apply_table(pg_url, pg_schema).stdout.endswith(f"with {PARTS} (already there)\n")

        for conversation_id in sim.ids()[-5:]:
            sim.touch(conversation_id)
        load(pg_url, pg_schema, tap_config(sim))  # and now target-postgres loads the migrated table
        loaded = table_rows(pg_url, pg_schema, PARTS)
    assert {i: (r["conversation_intercom_id"], r["data"]) for i, r in loaded.items()} == truth_parts(sim)
    assert {i: r["pk"] for i, r in loaded.items() if i in migrated} == {i: r["pk"] for i, r in migrated.items()}
    assert sorted(r["pk"] for i, r in loaded.items() if i not in migrated) == list(
        range(len(migrated) + 1, len(loaded) + 1)
    )


@pytest.mark.slow
def test_through_target_postgres_removed_conversations_take_their_parts(pg_url, pg_schema):
    with IntercomSimulator(conversations=120, seed=34) as sim:
        config = tap_config(sim, deleted_conversations="remove")
        _, state = load(pg_url, pg_schema, config)
        assert set(table_rows(pg_url, pg_schema, PARTS)) == set(truth_parts(sim))
        gone = [
            conversation_id
            for conversation_id in sim.ids()
            if sim.conversation(conversation_id)["conversation_parts"]["total_count"]
        ][:3]
        for conversation_id in gone:
            sim.delete(conversation_id)
        load(pg_url, pg_schema, config, json.loads(state))
        truth = truth_parts(sim)
    rows = table_rows(pg_url, pg_schema, PARTS)
    assert set(rows) == set(truth) and not {row["conversation_intercom_id"] for row in rows.values()} & set(gone)
