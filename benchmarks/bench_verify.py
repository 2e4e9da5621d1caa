#!/usr/bin/env python3
"""Benchmark of intercom-conversation-verify: requests and wall time to verify a loaded table.

    .venvs/dev/bin/python benchmarks/bench_verify.py [--conversations 10000,100000] [--modes search,hydrated]

For each size and mode, the table is loaded by the tap and target-postgres (bench.py's run_tap) from a
simulator without latency or rate limit, then verified by the console script as users run it against a
second simulator holding the same conversations (same seed and `now`) that answers like Intercom: 150 ms
± 30 ms per request, at Intercom's default limit of 1,667 calls per 10 s. Requests are counted by that
simulator (`GET /__stats`); wall time runs from verify's start to its exit, and verify's own log lines
split it into the listing (the searches, COPY into a temporary table as they arrive) and the rest (the
comparison in SQL; on a hydrated table it reads every row's parts). search: include_conversation_parts
false; hydrated: true (the table's data holds conversation_parts, and intercom_conversation_part_v1 is
loaded: verify checks its rows per conversation against the search rows' statistics.count_conversation_parts).
With --damaged N (hydrated), one part row of each of N conversations is deleted before verify: the
figure shows that only those N are fetched (a GET each) and named, exit 1.
The simulator's conversations end an hour before the check, so all of them lie in verify's window (the
check's start minus 300 s).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from bench import (
    DATABASE_URL,
    INTERCOM_LIMIT,
    JITTER_MS,
    LATENCY_MS,
    PER_PAGE,
    delta,
    machine,
    run_tap,
    scratch_schema,
    simulator,
    sqlalchemy_url,
)
from bench import load as load_average

from tests.helpers import tool

VERIFY = tool("dev", "intercom-conversation-verify")


def damage_parts(schema: str, count: int) -> list[str]:
    """Delete one part row of each of `count` conversations (spread over the table); returns their ids."""
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        victims = conn.execute(
            f"SELECT DISTINCT ON (conversation_intercom_id) conversation_intercom_id, intercom_id"
            f' FROM "{schema}".intercom_conversation_part_v1 ORDER BY conversation_intercom_id, intercom_id'
        ).fetchall()
        step = max(1, len(victims) // max(count, 1))
        chosen = victims[::step][:count]
        conn.execute(
            f'DELETE FROM "{schema}".intercom_conversation_part_v1 WHERE intercom_id = ANY(%s)',
            ([part for _, part in chosen],),
        )
    return [conversation for conversation, _ in chosen]


def verify_once(conversations: int, hydrated: bool, damaged: int = 0) -> dict:
    now = int(time.time()) - 3600
    pinned = ("--now", str(now))
    settings = {"include_conversation_parts": hydrated}
    with scratch_schema() as schema:
        with simulator(conversations, latency_ms=0, jitter_ms=0, extra=pinned) as fast:
            loaded = run_tap(fast, settings, schema=schema)
        victims = damage_parts(schema, damaged) if hydrated and damaged else []
        with (
            simulator(
                conversations, latency_ms=LATENCY_MS, jitter_ms=JITTER_MS, rate_limit=INTERCOM_LIMIT, extra=pinned
            ) as sim,
            tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp,
        ):
            config = Path(tmp) / "tap.json"
            config.write_text(json.dumps({"access_token": "sim-token", "api_url": sim.url, **settings}))
            before = sim.stats()
            started = time.perf_counter()
            done = subprocess.run(
                [VERIFY, "--config", str(config), "--database-url", sqlalchemy_url(), "--schema", schema],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            seconds = time.perf_counter() - started
            calls = delta(before, sim.stats())
    if done.returncode != (1 if victims else 0) or (victims and calls["gets"] != len(victims)):
        raise SystemExit(f"verify exited {done.returncode}, {calls}:\n{done.stdout}\n{done.stderr[-3000:]}")
    listed = re.search(r"Listed ([\d,]+) conversations in ([\d.]+) s", done.stderr)
    return {
        "conversations": conversations,
        "mode": ("hydrated" if hydrated else "search") + (f", {len(victims)} damaged" if victims else ""),
        "seconds": seconds,
        "listing_seconds": float(listed[2]) if listed else math.nan,
        "calls": calls,
        "load_seconds": loaded.seconds,
        "totals": done.stdout.splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", default="10000,100000", help="comma-separated sizes")
    parser.add_argument("--modes", default="search,hydrated", help="search and/or hydrated")
    parser.add_argument("--damaged", type=int, default=0, help="hydrated: conversations to lose one part row each")
    args = parser.parse_args()
    results = [
        verify_once(int(size), mode == "hydrated", args.damaged)
        for size in args.conversations.split(",")
        for mode in args.modes.split(",")
    ]
    print(f"\n{machine()}; load average {load_average()}")
    print(f"verify at {LATENCY_MS:.0f} ms ± {JITTER_MS:.0f} ms per request, limit {INTERCOM_LIMIT:,} calls / 10 s\n")
    print("| conversations | table | requests (search / GET) | N / 150 | wall time | listing | the rest (SQL) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        calls = r["calls"]
        print(
            f"| {r['conversations']:,} | {r['mode']} | {calls['calls']:,} ({calls['searches']:,} / {calls['gets']:,})"
            f" | {math.ceil(r['conversations'] / PER_PAGE):,} | {r['seconds']:.1f} s | {r['listing_seconds']:.1f} s"
            f" | {r['seconds'] - r['listing_seconds']:.1f} s |"
        )
    for r in results:
        print(f"\n{r['conversations']:,} {r['mode']}: {r['totals']} (loaded in {r['load_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
