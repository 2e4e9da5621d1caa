from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, database_url, meltano, meltano_env, scratch_schema

PLUGIN_TYPES = ("extractors", "loaders", "utilities")


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


def pip_urls(meltano_yml: str) -> dict[tuple[str, str], str | None]:
    """(plugin type, name) -> pip_url, of the plugins a meltano.yml defines."""
    plugins = (yaml.safe_load(meltano_yml) or {}).get("plugins") or {}
    return {(kind, p["name"]): p.get("pip_url") for kind in PLUGIN_TYPES for p in plugins.get(kind) or []}


def meltano_project_files(root: Path, meltano_yml: str) -> Path:
    """A Meltano project as the tests clone it: meltano.yml, and the repository's tap, schemas and dbt project."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "meltano.yml").write_text(meltano_yml)
    for name in ("tap-intercom-conversation", "schemas", "transform"):
        (root / name).symlink_to(REPO / name)
    return root


@pytest.fixture(scope="session")
def meltano_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's meltano.yml after `meltano install`, once per test session (per xdist worker).

    Each worker has its own: tests in one worker run one after another, so a test's `meltano add` that
    installs into an inherited plugin's venv never runs beside another test using it.
    """
    root = meltano_project_files(tmp_path_factory.mktemp("meltano-installed"), (REPO / "meltano.yml").read_text())
    meltano(root, meltano_env(), "install")
    return root


@pytest.fixture(scope="session")
def meltano_project(meltano_installed: Path) -> Callable[..., Path]:
    """new(root, meltano_yml=None): a fresh project whose plugins are the session's installed ones.

    Each plugin whose pip_url is the installed project's gets that plugin's venv (a link under .meltano/);
    any other plugin is not installed (meltano installs it when a command needs it). Everything else
    (.meltano/meltano.db, run/, logs) is the new project's own.
    """
    installed = pip_urls((meltano_installed / "meltano.yml").read_text())

    def new(root: Path, meltano_yml: str | None = None) -> Path:
        text = (REPO / "meltano.yml").read_text() if meltano_yml is None else meltano_yml
        meltano_project_files(root, text)
        for (kind, name), pip_url in pip_urls(text).items():
            venvs = meltano_installed / ".meltano" / kind / name
            if pip_url and installed.get((kind, name)) == pip_url and venvs.is_dir():
                (root / ".meltano" / kind).mkdir(parents=True, exist_ok=True)
                (root / ".meltano" / kind / name).symlink_to(venvs)
        return root

    return new


@pytest.fixture
def project(tmp_path: Path, meltano_project: Callable[..., Path]) -> Path:
    """A fresh Meltano project for one test (`meltano config set` and `meltano add` write into meltano.yml).

    A module whose tests only read their project overrides this with a module-scoped one of the same name.
    """
    return meltano_project(tmp_path / "project")
