"""Runs the real executables the way users do: the tap, target-postgres, the table utility."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.intercom_simulator.errors import UNAUTHORIZED
from tests.postgres import sqlalchemy_url
from tests.tools import tool

REPO = Path(__file__).resolve().parents[1]
STREAM = "intercom_conversation_v1"
PARTS = "intercom_conversation_part_v1"


TAP = tool("dev", "tap-intercom-conversation")
TABLE = tool("dev", "intercom-conversation-table")
TARGET_POSTGRES = os.environ.get("TARGET_POSTGRES_BIN") or tool("target-postgres", "target-postgres")
TARGET_JSONL = tool("target-jsonl", "target-jsonl")


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        """The conversation stream's records."""
        return self.records_of(STREAM)

    def records_of(self, stream: str) -> list[dict]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def bookmark(self) -> dict:
        return self.states[-1]["bookmarks"][STREAM]


def tap_config(sim, **settings) -> dict:
    return {"access_token": sim.token, "api_url": sim.url, **settings}


def _write_json(folder: Path, name: str, value: dict | None) -> list[str]:
    if value is None:
        return []
    path = folder / name
    path.write_text(json.dumps(value))
    return [f"--{name.split('.')[0]}", str(path)]


def start_tap(folder: Path, config: dict, **popen: object) -> subprocess.Popen:
    """The tap started on `config` (written into `folder`), its stdout a pipe: for a test that reads it as it runs."""
    return subprocess.Popen([TAP, *_write_json(folder, "config.json", config)], stdout=subprocess.PIPE, **popen)


def run_tap(config: dict, state: dict | None = None, *args: str, timeout: float = 300) -> TapRun:
    with tempfile.TemporaryDirectory() as folder:
        argv = [TAP, *_write_json(Path(folder), "config.json", config)]
        argv += _write_json(Path(folder), "state.json", state)
        done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout)
    run = TapRun(done.returncode, done.stdout, done.stderr)
    if "--discover" not in args:
        run.messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return run


def target_config(pg_url: str, schema: str, **settings) -> dict:
    return {
        "sqlalchemy_url": sqlalchemy_url(pg_url),
        "default_target_schema": schema,
        "add_record_metadata": False,
        "activate_version": False,
        "use_copy": True,  # as meltano.yml runs it
        **settings,
    }


def apply_table(pg_url: str, schema: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TABLE, "--sqlalchemy-url", sqlalchemy_url(pg_url), "--schema", schema],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def load(
    pg_url: str,
    schema: str,
    config: dict,
    state: dict | None = None,
    *,
    applied: bool = True,
    target: str = TARGET_POSTGRES,
    **target_settings,
) -> tuple[TapRun, str]:
    """tap | target-postgres (or another `target`) into the applied tables (not applied first: `applied=False`, a
    careless run); returns the tap run and the target's last STATE line."""
    if applied:
        apply_table(pg_url, schema)
    with tempfile.TemporaryDirectory() as folder:
        target_cfg = Path(folder) / "target.json"
        target_cfg.write_text(json.dumps(target_config(pg_url, schema, **target_settings)))
        argv = [TAP, *_write_json(Path(folder), "config.json", config), *_write_json(Path(folder), "state.json", state)]
        with open(Path(folder) / "tap.err", "w+") as tap_err:
            tap = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=tap_err)
            target = subprocess.run(
                [target, "--config", str(target_cfg)],
                stdin=tap.stdout,
                capture_output=True,
                text=True,
                timeout=600,
            )
            tap.stdout.close()
            tap.wait(timeout=60)
            tap_err.seek(0)
            stderr = tap_err.read()
    assert target.returncode == 0, target.stderr[-3000:]
    run = TapRun(tap.returncode, "", stderr)
    states = [line for line in target.stdout.splitlines() if line.strip()]
    return run, states[-1] if states else ""


def table_rows(pg_url: str, schema: str, table: str = STREAM) -> dict[str, dict]:
    with psycopg.connect(pg_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f'SELECT * FROM "{schema}".{table} ORDER BY pk')
        return {row["intercom_id"]: row for row in cur.fetchall()}


def revoked_after(gets: int):
    """A simulator hook: Intercom refuses the token from the `gets`+1-th GET of a conversation on (a revoked token)."""
    seen = itertools.count(1)

    def answer(method: str, path: str, body: object) -> tuple[int, dict] | None:
        if method != "GET" or not path.startswith("/conversations/") or next(seen) <= gets:
            return None
        code, message = UNAUTHORIZED
        return 401, {"type": "error.list", "request_id": None, "errors": [{"code": code, "message": message}]}

    return answer
