"""dbt, with the loader's database and schema as `meltano run` hands them to the loader.

A Meltano plugin sees only its own settings: a value set with `meltano config set target-postgres ...`
lives in meltano.yml, which the transformer cannot read. So, run by Meltano (MELTANO_PROJECT_ROOT set),
this asks Meltano itself for the loader's config (`meltano invoke --dump=config LOADER`: meltano.yml,
.env, variables, the active environment, inherit_from), through the meltano running it
(.meltano/run/bin, which Meltano links to itself), and hands it to transform/profiles.yml as the
loader's own variables (TARGET_POSTGRES_SQLALCHEMY_URL or _HOST, _PORT, _USER, _PASSWORD, _DATABASE;
_DEFAULT_TARGET_SCHEMA); then it runs dbt with its arguments. The loader is target-postgres, or the
transformer's setting `loader` (INTERCOM_METRICS_LOADER) for another workspace's.
Run without Meltano, it is dbt, reading those variables from the environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

CONNECTION = ("sqlalchemy_url", "host", "port", "user", "password", "database", "default_target_schema")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class SettingsError(Exception):
    """Meltano could not give the loader's settings."""


def loader_config(root: str, loader: str) -> dict:
    """The loader's config as Meltano resolves it for `meltano run`."""
    meltano = Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or Path(root) / ".meltano") / "run" / "bin"
    try:
        done = subprocess.run(
            [str(meltano), "invoke", "--dump=config", loader], cwd=root, capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SettingsError(f"cannot ask Meltano ({meltano}) for {loader}'s settings: {error}") from None
    if done.returncode != 0:
        lines = [_ANSI.sub("", line).strip() for line in done.stderr.splitlines() if line.strip()]
        raise SettingsError(f"Meltano cannot give {loader}'s settings: {lines[-1] if lines else done.returncode}")
    try:
        config = json.loads(done.stdout)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise SettingsError(f"Meltano gave {loader}'s settings in an unexpected form (not a JSON object)")
    return config


def loader_variables(config: dict) -> dict[str, str]:
    """The variables transform/profiles.yml reads, from the loader's config (an unset one is left out)."""
    return {
        "TARGET_POSTGRES_" + name.upper(): str(config[name])
        for name in CONNECTION
        if config.get(name) not in (None, "")
    }


def main() -> None:
    env = dict(os.environ)
    root = env.get("MELTANO_PROJECT_ROOT")
    if root:
        loader = env.get("INTERCOM_METRICS_LOADER") or "target-postgres"
        try:
            config = loader_config(root, loader)
        except SettingsError as error:
            print(f"intercom-metrics-dbt: error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        for name in CONNECTION:
            env.pop("TARGET_POSTGRES_" + name.upper(), None)
        env.update(loader_variables(config))
    dbt = Path(sys.executable).parent / "dbt"
    os.execve(dbt, [str(dbt), *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
