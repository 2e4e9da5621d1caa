#!/usr/bin/env python3
"""What the conversation parts stream costs: a hydrated backfill with and without it (issue #14).

    .venvs/dev/bin/python benchmarks/bench_parts.py [--conversations 10000] [--runs 3] [--latency-ms 0] [--rate-limit R]

The same simulator (the CLI, as benchmarks/bench.py starts it) and the same pipeline as bench.py's figure 1:
`tap-intercom-conversation | target-postgres` with meltano.yml's loader config into a scratch schema where
intercom-conversation-table applied both tables. One run in each pair selects every stream (the default
catalog); the other deselects intercom_conversation_part_v1 in the catalog from --discover. The pairs
alternate, so that the machine's drift weighs on both alike. Printed: the rows of each table, the API calls
(the same in both), wall time from the tap's start to the loader's exit, the tap's own time, and
target-postgres's CPU seconds (benchmarks/loader_watch.py). Without --rate-limit and latency the run is
CPU-bound: the difference is what the parts cost the tap, the loader and PostgreSQL on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import psycopg
from bench import DATABASE_URL, REPO, TAP, load, machine, run_tap, scratch_schema, simulator
from loader_watch import watched_median

PARTS = "intercom_conversation_part_v1"


def catalog_without_parts(url: str) -> dict:
    config = REPO / ".bench-parts-config.json"
    config.write_text(json.dumps({"access_token": "sim-token", "api_url": url}))
    try:
        found = subprocess.run(
            [TAP, "--config", str(config), "--discover"], capture_output=True, text=True, check=True, timeout=120
        )
    finally:
        config.unlink()
    catalog = json.loads(found.stdout)
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == PARTS:
            for metadata in entry["metadata"]:
                if metadata["breadcrumb"] == []:
                    metadata["metadata"]["selected"] = False
    return catalog


def rows(schema: str) -> tuple[int, int]:
    with psycopg.connect(DATABASE_URL) as conn:
        return tuple(
            conn.execute(
                f'SELECT (SELECT count(*) FROM "{schema}".intercom_conversation_v1),'
                f' (SELECT count(*) FROM "{schema}".{PARTS})'
            ).fetchone()
        )


def _figure(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3, help="pairs of runs; medians are reported")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=int, help="calls per 10 s (Intercom's default: 1667); none by default")
    args = parser.parse_args()
    started, load_before = time.time(), load()
    print(
        f"## Parts stream benchmark ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"median of {args.runs} runs)\n\nMachine: {machine()}.\n"
    )
    results: dict[str, list] = {"with parts": [], "without parts": []}
    with simulator(
        args.conversations, latency_ms=args.latency_ms, jitter_ms=args.latency_ms / 5, rate_limit=args.rate_limit
    ) as sim:
        without = catalog_without_parts(sim.url)
        for _ in range(args.runs):
            for label, catalog in (("with parts", None), ("without parts", without)):
                with scratch_schema() as schema:
                    run = run_tap(sim, {}, schema=schema, catalog=catalog, align=args.rate_limit is not None)
                    counted = rows(schema)
                if counted[0] != args.conversations:
                    sys.exit(f"{label}: loaded {counted[0]} conversations of {args.conversations}")
                results[label].append((run, counted))
                print(
                    f"  {label}: {run.seconds:.1f}s (tap {run.tap_seconds:.1f}s) rows={counted} calls={run.calls} "
                    f"loader={run.loader}",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"{args.conversations:,} conversations, hydrated, latency {args.latency_ms:.0f} ms, "
        f"rate limit {args.rate_limit or 'none'}\n"
    )
    print(
        "| run | conversation rows | part rows | API calls | end to end (s) | tap (s) | target-postgres CPU (s) "
        "| target-postgres waiting for the tap | target-postgres waiting for a CPU (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, runs in results.items():
        seconds = [run.seconds for run, _ in runs]
        watched = watched_median([run.loader for run, _ in runs])
        print(
            f"| {label} | {runs[0][1][0]:,} | {runs[0][1][1]:,} | "
            f"{statistics.median([run.calls['calls'] for run, _ in runs]):,.0f} | "
            f"{statistics.median(seconds):.1f} ({', '.join(f'{s:.1f}' for s in seconds)}) | "
            f"{statistics.median([run.tap_seconds for run, _ in runs]):.1f} | {_figure(watched['cpu_s'], '.1f')} | "
            f"{_figure(watched['pipe_wait'], '.0%')} | {_figure(watched['queue_s'], '.1f')} |"
        )
    print(
        f"\nTotal {time.time() - started:.0f} s; load average {load_before} before, {load()} after "
        "(other processes share this machine when above its CPU count)."
    )


if __name__ == "__main__":
    main()
