#!/usr/bin/env python3
"""Issue 25: the loader's CPU against stock target-postgres, and search-only end to end against COPY + upsert.

    .venvs/dev/bin/python benchmarks/bench_loader_cpu.py [--conversations 6000] [--runs 3] [--profile DIR]
    .venvs/dev/bin/python benchmarks/bench_loader_cpu.py --only copy [--search-conversations 30000] [--warm-up]
    .venvs/dev/bin/python benchmarks/bench_loader_cpu.py --only sql [--search-conversations 30000]

cpu: a recorded run (the tap alone into a file: hydrated, parts on, the simulator without latency), then,
alternately, stock meltanolabs-target-postgres 0.8.1 (.venvs/target-postgres) and target-intercom-postgres
(the loader) on that file, each into a fresh scratch schema with the tables applied, with the settings of
meltano.yml. Each load's CPU seconds (user + system of the child, getrusage) and the ratio run by run; also
a run on the file's SCHEMA lines alone (start-up). --profile DIR: one more load of each under cProfile.

copy: search-only (include_conversation_parts false). The reference is what the database itself allows:
the recorded rows, encoded beforehand, COPYed into a temporary table and upserted into the documented
table (INSERT ... ON CONFLICT DO UPDATE, its triggers firing) by batches of 5,000, timed from connect to
the last commit. Beside it, end to end: the tap piped into the loader from the simulator, from the tap's
start to the loader's exit. Runs alternate; the ratio end to end / reference is given run by run, with
where the CPU went in each (the tap's, the loader's and the simulator's CPU seconds; PostgreSQL's, all its
processes, from /proc) and how long the loader ran on after the tap's exit. --warm-up: one unmeasured run
of each first (figure 2's method: the first run of a series pays for cold caches).

sql: the database's side alone, on the same recorded rows: the reference, then the loader's own statements
(copy_load.Upsert: binary COPY into its temporary table, the update, the insert) by batches of 5,000 on one
connection, and on two connections at once (alternate batches, as the loader's two batches in flight), each
with PostgreSQL's CPU seconds and the time of each statement (one connection).
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
import threading
import time
import typing as t
from pathlib import Path

import psycopg
from bench import DATABASE_URL, REPO, run_tap, scratch_schema, simulator, sqlalchemy_url
from psycopg import sql

from target_intercom_postgres.copy_load import Upsert, flat_columns, newest_per_key
from target_intercom_postgres.copy_load import copy_rows as loader_copy_rows
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


def postgres_cpu() -> float | None:
    """CPU seconds of every PostgreSQL process of this machine so far, those ended included (the postmaster's
    reaped children: each connection's backend); None where /proc does not show a local server."""
    total, found = 0, False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            if Path(f"/proc/{fields[1]}/comm").read_text().strip() != "postgres":  # the postmaster
                total += int(fields[13]) + int(fields[14])
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK") if found else None


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def since(before: float | None) -> float | None:
    """PostgreSQL's CPU seconds since `before`. A backend whose connection just closed counts only once the
    postmaster has reaped it (its CPU then moves into the postmaster's children's): read until two readings agree."""
    after = postgres_cpu()
    for _ in range(40):
        time.sleep(0.05)
        again = postgres_cpu()
        if again == after:
            break
        after = again
    return None if before is None or after is None else after - before


def copy_upsert(batches: list[list[bytes]]) -> float:
    """Wall seconds of COPY into a temporary table + upsert into the documented table, per batch, one connection."""
    return copy_upsert_measured(batches)[0]


def copy_upsert_measured(batches: list[list[bytes]]) -> tuple[float, float | None]:
    """copy_upsert's seconds, and PostgreSQL's CPU seconds meanwhile (None without /proc)."""
    with scratch_schema() as schema:
        pg_before = postgres_cpu()
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
        pg_cpu = since(pg_before)
        with psycopg.connect(DATABASE_URL) as conn:
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        if not count or count[0] != sum(map(len, batches)):
            sys.exit(f"COPY + upsert loaded {count} rows")
    return seconds, pg_cpu


class Piped(t.NamedTuple):
    """One end-to-end run: wall seconds, CPU seconds of each process (PostgreSQL: None without /proc)."""

    seconds: float
    loader_cpu: float
    tap_cpu: float
    simulator_cpu: float
    postgres_cpu: float | None
    after_tap: float  # seconds from the tap's exit to the loader's


def end_to_end(sim: object, conversations: int) -> tuple[float, float]:
    """(wall s from the tap's start to the loader's exit, the loader's CPU s): the tap piped into the loader."""
    run = end_to_end_measured(sim, conversations)
    return run.seconds, run.loader_cpu


def end_to_end_measured(sim: object, conversations: int) -> Piped:
    """The tap piped into the loader, timed from the tap's start to the loader's exit, with each one's CPU."""
    with scratch_schema() as schema, tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        api_url = sim.url  # type: ignore[attr-defined]
        settings = {"access_token": "sim-token", "api_url": api_url, "include_conversation_parts": False}
        simulator_before, pg_before = process_cpu(sim.process.pid), postgres_cpu()  # type: ignore[attr-defined]
        started = time.perf_counter()
        tap, loader = start_pipe(
            Path(tmp), settings, loader_config(schema), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        exited: dict[str, tuple[float, resource.struct_rusage]] = {}

        def wait(name: str, process: subprocess.Popen) -> None:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            exited[name] = (time.perf_counter() - started, usage)

        tap_waiter = threading.Thread(target=wait, args=("tap", tap))
        tap_waiter.start()
        wait("loader", loader)
        seconds = exited["loader"][0]
        pg_cpu, simulator_cpu = since(pg_before), process_cpu(sim.process.pid) - simulator_before  # type: ignore[attr-defined]
        tap_waiter.join(timeout=60)
        if loader.returncode != 0:
            sys.exit(f"the loader failed:\n{loader.stderr.read()[-3000:] if loader.stderr else ''}")
        with psycopg.connect(DATABASE_URL) as conn:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "intercom_conversation_v1"))
            ).fetchone()
        if not count or count[0] != conversations:
            sys.exit(f"end to end loaded {count} of {conversations}")
    loader_usage, (tap_exit, tap_usage) = exited["loader"][1], exited["tap"]
    return Piped(
        seconds,
        loader_usage.ru_utime + loader_usage.ru_stime,
        tap_usage.ru_utime + tap_usage.ru_stime,
        simulator_cpu,
        pg_cpu,
        seconds - tap_exit,
    )


