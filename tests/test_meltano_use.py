"""Meltano the way data engineers use it: settings by `meltano config set`, environments, inherited
plugins, the plain `meltano run TAP TARGET`, a second workspace, the plugins reused in another project.

Each test has its own fresh project (a copy of meltano.yml, its plugins the session's installed ones:
conftest.py), because `meltano config set` and `meltano add` write into meltano.yml.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import (
    REPO,
    STREAM,
    assert_table_is_the_truth,
    assert_the_documented_table,
    emitted,
    meltano,
    meltano_env,
    scratch_schema,
    sqlalchemy_url,
    system_db,
    table_rows,
    their_project,
)
from tests.intercom_simulator import IntercomSimulator

DEFINITIONS = REPO / "plugin-definitions"
MAX_LOG_LINES = 300  # for 800 conversations through Meltano (issue 16)


@pytest.mark.slow
def test_the_tables_follow_the_loaders_settings_and_a_changed_schema_is_never_loaded_half(
    project, pg_url, pg_schema, tmp_path
):
    """`meltano config set` and a Meltano environment move the tables; an old state stops the run."""
    with IntercomSimulator(conversations=800, seed=21) as sim, scratch_schema(pg_url) as moved:
        env = meltano_env(
            TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=sim.token,
            TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
            TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
            **system_db(tmp_path),
        )
        meltano(project, env, "config", "set", "target-postgres", "default_target_schema", pg_schema)
        first = meltano(project, env, "run", "tap-intercom-conversation", "target-postgres")  # what users type first

        assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert_the_documented_table(pg_url, pg_schema)
        assert emitted(first) == 800
        log = first.stderr.splitlines()
        assert len(log) <= MAX_LOG_LINES and not [line for line in log if "METRIC" in line and "tap-intercom" in line]
        assert any("Progress intercom_conversation_v1: 800 of 800" in line for line in log)

        # The schema changes for the prod environment; the state (a bookmark) stays.
        meltano(project, env, "--environment=prod", "config", "set", "target-postgres", "default_target_schema", moved)
        sim.touch(sim.ids()[0])
        stopped = meltano(project, env, "run", "intercom-to-postgres", ok=False)

        assert stopped.returncode != 0
        reason = [line for line in stopped.stderr.splitlines() if "target-intercom-postgres: error:" in line]
        assert len(reason) == 1 and "--full-refresh" in reason[0] and f"{moved}.{STREAM} is empty" in reason[0]
        assert "Traceback" not in stopped.stderr
        assert table_rows(pg_url, moved) == {}  # nothing half-loaded

        meltano(project, env, "run", "--full-refresh", "intercom-to-postgres")
        assert_table_is_the_truth(pg_url, moved, sim)
        assert_the_documented_table(pg_url, moved)


@pytest.mark.slow
def test_a_second_workspace_added_by_inheritance_has_its_own_token_schema_tables_and_state(
    project, pg_url, pg_schema, tmp_path
):
    with (
        IntercomSimulator(conversations=300, seed=22) as first,
        IntercomSimulator(conversations=200, seed=23, token="second-workspace-token") as second,
        scratch_schema(pg_url) as second_schema,
    ):
        env = meltano_env(
            TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=first.token,
            TAP_INTERCOM_CONVERSATION_API_URL=first.url,
            TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
            TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=pg_schema,
            TAP_INTERCOM_CONVERSATION__B_ACCESS_TOKEN=second.token,  # inherited plugins have their own variables
            **system_db(tmp_path),
        )
        for kind, name in (("extractor", "tap-intercom-conversation"), ("loader", "target-postgres")):
            meltano(project, env, "add", "--plugin-type", kind, f"{name}--b", "--inherit-from", name)
        meltano(project, env, "config", "set", "tap-intercom-conversation--b", "api_url", second.url)
        meltano(project, env, "config", "set", "target-postgres--b", "default_target_schema", second_schema)

        meltano(project, env, "run", "intercom-to-postgres")
        meltano(project, env, "run", "tap-intercom-conversation--b", "target-postgres--b")
        assert_table_is_the_truth(pg_url, pg_schema, first)
        assert_table_is_the_truth(pg_url, second_schema, second)
        assert_the_documented_table(pg_url, second_schema)

        second.touch(second.ids()[0])
        again = meltano(project, env, "run", "tap-intercom-conversation--b", "target-postgres--b")
        assert emitted(again) == 1  # from its own state, not the first workspace's
        assert_table_is_the_truth(pg_url, second_schema, second)
        states = meltano(project, env, "state", "list").stdout
        assert "prod:tap-intercom-conversation-to-target-postgres" in states
        assert "prod:tap-intercom-conversation--b-to-target-postgres--b" in states


@pytest.mark.slow
def test_the_plugins_reused_in_another_project_in_one_command_each(pg_url, pg_schema, tmp_path):
    """`meltano add --from-ref` of the shipped definitions, installed from a source like a git URL."""
    other = their_project(tmp_path / "their-project")
    env = meltano_env(
        TAP_INTERCOM_CONVERSATION_SOURCE=(REPO / "tap-intercom-conversation").as_uri(), **system_db(tmp_path)
    )
    meltano(
        other,
        env,
        "add",
        "--plugin-type",
        "extractor",
        "--from-ref",
        str(DEFINITIONS / "tap-intercom-conversation.yml"),
        "tap-intercom-conversation",
    )
    meltano(
        other,
        env,
        "add",
        "--plugin-type",
        "loader",
        "--from-ref",
        str(DEFINITIONS / "target-intercom-postgres.yml"),
        "target-intercom-postgres",
    )

    with IntercomSimulator(conversations=200, seed=24) as sim:
        env.update(
            TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=sim.token,
            TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
            TARGET_INTERCOM_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
            TARGET_INTERCOM_POSTGRES_DEFAULT_TARGET_SCHEMA=pg_schema,
        )
        meltano(other, env, "run", "tap-intercom-conversation", "target-intercom-postgres")
        assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert_the_documented_table(pg_url, pg_schema)


@pytest.mark.slow
def test_settings_show_their_defaults_a_schedule_is_shipped_and_a_bad_setting_is_one_line(project, tmp_path):
    env = meltano_env(**system_db(tmp_path))
    listed = meltano(project, env, "config", "list", "tap-intercom-conversation", "--all").stdout
    for setting, default in {
        "region": "'us'",
        "api_version": "'2.16'",
        "lookback_window_seconds": "600",
        "max_concurrent_requests": "500",
        "deleted_conversations": "'mark'",
    }.items():
        variable = f"TAP_INTERCOM_CONVERSATION_{setting.upper()}"
        assert f"{setting} [env: {variable}] current value: {default} (default)" in listed
    schedules = json.loads(meltano(project, env, "schedule", "list", "--format=json").stdout)
    assert [(s["name"], s["interval"], s["job"]["name"]) for s in schedules["schedules"]["job"]] == [
        ("intercom-to-postgres-hourly", "@hourly", "intercom-to-postgres")
    ]

    bad = meltano(
        project,
        {
            **env,
            "TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN": "x",
            "TAP_INTERCOM_CONVERSATION_REGION": "eu-west",
            "TARGET_POSTGRES_SQLALCHEMY_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        },
        "run",
        "tap-intercom-conversation",
        "target-postgres",
        ok=False,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "│" not in bad.stderr
    assert "error: configuration: region 'eu-west' is not one of us, eu, au" in bad.stderr


def test_the_shipped_plugin_definitions_are_the_projects_own():
    project = yaml.safe_load((REPO / "meltano.yml").read_text())["plugins"]
    for kind, shipped in (("extractors", "tap-intercom-conversation.yml"), ("loaders", "target-intercom-postgres.yml")):
        mine = {k: v for k, v in project[kind][0].items() if k not in {"name", "namespace", "pip_url"}}
        theirs = yaml.safe_load((DEFINITIONS / shipped).read_text())
        assert {k: v for k, v in theirs.items() if k not in {"name", "namespace", "pip_url"}} == mine
        assert theirs["pip_url"] == "tap-intercom-conversation[postgres]@${TAP_INTERCOM_CONVERSATION_SOURCE}"
