#!/usr/bin/env python3
"""Which target-postgres settings load intercom_conversation_v1 fastest, and correctly.

Writes a deterministic Singer messages file (SCHEMA + N conversation records of about 3 KB, shaped
like Intercom's GET /conversations/{id}), then for each setting: a fresh scratch schema with
schemas/intercom_conversation_v1.sql applied, the real target-postgres on the file (timed, wall
clock, process start included), a check that every row arrived once with a pk from the sequence,
then the same file again (every row already there: the upsert path), and the schema dropped;
for each, best and median of --repeat runs (wall clock) and target-postgres's own CPU seconds.

    .venvs/dev/bin/python benchmarks/bench_loader.py [--records 20000] [--database-url postgresql://...]

Needs the dev environment (psycopg, the tap package) and .venvs/target-postgres (or TARGET_POSTGRES_BIN).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from bench import TARGET

from intercom_conversation_shared.schema_files import STREAM_NAME, stream_schema
from target_intercom_postgres.table import apply

REPO = Path(__file__).resolve().parents[1]
TARGET_BIN = Path(TARGET)
# The loader config we run with; each setting below overrides parts of it.
BASE = {"add_record_metadata": False, "activate_version": False, "load_method": "upsert"}
SETTINGS: list[tuple[str, dict]] = [
    ("batch 1000, copy", {"batch_size_rows": 1000, "use_copy": True}),
    ("batch 5000, copy", {"batch_size_rows": 5000, "use_copy": True}),
    ("batch 10000, copy", {"batch_size_rows": 10000, "use_copy": True}),
    ("batch 50000, copy", {"batch_size_rows": 50000, "use_copy": True}),
    ("batch 10000, INSERT (use_copy false)", {"batch_size_rows": 10000, "use_copy": False}),
    (
        "batch 10000, copy, validate_records false",
        {"batch_size_rows": 10000, "use_copy": True, "validate_records": False},
    ),
    (
        "batch 10000, copy, load_method append-only",
        {"batch_size_rows": 10000, "use_copy": True, "load_method": "append-only"},
    ),
    (
        "batch 10000, copy, process_activate_version_messages false",
        {"batch_size_rows": 10000, "use_copy": True, "process_activate_version_messages": False},
    ),
]
WORDS = [
    "refund",
    "order",
    "invoice",
    "shipping",
    "delayed",
    "account",
    "login",
    "password",
    "reset",
    "billing",
    "plan",
    "upgrade",
    "cancel",
    "subscription",
    "thanks",
    "please",
    "help",
    "issue",
    "error",
    "page",
]


def conversation(rng: random.Random, n: int, updated_at: int) -> dict:
    """An Intercom conversation payload with its parts, about 3 KB as JSON."""

    def sentence(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."

    admin = {"type": "admin", "id": str(rng.randint(1000, 9999)), "name": "Agent", "email": "agent@example.com"}
    parts = [
        {
            "type": "conversation_part",
            "id": str(n * 10 + i),
            "part_type": rng.choice(["comment", "note", "assignment"]),
            "body": f"<p>{sentence(rng.randint(12, 30))}</p>",
            "created_at": updated_at - 600 * (5 - i),
            "updated_at": updated_at - 600 * (5 - i),
            "notified_at": updated_at - 600 * (5 - i),
            "assigned_to": None,
            "author": admin,
            "attachments": [],
            "external_id": None,
            "redacted": False,
        }
        for i in range(rng.randint(3, 6))
    ]
    return {
        "type": "conversation",
        "id": str(n),
        "created_at": updated_at - 86400,
        "updated_at": updated_at,
        "waiting_since": None,
        "snoozed_until": None,
        "title": sentence(5),
        "open": n % 3 != 0,
        "state": ["open", "closed", "snoozed"][n % 3],
        "read": n % 2 == 0,
        "priority": "not_priority",
        "admin_assignee_id": int(admin["id"]),
        "team_assignee_id": rng.randint(100, 999),
        "source": {
            "type": "conversation",
            "id": str(n * 7),
            "delivered_as": "customer_initiated",
            "subject": "",
            "body": f"<p>{sentence(25)}</p>",
            "author": {"type": "user", "id": uuid.UUID(int=n).hex},
            "attachments": [],
            "url": None,
            "redacted": False,
        },
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": uuid.UUID(int=n).hex}]},
        "tags": {
            "type": "tag.list",
            "tags": [{"type": "tag", "id": str(rng.randint(1, 50)), "name": rng.choice(WORDS)}],
        },
        "custom_attributes": {"plan": rng.choice(["free", "pro", "enterprise"]), "region": rng.choice(["us", "eu"])},
        "statistics": {
            "type": "conversation_statistics",
            "time_to_first_close": rng.randint(60, 9000),
            "count_reopens": rng.randint(0, 3),
            "count_assignments": rng.randint(0, 4),
        },
        "conversation_parts": {
            "type": "conversation_part.list",
            "conversation_parts": parts,
            "total_count": len(parts),
        },
    }


def write_messages(path: Path, records: int) -> float:
    """The messages file, the same bytes for the same count. Returns the average data size in bytes."""
    rng = random.Random(records)
    total = 0
    with path.open("w") as out:
        out.write(
            json.dumps(
                {
                    "type": "SCHEMA",
                    "stream": STREAM_NAME,
                    "schema": stream_schema(),
                    "key_properties": ["intercom_id"],
                    "bookmark_properties": ["updated_at"],
                }
            )
            + "\n"
        )
        for n in range(records):
            updated_at = 1_700_000_000 + 60 * n
            data = conversation(rng, 100_000 + n, updated_at)
            total += len(json.dumps(data))
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated_at))
            record = {
                "intercom_id": data["id"],
                "title": data["title"],
                "state": data["state"],
                "open": data["open"],
                "read": data["read"],
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(data["created_at"])),
                "updated_at": iso,
                "data": data,
            }
            out.write(json.dumps({"type": "RECORD", "stream": STREAM_NAME, "record": record}) + "\n")
    return total / records


def run_target(config: dict, messages: Path, workdir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of target-postgres itself) on the file, start-up included.

    The CPU time shows what the loader's own Python costs, apart from the database and from
    whatever else the machine is doing.
    """
    path = workdir / "config.json"
    path.write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with messages.open() as stdin:
        started = time.perf_counter()
        done = subprocess.run(
            [str(TARGET_BIN), "--config", str(path)], stdin=stdin, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"target-postgres failed with {config}:\n{done.stderr[-2000:]}")
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def check(conn: psycopg.Connection, schema: str, records: int) -> None:
    """Every record once, pks unique and drawn from the table's sequence."""
    got = conn.execute(
        f"SELECT count(*), count(DISTINCT pk),"
        f' coalesce(max(pk) <= (SELECT last_value FROM "{schema}".{STREAM_NAME}_pk_seq), true)'
        f' FROM "{schema}".{STREAM_NAME}'
    ).fetchone()
    if got != (records, records, True):
        sys.exit(f"wrong table contents in {schema}: (rows, distinct pks, pks from sequence) = {got}")


