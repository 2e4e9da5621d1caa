#!/usr/bin/env python3
"""Issue 25: the loader's CPU against stock target-postgres, and search-only end to end against COPY + upsert.

    .venvs/dev/bin/python benchmarks/bench_loader_cpu.py [--conversations 6000] [--runs 3] [--profile DIR]
    .venvs/dev/bin/python benchmarks/bench_loader_cpu.py --only copy [--search-conversations 30000]

cpu: a recorded run (the tap alone into a file: hydrated, parts on, the simulator without latency), then,
alternately, stock meltanolabs-target-postgres 0.8.1 (.venvs/target-postgres) and target-intercom-postgres
(the loader) on that file, each into a fresh scratch schema with the tables applied, with the settings of
meltano.yml. Each load's CPU seconds (user + system of the child, getrusage) and the ratio run by run; also
a run on the file's SCHEMA lines alone (start-up). --profile DIR: one more load of each under cProfile.

copy: search-only (include_conversation_parts false). The reference is what the database itself allows:
the recorded rows, encoded beforehand, COPYed into a temporary table and upserted into the documented
table (INSERT ... ON CONFLICT DO UPDATE, its triggers firing) by batches of 5,000, timed from connect to
the last commit. Beside it, end to end: the tap piped into the loader from the simulator, from the tap's
start to the loader's exit. Runs alternate; the ratio end to end / reference is given run by run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from bench import DATABASE_URL, REPO, run_tap, scratch_schema, simulator, sqlalchemy_url
from psycopg import sql

from tests.helpers import LOADER, start_pipe, tool

STOCK = tool("target-postgres", "target-postgres")
BATCH = 5000
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
TABLE_COLUMNS = ["intercom_id", "title", "state", "open", "read", "created_at", "updated_at", "data"]


def loader_config(schema: str) -> dict:
    """meltano.yml's loader settings (what users run), into the scratch schema; the same for both loaders."""
    return {
        "sqlalchemy_url": sqlalchemy_url(),
        "default_target_schema": schema,
        "add_record_metadata": False,
        "activate_version": False,
        "load_method": "upsert",
        "batch_size_rows": BATCH,
        "use_copy": True,
        "validate_records": True,
    }


def load(executable: str, messages: Path, profile: Path | None = None) -> tuple[float, float, tuple[int, int]]:
    """(CPU s, wall s, (conversation rows, part rows)) of one loader on the file, into a fresh schema."""
    with scratch_schema() as schema, tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(loader_config(schema)))
        argv = [executable, "--config", str(config)]
        if profile is not None:
            argv = [str(Path(executable).parent / "python"), "-m", "cProfile", "-o", str(profile), *argv]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        with messages.open("rb") as stdin:
            done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"{executable} failed:\n{done.stderr[-3000:]}")
        with psycopg.connect(DATABASE_URL) as conn:
            found = conn.execute(
                sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
                    sql.Identifier(schema, "intercom_conversation_v1"),
                    sql.Identifier(schema, "intercom_conversation_part_v1"),
                )
            ).fetchone()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu, wall, (int(found[0]), int(found[1])) if found else (0, 0)


def record(conversations: int, settings: dict, out: Path) -> int:
    """The tap alone into `out`; the RECORD lines written."""
    with simulator(conversations, latency_ms=0, jitter_ms=0) as sim:
        run_tap(sim, settings, out=out)
    return sum(1 for line in out.open("rb") if line.startswith(b'{"type":"RECORD"'))


