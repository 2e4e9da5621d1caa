"""intercom-conversation-verify against a table loaded by the real tap and target-postgres, damaged behind their back.

The simulator serves Intercom over HTTP and counts every request by route: verifying costs search pages
only (about one per 150 conversations), never a GET per conversation.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.intercom_simulator import IntercomSimulator
from tests.pipeline import STREAM, load, table_rows, tap_config
from tests.postgres import sqlalchemy_url
from tests.test_meltano import MELTANO, _env, project  # noqa: F401  # project: the Meltano project fixture
from tests.tools import tool

VERIFY = tool("dev", "intercom-conversation-verify")
PROG = "intercom-conversation-verify"


def run_verify(
    tmp_path: Path, config: dict | None, pg_url: str, schema: str, *args: str, config_text: str | None = None
) -> subprocess.CompletedProcess:
    path = tmp_path / "tap-config.json"
    path.write_text(config_text if config_text is not None else json.dumps(config))
    return subprocess.run(
        [VERIFY, "--config", str(path), "--database-url", sqlalchemy_url(pg_url), "--schema", schema, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def classes(stdout: str) -> dict[str, set[str]]:
    """Each class's ids from the report's lines (the first report when --repair printed two)."""
    found: dict[str, set[str]] = {}
    for label in ("Missing", "Stale", "Not in Intercom", "Parts"):
        line = next(line for line in stdout.splitlines() if line.startswith(f"{label}: "))
        shown = line.split(": ", 2)[2] if line.count(": ") >= 2 else ""
        found[label] = set(re.findall(r"(?:^|, )(\w+)", re.sub(r" \([^)]*\)", "", shown)))
    return found


def after_cutoff(stdout: str) -> int:
    """Conversations the report says were updated after the cut-off (not compared)."""
    return int(re.search(r"; ([\d,]+) updated since are not", stdout)[1].replace(",", ""))


def totals(stdout: str) -> str:
    return [line for line in stdout.splitlines() if line.startswith("Totals: ")][-1]


def damage(pg_url: str, schema: str, sim: IntercomSimulator) -> dict[str, list[str]]:
    """Behind the tap's back: rows deleted, rows made older with the triggers off, rows Intercom never had."""
    ids = sim.ids()[:-5]  # not the newest: they set the cut-off
    table = f'"{schema}".{STREAM}'
    damaged = {"Missing": ids[10:13], "Stale": ids[40:42], "Not in Intercom": ["7", "8"]}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE intercom_id = ANY(%s)", (damaged["Missing"],))
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute(
            f"UPDATE {table} SET updated_at = updated_at - interval '1 day' WHERE intercom_id = ANY(%s)",
            (damaged["Stale"],),
        )
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        conn.execute(
            f"INSERT INTO {table} (intercom_id, updated_at, data) VALUES "
            "('7', '2025-01-01T00:00:00Z', '{\"id\": \"7\"}'), ('8', NULL, '{}')"
        )
    return damaged


def drop_parts(pg_url: str, schema: str, conversation_id: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE \"{schema}\".{STREAM} SET data = jsonb_set(data, '{{conversation_parts,conversation_parts}}', "
            "(data #> '{conversation_parts,conversation_parts}') - 0) WHERE intercom_id = %s",
            (conversation_id,),
        )


def assert_no_secret(done: subprocess.CompletedProcess, sim: IntercomSimulator) -> None:
    assert sim.token not in done.stdout + done.stderr


