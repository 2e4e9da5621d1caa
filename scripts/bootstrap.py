"""Set up the project's environments on a fresh machine that has only Python >= 3.10.

Standard library only: the two README commands run this first. Each environment in .venvs/ is built
from scripts/requirements/<name>.txt with uv (itself installed from PyPI into .venvs/uv) and rebuilt
only when that file or the tap's pyproject.toml (its dependencies) changes. Packages are compiled to
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


def _bin(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def _uv() -> Path:
    tools = VENVS / "uv"
    uv = _bin(tools, "uv")
    if not uv.exists():
        print("bootstrap: installing uv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(tools)
        subprocess.run([str(_bin(tools, "python")), "-m", "pip", "install", "-q", "uv"], check=True)
    return uv


def environment(name: str) -> Path:
    """The virtualenv .venvs/<name>, (re)built when its requirements changed; returns its bin folder."""
    requirements = REQUIREMENTS / f"{name}.txt"
    env = VENVS / name
    stamp = env / ".requirements-sha256"
    digest = hashlib.sha256(BUILD + requirements.read_bytes() + TAP_PROJECT.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        uv = _uv()
        print(f"bootstrap: building .venvs/{name}", flush=True)
        subprocess.run([str(uv), "venv", "-q", "--clear", "-p", sys.executable, str(env)], check=True)
        install = [str(uv), "pip", "install", "-q", "--compile-bytecode", "-p", str(_bin(env, "python"))]
        subprocess.run([*install, "-r", str(requirements)], check=True, cwd=REPO)
        stamp.write_text(digest)
    return _bin(env, "python").parent


def main(names: list[str]) -> None:
    for name in names:
        environment(name)


if __name__ == "__main__":
    main(sys.argv[1:] or ["dev", "meltano", "target-postgres", "target-jsonl"])
