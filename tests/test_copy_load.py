"""The loader's fast path (copy_load.py): COPY + upsert keeps the table contract, real loader and PostgreSQL.

Exact instants (DST's repeated hour, in a New York session), the newest payload (within a batch and
across batches), text PostgreSQL cannot store, parts kept when they leave the payload, a record the
typed decoding refuses checked by the SDK as before, the settings, the counters, and a loader killed
in the middle of a batch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
import typing as t
from pathlib import Path

import psycopg
import pytest

from intercom_conversation_shared.schema_files import PARTS_STREAM, STREAM_NAME, schema_path, stream_schema
from target_intercom_postgres.copy_load import DEADLOCK_RETRIES, Column, Upsert, flat_columns
from target_intercom_postgres.table import apply
from tests.helpers import (
    conversation_record,
    run_loader,
    sqlalchemy_url,
    start_loader,
    start_pipe,
    table_rows,
    tap_config,
    ts,
)
from tests.intercom_simulator import IntercomSimulator

UTC = dt.timezone.utc
PARTS_SCHEMA = json.loads(schema_path(f"{PARTS_STREAM}.json").read_text())


def iso(instant: dt.datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def conversation(n: int, updated: dt.datetime, title: str = "first", **data: object) -> dict:
    return conversation_record(7000 + n, n, updated, title, {"n": 1.50, **data})


def part(n: int, conversation_id: str, updated: dt.datetime, body: str = "<p>hi</p>") -> dict:
    return {
        "intercom_id": f"p{n}",
        "conversation_intercom_id": conversation_id,
        "part_type": "comment",
        "author_type": "admin",
        "author_id": "1",
        "assigned_to_type": None,
        "assigned_to_id": None,
        "body": body,
        "redacted": False,
        "created_at": iso(updated),
        "updated_at": iso(updated),
        "data": {"type": "conversation_part", "id": f"p{n}", "body": body},
    }


def messages(*streams: tuple[str, dict, list[dict]]) -> str:
    lines = []
    for stream, schema, records in streams:
        lines.append({"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["intercom_id"]})
        lines += [{"type": "RECORD", "stream": stream, "record": record} for record in records]
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


def load_messages(
    tmp_path: Path, pg_url: str, schema: str, text: str, **settings: object
) -> subprocess.CompletedProcess:
    """The real loader on `text`, in a New York session (libpq's PGTZ)."""
    config = {"sqlalchemy_url": sqlalchemy_url(pg_url), "default_target_schema": schema, **settings}
    return run_loader(tmp_path, config, input=text, env={**os.environ, "PGTZ": "America/New_York"})


def rows(pg_url: str, schema: str, table: str = STREAM_NAME) -> dict[str, dict]:
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        found = conn.execute(f'SELECT * FROM "{schema}".{table}').fetchall()
        names = [c.name for c in conn.execute(f'SELECT * FROM "{schema}".{table} LIMIT 0').description or ()]
    return {row[1]: dict(zip(names, row, strict=True)) for row in found}


class FedLoader:
    """The real loader reading a pipe the test writes to, message by message; its stdout collected as it comes."""

    def __init__(self, tmp_path: Path, pg_url: str, schema: str, env: dict | None = None, **settings: object) -> None:
        config = {"sqlalchemy_url": sqlalchemy_url(pg_url), "default_target_schema": schema, **settings}
        self.log = (tmp_path / "loader.err").open("w+")
        self.process = start_loader(
            tmp_path,
            config,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.states: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.states.append(json.loads(line))

    def send(self, *lines: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
        self.process.stdin.flush()

    def records(self, *records: dict) -> None:
        self.send(*({"type": "RECORD", "stream": STREAM_NAME, "record": record} for record in records))

    def finish(self) -> str:
        """The input's end; the loader's log once it has exited."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=120)
        self._reader.join(timeout=10)
        self.log.seek(0)
        return self.log.read()


def wait_until(condition: t.Callable[[], object], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.02)


def waiting_for_a_lock(watcher: psycopg.Connection, schema: str) -> int:
    """The loader's statements on the schema's conversations table that wait for a lock."""
    found = watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (f"%{schema}%{STREAM_NAME}%",),
    ).fetchone()
    return found[0] if found else 0


def test_instants_stay_exact_through_the_repeated_hour_and_the_newest_payload_wins(pg_url, pg_schema, tmp_path):
    first = [conversation(n, ts(n)) for n in range(150)]  # 04:00-06:29Z: New York's 01:xx twice
    done = load_messages(
        tmp_path, pg_url, pg_schema, messages((STREAM_NAME, stream_schema(), first)), batch_size_rows=40
    )  # 4 batches of new rows
    assert done.returncode == 0, done.stderr[-3000:]
    before = rows(pg_url, pg_schema)
    assert sorted(r["pk"] for r in before.values()) == list(range(1, 151))  # from the sequence, each drawn once
    for n, sent in enumerate(first):
        row = before[sent["intercom_id"]]
        assert (row["created_at"], row["updated_at"], row["data"]) == (ts(n), ts(n), sent["data"])

    # In one batch: a newer copy then an older copy of row 10 (the newer stays), an older copy of row 11
    # (the table's row stays), row 12 unchanged, and two new rows.
    newer = conversation(10, ts(500), title="newer")
    older_in_batch = conversation(10, ts(400), title="older")
    older_than_table = conversation(11, ts(11) - dt.timedelta(seconds=1), title="stale")
    new = [conversation(n, ts(n)) for n in (150, 151)]
    done = load_messages(
        tmp_path,
        pg_url,
        pg_schema,
        messages((STREAM_NAME, stream_schema(), [newer, older_in_batch, older_than_table, first[12], *new])),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = rows(pg_url, pg_schema)
    assert after["7010"]["title"] == "newer 10" and after["7010"]["updated_at"] == ts(500)
    assert after["7010"]["pk"] == before["7010"]["pk"]
    assert after["7011"] == before["7011"] and after["7012"] == before["7012"]
    assert sorted(after[r["intercom_id"]]["pk"] for r in new) == [151, 152]


def test_the_counters_say_what_the_upsert_did(pg_url, pg_schema):
    apply(pg_url, pg_schema)
    columns = flat_columns(stream_schema())
    assert columns is not None and Column("data", "jsonb") in columns
    upsert = Upsert(pg_schema, STREAM_NAME, columns, "intercom_id", pk_by_trigger=True)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert upsert.load(conn, [conversation(n, ts(n)) for n in range(5)]) == (5, 0)
        changed = [conversation(n, ts(n + 60), title="again") for n in range(3)]
        stale = conversation(3, ts(2))
        assert upsert.load(conn, [*changed, stale, conversation(4, ts(4)), conversation(5, ts(5))]) == (1, 3)
        # row 4 arrived unchanged: the table's trigger skips it, so it is not counted as updated
        assert conn.execute(f'SELECT count(*), max(pk) FROM "{pg_schema}".{STREAM_NAME}').fetchone() == (6, 6)


def test_text_postgresql_cannot_store_becomes_u_fffd_and_parts_stay_when_they_leave_the_payload(
    pg_url, pg_schema, tmp_path
):
    hostile = conversation(1, ts(1), title="a\x00b")
    hostile["data"]["note"] = "nul \x00 and lone \ud800 surrogate, pair \U0001f600"
    parts = [part(n, "7001", ts(n), body="x\x00y" if n == 0 else "<p>\n\ttab \\ back</p>") for n in range(3)]
    text = messages((STREAM_NAME, stream_schema(), [hostile]), (PARTS_STREAM, PARTS_SCHEMA, parts))
    assert "\\ud800" in text and "\\u0000" in text
    done = load_messages(tmp_path, pg_url, pg_schema, text)
    assert done.returncode == 0, done.stderr[-3000:]
    row = rows(pg_url, pg_schema)["7001"]
    assert row["title"] == "a\ufffdb 1"
    assert row["data"]["note"] == "nul \ufffd and lone \ufffd surrogate, pair \U0001f600"
    stored = rows(pg_url, pg_schema, PARTS_STREAM)
    assert stored["p0"]["body"] == "x\ufffdy" and stored["p0"]["data"]["body"] == "x\ufffdy"
    assert stored["p1"]["body"] == "<p>\n\ttab \\ back</p>" == stored["p1"]["data"]["body"]

    # The next payload returns only p2 (p0 and p1 are beyond the 500 most recent now): they stay.
    later = [part(2, "7001", ts(90), body="edited"), part(3, "7001", ts(91))]
    done = load_messages(tmp_path, pg_url, pg_schema, messages((PARTS_STREAM, PARTS_SCHEMA, later)))
    assert done.returncode == 0, done.stderr[-3000:]
    after = rows(pg_url, pg_schema, PARTS_STREAM)
    assert set(after) == {"p0", "p1", "p2", "p3"} and after["p0"] == stored["p0"]
    assert after["p2"]["body"] == "edited" and after["p2"]["pk"] == stored["p2"]["pk"]


def test_a_record_the_typed_decoding_refuses_is_validated_by_the_sdk_as_before(pg_url, pg_schema, tmp_path):
    bad = conversation(1, ts(1))
    bad["open"] = "yes"
    done = load_messages(tmp_path, pg_url, pg_schema, messages((STREAM_NAME, stream_schema(), [bad])))
    assert done.returncode != 0
    assert "'yes' is not of type 'boolean', 'null'" in done.stderr
    assert rows(pg_url, pg_schema) == {}

    # A record the typed decoding refuses and the SDK, not validating, takes (a field the schema does not
    # have, which target-postgres drops): loaded through the SDK's own parsing, timestamps exact all the same.
    extra = conversation(2, ts(62))
    extra["unknown"] = 1
    other = conversation(3, ts(63))
    other["created_at"] = "2024-11-03T01:03:00.000000-04:00"  # 05:03Z, New York's first 01:03
    done = load_messages(
        tmp_path, pg_url, pg_schema, messages((STREAM_NAME, stream_schema(), [extra, other])), validate_records=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert {k: v["updated_at"] for k, v in rows(pg_url, pg_schema).items()} == {"7002": ts(62), "7003": ts(63)}
    assert rows(pg_url, pg_schema)["7003"]["created_at"] == ts(63)


def test_use_copy_false_is_refused_in_one_line(pg_url, pg_schema, tmp_path):
    done = load_messages(tmp_path, pg_url, pg_schema, "", use_copy=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "target-intercom-postgres: error: configuration: use_copy must be true for the documented tables "
        "(it is False); remove the setting or set it to true"
    )


@pytest.mark.slow
def test_a_loader_killed_in_the_middle_of_a_batch_leaves_nothing_half_written_and_the_next_run_completes(
    pg_url, pg_schema, tmp_path
):
    """A backfill, then changes; the loader of a full refresh is killed (SIGKILL) while its batch waits inside its
    transaction (its upsert waits for a lock the test holds): not a row of that batch is in the table, and a run
    from the last STATE it acknowledged (none) loads everything, each conversation once, each keeping its pk."""
    config = {"sqlalchemy_url": sqlalchemy_url(pg_url), "default_target_schema": pg_schema}

    def start(state: dict | None) -> tuple[subprocess.Popen, subprocess.Popen]:
        return start_pipe(
            tmp_path, tap_config(sim), config, state or {}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def last_state(stdout: str) -> dict | None:
        states = [line for line in stdout.splitlines() if line.strip()]
        return json.loads(states[-1]) if states else None

    with IntercomSimulator(conversations=300, seed=41) as sim:
        tap, loader = start(None)
        out, err = loader.communicate(timeout=300)
        tap.wait(timeout=60)
        assert loader.returncode == 0, err[-3000:]
        backfilled, state = table_rows(pg_url, pg_schema), last_state(out)
        assert len(backfilled) == 300 and state is not None

        for conversation_id in sim.ids()[:20]:
            sim.touch(conversation_id)
        for _ in range(5):
            sim.create()
        with psycopg.connect(pg_url) as blocker, psycopg.connect(pg_url, autocommit=True) as watcher:
            tap, loader = start(None)  # a full refresh: every row in one batch, whatever the tap's lookback finds
            assert loader.stderr is not None
            for line in loader.stderr:  # the tables are applied (that needs the lock too): now hold it
                if " is ready " in line:
                    break
            blocker.execute(f'LOCK TABLE "{pg_schema}".{STREAM_NAME} IN SHARE MODE')
            deadline, waiting = time.monotonic() + 120, 0
            while not waiting and time.monotonic() < deadline:
                time.sleep(0.05)
                waiting = waiting_for_a_lock(watcher, pg_schema)
            if not waiting:
                loader.kill()
                log = loader.communicate()[1][-2000:]
                raise AssertionError(f"the loader's upsert never waited for the lock: {log}")
            loader.kill()
            killed_out = loader.communicate(timeout=60)[0]
            tap.wait(timeout=60)
            blocker.rollback()
        assert table_rows(pg_url, pg_schema) == backfilled  # not a row of the killed batch

        tap, loader = start(last_state(killed_out))
        out, err = loader.communicate(timeout=300)
        tap.wait(timeout=60)
        assert loader.returncode == 0, err[-3000:]
        truth = sim.truth()
    table = table_rows(pg_url, pg_schema)
    assert set(table) == set(truth) and all(row["data"] == truth[i] for i, row in table.items())
    assert all(table[i]["pk"] == row["pk"] for i, row in backfilled.items())
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(f'SELECT count(DISTINCT pk) FROM "{pg_schema}".{STREAM_NAME}').fetchone() == (305,)


def test_input_from_a_file_takes_the_same_path(pg_url, pg_schema, tmp_path):
    sent = [conversation(n, ts(n)) for n in range(60, 70)]
    (tmp_path / "messages.jsonl").write_text(messages((STREAM_NAME, stream_schema(), sent)))
    config = {"sqlalchemy_url": sqlalchemy_url(pg_url), "default_target_schema": pg_schema}
    done = run_loader(tmp_path, config, "--input", str(tmp_path / "messages.jsonl"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert {k: v["updated_at"] for k, v in rows(pg_url, pg_schema).items()} == {
        r["intercom_id"]: ts(n) for n, r in zip(range(60, 70), sent, strict=True)
    }


@pytest.mark.parametrize("batch_size_rows", [1, 7])
def test_batch_size_rows_still_sets_the_batches(pg_url, pg_schema, tmp_path, batch_size_rows):
    sent = [conversation(n, ts(n)) for n in range(15)]
    done = load_messages(
        tmp_path, pg_url, pg_schema, messages((STREAM_NAME, stream_schema(), sent)), batch_size_rows=batch_size_rows
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(r["pk"] for r in rows(pg_url, pg_schema).values()) == list(range(1, 16))


def test_two_batches_load_at_once_and_a_state_waits_for_the_older_one(pg_url, pg_schema, tmp_path):
    """Batch A waits for a row the test locks; batch B, read after it, commits meanwhile (two batches in flight).
    A STATE read after both is not acknowledged until A is committed too: the loader's STATE is never ahead of
    the table, whichever batch commits first."""
    existing = conversation(1, ts(1))
    done = load_messages(tmp_path, pg_url, pg_schema, messages((STREAM_NAME, stream_schema(), [existing])))
    assert done.returncode == 0, done.stderr[-3000:]
    later = [conversation(n, ts(n)) for n in range(11, 16)]
    with psycopg.connect(pg_url) as blocker, psycopg.connect(pg_url, autocommit=True) as watcher:
        blocker.execute(f"SELECT 1 FROM \"{pg_schema}\".{STREAM_NAME} WHERE intercom_id = '7001' FOR UPDATE")
        loader = FedLoader(tmp_path, pg_url, pg_schema, batch_size_rows=10)  # A: 2 rows (nothing in flight), B: 5
        loader.send(
            {"type": "SCHEMA", "stream": STREAM_NAME, "schema": stream_schema(), "key_properties": ["intercom_id"]}
        )
        loader.records(conversation(1, ts(100), title="changed"), conversation(10, ts(10)))
        loader.send({"type": "STATE", "value": {"n": 1}})
        wait_until(lambda: waiting_for_a_lock(watcher, pg_schema), "batch A to wait for the locked row")
        loader.records(*later)
        loader.send({"type": "STATE", "value": {"n": 2}})
        wait_until(lambda: len(rows(pg_url, pg_schema)) == 6, "batch B to be committed while A waits")
        loader.send({"type": "STATE", "value": {"n": 3}})  # read with A in flight, B committed
        time.sleep(1)
        assert loader.states == []  # neither STATE 1 (A's) nor 2 or 3 (A's and B's)
        assert "7010" not in rows(pg_url, pg_schema)
        blocker.rollback()
        log = loader.finish()
    assert loader.process.returncode == 0, log[-3000:]
    assert loader.states[-1] == {"n": 3}
    table = rows(pg_url, pg_schema)
    assert table["7001"]["title"] == "changed 1" and len(table) == 7


def test_a_batch_chosen_as_a_deadlocks_victim_is_loaded_again(pg_url, pg_schema, tmp_path):
    """Batch A holds row X and waits for row W, which the test holds; the test then asks for X: a deadlock, which
    PostgreSQL ends by rolling A back (A's deadlock check comes first: the test's session checks after 60 s).
    The loader loads A again once W is free, says so in a line each time, and every row lands once."""
    existing = [conversation(n, ts(n)) for n in (1, 2)]  # X = 7001, W = 7002
    done = load_messages(tmp_path, pg_url, pg_schema, messages((STREAM_NAME, stream_schema(), existing)))
    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(pg_url) as blocker, psycopg.connect(pg_url, autocommit=True) as watcher:
        blocker.execute("SET deadlock_timeout = '60s'")
        blocker.execute(f"SELECT 1 FROM \"{pg_schema}\".{STREAM_NAME} WHERE intercom_id = '7002' FOR UPDATE")
        loader = FedLoader(tmp_path, pg_url, pg_schema, env={"PGOPTIONS": "-c deadlock_timeout=3s"}, batch_size_rows=10)
        loader.send(
            {"type": "SCHEMA", "stream": STREAM_NAME, "schema": stream_schema(), "key_properties": ["intercom_id"]}
        )
        loader.records(conversation(1, ts(100), title="changed"), conversation(2, ts(100), title="changed"))
        wait_until(lambda: waiting_for_a_lock(watcher, pg_schema), "batch A to wait for W")
        blocker.execute(f"SELECT 1 FROM \"{pg_schema}\".{STREAM_NAME} WHERE intercom_id = '7001' FOR UPDATE")
        # returns once A is rolled back (its lock on X released): A now waits for W again
        blocker.rollback()
        loader.records(conversation(3, ts(3)))
        log = loader.finish()
    assert loader.process.returncode == 0, log[-3000:]
    # once, usually; again if the retry took X before the test's session did (the loader pauses to let it)
    retries = sum("met another in a deadlock; loading it again" in line for line in log.splitlines())
    assert 1 <= retries <= DEADLOCK_RETRIES, log[-3000:]
    table = rows(pg_url, pg_schema)
    assert {i: r["title"] for i, r in table.items()} == {"7001": "changed 1", "7002": "changed 2", "7003": "first 3"}
    assert sorted(r["pk"] for r in table.values()) == [1, 2, 3]
