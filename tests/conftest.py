from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import database_url, scratch_schema


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A libpq URL of a real PostgreSQL server."""
    with database_url() as url:
        yield url


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh, empty schema dropped after the test."""
    with scratch_schema(pg_url) as name:
        yield name
