"""The main job as users run it: `meltano install`, then `meltano run intercom-to-postgres`, twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import (
    PARTS,
    REPLACED_WHEN_HYDRATED,
    REPO,
    assert_table_holds_what_was_sent,
    assert_table_is_the_truth,
    assert_the_documented_table,
    defects,
    emitted,
    job_env,
    meltano_run,
    persisted_bookmark,
    start_meltano,
    stored_state,
    system_db,
    table_rows,
    truth_parts,
)
from tests.intercom_simulator import IntercomSimulator


@pytest.fixture(scope="module")
def project(tmp_path_factory, meltano_project) -> Path:
    """A fresh Meltano project: the repository's meltano.yml and tap, installed (once a session: conftest.py)."""
    return meltano_project(tmp_path_factory.mktemp("meltano-project"))


@pytest.mark.slow
def test_meltano_run_backfills_then_updates_exactly_what_changed(project, pg_url, pg_schema, tmp_path):
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=1000, seed=11) as sim:
        env.update(job_env(sim, pg_url, pg_schema))
        first = meltano_run(project, env)
        rows_before = assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert emitted(first) == 1000
        assert_the_documented_table(pg_url, pg_schema)

        changed = sim.ids()[:5]
        for conversation_id in changed:
            sim.touch(conversation_id)
        created = sim.create()
        second = meltano_run(project, env)

        rows_after = assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert emitted(second) == len(changed) + 1
        assert {i: r["pk"] for i, r in rows_after.items() if i != created} == {
            i: r["pk"] for i, r in rows_before.items()
        }
        assert rows_after[created]["pk"] > max(r["pk"] for r in rows_before.values())
        for conversation_id in set(rows_before) - set(changed):
            assert rows_after[conversation_id] == rows_before[conversation_id]
        assert stored_state(project, env)["replication_key"] == "updated_at"


@pytest.mark.slow
def test_meltano_run_loads_what_real_workspaces_hold_with_intercoms_clock_ahead(project, pg_url, pg_schema, tmp_path):
    """U+0000, half emojis and 1e400 (bad_data), Intercom's clock 5 s ahead: every row, then an incremental run."""
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=300, seed=13, bad_data=True, clock_offset=5) as sim:
        env.update(job_env(sim, pg_url, pg_schema))
        first = meltano_run(project, env)
        assert_table_holds_what_was_sent(pg_url, pg_schema, sim, hydrated=True)
        assert emitted(first) == len(sim.ids())
        assert first.stderr.count("with U+FFFD (PostgreSQL cannot store them)") == len(REPLACED_WHEN_HYDRATED)

        changed_at = sim.touch(defects(sim)["lone_high_surrogate"])
        while sim.clock() < changed_at + 2:  # made before the next run starts, by Intercom's clock
            time.sleep(0.1)
        second = meltano_run(project, env)

        assert emitted(second) == 1
        assert second.stderr.count("with U+FFFD (PostgreSQL cannot store them)") == 1
        assert_table_holds_what_was_sent(pg_url, pg_schema, sim, hydrated=True)


@pytest.fixture(scope="module")
def fast_ack_project(tmp_path_factory, meltano_project) -> Path:
    """The same project, its loader committing (and acknowledging) every 3 s, not every 25 s or full batch."""
    root = tmp_path_factory.mktemp("meltano-fast-ack")
    wrapper = root / "fast-ack-target-postgres"
    config = (REPO / "meltano.yml").read_text()
    loader_executable = "    executable: target-intercom-postgres\n"
    assert loader_executable in config
    meltano_project(root, config.replace(loader_executable, f"    executable: {wrapper}\n"))
    python = root / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "python"
    wrapper.write_text(f"#!{python}\n" + (REPO / "tests" / "fast_ack_target.py").read_text())
    wrapper.chmod(0o755)
    return root