def cpu_figure(conversations: int, runs: int, profile: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        messages, schemas = Path(tmp) / "messages.jsonl", Path(tmp) / "schemas.jsonl"
        rows = record(conversations, {}, messages)
        with messages.open("rb") as lines, schemas.open("wb") as out:
            out.writelines(line for line in lines if line.startswith(b'{"type":"SCHEMA"'))
        size = messages.stat().st_size
        print(
            f"recorded: {conversations} conversations, {rows} RECORD lines, {size / 2**20:.0f} MB "
            f"(load average {load_average()})",
            flush=True,
        )
        start_up = {name: load(exe, schemas)[0] for name, exe in (("stock", STOCK), ("loader", LOADER))}
        results: dict[str, list[tuple[float, float]]] = {"stock": [], "loader": []}
        for index in range(runs):
            for name, exe in (("stock", STOCK), ("loader", LOADER)):
                cpu, wall, counts = load(exe, messages)
                if sum(counts) != rows - count_deletions(messages):
                    sys.exit(f"{name} loaded {counts} of {rows} records")
                results[name].append((cpu, wall))
                print(
                    f"  run {index + 1} {name}: {cpu:.2f} CPU s, {wall:.1f} s wall, rows {counts} "
                    f"(load average {load_average()})",
                    file=sys.stderr,
                    flush=True,
                )
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for name, exe in (("stock", STOCK), ("loader", LOADER)):
                load(exe, messages, profile / f"{name}.prof")
    per_1000 = {name: [1000 * cpu / rows for cpu, _ in runs_] for name, runs_ in results.items()}
    ratios = [loader / stock for loader, stock in zip(per_1000["loader"], per_1000["stock"], strict=True)]
    print("\n| loader | CPU s per 1,000 rows (runs) | median | start-up CPU s (SCHEMA lines only) |")
    print("|---|---|---:|---:|")
    for name in ("stock", "loader"):
        values = ", ".join(f"{v:.3f}" for v in per_1000[name])
        print(f"| {name} | {values} | {statistics.median(per_1000[name]):.3f} | {start_up[name]:.2f} |")
    runs_text = ", ".join(f"{r:.3f}" for r in ratios)
    print(
        f"\nloader / stock, run by run: {runs_text}; median **{statistics.median(ratios):.3f}**"
        f" ({rows} rows, {conversations} conversations; start-up included)"
    )


def count_deletions(messages: Path) -> int:
    prefix = b'{"type":"RECORD","stream":"intercom_conversation_v1_deletion"'
    return sum(1 for line in messages.open("rb") if line.startswith(prefix))


def copy_rows(messages: Path) -> list[list[bytes]]:
    """The conversation rows of the file as COPY text lines, in batches of BATCH (encoded before any timing)."""
    batches: list[list[bytes]] = [[]]
    for line in messages.open("rb"):
        if not line.startswith(b'{"type":"RECORD","stream":"intercom_conversation_v1",'):
            continue
        row = json.loads(line)["record"]
        fields = []
        for name in TABLE_COLUMNS:
            value = row.get(name)
            if value is None:
                fields.append("\\N")
            elif name == "data":
                fields.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
            else:
                fields.append(str(value).lower() if isinstance(value, bool) else str(value))
        text = "\t".join(f if f == "\\N" else f.translate(COPY_ESCAPES) for f in fields) + "\n"
        if len(batches[-1]) == BATCH:
            batches.append([])
        batches[-1].append(text.encode())
    return batches


def copy_upsert(batches: list[list[bytes]]) -> float:
    """Wall seconds of COPY into a temporary table + upsert into the documented table, per batch, one connection."""
    with scratch_schema() as schema:
        started = time.perf_counter()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            table = sql.Identifier(schema, "intercom_conversation_v1")
            names = sql.SQL(", ").join(map(sql.Identifier, TABLE_COLUMNS))
            for batch in batches:
                with conn.transaction():
                    conn.execute(
                        "CREATE TEMPORARY TABLE IF NOT EXISTS staged (intercom_id text, title text,"
                        " state text, open boolean, read boolean, created_at timestamptz,"
                        " updated_at timestamptz, data jsonb) ON COMMIT DELETE ROWS"
                    )
                    statement = sql.SQL("COPY staged ({}) FROM STDIN").format(names)
                    with conn.cursor() as cursor, cursor.copy(statement) as copy:
                        for text in batch:
                            copy.write(text)
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {t} ({n}) SELECT {n} FROM staged ON CONFLICT (intercom_id) DO UPDATE SET {u}"
                        ).format(
                            t=table,
                            n=names,
                            u=sql.SQL(", ").join(
                                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in TABLE_COLUMNS[1:]
                            ),
                        )
                    )
        seconds = time.perf_counter() - started
        with psycopg.connect(DATABASE_URL) as conn:
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        if not count or count[0] != sum(map(len, batches)):
            sys.exit(f"COPY + upsert loaded {count} rows")
    return seconds


