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

from tap_intercom_conversation.records import to_iso
from tests.helpers import (
    STREAM,
    load,
    meltano,
    meltano_env,
    run_verify,
    scratch_schema,
    sqlalchemy_url,
    table_rows,
    tap_config,
)
from tests.helpers import VERIFY_README_COMMANDS as README_COMMANDS
from tests.intercom_simulator import IntercomSimulator

PROG = "intercom-conversation-verify"


def verify_table(
    tmp_path: Path, config: dict | None, pg_url: str, schema: str, *args: str, config_text: str | None = None
) -> subprocess.CompletedProcess:
    """verify with these tap settings against `schema`."""
    path = tmp_path / "tap-config.json"
    path.write_text(config_text if config_text is not None else json.dumps(config))
    return run_verify("--config", str(path), "--database-url", sqlalchemy_url(pg_url), "--schema", schema, *args)


def classes(stdout: str) -> dict[str, set[str]]:
    """Each class's ids from the report's lines (the first report when --repair printed two)."""
    found: dict[str, set[str]] = {}
    for label in ("Missing", "Stale", "Not in Intercom", "Parts", "Part rows"):
        line = next(line for line in stdout.splitlines() if line.startswith(f"{label}: "))
        shown = line.split(": ", 2)[2] if line.count(": ") >= 2 else ""
        found[label] = set(re.findall(r"(?:^|, )(\w+)", re.sub(r" \([^)]*\)", "", shown)))
    return found


def after_cutoff(stdout: str) -> int:
    """Conversations the report says were updated after the window (not compared)."""
    return int(re.search(r"\(([\d,]+) updated since are not compared\)", stdout)[1].replace(",", ""))


def verdict(stdout: str) -> str:
    """The report's last line: its one verdict."""
    last = stdout.splitlines()[-1]
    assert last.startswith("Verdict: ") and sum(line.startswith("Verdict: ") for line in stdout.splitlines()) == 1
    return last


def header(stdout: str) -> dict[str, str]:
    """The report's first lines: what was compared with what."""
    lines = stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines[:6]] == [
        "Settings",
        "Intercom",
        "Database",
        "Schema",
        "Window",
        "Loaded from",
    ], stdout
    return {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines[:6]}


