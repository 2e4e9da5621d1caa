"""The loader commits at least every 30 s and after each full batch, and acknowledges exactly what it committed.

A killed run then redoes at most 30 s of work: Meltano (or whatever reads the loader's stdout) keeps the
latest STATE the loader wrote, and that STATE is never ahead of the table. SIGTERM stops the loader
within seconds, after committing what it read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from target_intercom_postgres.acknowledge import CommitLedger
from tests.helpers import (
    STREAM,
    apply_table,
    assert_table_is_the_truth,
    emitted,
    job_env,
    meltano_run,
    persisted_bookmark,
    revoked_after,
    start_loader,
    start_meltano,
    start_tap,
    system_db,
    table_rows,
    tap_config,
    tap_into_loader,
    target_config,
)
from tests.intercom_simulator import IntercomSimulator


@dataclass
class FakeSink:
    read: int = 0
    current_size: int = 0

    def take(self, count: int) -> None:
        self.read += count
        self.current_size += count

    def commit(self) -> None:
        self.current_size = 0


def test_a_state_is_acknowledged_once_every_record_read_before_it_is_committed():
    conversations, parts = FakeSink(), FakeSink()
    ledger = CommitLedger(lambda sink: sink.read)
    conversations.take(10)
    parts.take(100)
    ledger.read({"n": 1}, [conversations, parts])
    parts.take(50)
    conversations.take(5)
    ledger.read({"n": 2}, [conversations, parts])

    parts.commit()  # a full batch of parts: the conversations before either STATE are not committed yet
    assert ledger.covered() is None
    conversations.take(7)  # read after both STATEs
    conversations.commit()
    assert ledger.covered() == (2, {"n": 2})  # the newest covered, the older one with it
    assert ledger.covered() is None and len(ledger) == 0
    ledger.read({"n": 3}, [conversations, parts])  # nothing uncommitted: covered at once
    assert ledger.covered() == (3, {"n": 3})


def bookmark_seconds(state: dict) -> int | None:
    value = state.get("bookmarks", {}).get(STREAM, {}).get("replication_key_value")
    return int(dt.datetime.fromisoformat(value).timestamp()) if value else None


def missing_before(sim: IntercomSimulator, pg_url: str, schema: str, bookmark: int) -> list[str]:
    """Conversations updated before `bookmark` that the table does not hold (at that version or newer)."""
    rows = table_rows(pg_url, schema)
    return [
        i
        for i, payload in sim.truth().items()
        if payload["updated_at"] < bookmark
        and (i not in rows or int(rows[i]["updated_at"].timestamp()) < payload["updated_at"])
    ]


@pytest.mark.slow
def test_the_loader_acknowledges_during_the_run_never_ahead_of_the_table_and_stops_on_sigterm(pg_url, pg_schema):
    """A plain Singer pipe, rate-limited so that it runs for a minute: STATE lines arrive on the loader's
    stdout while it runs, at most 30 s apart, each covered by the table when it arrives; SIGTERM then
    stops the loader within 10 s with exit 143, after a STATE that covers what it committed."""
    with IntercomSimulator(conversations=3000, seed=41, rate_limit=300) as sim, tempfile.TemporaryDirectory() as folder:
        files = Path(folder)
        started = time.monotonic()
        tap = start_tap(files, tap_config(sim), stderr=subprocess.DEVNULL)
        with open(files / "target.err", "w+") as target_err:
            loader = start_loader(
                files,
                target_config(pg_url, pg_schema),
                stdin=tap.stdout,
                stdout=subprocess.PIPE,
                stderr=target_err,
                text=True,
            )
            assert tap.stdout is not None and loader.stdout is not None
            tap.stdout.close()
            arrivals: list[tuple[float, dict, list[str]]] = []
            for line in loader.stdout:
                state = json.loads(line)
                bookmark = bookmark_seconds(state)
                missing = missing_before(sim, pg_url, pg_schema, bookmark) if bookmark else []
                arrivals.append((time.monotonic() - started, state, missing))
                if len(arrivals) == 2:
                    break
            stopping = time.monotonic()
            loader.send_signal(signal.SIGTERM)
            rest = loader.stdout.read()
            loader.wait(timeout=30)
            stopped_after = time.monotonic() - stopping
            tap.wait(timeout=60)
            target_err.seek(0)
            log = target_err.read()

        assert [missing for _, _, missing in arrivals] == [[], []]  # never ahead of the table
        # the first after both programs started (slow on a loaded machine), then at most 30 s apart
        assert arrivals[0][0] < 90 and arrivals[1][0] - arrivals[0][0] < 30, [a for a, _, _ in arrivals]
        assert loader.returncode == 143 and stopped_after < 10, (loader.returncode, stopped_after)
        last = json.loads(rest.splitlines()[-1]) if rest.strip() else arrivals[-1][1]
        assert missing_before(sim, pg_url, pg_schema, bookmark_seconds(last) or 0) == []
        lines = log.splitlines()
        assert "interrupted by SIGTERM" in lines[-1] and "target-intercom-postgres: error:" in lines[-1]
        assert any("Load summary: " in line for line in lines)
        assert "Traceback" not in log


@pytest.fixture(scope="module")
def project(tmp_path_factory, meltano_project) -> Path:
    """A fresh Meltano project: the repository's meltano.yml and tap, installed once a session (conftest.py)."""
    return meltano_project(tmp_path_factory.mktemp("meltano-kill"))


