"""The support metrics (transform/, docs/metrics.md) on conversations whose answers are computed by hand
(tests/metrics_histories.py): loaded by the real tap and loader into a real PostgreSQL, built by real dbt,
incrementally after a change and a deletion; then the README's job through real Meltano."""

from __future__ import annotations

import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml

from tests import metrics_histories as h
from tests.helpers import DBT, REPO, admin_rows, by_conversation, load, query, sqlalchemy_url, tap_config
from tests.intercom_simulator import IntercomSimulator
from tests.intercom_simulator.spec import Spec

TRANSFORM = REPO / "transform"


def loader_env(pg_url: str, schema: str) -> dict[str, str]:
    """The loader's own variables, as a Meltano project keeps them in the shell or .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_POSTGRES", "DBT_", "MELTANO_"))}
    env.update(
        TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
        TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=schema,
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return env


def dbt_build(pg_url: str, schema: str, work: Path, *args: str, ok: bool = True) -> str:
    env = loader_env(pg_url, schema)
    env.update(DBT_PROFILES_DIR=str(TRANSFORM), DBT_TARGET_PATH=str(work / "target"), DBT_LOG_PATH=str(work / "logs"))
    done = subprocess.run([DBT, "build", *args], cwd=TRANSFORM, env=env, capture_output=True, text=True, timeout=300)
    assert (done.returncode == 0) == ok, done.stdout[-4000:]
    return done.stdout


def day_rows(pg_url: str, schema: str, days: dict) -> dict[str, tuple]:
    rows = query(pg_url, schema, "SELECT * FROM intercom_daily_metrics ORDER BY day")
    assert str(rows[0]["day"]) == min(days)  # the calendar starts with the first conversation
    return {
        str(r["day"]): (r["opened"], r["closed"], r["closes"], r["reopens"], r["open_backlog"])
        for r in rows
        if str(r["day"]) in days
    }


def assert_conversations(rows: dict[str, dict], ids: dict[str, str], expected: dict[str, dict]) -> None:
    for name, columns in expected.items():
        row = rows[ids[name]]
        assert {k: row[k] for k in columns} == columns, name


def readme_queries() -> list[str]:
    """The SQL of the README's metrics section, one query per block."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Support metrics", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_scripted_histories_are_what_intercom_describes():
    spec = Spec()
    with IntercomSimulator(conversations=0) as sim:
        for history in (*h.SCRIPTED.values(), h.ANSWERED):
            conversation_id = sim.add_history(history)
            payload = sim.conversation(conversation_id)
            spec.validate(payload, "conversation")
            spec.validate(sim.search_row(conversation_id), "conversation_list_item")
            parts = payload["conversation_parts"]["conversation_parts"]
            assert [p["created_at"] - history.created_at for p in parts] == [e.after for e in history.events]
    story = [p["state"] for p in sim_parts(h.STORY)]
    assert story == ["open"] * 7 + ["snoozed", "open", "closed", "open", "open", "closed"]


def sim_parts(history) -> list[dict]:
    with IntercomSimulator(conversations=0) as sim:
        return sim.conversation(sim.add_history(history))["conversation_parts"]["conversation_parts"]