def an_hour_ago() -> int:
    """The simulator's conversations end an hour ago: all of them inside the window (the check's start - 300 s)."""
    return int(time.time()) - 3600


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
    with IntercomSimulator(conversations=1000, seed=21, now=an_hour_ago()) as sim:
        config = tap_config(sim, include_conversation_parts=True, max_concurrent_requests=8)
        load(pg_url, pg_schema, config)

        sim.reset_stats()
        clean = verify_table(tmp_path, config, pg_url, pg_schema)
        assert clean.returncode == 0, clean.stderr[-3000:]
        named = header(clean.stdout)
        assert named["Intercom"] == f"{sim.url}, workspace Simulator 21 (app sim0021app)"
        assert named["Database"].startswith("127.0.0.1:5432, database ") and "password" not in clean.stdout
        assert named["Schema"] == f"{pg_schema}; tables: intercom_conversation_v1, intercom_conversation_part_v1"
        assert named["Window"].startswith("conversations updated from the beginning to before ")
        assert "minus 300 s for Intercom's search index lag" in named["Window"]
        assert verdict(clean.stdout) == f"Verdict: {pg_schema}.{STREAM} matches Intercom"
        assert "Progress verify listing: 1,000 of 1,000 conversations (100.0 %)" in clean.stderr
        assert sim.stats["by_route"]["retrieve"] == 0
        clean_searches = sim.stats["by_route"]["search"]
        assert math.ceil(1000 / 150) <= clean_searches <= math.ceil(1000 / 150) + 8, sim.stats

        # The newest conversation is compared too (no blind tail); a change after the window's end is not.
        newest = sim.ids()[-1]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{pg_schema}".{STREAM} WHERE intercom_id = %s', (newest,))
        sim.touch(sim.ids()[100])
        damaged = damage(pg_url, pg_schema, sim)
        damaged["Missing"].append(newest)
        # A conversation whose part rows were lost, its row intact: named with the parts it lacks.
        counts = {i: sim.conversation(i)["statistics"]["count_conversation_parts"] for i in sim.ids()[300:400]}
        lost_rows = next(i for i, count in counts.items() if count >= 3)
        lost_parts = [p["id"] for p in sim.conversation(lost_rows)["conversation_parts"]["conversation_parts"][:2]]
        parts_table = f'"{pg_schema}".intercom_conversation_part_v1'
        with psycopg.connect(pg_url, autocommit=True) as conn:  # the lost conversations' parts go too
            conn.execute(f"DELETE FROM {parts_table} WHERE conversation_intercom_id = ANY(%s)", (damaged["Missing"],))
            conn.execute(f"DELETE FROM {parts_table} WHERE intercom_id = ANY(%s)", (lost_parts,))
        with_parts = sim.ids()[200]
        assert sim.conversation(with_parts)["statistics"]["count_conversation_parts"] >= 1
        drop_parts(pg_url, pg_schema, with_parts)
        before = table_rows(pg_url, pg_schema)

        sim.reset_stats()
        found = verify_table(tmp_path, config, pg_url, pg_schema)
        assert found.returncode == 1, found.stderr[-3000:]
        reported = classes(found.stdout)
        assert reported == {
            **{k: set(v) for k, v in damaged.items()},
            "Parts": {with_parts},
            "Part rows": {lost_rows},
        }, found.stdout
        part_rows_line = next(line for line in found.stdout.splitlines() if line.startswith("Part rows: "))
        assert f"{lost_rows} (2 without a row: {lost_parts[0]}, {lost_parts[1]})" in part_rows_line
        assert after_cutoff(found.stdout) == after_cutoff(clean.stdout) + 1
        assert verdict(found.stdout) == f"Verdict: {pg_schema}.{STREAM} differs from Intercom in 10 conversations"
        # Search pages, one search by id for the rows it did not find, and a GET for the part rows' suspect only.
        assert sim.stats["by_route"] == {"search": clean_searches + 1, "retrieve": 1, "list": 0, "deleted": 0}
        assert_no_secret(found, sim)

        sim.reset_stats()
        refused = verify_table(tmp_path, config, pg_url, pg_schema, "--repair")  # loaded without Meltano: no mark
        assert refused.returncode == 1 and refused.stdout == "", refused.stdout
        assert refused.stderr.strip().splitlines()[-1].startswith(f"{PROG}: refused: {pg_schema}.{STREAM} of ")
        assert "carries no mark of the job that loads it" in refused.stderr and "Traceback" not in refused.stderr
        sim.reset_stats()
        repaired = verify_table(tmp_path, config, pg_url, pg_schema, "--repair", "--adopt")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
        assert "After the repair:" in repaired.stdout and verdict(repaired.stdout).endswith("matches Intercom")
        assert header(repaired.stdout)["Loaded from"] == f"unmarked; adopted as {sim.url}'s (--adopt)"
        # hydrated like the tap: a GET each (4 missing, 2 stale, 1 with parts), and the part rows' suspect once
        assert sim.stats["by_route"]["retrieve"] == 4 + 2 + 1 + 1
        with psycopg.connect(pg_url) as conn:
            back = conn.execute(f"SELECT count(*) FROM {parts_table} WHERE intercom_id = ANY(%s)", (lost_parts,))
            assert back.fetchone()[0] == 2

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
        again = verify_table(tmp_path, config, pg_url, pg_schema)
        assert again.returncode == 0, again.stdout
        assert header(again.stdout)["Loaded from"].endswith("(the same host and access token)")
        assert sim.stats["by_route"] == {"search": clean_searches, "retrieve": 0, "list": 0, "deleted": 0}