def copy_figure(conversations: int, runs: int, warm_up: bool = False) -> None:
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
        if warm_up:  # unmeasured: the first run of a series pays for cold caches (Python's files, PostgreSQL's)
            copy_upsert(batches)
            end_to_end(sim, conversations)
        reference, piped, ratios = [], [], []
        for index in range(runs):
            seconds_ref, pg_ref = copy_upsert_measured(batches)
            reference.append(seconds_ref)
            run = end_to_end_measured(sim, conversations)
            piped.append(run.seconds)
            ratios.append(reference[-1] / run.seconds)
            print(
                f"  run {index + 1}: COPY + upsert {reference[-1]:.1f} s (PostgreSQL {cpu_text(pg_ref)} CPU s), "
                f"end to end {run.seconds:.1f} s (CPU s: tap {run.tap_cpu:.1f}, loader {run.loader_cpu:.1f}, "
                f"simulator {run.simulator_cpu:.1f}, PostgreSQL {cpu_text(run.postgres_cpu)}; the loader's exit "
                f"{run.after_tap:.1f} s after the tap's), ratio {ratios[-1]:.2f} (load average {load_average()})",
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


def loader_records(messages: Path) -> list[dict]:
    """The conversation records of the file as the loader's reader hands them over (`data` the tap's own bytes)."""
    import msgspec

    records = []
    for line in messages.open("rb"):
        if line.startswith(b'{"type":"RECORD","stream":"intercom_conversation_v1",'):
            record = json.loads(line)["record"]
            record["data"] = msgspec.Raw(json.dumps(record["data"], separators=(",", ":")).encode())
            records.append(record)
    return records


def upsert_batches(
    records: list[dict], connections: int, phases: dict[str, float] | None = None
) -> tuple[float, float | None]:
    """The loader's Upsert of `records` by batches of BATCH, alternate batches on each of `connections` at once:
    (wall s, PostgreSQL CPU s). phases: each statement's seconds added up (one connection only)."""
    columns = flat_columns(json.loads((REPO / "schemas" / "intercom_conversation_v1.json").read_text()))
    assert columns is not None
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    with scratch_schema() as schema:
        upsert = Upsert(schema, "intercom_conversation_v1", columns, "intercom_id", pk_by_trigger=True)

        def load(share: list[list[dict]]) -> None:
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                for batch in share:
                    if phases is None:
                        upsert.load(conn, batch)
                    else:
                        timed_load(upsert, conn, batch, phases)

        pg_before, started = postgres_cpu(), time.perf_counter()
        threads = [threading.Thread(target=load, args=(batches[i::connections],)) for i in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        pg_cpu = since(pg_before)
        with psycopg.connect(DATABASE_URL) as conn:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "intercom_conversation_v1"))
            ).fetchone()
        if not count or count[0] != len(records):
            sys.exit(f"the loader's upsert loaded {count} of {len(records)} rows")
    return seconds, pg_cpu