@pytest.mark.slow
def test_a_meltano_run_killed_75_s_into_a_backfill_redoes_at_most_30_s_of_work(project, pg_url, pg_schema, tmp_path):
    """SIGKILL to meltano, the tap and the loader at once; `meltano run --force` then fetches only what was
    not committed, plus at most 30 s of the rate limit's worth."""
    conversations, calls_per_10_s = 4000, 400
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=conversations, seed=42, rate_limit=calls_per_10_s) as sim:
        env.update(job_env(sim, pg_url, pg_schema))
        job = start_meltano(
            project, env, "run", "intercom-to-postgres", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(75)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
        committed = len(table_rows(pg_url, pg_schema))
        assert persisted_bookmark(tmp_path / "meltano.db"), "Meltano stored no STATE during the run"
        assert 0 < committed < conversations
        sim.reset_stats()

        resumed = meltano_run(project, env, "--force")
        fetched = sim.stats["by_route"]["retrieve"]
        assert_table_is_the_truth(pg_url, pg_schema, sim)

    thirty_seconds_worth = 30 * calls_per_10_s // 10
    print(
        f"killed at 75 s: {committed} committed; the resumed run fetched {fetched} "
        f"(not committed: {conversations - committed}, +{fetched - (conversations - committed)})"
    )
    assert emitted(resumed) == fetched
    assert fetched <= conversations - committed + thirty_seconds_worth


def test_sigterm_between_messages_stops_a_quiet_loader_at_once(pg_url, pg_schema):
    """The loader waiting on its input (the tap waits for the rate limit) is stopped by SIGTERM at once."""
    with tempfile.TemporaryDirectory() as folder:
        loader = start_loader(
            Path(folder),
            target_config(pg_url, pg_schema),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert loader.stdin is not None
        assert loader.stdout is not None
        loader.stdin.write(json.dumps({"type": "STATE", "value": {"bookmarks": {}}}) + "\n")
        loader.stdin.flush()
        acknowledged = loader.stdout.readline()  # nothing to commit: acknowledged at once
        time.sleep(1)  # the loader is blocked on its input
        stopping = time.monotonic()
        loader.send_signal(signal.SIGTERM)
        out, err = loader.communicate(timeout=30)
        elapsed = time.monotonic() - stopping

    assert loader.returncode == 143 and elapsed < 10
    assert json.loads(acknowledged) == {"bookmarks": {}} and out == ""  # acknowledged once
    assert err.splitlines()[-1].endswith(
        "interrupted by SIGTERM; every record read was committed and its STATE acknowledged"
    )


def loader_logs_of_two_runs(pg_url: str, schema: str, conversations: int, seed: int) -> list[str]:
    """tap | loader twice from no state on one simulator (the second loads the same conversations again):
    the loader's stderr of each run."""
    with IntercomSimulator(conversations=conversations, seed=seed) as sim, tempfile.TemporaryDirectory() as folder:
        logs = []
        for _ in range(2):
            done = tap_into_loader(Path(folder), tap_config(sim), target_config(pg_url, schema))
            assert done.returncode == 0, done.stderr[-2000:]
            logs.append(done.stderr)
    return logs


def test_a_state_that_resumes_nothing_on_a_table_with_rows_is_one_warning(pg_url, pg_schema):
    logs = loader_logs_of_two_runs(pg_url, pg_schema, conversations=30, seed=43)
    warning = f"{pg_schema}.{STREAM} has rows, but the tap resumes from no bookmark"
    assert warning not in logs[0]
    assert [line for line in logs[1].splitlines() if warning in line and "| WARNING" in line] != []
    assert logs[1].count(warning) == 1


def test_the_load_summary_counts_rows_the_table_already_held_as_unchanged(pg_url, pg_schema):
    """Loading the same conversations again inserts and updates nothing: the summary's counts still add up."""
    logs = loader_logs_of_two_runs(pg_url, pg_schema, conversations=40, seed=46)
    summaries = [next(line for line in log.splitlines() if "Load summary: " in line) for log in logs]
    assert f"{STREAM} 40 rows (40 inserted, 0 updated)" in summaries[0] and "unchanged" not in summaries[0]
    assert f"{STREAM} 40 rows (0 inserted, 0 updated, 40 unchanged)" in summaries[1]


def test_a_batch_the_database_refuses_is_one_line_naming_table_host_port_and_database(pg_url, pg_schema):
    apply_table(pg_url, pg_schema)
    with psycopg.connect(pg_url) as conn:
        conn.execute(f'ALTER TABLE "{pg_schema}".{STREAM} ADD CONSTRAINT refuses_all CHECK (false) NOT VALID')
    with IntercomSimulator(conversations=60, seed=44) as sim, tempfile.TemporaryDirectory() as folder:
        done = tap_into_loader(Path(folder), tap_config(sim), target_config(pg_url, pg_schema))
        bodies = [c["source"]["body"] for c in sim.truth().values() if len(c["source"].get("body") or "") > 20]

    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname')}"
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"target-intercom-postgres: error: loading {pg_schema}.{STREAM} into {where} failed: ")
    assert 'violates check constraint "refuses_all"' in last
    assert not [body for body in bodies if body in done.stderr]  # the refused row is not in the log


def test_a_tap_that_fails_mid_run_is_the_loaders_last_line_and_never_in_a_state_it_acknowledges(pg_url, pg_schema):
    """`tap | loader` with Intercom refusing the token mid-run: the loader commits what it read, exits 0, ends with
    the tap's line; the STATE carrying that line is not a state to it."""
    with IntercomSimulator(conversations=400, seed=45) as sim, tempfile.TemporaryDirectory() as folder:
        sim.on_request = revoked_after(250)
        done = tap_into_loader(Path(folder), tap_config(sim), target_config(pg_url, pg_schema))
        loaded = len(table_rows(pg_url, pg_schema))

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1].startswith(
        "target-intercom-postgres: the extractor failed: Intercom rejected the access token (401 on GET /conversations/"
    )
    acknowledged = [json.loads(line) for line in done.stdout.splitlines()]
    assert "extractor_failed" not in done.stdout and all("bookmarks" in state for state in acknowledged)
    assert acknowledged[-1]["bookmarks"][STREAM]["replication_key_value"]  # the last STATE before the failure
    assert 0 < loaded < 400