def end_to_end(sim: object, conversations: int) -> tuple[float, float]:
    """(wall s from the tap's start to the loader's exit, the loader's CPU s): the tap piped into the loader."""
    with scratch_schema() as schema, tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        api_url = sim.url  # type: ignore[attr-defined]
        settings = {"access_token": "sim-token", "api_url": api_url, "include_conversation_parts": False}
        started = time.perf_counter()
        tap, loader = start_pipe(
            Path(tmp), settings, loader_config(schema), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        _, status, usage = os.wait4(loader.pid, 0)
        loader.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        tap.wait(timeout=60)
        if loader.returncode != 0:
            sys.exit(f"the loader failed:\n{loader.stderr.read()[-3000:] if loader.stderr else ''}")
        with psycopg.connect(DATABASE_URL) as conn:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "intercom_conversation_v1"))
            ).fetchone()
        if not count or count[0] != conversations:
            sys.exit(f"end to end loaded {count} of {conversations}")
    return seconds, usage.ru_utime + usage.ru_stime


def copy_figure(conversations: int, runs: int) -> None:
    with (
        simulator(conversations, latency_ms=0, jitter_ms=0) as sim,
        tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp,
    ):
        messages = Path(tmp) / "messages.jsonl"
        run_tap(sim, {"include_conversation_parts": False}, out=messages)  # also warms the simulator's row cache
        batches = copy_rows(messages)
        size = sum(map(len, (row for batch in batches for row in batch))) / conversations
        print(
            f"\nsearch-only: {conversations} conversations, {size / 1024:.1f} KB a row as COPY text "
            f"(load average {load_average()})",
            flush=True,
        )
        reference, piped, ratios = [], [], []
        for index in range(runs):
            reference.append(copy_upsert(batches))
            seconds, cpu = end_to_end(sim, conversations)
            piped.append(seconds)
            ratios.append(reference[-1] / seconds)
            print(
                f"  run {index + 1}: COPY + upsert {reference[-1]:.1f} s, end to end {seconds:.1f} s (loader "
                f"{cpu:.1f} CPU s), ratio {ratios[-1]:.2f} (load average {load_average()})",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\n| | rows/s (runs) |\n|---|---|\n| COPY + upsert (the database) | "
        f"{', '.join(f'{conversations / s:.0f}' for s in reference)} |\n| tap → loader, end to end | "
        f"{', '.join(f'{conversations / s:.0f}' for s in piped)} |"
    )
    print(
        f"\nend to end / COPY + upsert, run by run: {', '.join(f'{r:.2f}' for r in ratios)}; median "
        f"**{statistics.median(ratios):.2f}**"
    )


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="cpu,copy", help="cpu, copy or both (default)")
    parser.add_argument("--conversations", type=int, default=6000, help="hydrated, parts on, for cpu")
    parser.add_argument("--search-conversations", type=int, default=30000, help="search-only, for copy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="a folder for stock.prof and loader.prof (cProfile)")
    args = parser.parse_args()
    os.chdir(REPO)
    print(
        f"## bench_loader_cpu ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} CPUs, "
        f"load average {load_average()})\n",
        flush=True,
    )
    only = set(args.only.split(","))
    if "cpu" in only:
        cpu_figure(args.conversations, args.runs, args.profile)
    if "copy" in only:
        copy_figure(args.search_conversations, args.runs)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