def timed_load(upsert: Upsert, conn: psycopg.Connection, records: list[dict], phases: dict[str, float]) -> None:
    """Upsert.load's statements one by one, each timed (the same SQL, in the same order, in one transaction)."""

    def lap(name: str, since_: float) -> float:
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - since_
        return now

    rows = newest_per_key(records, upsert.key, "updated_at")
    mark = time.perf_counter()
    with conn.transaction():
        upsert.stage(conn)
        mark = lap("create", mark)
        blocks = list(loader_copy_rows(rows, upsert.columns))
        mark = lap("COPY data built (Python)", mark)
        with conn.cursor() as cursor, cursor.copy(upsert.copy) as copy:
            for block in blocks:
                copy.write(block)
        mark = lap("COPY into the temporary table", mark)
        conn.execute(upsert.update)
        mark = lap("update", mark)
        conn.execute(upsert.insert).fetchone()
        mark = lap("insert", mark)
    lap("commit", mark)


def sql_figure(conversations: int, runs: int) -> None:
    with (
        simulator(conversations, latency_ms=0, jitter_ms=0) as sim,
        tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp,
    ):
        messages = Path(tmp) / "messages.jsonl"
        run_tap(sim, {"include_conversation_parts": False}, out=messages)
        batches, records = copy_rows(messages), loader_records(messages)
    print(f"\nthe database's side: {conversations} search-only rows (load average {load_average()})", flush=True)
    results: dict[str, list[tuple[float, float | None]]] = {"reference": [], "one": [], "two": []}
    phases: dict[str, float] = {}
    for index in range(runs):
        results["reference"].append(copy_upsert_measured(batches))
        results["one"].append(upsert_batches(records, 1, phases))
        results["two"].append(upsert_batches(records, 2))
        print(
            f"  run {index + 1}: "
            + ", ".join(
                f"{name} {s:.2f} s (PostgreSQL {cpu_text(c)} CPU s)"
                for name, ((s, c),) in ((n, r[-1:]) for n, r in results.items())
            )
            + f" (load average {load_average()})",
            file=sys.stderr,
            flush=True,
        )
    names = {
        "reference": "COPY + upsert (the reference: text COPY, one INSERT ... ON CONFLICT)",
        "one": "the loader's statements, one connection",
        "two": "the loader's statements, two connections at once",
    }
    print("\n| | wall s (runs) | PostgreSQL CPU s (runs) | reference / this, median |\n|---|---|---|---:|")
    for name, values in results.items():
        ratio = statistics.median(r[0] / v[0] for r, v in zip(results["reference"], values, strict=True))
        print(
            f"| {names[name]} | {', '.join(f'{s:.2f}' for s, _ in values)} | "
            f"{', '.join(cpu_text(c) for _, c in values)} | {ratio:.2f} |"
        )
    total = sum(phases.values())
    print(
        "\nthe loader's statements, one connection, all runs: "
        + ", ".join(f"{name} {100 * value / total:.0f} %" for name, value in phases.items())
    )


def cpu_text(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="cpu,copy", help="cpu, copy, sql, or a list (default: cpu,copy)")
    parser.add_argument("--conversations", type=int, default=6000, help="hydrated, parts on, for cpu")
    parser.add_argument("--search-conversations", type=int, default=30000, help="search-only, for copy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="a folder for stock.prof and loader.prof (cProfile)")
    parser.add_argument("--warm-up", action="store_true", help="copy: one unmeasured run of each first")
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
        copy_figure(args.search_conversations, args.runs, args.warm_up)
    if "sql" in only:
        sql_figure(args.search_conversations, args.runs)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