@pytest.mark.slow
def test_a_search_only_table_is_repaired_from_search_rows_and_gone_rows_removed(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=2000, seed=22, now=an_hour_ago()) as sim:
        config = tap_config(sim, include_conversation_parts=False, deleted_conversations="remove")
        load(pg_url, pg_schema, config)
        damaged = damage(pg_url, pg_schema, sim)
        deleted_in_intercom = sim.ids()[500]
        sim.delete(deleted_in_intercom)  # deleted after the load, before the tap could see it

        sim.reset_stats()
        found = verify_table(tmp_path, config, pg_url, pg_schema)
        assert found.returncode == 1, found.stderr[-3000:]
        expected = {**{k: set(v) for k, v in damaged.items()}, "Parts": set(), "Part rows": set()}
        expected["Not in Intercom"] |= {deleted_in_intercom}
        assert classes(found.stdout) == expected, found.stdout
        assert sim.stats["by_route"]["retrieve"] == 0
        assert sim.stats["by_route"]["search"] <= math.ceil(2000 / 150) + 12, sim.stats

        sim.reset_stats()
        repaired = verify_table(tmp_path, config, pg_url, pg_schema, "--repair", "--adopt")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
        assert sim.stats["by_route"]["retrieve"] == 0  # search rows, looked up by id: as the tap stores them
        rows = table_rows(pg_url, pg_schema)
        assert set(rows) == set(sim.ids())  # gone rows removed
        for conversation_id in damaged["Missing"] + damaged["Stale"]:
            assert rows[conversation_id]["data"] == sim.search_row(conversation_id)
        assert verify_table(tmp_path, config, pg_url, pg_schema).returncode == 0