@pytest.mark.slow
def test_the_models_hold_the_metrics_computed_by_hand_and_follow_changes_and_deletions(pg_url, pg_schema, tmp_path):
    with IntercomSimulator(conversations=0, seed=26) as sim:
        ids = {name: sim.add_history(history) for name, history in h.SCRIPTED.items()}
        load(pg_url, pg_schema, tap_config(sim))
        dbt_build(pg_url, pg_schema, tmp_path)

        assert_conversations(
            by_conversation(pg_url, pg_schema, "intercom_conversation_enhanced"),
            ids,
            {
                name: {k: v for k, v in columns.items() if not k.startswith(("time_", "median_", "first_response"))}
                for name, columns in h.EXPECTED.items()
            },
        )
        assert_conversations(by_conversation(pg_url, pg_schema, "intercom_conversations"), ids, h.EXPECTED)
        assert admin_rows(pg_url, pg_schema) == h.ADMINS
        assert day_rows(pg_url, pg_schema, h.DAYS) == h.DAYS
        readme = [query(pg_url, pg_schema, sql) for sql in readme_queries()]
        assert [list(r.values()) for r in readme[0]] == [[2026, 6, 4, 10]]  # 300, 600, 1200 s: 10 minutes
        assert [list(r.values()) for r in readme[1]] == [[h.A, 2, Decimal("0.36"), 2], [h.B, 2, Decimal("2.64"), 4]]
        assert [list(r.values()) for r in readme[2]] == [[3, 1, Decimal("33.3")]]
        before = by_conversation(pg_url, pg_schema, "intercom_conversations")

        # The contact of UNANSWERED gets a reply; QUICK is deleted in Intercom (marked by the loader).
        sim.add_history(h.ANSWERED, ids["UNANSWERED"])
        sim.delete(ids["QUICK"])
        load(pg_url, pg_schema, tap_config(sim))
        dbt_build(pg_url, pg_schema, tmp_path)

        after = by_conversation(pg_url, pg_schema, "intercom_conversations")
        for name in ("STORY", "OUTBOUND"):  # not computed again: the same row, written by the first build
            assert after[ids[name]] == before[ids[name]]
        assert after[ids["UNANSWERED"]]["_snapshot_xmin"] > before[ids["UNANSWERED"]]["_snapshot_xmin"]
        assert_conversations(
            after,
            ids,
            {
                "UNANSWERED": dict(
                    time_to_first_admin_response_seconds=7200,
                    first_response_admin_id=h.A,
                    admin_replies=1,
                    median_reply_wait_seconds=7200,
                    parts_count=3,
                )
            },
        )
        assert after[ids["QUICK"]]["is_deleted"] is True
        assert admin_rows(pg_url, pg_schema) == h.ADMINS_LATER
        assert day_rows(pg_url, pg_schema, h.DAYS_LATER) == h.DAYS_LATER

        # The loader removes deleted conversations now: their rows leave the models too.
        load(pg_url, pg_schema, tap_config(sim, deleted_conversations="remove"))
        dbt_build(pg_url, pg_schema, tmp_path)
        assert set(by_conversation(pg_url, pg_schema, "intercom_conversation_enhanced")) == {
            ids["STORY"],
            ids["OUTBOUND"],
            ids["UNANSWERED"],
        }

        # A full rebuild gives the same answers as the incremental ones.
        incremental = by_conversation(pg_url, pg_schema, "intercom_conversation_metrics")
        dbt_build(pg_url, pg_schema, tmp_path, "--full-refresh")
        assert by_conversation(pg_url, pg_schema, "intercom_conversation_metrics") == incremental
        assert admin_rows(pg_url, pg_schema) == h.ADMINS_LATER


def test_the_transformer_installs_the_dbt_the_tests_run():
    project = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
    (transformer,) = project["plugins"]["transformers"]
    pinned = [
        line
        for line in (REPO / "scripts" / "requirements" / "dbt.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert transformer["pip_url"].split() == [*pinned, "./transform/runner"]
    assert transformer["settings"][0] == {
        "name": "project_dir",
        "kind": "string",
        "value": "$MELTANO_PROJECT_ROOT/transform",
    }


@pytest.mark.slow
def test_a_schema_without_the_loaders_tables_is_named_before_any_model_runs(pg_url, pg_schema, tmp_path):
    out = dbt_build(pg_url, pg_schema, tmp_path, ok=False)
    assert f"{pg_schema}.intercom_conversation_v1 does not exist in database " in out
    assert "load first, or build where the loader loads" in out
    assert query(pg_url, pg_schema, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = current_schema()") == [
        {"n": 0}
    ]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sqlalchemy_url", "host, port, user, database"])
def test_dbt_connects_with_the_loaders_variables_either_way(pg_url, tmp_path, how):
    libpq = psycopg.conninfo.conninfo_to_dict(pg_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_POSTGRES", "DBT_"))}
    if how == "sqlalchemy_url":
        env["TARGET_POSTGRES_SQLALCHEMY_URL"] = sqlalchemy_url(pg_url) + "?sslmode=prefer"
    else:
        env.update(
            TARGET_POSTGRES_HOST=str(libpq.get("host", "localhost")),
            TARGET_POSTGRES_PORT=str(libpq.get("port", 5432)),
            TARGET_POSTGRES_USER=str(libpq["user"]),
            TARGET_POSTGRES_DATABASE=str(libpq["dbname"]),
            TARGET_POSTGRES_PASSWORD=str(libpq.get("password", "")),
        )
    env.update(
        TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA="sales",
        DBT_PROFILES_DIR=str(TRANSFORM),
        DBT_TARGET_PATH=str(tmp_path / "target"),
        DBT_LOG_PATH=str(tmp_path / "logs"),
    )
    done = subprocess.run([DBT, "debug"], cwd=TRANSFORM, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    shown = dict(re.findall(r"^\S+\s+(host|port|user|database|schema): (\S+)$", done.stdout, re.M))
    assert shown == {
        "host": str(libpq.get("host", "localhost")),
        "port": str(libpq.get("port", 5432)),
        "user": str(libpq["user"]),
        "database": str(libpq["dbname"]),
        "schema": "sales",
    }
    assert "Connection test: [OK connection ok]" in re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
