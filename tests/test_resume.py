"""Runs killed (SIGKILL) at several points, tap or target, then resumed: nothing lost, nothing twice.

The test sits between the tap and target-postgres and forwards the tap's stdout line by line, so it
can kill either process at a chosen record. What a resumed run starts from is what a scheduler
keeps: the last STATE the *target* emitted (target-postgres emits it when it has loaded everything
before it), or, when the target emitted none, the state the killed run started from.

After every interruption, the state the target acknowledged never runs ahead of what it loaded: every
conversation updated before its bookmark is in the table at that version. After the last, complete
run the table equals the simulator's truth: every conversation once, pk unique, data equal.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from singer_sdk.singerlib import RecordMessage, StateMessage

from tap_intercom_conversation.writer import WholeLineWriter
from tests.helpers import (
    ERROR_PREFIX,
    PARTS,
    STREAM,
    TARGET_POSTGRES,
    TapRun,
    apply_table,
    assert_fails_with_one_line,
    assert_state_never_ahead,
    start_loader,
    start_tap,
    table_rows,
    tap_config,
    target_config,
    truth_parts,
    unexpected_lines,
)
from tests.intercom_simulator import IntercomSimulator

# A conversation's RECORD line (the parts stream's records come before it, see parts.py).
CONVERSATION_RECORD = f'{{"type":"RECORD","stream":"{STREAM}"'.encode()


@dataclass
class Interrupted:
    tap_returncode: int | None
    tap_stderr: str
    target_state: dict | None  # the last STATE the target emitted, if any
    records_forwarded: int


def pipe_and_kill(
    pg_url: str, schema: str, config: dict, state: dict | None, *, kill: str, after_records: int | None = None
) -> Interrupted:
    """tap | (this test) | target-postgres, killing one of them as `kill` says.

    kill="tap": SIGKILL the tap when `after_records` conversation records have been forwarded.
    kill="target": SIGKILL the target at that point; the tap then finds its output closed.
    kill="tap-after-last-record": let the tap finish but forward nothing after its last record, as
    if it had been killed between that record and its final STATE.
    kill="none": a complete run.
    """
    apply_table(pg_url, schema)
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder)
        with (
            open(files / "tap.err", "w+") as tap_err,
            open(files / "target.out", "w+") as target_out,
            open(files / "target.err", "w+") as target_err,
        ):
            tap = start_tap(files, config, state, stderr=tap_err)
            target = start_loader(
                files,
                target_config(pg_url, schema),
                loader=TARGET_POSTGRES,
                stdin=subprocess.PIPE,
                stdout=target_out,
                stderr=target_err,
            )
            assert tap.stdout is not None and target.stdin is not None
            lines = list(tap.stdout) if kill == "tap-after-last-record" else tap.stdout
            if kill == "tap-after-last-record":
                last_record = max(i for i, line in enumerate(lines) if line.startswith(b'{"type":"RECORD"'))
                lines = lines[: last_record + 1]
            forwarded = 0
            for line in lines:
                if after_records is not None and forwarded == after_records and kill in {"tap", "target"}:
                    if kill == "tap":
                        os.kill(tap.pid, signal.SIGKILL)
                    else:
                        os.kill(target.pid, signal.SIGKILL)
                        target.wait(timeout=30)
                    break
                try:
                    target.stdin.write(line)
                    target.stdin.flush()
                except BrokenPipeError:
                    break
                forwarded += line.startswith(CONVERSATION_RECORD)
            tap.stdout.close()  # a tap still writing now finds its output closed, as with a dead target
            if kill in {"tap", "tap-after-last-record"} and tap.poll() is None:
                os.kill(tap.pid, signal.SIGKILL)
            tap.wait(timeout=120)
            if target.poll() is None:
                target.stdin.close()  # end of input: the target loads what it has and emits its STATE
                target.wait(timeout=120)
            if kill == "none":
                assert tap.returncode == 0 and target.returncode == 0, target_err.read()[-2000:]
            tap_err.seek(0)
            target_out.seek(0)
            states = [json.loads(line) for line in target_out.read().splitlines() if line.strip()]
            return Interrupted(tap.returncode, tap_err.read(), states[-1] if states else None, forwarded)


def table(pg_url: str, schema: str) -> tuple[dict[str, dict], int, int]:
    with psycopg.connect(pg_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f'SELECT * FROM "{schema}".{STREAM}')
        rows = cur.fetchall()
    return {row["intercom_id"]: row for row in rows}, len(rows), len({row["pk"] for row in rows})


def assert_no_duplicates(pg_url: str, schema: str) -> dict[str, dict]:
    rows, count, pks = table(pg_url, schema)
    assert count == len(rows), f"{count - len(rows)} duplicate intercom_id rows"
    assert pks == count, "duplicate pk"
    return rows


def assert_acknowledged_state_not_ahead(sim: IntercomSimulator, rows: dict[str, dict], state: dict | None) -> None:
    """Everything updated before the acknowledged bookmark is loaded, at its current version."""
    value = (state or {}).get("bookmarks", {}).get(STREAM, {}).get("replication_key_value")
    if value is None:
        return
    bookmark = int(dt.datetime.fromisoformat(value).timestamp())
    truth = sim.truth()
    behind = [
        i
        for i, payload in truth.items()
        if payload["updated_at"] < bookmark
        and (i not in rows or int(rows[i]["updated_at"].timestamp()) != payload["updated_at"])
    ]
    assert not behind, f"the target acknowledged {value} without {len(behind)} conversations, e.g. {behind[:3]}"


@pytest.mark.slow
def test_kills_at_several_points_then_a_resumed_run_converge(pg_url, pg_schema):
    with IntercomSimulator(conversations=450, seed=31) as sim:
        config = tap_config(sim, max_concurrent_requests=8)
        acknowledged: dict | None = None  # what a scheduler would pass to the next run

        # 1. The tap dies mid-hydration, after its first STATE (150 records) and 10 more records.
        first = pipe_and_kill(pg_url, pg_schema, config, acknowledged, kill="tap", after_records=160)
        assert first.tap_returncode == -signal.SIGKILL and first.records_forwarded == 160
        assert first.target_state is not None, "the target should acknowledge the STATE after 150 records"
        acknowledged = first.target_state
        rows = assert_no_duplicates(pg_url, pg_schema)
        assert len(rows) == 160
        assert_acknowledged_state_not_ahead(sim, rows, acknowledged)

        # Conversations change between runs: some already loaded, some not yet.
        by_position = sim.ids()
        for conversation_id in (by_position[5], by_position[100], by_position[300], by_position[-1]):
            sim.touch(conversation_id)

        # 2. The target dies mid-run: it acknowledged nothing, and the tap stops on its closed output.
        second = pipe_and_kill(pg_url, pg_schema, config, acknowledged, kill="target", after_records=100)
        assert second.target_state is None
        assert second.tap_returncode == 1
        errors = [line for line in second.tap_stderr.splitlines() if line.startswith(ERROR_PREFIX)]
        assert errors == [f"{ERROR_PREFIX}the output was closed (the target stopped reading)"], errors
        assert "Traceback" not in second.tap_stderr and not unexpected_lines(second.tap_stderr)
        rows = assert_no_duplicates(pg_url, pg_schema)
        assert_acknowledged_state_not_ahead(sim, rows, acknowledged)

        # 3. The tap dies before its first record.
        third = pipe_and_kill(pg_url, pg_schema, config, acknowledged, kill="tap", after_records=0)
        acknowledged = third.target_state or acknowledged
        rows = assert_no_duplicates(pg_url, pg_schema)
        assert_acknowledged_state_not_ahead(sim, rows, acknowledged)

        # 4. The tap dies after its last record, before its final STATE.
        fourth = pipe_and_kill(pg_url, pg_schema, config, acknowledged, kill="tap-after-last-record")
        assert fourth.records_forwarded > 0
        acknowledged = fourth.target_state or acknowledged
        rows = assert_no_duplicates(pg_url, pg_schema)
        assert_acknowledged_state_not_ahead(sim, rows, acknowledged)
        assert set(rows) == set(sim.ids())

        # 5. A complete run from what the target last acknowledged: the table is complete and current.
        sim.touch(by_position[200])
        last = pipe_and_kill(pg_url, pg_schema, config, acknowledged, kill="none")
        assert last.target_state is not None
        rows = assert_no_duplicates(pg_url, pg_schema)
        truth = sim.truth()
        assert set(rows) == set(truth)
        stale = [
            i
            for i, payload in truth.items()
            if rows[i]["data"] != payload or int(rows[i]["updated_at"].timestamp()) != payload["updated_at"]
        ]
        assert stale == []
        parts = table_rows(pg_url, pg_schema, PARTS)  # and every part of every conversation, once
        assert {i: (r["conversation_intercom_id"], r["data"]) for i, r in parts.items()} == truth_parts(sim)


@pytest.mark.parametrize(
    ("conversations", "settings"),
    [
        (450, {"max_concurrent_requests": 4}),  # GETs in flight
        (3000, {"include_conversation_parts": False}),  # spans searched at once
    ],
    ids=["hydrating", "search-only"],
)
def test_sigterm_stops_the_tap_with_a_state_that_covers_only_what_it_emitted(conversations, settings):
    """What a scheduler sends first: the tap writes its STATE so far and exits 143 (not 0) with one line."""
    with (
        IntercomSimulator(conversations=conversations, seed=32, latency_ms=10) as sim,
        tempfile.TemporaryDirectory() as folder,
    ):
        with (Path(folder) / "tap.err").open("w+b") as tap_err:
            tap = start_tap(Path(folder), tap_config(sim, **settings), stderr=tap_err)
            assert tap.stdout is not None
            lines: list[bytes] = []
            for line in tap.stdout:
                lines.append(line)
                if sum(item.startswith(b'{"type":"RECORD"') for item in lines) == 170:
                    tap.send_signal(signal.SIGTERM)
                    break
            rest = tap.stdout.read()  # the same buffered reader: what it read ahead is not lost
            tap.wait(timeout=120)
            tap_err.seek(0)
            stderr = tap_err.read()
        run = TapRun(tap.returncode, b"".join(lines).decode() + rest.decode(), stderr.decode())
        run.messages = [json.loads(line) for line in run.stdout.splitlines()]
        updated = {i: sim.search_row(i)["updated_at"] for i in sim.ids()}

    assert_fails_with_one_line(run, "interrupted by SIGTERM", returncode=143)
    assert run.messages[-1]["type"] == "STATE"  # the state so far, the last thing written
    assert_state_never_ahead(run, updated)


def test_records_leave_in_blocks_and_a_state_never_before_the_records_it_covers(monkeypatch):
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
    writer = WholeLineWriter()
    record = {"intercom_id": "1", "data": {"body": "x" * 1000}}

    for _ in range(10):
        writer.write_message(RecordMessage(stream=STREAM, record=record))
    assert out.getvalue() == b""  # 10 KB of records wait for more, or for a STATE
    writer.write_message(StateMessage(value={"bookmarks": {}}))
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["RECORD"] * 10 + ["STATE"]

    for _ in range(70):  # past 64 KB: written without waiting for a STATE
        writer.write_message(RecordMessage(stream=STREAM, record=record))
    assert len(out.getvalue().splitlines()) > len(lines)
    assert all(json.loads(line) for line in out.getvalue().splitlines())  # whole lines only


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe capacities are Linux's")
def test_a_pipe_on_stdout_is_widened_so_the_tap_runs_ahead_while_the_target_commits_a_batch():
    if int(Path("/proc/sys/fs/pipe-max-size").read_text()) < WholeLineWriter.PIPE_BYTES:
        pytest.skip("this machine caps pipes below 1 MB")
    with IntercomSimulator(conversations=20, seed=5) as sim, tempfile.TemporaryDirectory() as folder:
        tap = start_tap(Path(folder), tap_config(sim), stderr=subprocess.DEVNULL)
        assert tap.stdout is not None
        first = tap.stdout.readline()  # written after the writer widened the pipe
        capacity = fcntl.fcntl(tap.stdout.fileno(), fcntl.F_GETPIPE_SZ)
        rest = tap.stdout.read()
        tap.wait(timeout=120)

    assert json.loads(first)["type"] == "SCHEMA"
    assert capacity == WholeLineWriter.PIPE_BYTES
    assert tap.returncode == 0
    assert rest.count(CONVERSATION_RECORD) == 20