def measure(url: str, config: dict, messages: Path, workdir: Path, records: int) -> list[tuple[float, float]]:
    """[first load, reload] (wall, CPU) seconds into a fresh scratch schema with the table SQL applied."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    apply(url, schema)
    config = {
        **config,
        "default_target_schema": schema,
        "sqlalchemy_url": url.replace("postgresql://", "postgresql+psycopg://", 1),
    }
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            first = run_target(config, messages, workdir)
            check(conn, schema, records)
            again = run_target(config, messages, workdir)
            check(conn, schema, records)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return [first, again]


def cell(records: int, timings: list[tuple[float, float]]) -> str:
    """Best wall time as rows/s, then best and median wall seconds and median CPU seconds."""
    walls = [wall for wall, _ in timings]
    cpu = statistics.median(cpu for _, cpu in timings)
    return f"{records / min(walls):6.0f} {min(walls):6.2f} {statistics.median(walls):6.2f} {cpu:6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting: best and median are reported")
    parser.add_argument(
        "--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--only", help="run only the settings whose label contains this text")
    args = parser.parse_args()
    url = args.database_url
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        workdir = Path(tmp)
        messages = workdir / "messages.jsonl"
        size = write_messages(messages, args.records)
        schema_only = workdir / "schema-only.jsonl"
        with messages.open() as lines:
            schema_only.write_text(lines.readline())
        start_up = [measure(url, BASE, schema_only, workdir, 0)[0] for _ in range(args.repeat)]
        print(
            f"{args.records} records, data {size / 1024:.1f} KB on average, file {messages.stat().st_size >> 20} MB;"
            f" {args.repeat} runs per setting; wall clock includes target-postgres start-up, which alone"
            f" (SCHEMA message, no records) takes {min(w for w, _ in start_up):.2f}s",
            flush=True,
        )
        head = f"{'rows/s':>6} {'best':>6} {'median':>6} {'cpu':>6}"
        print(f"{'':56} {'first load':^27} | {'reload (every row present)':^27}")
        print(f"{'setting':56} {head} | {head}", flush=True)
        chosen = [(label, overrides) for label, overrides in SETTINGS if not args.only or args.only in label]
        # Round-robin over the settings, so a busy spell on the machine hits them all alike.
        runs: dict[str, list[list[tuple[float, float]]]] = {label: [] for label, _ in chosen}
        for round_ in range(args.repeat):
            for label, overrides in chosen:
                print(f"  round {round_ + 1}/{args.repeat}: {label}", file=sys.stderr, flush=True)
                runs[label].append(measure(url, {**BASE, **overrides}, messages, workdir, args.records))
        for label, _ in chosen:
            first, again = ([run[phase] for run in runs[label]] for phase in (0, 1))
            print(f"{label:56} {cell(args.records, first)} | {cell(args.records, again)}", flush=True)


if __name__ == "__main__":
    main()
