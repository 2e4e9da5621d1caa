"""The settings of the job a table belongs to: the tap's and the loader's, resolved as `meltano run` resolves them.

Through Meltano (`meltano invoke intercom-conversation-table:verify`, `...:apply`), each plugin's
config is asked of Meltano itself: `meltano invoke --dump=config PLUGIN` prints the very config file
`meltano run` hands that plugin (meltano.yml, .env, variables, the active environment, inherit_from;
shell > .env > meltano.yml), for the extractor and the loader named by --extractor and --loader. A
utility sees only its own settings, so this is the one way it can read the pair's. The nested meltano
is the one running the utility (.meltano/run/bin, which Meltano links to itself), in the same project
and environment (MELTANO_PROJECT_ROOT, MELTANO_ENVIRONMENT, exported to every invoked plugin).

Without Meltano: a --config file, or ENV for the variables exported in this process only
(TAP_INTERCOM_CONVERSATION_*, TARGET_POSTGRES_*). No .env is read: singer-sdk's --config ENV walks up
from the installed package to a .env and lets it override the shell, so it is not used here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from target_intercom_postgres.errors import InputError

TAP_PREFIX = "TAP_INTERCOM_CONVERSATION_"
LOADER_PREFIX = "TARGET_POSTGRES_"
LOADER_CONNECTION = ("sqlalchemy_url", "host", "port", "user", "password", "database", "default_target_schema")
DUMP_TIMEOUT_SECONDS = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class JobSettings:
    tap: dict[str, t.Any] | None  # None: not asked for (the table tool)
    loader: dict[str, t.Any]
    source: str  # where they came from, for the report's first lines

    @property
    def database_url(self) -> str:
        return loader_database_url(self.loader)

    @property
    def schema(self) -> str:
        return str(self.loader.get("default_target_schema") or "public")


def loader_database_url(config: t.Mapping[str, t.Any]) -> str:
    """The loader's database as target-postgres builds it: sqlalchemy_url, else host, port, user, password, database."""
    if config.get("sqlalchemy_url"):
        return str(config["sqlalchemy_url"])
    if not config.get("host"):
        raise InputError("no database: the loader has neither sqlalchemy_url nor host set")
    port = config.get("port")
    return URL.create(
        "postgresql+psycopg",
        username=config.get("user") or None,
        password=config.get("password") or None,
        host=str(config["host"]),
        port=int(port) if port not in (None, "") else None,
        database=config.get("database") or None,
    ).render_as_string(hide_password=False)


def meltano_settings(extractor: str | None, loader: str) -> JobSettings:
    """The extractor's and the loader's config as `meltano run EXTRACTOR LOADER` would hand them over."""
    root = os.environ.get("MELTANO_PROJECT_ROOT")
    if not root:
        raise InputError(
            "--extractor/--loader read a Meltano project's settings: run it as "
            "`meltano invoke intercom-conversation-table:verify` (or pass --config without them)"
        )
    meltano = Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or Path(root) / ".meltano") / "run" / "bin"
    # Both asked at once: each nested meltano takes seconds to start, most of a check's start-up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        asked_loader = pool.submit(_dump, meltano, root, loader)
        tap = _dump(meltano, root, extractor) if extractor else None
        loader_config = asked_loader.result()
    environment = os.environ.get("MELTANO_ENVIRONMENT") or "none"
    names = f"extractor {extractor}, loader {loader}" if extractor else f"loader {loader}"
    return JobSettings(tap, loader_config, f"Meltano ({names}, environment {environment})")


def _dump(meltano: Path, root: str, plugin: str) -> dict[str, t.Any]:
    try:
        done = subprocess.run(
            [str(meltano), "invoke", "--dump=config", plugin],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=DUMP_TIMEOUT_SECONDS,
            env=os.environ.copy(),
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InputError(f"cannot ask Meltano ({meltano}) for {plugin}'s settings: {error}") from None
    if done.returncode != 0:
        lines = [_ANSI.sub("", line).strip() for line in done.stderr.splitlines() if line.strip()]
        raise InputError(f"Meltano cannot give {plugin}'s settings: {lines[-1] if lines else done.returncode}")
    try:
        config = json.loads(done.stdout)
    except ValueError:
        raise InputError(f"Meltano gave {plugin}'s settings in an unexpected form (not JSON)") from None
    if not isinstance(config, dict):
        raise InputError(f"Meltano gave {plugin}'s settings in an unexpected form (not an object)")
    return config


def environment_settings(names: t.Iterable[str], prefix: str) -> dict[str, str]:
    """Settings from variables exported in this process only (PREFIX + NAME upper-cased): never a .env."""
    return {name: os.environ[prefix + name.upper()] for name in names if os.environ.get(prefix + name.upper())}