@pytest.mark.slow
def test_a_killed_meltano_run_resumes_from_the_last_acknowledged_state(fast_ack_project, pg_url, pg_schema, tmp_path):
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=3000, seed=12, latency_ms=10) as sim:
        env.update(job_env(sim, pg_url, pg_schema, TAP_INTERCOM_CONVERSATION_MAX_CONCURRENT_REQUESTS="2"))
        job = start_meltano(
            fast_ack_project, env, "run", "intercom-to-postgres", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 180
        while time.time() < deadline and persisted_bookmark(tmp_path / "meltano.db") is None:
            time.sleep(0.5)
        time.sleep(1)
        os.killpg(job.pid, signal.SIGKILL)  # meltano, the tap and the loader, at once
        job.wait(timeout=60)
        interrupted = stored_state(fast_ack_project, env)
        loaded_before_resume = len(table_rows(pg_url, pg_schema))
        assert 0 < loaded_before_resume < 3000

        # The killed run's job record still says "running" until its heartbeat goes stale (about 5 min).
        resumed = meltano_run(fast_ack_project, env, "--force")

        assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert emitted(resumed) < 3000  # it resumed from the acknowledged bookmark, not from the beginning
        assert interrupted["replication_key_value"] < stored_state(fast_ack_project, env)["replication_key_value"]


def documented_sql_on_parts() -> list[str]:
    """docs/tables.md's SQL blocks that read the parts table: the truncation listing and the analytics queries."""
    tables_doc = (REPO / "docs" / "tables.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in tables_doc.split("```sql\n")[1:]]
    return [textwrap.dedent(block) for block in blocks if PARTS in block]


@pytest.mark.slow
def test_meltano_run_keeps_every_part_across_runs_and_a_deleted_conversations_parts_follow_it(
    project, pg_url, pg_schema, tmp_path
):
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=200, seed=14, long_conversation_parts=620) as sim:
        env.update(job_env(sim, pg_url, pg_schema))
        first = meltano_run(project, env)
        assert sim.stats["by_route"]["retrieve"] == emitted(first) == 201  # one GET per conversation, none for parts
        before = table_rows(pg_url, pg_schema, PARTS)
        assert {i: (r["conversation_intercom_id"], r["data"]) for i, r in before.items()} == truth_parts(sim)
        [long_id] = [i for i, c in sim.truth().items() if c["conversation_parts"]["total_count"] > 500]
        assert sum(r["conversation_intercom_id"] == long_id for r in before.values()) == 500

        # Three new parts push the three oldest returned out of Intercom's 500; one part is redacted.
        for _ in range(3):
            sim.touch(long_id)
        edited_id = next(
            i
            for i, r in before.items()
            if r["part_type"] == "comment" and r["body"] and r["conversation_intercom_id"] != long_id
        )
        sim.edit_part(before[edited_id]["conversation_intercom_id"], edited_id)
        sim.reset_stats()
        second = meltano_run(project, env)
        assert sim.stats["by_route"]["retrieve"] == emitted(second) == 2

        after = table_rows(pg_url, pg_schema, PARTS)
        truth = truth_parts(sim)
        kept = set(after) - set(truth)
        assert {i: (after[i]["conversation_intercom_id"], after[i]["data"]) for i in truth} == truth
        assert len(kept) == 3 and all(after[i] == before[i] for i in kept)  # no longer returned, still here
        assert sum(r["conversation_intercom_id"] == long_id for r in after.values()) == 503
        assert {i: r["pk"] for i, r in after.items() if i in before} == {i: r["pk"] for i, r in before.items()}
        edited = after[edited_id]
        assert (edited["redacted"], edited["body"]) == (True, None) and edited["updated_at"] > before[edited_id][
            "updated_at"
        ]

        with psycopg.connect(pg_url) as conn:
            conn.execute(f'SET search_path TO "{pg_schema}"')
            answers = [conn.execute(query).fetchall() for query in documented_sql_on_parts()]
        assert len(answers) == 3
        assert answers[0] == [(long_id, 623, 500, 503, 3, 120)]  # the truncation listing
        assert answers[1] and sum(row[1] for row in answers[1]) > 50  # median first admin reply per team

        gone_at = int(time.time()) - 5
        sim.delete(long_id, at=gone_at)
        meltano_run(project, env)
        rows = table_rows(pg_url, pg_schema, PARTS).values()
        marked = [r["data"] for r in rows if r["conversation_intercom_id"] == long_id]
        assert len(marked) == 503 and all(d["deleted"] is True and d["deleted_at"] == gone_at for d in marked)

        removed = edited["conversation_intercom_id"]
        sim.delete(removed)
        meltano_run(project, {**env, "TAP_INTERCOM_CONVERSATION_DELETED_CONVERSATIONS": "remove"})
        left = {r["conversation_intercom_id"] for r in table_rows(pg_url, pg_schema, PARTS).values()}
        assert not left & {long_id, removed} and left == {c for c, _ in truth_parts(sim).values()}


@pytest.mark.slow
def test_meltano_select_without_the_parts_stream_loads_no_part_and_makes_the_same_calls(
    project, pg_url, pg_schema, tmp_path
):
    env = system_db(tmp_path)
    with IntercomSimulator(conversations=150, seed=15) as sim:
        env.update(job_env(sim, pg_url, pg_schema))
        env["TAP_INTERCOM_CONVERSATION__SELECT"] = json.dumps(["*.*", f"!{PARTS}.*"])
        first = meltano_run(project, env)
        assert sim.stats["by_route"]["retrieve"] == emitted(first) == 150
        assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert table_rows(pg_url, pg_schema, PARTS) == {}
        assert "0 parts" in first.stderr
