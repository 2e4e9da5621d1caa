"""The README's metrics commands through real Meltano: the job loads, then the transformer builds the
models in the loader's schema and database, as Meltano resolves the loader's settings (one set with
`meltano config set`, one a variable); `dbt-postgres:full-refresh` rebuilds them (incremental builds
after changes and deletions: tests/test_metrics.py)."""

from __future__ import annotations

import pytest

from tests import metrics_histories as h
from tests.helpers import REPO, admin_rows, by_conversation, meltano, meltano_env, sqlalchemy_url
from tests.intercom_simulator import IntercomSimulator


@pytest.mark.slow
def test_the_job_with_metrics_builds_the_models_in_the_loaders_schema(pg_url, pg_schema, tmp_path, meltano_project):
    project = meltano_project(tmp_path / "project")
    with IntercomSimulator(conversations=0, seed=26) as sim:
        ids = {name: sim.add_history(history) for name, history in h.SCRIPTED.items()}
        env = meltano_env(
            TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=sim.token,
            TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
            TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
            MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
        )
        # The schema where users set it (meltano.yml), the database in a variable: both reach dbt.
        meltano(project, env, "config", "set", "target-postgres", "default_target_schema", pg_schema)
        run = meltano(project, env, "run", "intercom-to-postgres-with-metrics")

        assert "Completed successfully" in run.stderr, run.stderr[-3000:]
        metrics = by_conversation(pg_url, pg_schema, "intercom_conversation_metrics")
        assert metrics[ids["STORY"]]["median_reply_wait_seconds"] == 600
        assert admin_rows(pg_url, pg_schema) == h.ADMINS

        meltano(project, env, "invoke", "dbt-postgres:full-refresh")
        assert by_conversation(pg_url, pg_schema, "intercom_conversation_metrics") == metrics
        assert admin_rows(pg_url, pg_schema) == h.ADMINS
    assert not (REPO / "transform" / "target").exists()  # dbt's output stays in .meltano/
