"""`pip install ./tap-intercom-conversation` (not editable) carries schemas/ inside the wheel: one source, no copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, tool

UV = tool("uv", "uv")


@pytest.mark.slow
def test_a_non_editable_install_discovers_the_repository_schemas(tmp_path):
    env = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(env)], check=True)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "-p", str(env / "bin" / "python"), str(REPO / "tap-intercom-conversation")],
        check=True,
        timeout=600,
    )
    (tmp_path / "config.json").write_text(json.dumps({"access_token": "not-used-by-discovery"}))

    discovered = subprocess.run(
        [str(env / "bin" / "tap-intercom-conversation"), "--config", str(tmp_path / "config.json"), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    packaged_sql = subprocess.run(
        [
            str(env / "bin" / "python"),
            "-c",
            "from intercom_conversation_shared import schema_files as s; print(s.schema_path(s.STREAM_NAME + '.sql'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()

    streams = {s["tap_stream_id"]: s["schema"] for s in json.loads(discovered.stdout)["streams"]}
    for name, schema in streams.items():
        source = json.loads((REPO / "schemas" / f"{name}.json").read_text())
        assert schema["properties"] == source["properties"]
    assert str(REPO) not in packaged_sql  # read from the installed package, not from this checkout
    assert Path(packaged_sql).read_text() == (REPO / "schemas" / "intercom_conversation_v1.sql").read_text()
