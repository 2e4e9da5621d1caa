"""What `meltano run` prints: a backfill's log reads at a glance, a failure ends with its cause, debug is safe.

Each test reads the whole log of a real `meltano run` against the simulator and a real PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    assert_table_holds_what_was_sent,
    emitted,
    job_env,
    meltano,
    meltano_env,
    start_meltano,
    system_db,
    table_rows,
)
from tests.intercom_simulator import IntercomSimulator

PLUGINS = ("tap-intercom-conversation", "target-postgres")
# Meltano's console line: "2026-12-06T22:02:28.368513Z [info     ] name message"
LINE = re.compile(r"^\S+Z \[(?P<level>\w+) *\] (?P<name>\S+) +(?P<message>.*)$")
PER_BATCH = ("METRIC", "Inserting with SQL", "Upserted ", "is full. Current size is")


@pytest.fixture(scope="module")
def project(tmp_path_factory, meltano_project) -> Path:
    """A fresh Meltano project, its plugins installed once a session (conftest.py)."""
    return meltano_project(tmp_path_factory.mktemp("meltano-logs"))


def parsed(log: str) -> list[tuple[str, str, str]]:
    """(level, name, message) of each line that is a log line (a traceback's lines are not)."""
    return [(m["level"], m["name"], m["message"]) for line in log.splitlines() if (m := LINE.match(line))]


@pytest.mark.slow
def test_a_backfills_log_is_progress_warnings_and_one_summary_per_plugin(project, pg_url, pg_schema, tmp_path):
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=3000, seed=61, bad_data=True, rate_limit=600) as sim:  # a minute
        env.update(job_env(sim, pg_url, pg_schema))
        done = meltano(project, env, "run", "intercom-to-postgres", ok=False, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert_table_holds_what_was_sent(pg_url, pg_schema, sim, hydrated=True)
        conversations = len(sim.ids())

    lines = done.stderr.splitlines()
    log = parsed(done.stderr)
    print(f"{len(lines)} lines for a backfill of {conversations:,} conversations")
    assert len(lines) <= 40 + conversations / 1000, f"{len(lines)} lines:\n" + "\n".join(lines)
    assert len(log) == len(lines)  # every line is a log line: no traceback, no bare print
    assert not [message for _, _, message in log if message.startswith(PER_BATCH)]
    replaced = [(level, name) for level, name, message in log if "with U+FFFD" in message]
    assert replaced and set(replaced) == {("warning", "tap-intercom-conversation")}  # a warning shows as one
    assert [m for lvl, n, m in log if n == "target-postgres" and m.startswith("Load summary: ")] != []
    summary = next(m for _, n, m in log if n == "target-postgres" and m.startswith("Load summary: "))
    assert f"intercom_conversation_v1 {conversations:,} rows" in summary and summary.endswith(" s")
    assert [m for _, n, m in log if n == "tap-intercom-conversation" and m.startswith("Run summary: ")] != []
    assert emitted(done) == conversations


@pytest.mark.slow
def test_a_failed_run_ends_with_its_cause_at_error_level(project, tmp_path):
    env = meltano_env(**system_db(tmp_path))
    with IntercomSimulator(conversations=300, seed=62) as sim:
        env.update(
            TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=sim.token,
            TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
            TARGET_POSTGRES_SQLALCHEMY_URL="postgresql+psycopg://loader:s3cret-pw@127.0.0.1:1/warehouse",
        )
        done = meltano(project, env, "run", "intercom-to-postgres", ok=False, timeout=900)

    assert done.returncode != 0
    plugin_lines = [(level, message) for level, name, message in parsed(done.stderr) if name in PLUGINS]
    level, message = plugin_lines[-1]
    assert level == "error" and message.startswith("target-intercom-postgres: error: cannot connect to ")
    assert "127.0.0.1:1/warehouse" in message and "s3cret-pw" not in done.stderr


@pytest.mark.slow
def test_debug_through_meltano_shows_debug_lines_bounded_without_data_or_secrets_and_sigterm_stops_it(
    project, pg_url, pg_schema, tmp_path
):
    """`TAP_INTERCOM_CONVERSATION_LOGLEVEL=debug TARGET_POSTGRES_LOGLEVEL=debug meltano run ...`, as documented."""
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=3000, seed=63, rate_limit=500) as sim:
        env.update(
            job_env(
                sim, pg_url, pg_schema, TAP_INTERCOM_CONVERSATION_LOGLEVEL="debug", TARGET_POSTGRES_LOGLEVEL="debug"
            )
        )
        log_file = tmp_path / "run.log"
        with log_file.open("w") as stderr:
            job = start_meltano(project, env, "run", "intercom-to-postgres", stdout=subprocess.DEVNULL, stderr=stderr)
            time.sleep(40)
            stopping = time.monotonic()
            os.killpg(job.pid, signal.SIGTERM)  # what systemd or a scheduler sends to the whole job
            job.wait(timeout=60)
            stopped_after = time.monotonic() - stopping
        log = log_file.read_text()
        truth = list(sim.truth().values())[:300]
        parts = [part for c in truth for part in c["conversation_parts"]["conversation_parts"]]
        some_bodies = [part["body"] for part in parts if len(part.get("body") or "") > 20][:50]
        loaded = len(table_rows(pg_url, pg_schema))

    assert stopped_after < 10, stopped_after
    assert 0 < loaded < 3000
    lines = parsed(log)
    loader = [m for _, n, m in lines if n == "target-postgres"]
    assert [m for m in loader if m.startswith("debug: ")] != []  # debug lines do show under Meltano
    assert [m for _, n, m in lines if n == "tap-intercom-conversation" and m.startswith("debug: ")] != []
    batches = sum("Inserting with SQL" in m or "Upserted " in m for m in loader)
    assert batches and len(loader) <= 20 + 5 * batches  # a few lines per batch, never a line per record
    assert sim.token not in log and '"type":"RECORD"' not in log and '"conversation_parts"' not in log
    assert not [body for body in some_bodies if body in log]
    assert "interrupted by SIGTERM" in loader[-1]
