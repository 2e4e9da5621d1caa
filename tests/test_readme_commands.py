"""Every shell command the README shows runs in a test: a command that fails cannot stay in the README.

The README's Meltano recipes run here verbatim, as one bash script per block, against the simulator and
a real PostgreSQL; only placeholders are replaced (the database URL, the schema, `<repo>`, the git URL),
the token is typed on stdin, and the simulator's URL is a variable (Intercom itself is not reachable).
The other commands are each run by the test named in COMMANDS_RUN_ELSEWHERE; a new README command fails
`test_every_readme_command_is_run_by_a_test` until it is run somewhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    MELTANO,
    REPO,
    VERIFY_README_COMMANDS,
    assert_table_is_the_truth,
    meltano_env,
    run_tap,
    scratch_schema,
    sqlalchemy_url,
    tap_config,
    their_project,
)
from tests.intercom_simulator import IntercomSimulator

URL_PLACEHOLDER = "'postgresql+psycopg://user:password@host:5432/dbname'"
GIT_SOURCE = "git+https://github.com/<owner>/<repo>.git@<tag>#subdirectory=tap-intercom-conversation"

METRICS_TEST = "tests/test_metrics_meltano.py::test_the_job_with_metrics_builds_the_models_in_the_loaders_schema"
# Commands run by another test, in the form given: what that test runs and where (equivalent, not verbatim).
COMMANDS_RUN_ELSEWHERE = {
    "python3 scripts/demo.py": "test_the_demo_runs_as_written below",
    "python3 scripts/test.py": "the test runner itself",
    "pip install ./tap-intercom-conversation": "tests/test_packaging.py (uv pip install of the same path)",
    "tap-intercom-conversation --config config.json --discover > catalog.json": (
        "tests/test_other_targets.py::test_discovery_describes_the_stream_with_its_keys_and_schema"
    ),
    "tap-intercom-conversation --config config.json --state state.json | target-jsonl": (
        "tests/test_other_targets.py (the pipe) and test_a_state_message_is_taken_as_its_value below (--state)"
    ),
    "tap-intercom-conversation --config ENV": "tests/test_secrets.py::test_the_token_never_appears_in_any_output...",
    "meltano run intercom-to-postgres-with-metrics": METRICS_TEST,
    "meltano invoke dbt-postgres:full-refresh": METRICS_TEST,
}


def readme_blocks() -> list[list[str]]:
    """The README's ```sh blocks, each a list of commands without their trailing comments."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = []
    for block in readme.split("```sh\n")[1:]:
        lines = [re.sub(r"\s{2,}#.*$", "", line).strip() for line in block.split("```", 1)[0].splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def block(starting_with: str) -> list[str]:
    return next(b for b in readme_blocks() if b and b[0].startswith(starting_with))


def run_block(commands: list[str], cwd: Path, env: dict[str, str], stdin: str, **replace: str) -> str:
    script = "\n".join(["set -euo pipefail", "shopt -s expand_aliases", *commands]) + "\n"
    for old, new in replace.items():
        assert old in script, old
        script = script.replace(old, new)
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, f"{script}\n{done.stderr[-4000:]}"
    return done.stderr


def test_every_readme_command_is_run_by_a_test():
    meltano_blocks = [
        block("python3 scripts/bootstrap.py meltano"),
        block("meltano add --plugin-type extractor"),
        block("echo 'TAP_INTERCOM_CONVERSATION_SOURCE"),
    ]
    run_here = {command for commands in meltano_blocks for command in commands}
    run_here |= set(VERIFY_README_COMMANDS)  # the verify block: tests/test_verify.py runs each (test_readme)
    shown = {command for commands in readme_blocks() for command in commands}
    assert shown - run_here - set(COMMANDS_RUN_ELSEWHERE) == set()
    assert set(COMMANDS_RUN_ELSEWHERE) <= shown  # no stale entry


def meltano_on_path(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """`meltano` on PATH, as a user has it after `pipx install meltano==4.4.1` (or the README's alias)."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir(exist_ok=True)
    if not (bin_folder / "meltano").exists():
        (bin_folder / "meltano").symlink_to(MELTANO)
    return {**env, "PATH": f"{bin_folder}:{env['PATH']}"}


@pytest.mark.slow
def test_the_readmes_meltano_recipes_run_as_written(pg_url, pg_schema, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "meltano.yml", project / "meltano.yml")
    for name in ("tap-intercom-conversation", "schemas", "scripts", ".venvs", "transform"):
        (project / name).symlink_to(REPO / name)
    url = sqlalchemy_url(pg_url)
    with (
        IntercomSimulator(conversations=300, seed=51) as first,
        IntercomSimulator(conversations=120, seed=52, token="second-workspace-token") as second,
        scratch_schema(pg_url) as schema_b,
    ):
        env = meltano_on_path(
            tmp_path,
            meltano_env(
                TAP_INTERCOM_CONVERSATION_API_URL=first.url,
                TAP_INTERCOM_CONVERSATION__B_API_URL=second.url,
            ),
        )
        log = run_block(
            block("python3 scripts/bootstrap.py meltano"),
            project,
            env,
            first.token,
            **{
                URL_PLACEHOLDER: f"'{url}'",
                "default_target_schema sales": f"default_target_schema {pg_schema}",
            },
        )
        assert_table_is_the_truth(pg_url, pg_schema, first)
        assert first.token not in log and first.token not in (project / "meltano.yml").read_text()
        assert f"TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN='{first.token}'" in (project / ".env").read_text()

        log = run_block(
            block("meltano add --plugin-type extractor"),
            project,
            env,
            second.token,
            **{"default_target_schema intercom_b": f"default_target_schema {schema_b}"},
        )
        assert_table_is_the_truth(pg_url, schema_b, second)
        assert_table_is_the_truth(pg_url, pg_schema, first)  # the first workspace's table untouched
        assert second.token not in log


@pytest.mark.slow
def test_the_readmes_own_project_recipe_runs_as_written(pg_url, pg_schema, tmp_path):
    other = their_project(tmp_path / "their-project")
    with IntercomSimulator(conversations=150, seed=53) as sim:
        env = meltano_on_path(
            tmp_path,
            meltano_env(
                TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
                TARGET_INTERCOM_POSTGRES_DEFAULT_TARGET_SCHEMA=pg_schema,
            ),
        )
        log = run_block(
            block("echo 'TAP_INTERCOM_CONVERSATION_SOURCE"),
            other,
            env,
            sim.token,
            **{
                GIT_SOURCE: (REPO / "tap-intercom-conversation").as_uri(),
                "<repo>/": f"{REPO}/",
                URL_PLACEHOLDER: f"'{sqlalchemy_url(pg_url)}'",
            },
        )
        assert_table_is_the_truth(pg_url, pg_schema, sim)
        assert sim.token not in log


def test_a_state_message_is_taken_as_its_value(tmp_path):
    """`--state` given the last line of a run's output (a STATE message) resumes from its value."""
    with IntercomSimulator(conversations=40, seed=54) as sim:
        first = run_tap(tap_config(sim))
        message = next(m for m in reversed(first.messages) if m["type"] == "STATE")
        again = run_tap(tap_config(sim), message)
        bad = run_tap(tap_config(sim), {"type": "STATE", "value": "nothing"})

    assert first.returncode == 0 and len(first.records) == 40
    assert again.returncode == 0 and again.records == []  # resumed: nothing changed
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].endswith("is a STATE message whose value is not a JSON object")


def test_meltano_yml_carries_no_comment_for_meltano_config_set_to_move():
    """`meltano config set` rewrites meltano.yml and moves comment blocks: explanations live in docs/."""
    lines = (REPO / "meltano.yml").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.lstrip().startswith("#") or re.search(r"\s#\s", line)] == []


@pytest.mark.slow
def test_the_demo_runs_as_written():
    """`python3 scripts/demo.py` as a user types it: the simulator, an embedded PostgreSQL, `meltano run`."""
    env = {
        name: value
        for name, value in meltano_env().items()
        if not name.startswith(("TAP_INTERCOM_", "TARGET_POSTGRES_"))
    }
    done = subprocess.run(
        ["bash", "-c", block("python3 scripts/demo.py")[0]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo: 1000 conversations" in done.stdout, done.stdout[-3000:]
    assert "demo-token" not in done.stdout + done.stderr
