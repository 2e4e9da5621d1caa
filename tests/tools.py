"""Where the tests find the executables they run as users run them: the only place that knows.

`python3 scripts/test.py` builds each environment (scripts/bootstrap.py) and exports its bin folder as
INTERCOM_TOOLS_<ENV> (INTERCOM_TOOLS_DEV, _MELTANO, _TARGET_POSTGRES, _TARGET_JSONL, _UV). Run another way
(pytest from an IDE, another layout), the tests take the folder from that variable when set, else the
repository's .venvs/<env>/bin, else the executable found on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("dev", "meltano", "target-postgres", "target-jsonl", "dbt", "uv")


def variable(env: str) -> str:
    return "INTERCOM_TOOLS_" + env.upper().replace("-", "_")


def tool(env: str, executable: str) -> str:
    """The executable `executable` of environment `env` (see the module docstring for the search order)."""
    folder = os.environ.get(variable(env))
    if folder:
        return str(Path(folder) / executable)
    local = REPO / ".venvs" / env / ("Scripts" if os.name == "nt" else "bin") / executable
    if local.exists():
        return str(local)
    return shutil.which(executable) or str(local)  # the last: a missing tool's error names where it was sought
