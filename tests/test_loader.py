"""target-intercom-postgres: the tables follow its own settings, and what cannot be right stops before loading."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.helpers import (
    PYTHON,
    STREAM,
    assert_table_is_the_truth,
    assert_the_documented_table,
    run_loader,
    sqlalchemy_url,
    table_rows,
    tap_config,
    tap_into_loader,
)
from tests.intercom_simulator import IntercomSimulator


def tap_then_loader(
    tmp_path: Path, sim: IntercomSimulator, loader_config: dict, state: str = ""
) -> subprocess.CompletedProcess:
    """tap | loader from `state` (a STATE line the loader wrote; none: an empty state file)."""
    return tap_into_loader(tmp_path, tap_config(sim), loader_config, json.loads(state) if state else {})


@pytest.mark.slow
def test_host_port_user_settings_get_the_documented_tables_in_the_configured_schema(pg_url, pg_schema, tmp_path):
    parts = urlsplit(pg_url)
    config = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "password": parts.password or "",
        "database": parts.path.lstrip("/") or "postgres",
        "default_target_schema": pg_schema,
    }
    with IntercomSimulator(conversations=120, seed=31) as sim:
        done = tap_then_loader(tmp_path, sim, config)
        assert done.returncode == 0, done.stderr[-3000:]
        assert_table_is_the_truth(pg_url, pg_schema, sim)
    assert_the_documented_table(pg_url, pg_schema)


def test_a_stream_map_that_would_bypass_the_documented_table_stops_before_loading(pg_url, pg_schema, tmp_path):
    config = {
        "sqlalchemy_url": sqlalchemy_url(pg_url),
        "default_target_schema": pg_schema,
        "stream_maps": {STREAM: {"__alias__": "conversations"}},
    }
    with IntercomSimulator(conversations=50, seed=32) as sim:
        done = tap_then_loader(tmp_path, sim, config)

    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"target-intercom-postgres: error: stream 'conversations' would be loaded into "
        f"{pg_schema}.conversations, which is not one of the documented tables"
    )
    assert errors[0].endswith("remove the stream map or alias that renames it")
    assert "Traceback" not in done.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema}".conversations',)).fetchone() == (None,)
    assert table_rows(pg_url, pg_schema) == {}


def test_settings_the_documented_table_cannot_take_are_refused_in_one_line(pg_url, pg_schema, tmp_path):
    config = {
        "sqlalchemy_url": sqlalchemy_url(pg_url),
        "default_target_schema": pg_schema,
        "add_record_metadata": "true",
    }
    done = run_loader(tmp_path, config, input="", timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "target-intercom-postgres: error: configuration: add_record_metadata must be false for the documented "
        "tables (it is True); remove the setting or set it to false"
    )


def test_without_the_postgres_extra_the_loader_and_the_utility_say_so_in_one_line():
    for module, program in (("target", "target-intercom-postgres"), ("table", "intercom-conversation-table")):
        done = subprocess.run(
            [PYTHON, "-c", f"import sys; sys.modules['psycopg'] = None; import target_intercom_postgres.{module}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr == f"{program}: psycopg is missing: install tap-intercom-conversation[postgres]\n"


@pytest.mark.slow
def test_an_empty_workspace_resumes_but_an_emptied_table_with_a_bookmark_stops(pg_url, pg_schema, tmp_path):
    config = {"sqlalchemy_url": sqlalchemy_url(pg_url), "default_target_schema": pg_schema}
    with IntercomSimulator(conversations=0, seed=33) as empty:
        first = tap_then_loader(tmp_path, empty, config)
        assert first.returncode == 0, first.stderr[-3000:]
        state = first.stdout.strip().splitlines()[-1]
        assert json.loads(state)["bookmarks"][STREAM]["replication_key_value"]
        again = tap_then_loader(tmp_path, empty, config, state)  # nothing there: a bookmark and an empty table
        assert again.returncode == 0, again.stderr[-3000:]

    with IntercomSimulator(conversations=40, seed=34) as sim:
        loaded = tap_then_loader(tmp_path, sim, config)
        assert loaded.returncode == 0 and len(table_rows(pg_url, pg_schema)) == 40
        with psycopg.connect(pg_url) as conn:
            conn.execute(f'TRUNCATE "{pg_schema}".{STREAM}')
        stopped = tap_then_loader(tmp_path, sim, config, loaded.stdout.strip().splitlines()[-1])
    assert stopped.returncode == 1
    assert "is empty, but the tap resumes from a bookmark" in stopped.stderr and "--full-refresh" in stopped.stderr
    assert table_rows(pg_url, pg_schema) == {}


@pytest.mark.slow
def test_a_database_that_cannot_be_reached_is_one_line_without_the_password(tmp_path):
    config = {"sqlalchemy_url": "postgresql+psycopg://loader:s3cr%40t-pw@127.0.0.1:1/db", "default_target_schema": "x"}
    done = run_loader(tmp_path, config, input="", timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("target-intercom-postgres: error: cannot connect to postgresql://loader:***@127.0.0.1:1/db")
    assert "s3cr" not in done.stderr and "Traceback" not in done.stderr
