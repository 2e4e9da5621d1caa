"""The type checker as CI runs it: mypy over the tap package (settings in mypy.ini) reports no error.

It also checks that every override in the modules mypy.ini names carries @override, so a singer-sdk
upgrade that renames or re-types a method the tap overrides fails here rather than in a user's run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_reports_no_error_in_the_tap_package():
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy.ini")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout, run.stdout