@pytest.mark.slow
def test_verify_names_each_damage_and_repair_makes_the_hydrated_table_match(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=1000, seed=21) as sim:
        config = tap_config(sim, include_conversation_parts=True, max_concurrent_requests=8)
        load(pg_url, pg_schema, config)

        sim.reset_stats()
        clean = run_verify(tmp_path, config, pg_url, pg_schema)
        assert clean.returncode == 0, clean.stderr[-3000:]
        assert totals(clean.stdout).endswith("the table matches"), clean.stdout
        assert "Progress verify listing: 1,000 of 1,000 conversations (100.0 %)" in clean.stderr
        assert sim.stats["by_route"]["retrieve"] == 0
        clean_searches = sim.stats["by_route"]["search"]
        assert math.ceil(1000 / 150) <= clean_searches <= math.ceil(1000 / 150) + 8, sim.stats

        # A change after the last load is past the cut-off (the newest row the table holds): not stale.
        sim.touch(sim.ids()[100])
        damaged = damage(pg_url, pg_schema, sim)
        parts_table = f'"{pg_schema}".intercom_conversation_part_v1'
        with psycopg.connect(pg_url, autocommit=True) as conn:  # the lost conversations' parts go too
            conn.execute(f"DELETE FROM {parts_table} WHERE conversation_intercom_id = ANY(%s)", (damaged["Missing"],))
        with_parts = sim.ids()[200]
        assert sim.conversation(with_parts)["statistics"]["count_conversation_parts"] >= 1
        drop_parts(pg_url, pg_schema, with_parts)
        before = table_rows(pg_url, pg_schema)

        sim.reset_stats()
        found = run_verify(tmp_path, config, pg_url, pg_schema)
        assert found.returncode == 1, found.stderr[-3000:]
        reported = classes(found.stdout)
        assert reported == {**{k: set(v) for k, v in damaged.items()}, "Parts": {with_parts}}, found.stdout
        assert after_cutoff(found.stdout) == after_cutoff(clean.stdout) + 1
        assert totals(found.stdout).endswith(": 8 differences"), found.stdout
        # Search pages only: the listing, and one search by id for the rows it did not find.
        assert sim.stats["by_route"] == {"search": clean_searches + 1, "retrieve": 0, "list": 0, "deleted": 0}
        assert_no_secret(found, sim)

        sim.reset_stats()
        repaired = run_verify(tmp_path, config, pg_url, pg_schema, "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
        assert "After the repair:" in repaired.stdout and totals(repaired.stdout).endswith("the table matches")
        assert sim.stats["by_route"]["retrieve"] == 3 + 2 + 1  # hydrated like the tap: a GET each, no more

        rows = table_rows(pg_url, pg_schema)
        truth = sim.truth()
        stale_touched = sim.ids()[-1]  # the conversation touched after the load: the next sync's job
        for conversation_id, payload in truth.items():
            if conversation_id != stale_touched:
                assert rows[conversation_id]["data"] == payload, conversation_id
        for conversation_id in damaged["Stale"] + [with_parts]:
            assert rows[conversation_id]["pk"] == before[conversation_id]["pk"]  # updated in place
        newest_pk = max(row["pk"] for row in before.values())
        assert all(rows[i]["pk"] > newest_pk for i in damaged["Missing"])  # drawn from the sequence
        with psycopg.connect(pg_url) as conn:  # their parts are back in the parts table, from the same GETs
            stored_parts = dict(
                conn.execute(
                    f"SELECT intercom_id, data FROM {parts_table} WHERE conversation_intercom_id = ANY(%s)",
                    (damaged["Missing"],),
                ).fetchall()
            )
        expected_parts = {
            part["id"]: part
            for i in damaged["Missing"]
            for part in truth[i]["conversation_parts"]["conversation_parts"]
        }
        assert stored_parts == expected_parts and expected_parts
        for bogus in damaged["Not in Intercom"]:  # deleted_conversations: mark (the default)
            assert rows[bogus]["data"]["deleted"] is True and isinstance(rows[bogus]["data"]["deleted_at"], int)

        sim.reset_stats()
        again = run_verify(tmp_path, config, pg_url, pg_schema)
        assert again.returncode == 0, again.stdout
        assert sim.stats["by_route"] == {"search": clean_searches, "retrieve": 0, "list": 0, "deleted": 0}


@pytest.mark.slow
def test_a_search_only_table_is_repaired_from_search_rows_and_gone_rows_removed(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=2000, seed=22) as sim:
        config = tap_config(sim, include_conversation_parts=False, deleted_conversations="remove")
        load(pg_url, pg_schema, config)
        damaged = damage(pg_url, pg_schema, sim)
        deleted_in_intercom = sim.ids()[500]
        sim.delete(deleted_in_intercom)  # deleted after the load, before the tap could see it

        sim.reset_stats()
        found = run_verify(tmp_path, config, pg_url, pg_schema)
        assert found.returncode == 1, found.stderr[-3000:]
        expected = {**{k: set(v) for k, v in damaged.items()}, "Parts": set()}
        expected["Not in Intercom"] |= {deleted_in_intercom}
        assert classes(found.stdout) == expected, found.stdout
        assert sim.stats["by_route"]["retrieve"] == 0
        assert sim.stats["by_route"]["search"] <= math.ceil(2000 / 150) + 12, sim.stats

        sim.reset_stats()
        repaired = run_verify(tmp_path, config, pg_url, pg_schema, "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
        assert sim.stats["by_route"]["retrieve"] == 0  # search rows, looked up by id: as the tap stores them
        rows = table_rows(pg_url, pg_schema)
        assert set(rows) == set(sim.ids())  # gone rows removed
        for conversation_id in damaged["Missing"] + damaged["Stale"]:
            assert rows[conversation_id]["data"] == sim.search_row(conversation_id)
        assert run_verify(tmp_path, config, pg_url, pg_schema).returncode == 0


@pytest.mark.slow
def test_an_empty_table_is_all_missing(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=300, seed=23) as sim:
        config = tap_config(sim)
        load(pg_url, pg_schema, {**config, "start_date": "2099-01-01T00:00:00Z"})  # applies the table, loads nothing
        done = run_verify(tmp_path, config, pg_url, pg_schema)
        assert done.returncode == 1
        assert "(the table is empty: the start of this check)" in done.stdout
        assert totals(done.stdout).startswith("Totals: 300 conversations in Intercom before the cut-off, 0 rows")
        assert "300 missing" in totals(done.stdout)


@pytest.mark.parametrize(
    ("config", "database", "expected"),
    [
        ({"access_token": " "}, "ok", "configuration: access_token is blank"),
        (
            {"access_token": "sekrit-token", "api_url": "http://example.com"},
            "ok",
            "configuration: api_url 'http://example.com' is plain http to a non-loopback host",
        ),
        (
            {"access_token": "sekrit-token", "max_concurrent_requests": 0},
            "ok",
            "configuration: max_concurrent_requests 0 is out of range",
        ),
        ("{not json", "ok", "configuration: "),
        (
            {"access_token": "sekrit-token"},
            "postgresql+psycopg://loader:s3cr%40t@127.0.0.1:1/db",
            "cannot connect to postgresql://loader:***@127.0.0.1:1/db: ",
        ),
        ({"access_token": "sekrit-token"}, "mysql://loader:s3cr%40t@127.0.0.1/db", "not a PostgreSQL URL"),
        ({"access_token": "sekrit-token"}, "no-table", "has no intercom_conversation_v1"),
    ],
    ids=["blank-token", "plain-http", "out-of-range", "not-json", "unreachable-db", "not-postgres", "no-table"],
)
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(pg_url, pg_schema, tmp_path, config, database, expected):
    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    url = sqlalchemy_url(pg_url) if database in ("ok", "no-table") else database
    done = subprocess.run(
        [VERIFY, "--config", str(path), "--database-url", url, "--schema", pg_schema],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{PROG}: error: ")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "s3cr" not in done.stderr and "sekrit" not in done.stderr


@pytest.mark.slow
def test_meltano_invoke_verify_uses_the_projects_settings(project, pg_url, pg_schema, tmp_path):  # noqa: F811
    """`meltano invoke intercom-conversation-table:verify [--repair]`: the token set for the tap (.env) reaches it."""
    with IntercomSimulator(conversations=400, seed=24) as sim:
        load(pg_url, pg_schema, tap_config(sim))
        lost = sim.ids()[7]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{pg_schema}".{STREAM} WHERE intercom_id = %s', (lost,))
        env = _env(
            MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
            TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
            TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
            TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=pg_schema,
        )

        def meltano(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([MELTANO, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)

        assert meltano("config", "set", "tap-intercom-conversation", "access_token", sim.token).returncode == 0
        try:
            found = meltano("invoke", "intercom-conversation-table:verify")
            assert found.returncode == 1, found.stdout + found.stderr[-3000:]
            assert classes(found.stdout)["Missing"] == {lost}
            repaired = meltano("invoke", "intercom-conversation-table:verify", "--repair")
            assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
            assert totals(repaired.stdout).endswith("the table matches")
            assert table_rows(pg_url, pg_schema)[lost]["data"] == sim.conversation(lost)
            for done in (found, repaired):
                assert_no_secret(done, sim)
        finally:
            (project / ".env").unlink(missing_ok=True)


@pytest.mark.slow
def test_verify_searches_under_the_taps_rate_governor(pg_url, pg_schema, tmp_path):
    """Intercom's limit is waited for, never exceeded: the same conversations, served 3 calls per 10 s."""
    now = int(time.time()) - 60
    with IntercomSimulator(conversations=700, seed=25, now=now) as fast:
        load(pg_url, pg_schema, tap_config(fast, include_conversation_parts=False))
    with IntercomSimulator(conversations=700, seed=25, now=now, rate_limit=4) as sim:
        done = run_verify(tmp_path, tap_config(sim, include_conversation_parts=False), pg_url, pg_schema)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert sim.stats["rate_limited"] == 0 and sim.stats["by_route"]["search"] > 4, sim.stats
    waited = re.findall(r"Progress verify listing: .* ([\d.]+) s waiting for the rate limit", done.stderr)
    assert waited and float(waited[-1]) > 0, done.stderr[-2000:]