@pytest.mark.slow
def test_an_empty_table_is_all_missing(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=300, seed=23, now=an_hour_ago()) as sim:
        config = tap_config(sim)
        load(pg_url, pg_schema, {**config, "start_date": "2099-01-01T00:00:00Z"})  # applies the table, loads nothing
        done = verify_table(tmp_path, config, pg_url, pg_schema)
        assert done.returncode == 1
        assert totals(done.stdout).startswith("Totals: 300 conversations in Intercom in the window (0 updated since")
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
    done = run_verify("--config", str(path), "--database-url", url, "--schema", pg_schema, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{PROG}: error: ")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "s3cr" not in done.stderr and "sekrit" not in done.stderr


def test_an_intercom_error_names_the_host(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=10, seed=28) as sim:
        load(pg_url, pg_schema, tap_config(sim))
        done = verify_table(tmp_path, {**tap_config(sim), "access_token": "wrong-token"}, pg_url, pg_schema)
        url = sim.url
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{PROG}: error: ")]
    assert errors == [
        f"{PROG}: error: Intercom at {url}: Intercom rejected the access token (401 on "
        "POST /conversations/search): check access_token"
    ], done.stderr
    assert "wrong-token" not in done.stdout + done.stderr


def readme_command(text: str, **values: str) -> list[str]:
    """One of README_COMMANDS as argv, its example values (sales, the date) replaced by the test's."""
    assert text in README_COMMANDS
    return [values.get(word, word) for word in text.split()]


@pytest.mark.slow
def test_verify_through_meltano_checks_the_jobs_own_settings_and_a_second_workspace_its_own(
    project,
    pg_url,
    pg_schema,
    tmp_path,
):
    """Settings made by `meltano config set` (api_url, start_date, schema) and a second workspace via inherit_from."""
    env = meltano_env(MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}")

    def ok(*args: str) -> subprocess.CompletedProcess:
        return meltano(project, env, *args)

    def tried(*args: str) -> subprocess.CompletedProcess:
        return meltano(project, env, *args, ok=False)

    with (
        IntercomSimulator(conversations=400, seed=24, now=an_hour_ago()) as sim,
        scratch_schema(pg_url) as second,
        IntercomSimulator(conversations=200, seed=25, now=an_hour_ago(), token="sim-token-b") as sim_b,
    ):
        ids = sim.ids()
        start_date = to_iso(sim.conversation(ids[200])["updated_at"])  # half of the workspace is older
        ok("config", "set", "tap-intercom-conversation", "access_token", sim.token)  # into .env
        ok("config", "set", "tap-intercom-conversation", "api_url", sim.url)  # into meltano.yml
        ok(*readme_command(README_COMMANDS[0], **{"2026-01-01T00:00:00Z": start_date})[1:])
        ok("config", "set", "target-postgres", "sqlalchemy_url", sqlalchemy_url(pg_url))
        ok(*readme_command(README_COMMANDS[1], sales=pg_schema)[1:])
        applied = ok(*readme_command(README_COMMANDS[2])[1:])
        assert f"in schema {pg_schema!r}" in applied.stdout
        ok("run", "intercom-to-postgres")

        newest = ids[-1]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{pg_schema}".{STREAM} WHERE intercom_id = %s', (newest,))
        found = tried(*readme_command(README_COMMANDS[3])[1:])
        assert found.returncode == 1, found.stdout + found.stderr[-3000:]
        named = header(found.stdout)
        assert named["Settings"] == (
            "Meltano (extractor tap-intercom-conversation, loader target-postgres, environment prod)"
        )
        assert named["Intercom"] == f"{sim.url}, workspace Simulator 24 (app sim0024app)"
        assert named["Schema"].startswith(f"{pg_schema}; ")
        assert named["Window"].startswith(f"conversations updated from {start_date} (start_date) to before ")
        assert named["Loaded from"] == f"{sim.url} by tap-intercom-conversation (the same host and access token)"
        # Only the lost conversation: none of the 200 older than start_date, which the job never loads.
        assert classes(found.stdout)["Missing"] == {newest}, found.stdout
        assert verdict(found.stdout).endswith("differs from Intercom in 1 conversations")
        repaired = tried(*readme_command(README_COMMANDS[4])[1:])
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
        assert table_rows(pg_url, pg_schema)[newest]["data"] == sim.conversation(newest)
        assert_no_secret(repaired, sim)

        # A second workspace: its own token, Intercom and schema, through plugins inherited from the first.
        ok(
            "add",
            "--plugin-type",
            "extractor",
            "tap-intercom-conversation--b",
            "--inherit-from",
            "tap-intercom-conversation",
        )
        ok("add", "--plugin-type", "loader", "target-postgres--b", "--inherit-from", "target-postgres")
        ok("config", "set", "tap-intercom-conversation--b", "access_token", sim_b.token)
        ok("config", "set", "tap-intercom-conversation--b", "api_url", sim_b.url)
        ok("config", "set", "tap-intercom-conversation--b", "start_date", to_iso(0))
        ok("config", "set", "target-postgres--b", "default_target_schema", second)
        ok("run", "tap-intercom-conversation--b", "target-postgres--b")
        own = tried(*readme_command(README_COMMANDS[5])[1:])
        assert own.returncode == 0, own.stdout + own.stderr[-3000:]
        named = header(own.stdout)
        assert named["Intercom"].startswith(f"{sim_b.url}, workspace Simulator 25")
        assert named["Schema"].startswith(f"{second}; ")
        assert named["Loaded from"] == f"{sim_b.url} by tap-intercom-conversation--b (the same host and access token)"
        assert "200 conversations in Intercom in the window" in totals(own.stdout)

        # The first workspace's settings against the second's table: refused, nothing compared or written.
        before = table_rows(pg_url, second)
        wrong = tried("invoke", "intercom-conversation-table:verify", "--loader", "target-postgres--b", "--repair")
        assert wrong.returncode == 1 and wrong.stdout == "", wrong.stdout
        refusal = [line for line in wrong.stderr.splitlines() if f"{PROG}: refused: " in line]
        assert len(refusal) == 1 and f"{second}.{STREAM} " in refusal[0] and f"loaded from {sim_b.url}" in refusal[0]
        assert table_rows(pg_url, second) == before

        # A variable exported in the shell beats meltano.yml for verify as for `meltano run`: here it names the
        # second workspace's Intercom for the first job, whose table then is refused.
        env["TAP_INTERCOM_CONVERSATION_API_URL"] = sim_b.url
        shell = tried(*readme_command(README_COMMANDS[3])[1:])
        assert shell.returncode == 1 and shell.stdout == "", shell.stdout
        assert f"than this check's ({sim_b.url})" in shell.stderr and f"loaded from {sim.url}" in shell.stderr


@pytest.mark.slow
def test_the_plain_command_reads_exported_variables_never_a_dotenv(pg_url, pg_schema, tmp_path):
    """`intercom-conversation-verify --config ENV` with variables exported and a conflicting .env where it runs."""
    with (
        IntercomSimulator(conversations=300, seed=26, now=an_hour_ago()) as sim,
        IntercomSimulator(conversations=300, seed=27, now=an_hour_ago()) as other,
    ):
        load(pg_url, pg_schema, tap_config(sim))
        (tmp_path / ".env").write_text(
            "TAP_INTERCOM_CONVERSATION_API_URL=http://127.0.0.1:9\n"
            "TARGET_POSTGRES_SQLALCHEMY_URL=postgresql+psycopg://nobody:dotenv-secret@127.0.0.1:1/none\n"
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=dotenv_schema\n"
        )

        def plain(command: str, intercom: IntercomSimulator) -> subprocess.CompletedProcess:
            exported = meltano_env(
                TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=intercom.token,
                TAP_INTERCOM_CONVERSATION_API_URL=intercom.url,
                TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
                TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=pg_schema,
            )
            argv = readme_command(command)
            return run_verify(*argv[1:], cwd=tmp_path, env=exported)

        done = plain(README_COMMANDS[6], sim)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        named = header(done.stdout)
        assert named["Settings"].startswith("the variables exported in this shell")
        assert named["Intercom"].startswith(f"{sim.url}, ") and named["Schema"].startswith(f"{pg_schema}; ")
        assert named["Loaded from"].startswith("unmarked")
        adopted = plain(README_COMMANDS[7], sim)
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr[-3000:]

        # Another Intercom exported against this table (marked as the first's): refused in one line, exit 1.
        before = table_rows(pg_url, pg_schema)
        refused = plain(README_COMMANDS[6], other)
        assert refused.returncode == 1 and refused.stdout == "", refused.stdout
        lines = [line for line in refused.stderr.splitlines() if line.startswith(f"{PROG}: ")]
        assert len(lines) == 1 and lines[0].startswith(f"{PROG}: refused: {pg_schema}.{STREAM} of 127.0.0.1:5432")
        assert f"loaded from {sim.url}" in lines[0] and other.url in lines[0]
        assert table_rows(pg_url, pg_schema) == before
        for run in (done, adopted, refused):
            assert "dotenv-secret" not in run.stdout + run.stderr and sim.token not in run.stdout + run.stderr


@pytest.mark.slow
def test_verify_searches_under_the_taps_rate_governor(pg_url, pg_schema, tmp_path):
    """Intercom's limit is waited for, never exceeded: the same conversations, served 3 calls per 10 s."""
    now = int(time.time()) - 60
    with IntercomSimulator(conversations=700, seed=25, now=now) as fast:
        load(pg_url, pg_schema, tap_config(fast, include_conversation_parts=False))
    with IntercomSimulator(conversations=700, seed=25, now=now, rate_limit=4) as sim:
        done = verify_table(tmp_path, tap_config(sim, include_conversation_parts=False), pg_url, pg_schema)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert sim.stats["rate_limited"] == 0 and sim.stats["by_route"]["search"] > 4, sim.stats
    waited = re.findall(r"Progress verify listing: .* ([\d.]+) s waiting for the rate limit", done.stderr)
    assert waited and float(waited[-1]) > 0, done.stderr[-2000:]
