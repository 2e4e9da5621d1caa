"""Set up the project's environments on a fresh machine that has only Python >= 3.10.

Standard library only: the two README commands run this first. Each environment in .venvs/ is built
with uv (itself installed from PyPI into .venvs/uv) and rebuilt only when what it installs changes:
.venvs/dev is the tap (editable, [postgres] extra) with the `dev` dependency group of its pyproject.toml
(the tests' and the demo's tools); the others are separate programs the tests run, one pin each in
scripts/requirements/<name>.txt (meltano, target-postgres, target-jsonl, dbt). Packages are compiled to
bytecode as they are installed, as pip does: without it, a machine that sets PYTHONDONTWRITEBYTECODE
compiles singer-sdk and its dependencies again in every tap, target and test process (about a second each).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".venvs"
REQUIREMENTS = REPO / "scripts" / "requirements"
TAP_PROJECT = REPO / "tap-intercom-conversation" / "pyproject.toml"
BUILD = b"uv pip install --compile-bytecode\n"  # how an environment is built: a change rebuilds them all
TAP_WITH_DEV_GROUP = [
    "-e",
    "./tap-intercom-conversation[postgres]",
    "--group",
    "tap-intercom-conversation/pyproject.toml:dev",
]


def _bin(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def uv() -> Path:
    """uv, installed from PyPI into .venvs/uv the first time."""
    tools = VENVS / "uv"
    executable = _bin(tools, "uv")
    if not executable.exists():
        print("bootstrap: installing uv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(tools)
        subprocess.run([str(_bin(tools, "python")), "-m", "pip", "install", "-q", "uv"], check=True)
    return executable


def environment(name: str) -> Path:
    """The virtualenv .venvs/<name>, (re)built when what it installs changed; returns its bin folder."""
    requirements = REQUIREMENTS / f"{name}.txt"
    packages = TAP_WITH_DEV_GROUP if name == "dev" else ["-r", str(requirements.relative_to(REPO))]
    env = VENVS / name
    stamp = env / ".requirements-sha256"
    listed = requirements.read_bytes() if name != "dev" else b""
    digest = hashlib.sha256(BUILD + " ".join(packages).encode() + listed + TAP_PROJECT.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        installer = str(uv())
        print(f"bootstrap: building .venvs/{name}", flush=True)
        subprocess.run([installer, "venv", "-q", "--clear", "-p", sys.executable, str(env)], check=True)
        install = [installer, "pip", "install", "-q", "--compile-bytecode", "-p", str(_bin(env, "python"))]
        subprocess.run([*install, *packages], check=True, cwd=REPO)
        stamp.write_text(digest)
    return _bin(env, "python").parent


def main(names: list[str]) -> None:
    for name in names:
        environment(name)


if __name__ == "__main__":
    main(sys.argv[1:] or ["dev", "meltano", "target-postgres", "target-jsonl", "dbt"])
