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

import psycopg
import pytest

from tests.helpers import (
    PARTS,
    STATE_ID,
    apply_table,
    assert_table_holds_what_was_sent,
    assert_table_is_the_truth,
    emitted,
    job_env,
    meltano,
    meltano_env,
    revoked_after,
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


def loaders_last_word(log: str) -> tuple[str, str]:
    """(level, message) of the plugins' last line above info, which must be the loader's.

    When the loader exits first, Meltano stops the tap a moment later (0.3 s here, more under load); a
    progress line the tap logs in between may follow, but nothing above info and nothing from the loader.
    """
    lines = [line for line in parsed(log) if line[1] in PLUGINS]
    last = max(i for i, (level, _, _) in enumerate(lines) if level != "info")
    level, name, message = lines[last]
    assert name == "target-postgres", lines[last:]
    assert {name for _, name, _ in lines[last + 1 :]} <= {"tap-intercom-conversation"}, lines[last:]
    return level, message


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


def run(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`meltano run intercom-to-postgres`, which may fail."""
    return meltano(project, env, "run", "intercom-to-postgres", ok=False, timeout=900)


@pytest.mark.slow
def test_a_tap_that_fails_mid_run_ends_the_run_with_its_cause_after_the_loaders_summary(
    project, pg_url, pg_schema, tmp_path
):
    """Meltano closes the loader's input only after the tap exited: the tap's error line comes before the
    loader's summary, so the loader repeats it last (handed over in the tap's last STATE, never stored)."""
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=1000, seed=64) as sim:
        env.update(job_env(sim, pg_url, pg_schema))
        sim.on_request = revoked_after(600)
        failed = run(project, env)
        loaded = len(table_rows(pg_url, pg_schema))
        state_after_failure = meltano(project, env, "state", "get", STATE_ID).stdout
        sim.on_request = None
        resumed = run(project, env)  # the token works again: the next run loses and duplicates nothing
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_table_is_the_truth(pg_url, pg_schema, sim)

    assert failed.returncode != 0 and "Extractor failed" in failed.stderr
    plugin_lines = [(level, name, message) for level, name, message in parsed(failed.stderr) if name in PLUGINS]
    tap_error = "Intercom rejected the access token (401 on GET /conversations/"
    assert [m for lvl, n, m in plugin_lines if n == PLUGINS[0] and lvl == "error" and tap_error in m] != []
    *_, (summary_level, summary_name, summary), (level, name, message) = plugin_lines
    assert (summary_level, summary_name) == ("info", "target-postgres") and summary.startswith("Load summary: ")
    assert (level, name) == ("error", "target-postgres")
    assert message.startswith("target-intercom-postgres: the extractor failed: " + tap_error)
    assert "check access_token" in message
    assert 0 < loaded < 1000 and f"intercom_conversation_v1 {loaded:,} rows" in summary  # what it sent is committed
    assert "extractor_failed" not in state_after_failure  # Meltano stored the STATE's value only
    assert sim.token not in failed.stderr + resumed.stderr


@pytest.mark.slow
def test_a_tap_that_fails_before_its_first_request_ends_the_run_with_its_cause(project, pg_url, pg_schema, tmp_path):
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=10, seed=65) as sim:
        env.update(job_env(sim, pg_url, pg_schema, TAP_INTERCOM_CONVERSATION_MAX_CONCURRENT_REQUESTS="5000"))
        done = run(project, env)
        assert sim.stats["requests"] == 0

    assert done.returncode != 0
    level, name, message = [line for line in parsed(done.stderr) if line[1] in PLUGINS][-1]
    assert (level, name) == ("error", "target-postgres")
    assert message.startswith("target-intercom-postgres: the extractor failed: configuration: max_concurrent_requests")


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
    level, message = loaders_last_word(done.stderr)
    assert level == "error" and message.startswith("target-intercom-postgres: error: cannot connect to ")
    assert "127.0.0.1:1/warehouse" in message and "s3cret-pw" not in done.stderr


@pytest.mark.slow
def test_a_loader_that_fails_mid_run_ends_the_run_with_its_cause(project, pg_url, pg_schema, tmp_path):
    """The loader's line is the last error (the tap's closed output is not even a line: debug under Meltano)."""
    apply_table(pg_url, pg_schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a table that refuses every part: its first batch fails
        conn.execute(f'ALTER TABLE "{pg_schema}".{PARTS} ADD CONSTRAINT refuses_parts CHECK (false) NOT VALID')
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=3000, seed=66, rate_limit=600) as sim:  # a minute: the tap is mid-run
        env.update(job_env(sim, pg_url, pg_schema))
        done = run(project, env)
        conversations_requested = sim.stats["by_route"].get("retrieve", 0)

    assert done.returncode != 0  # Meltano says why in a BrokenPipeError traceback of its own (meltano#7047)
    assert 0 < conversations_requested < 3000
    level, message = loaders_last_word(done.stderr)
    assert level == "error"
    server = psycopg.conninfo.conninfo_to_dict(pg_url)
    where = f"{server.get('host') or 'localhost'}:{server.get('port') or 5432}/{server.get('dbname')}"
    assert message.startswith(f"target-intercom-postgres: error: loading {pg_schema}.{PARTS} into {where} failed: ")
    assert 'violates check constraint "refuses_parts"' in message


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
    tap = [m for _, n, m in lines if n == "tap-intercom-conversation"]
    summary = next(m for m in tap if m.startswith("Run summary: "))
    conversations = int(summary.split("Run summary: ")[1].split(" emitted")[0].replace(",", ""))
    print(f"at debug, {len(tap)} tap lines and {len(loader)} loader lines for {conversations:,} conversations")
    assert conversations >= 1000 and len(tap) <= 30 + 10 * conversations / 1000  # never a line per request
    assert [m for m in tap if "METRIC" in m] != [] and not [m for m in tap if "http_request_duration" in m]
    assert sim.token not in log and '"type":"RECORD"' not in log and '"conversation_parts"' not in log
    assert not [body for body in some_bodies if body in log]
    assert "interrupted by SIGTERM" in loader[-1]
