#!/usr/bin/env python3
"""Benchmark of issue #4: the tap and target-postgres as users run them, against the Intercom simulator.

    .venvs/dev/bin/python benchmarks/bench.py [--quick] [--runs 3] [--only hydrated,search,memory,incremental]
    .venvs/dev/bin/python benchmarks/bench.py --sweep 16,32,48,64   # hydration throughput per max_concurrent_requests
    .venvs/dev/bin/python benchmarks/bench.py --only latency        # figure 1 at 50-1,000 ms x R = 1,000-4,167, ~25 min
    .venvs/dev/bin/python benchmarks/bench.py --only memory-search --runs 2 --simulator-stopped 0.7  # figure 3 10k/100k
    TAP_BIN=/elsewhere/.venvs/dev/bin/tap-intercom-conversation benchmarks/bench.py ...  # another build: a "before"

Each measurement starts the simulator CLI (`python -m tests.intercom_simulator`) as a subprocess, then runs
`.venvs/dev/bin/tap-intercom-conversation | target-postgres` with the loader config of meltano.yml into a
scratch PostgreSQL schema (the table applied with intercom-conversation-table, the schema dropped afterwards).
Wall time runs from the tap's start to the target's exit; the tap's peak RSS is its ru_maxrss (os.wait4);
request and 429 counts come from the simulator's `GET /__stats`. Rate-limited runs start on a boundary of the
simulator's 10-second windows, the least favourable phase (the first window is partly spent starting up).

1. hydrated backfill: conversations/s and that rate as a fraction of the ceiling, R/10 calls per second less the
   search calls (150 conversations per search page), at R = 1,000 and at Intercom's default 1,667 per 10 s;
   10,000 conversations, parts on, into target-intercom-postgres (what `meltano run` uses): the loader commits
   its last batch after the tap's last record, a fixed cost that a backfill of millions pays once;
2. search-only (include_conversation_parts false): rows/s end to end, beside target-postgres alone loading the
   same messages from a file and the tap alone writing them to a file; 50,000 conversations without latency and
   at 150 ms, so that each run's fixed costs (start-up, half a second for the tap and for the loader; the ramp
   of the first searches; the catch-up window, about a second) weigh as little as they do in a real backfill.
   The simulator keeps each row's JSON until it changes (its CPU is not Intercom's, yet it shares this
   machine): an unmeasured run of the tap warms it first. This machine's speed drifts by a quarter within
   minutes, so the loader alone and end to end run back to back, and their ratio is also given run by run.
   What the ratio cannot tell apart, benchmarks/loader_watch.py measures: how much of its run target-postgres
   waited on an empty stdin (for the tap), and its CPU time and time waiting for a CPU (the price of sharing);
3. the tap's peak memory, hydrated at 2,000 to 20,000 and search-only at 10,000 to 200,000 conversations (the
   tap alone into a file: a slower loader only blocks its writes);
4. an incremental run when nothing changed: API calls and wall time, into target-intercom-postgres;
5. (`--only latency`, not in the default set) figure 1 swept: latency 50, 150, 450 and 1,000 ms (± 20 %) x
   R = 1,000, 1,667 and 4,167 per 10 s, default settings, one run each (9 windows' worth of conversations, stopped
   after 100 s if slower). From the simulator's count of calls per window: the share of R used in the run's full
   windows (all but the first and the last), conversations/s in them, the most requests it answered at once; the
   tap's 429s, peak RSS and CPU seconds (os.wait4), and its CPU per hydrated conversation.

Medians of --runs runs (3 by default, figure 2's 5) are printed as markdown, with the machine they ran on and
its load average (the simulator, the tap, target-postgres and PostgreSQL share the machine: a busy one lowers
every figure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import yaml
from bench_report import (
    report_hydrated,
    report_incremental,
    report_latency_sweep,
    report_memory,
    report_search,
    report_sweep,
)
from loader_watch import LoaderWatch, watched_median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))  # the tests' helpers: where the executables are, PostgreSQL's scratch schemas
from tests import helpers  # noqa: E402
from tests.helpers import TABLE, TARGET_POSTGRES, tool  # noqa: E402
from tests.helpers import TAP as THIS_TAP  # noqa: E402

TAP = os.environ.get("TAP_BIN") or THIS_TAP  # another build of the tap: a before
PYTHON = tool("dev", "python")
TARGET = TARGET_POSTGRES  # TARGET_POSTGRES_BIN: another build of the loader
LOADER = tool("dev", "target-intercom-postgres")  # the project's loader (target-postgres extended, copy_load.py)
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STREAM = "intercom_conversation_v1"
PER_PAGE = 150
WINDOW = 10
LATENCY_MS, JITTER_MS = 150.0, 30.0
SEARCH_ONLY = 50000  # conversations in figure 2's runs
SEARCH_RUNS = 5  # figure 2's runs: its ratio divides two times that each drift from run to run
HYDRATED = 10000  # figure 1's: the loader commits its last batch (5,000 rows) after the tap's last record
INTERCOM_LIMIT = 1667  # 10,000 calls per minute per app, counted in 10-second windows
SWEEP_LATENCIES = (50, 150, 450, 1000)  # ms, ± 20 %: from a nearby region to a long conversation far away
SWEEP_LIMITS = (1000, INTERCOM_LIMIT, 4167)  # per 10 s; 4,167 is the workspace's 25,000 per minute
SWEEP_WINDOWS = 9  # conversations per run: 9 windows' worth at the limit, so at least 6 full windows in each run
SWEEP_SECONDS = 100  # a tap slower than the limit is stopped then: 8 or more full windows measured


# ---- the simulator, as a subprocess ----------------------------------------------------------------------------


class Simulator:
    """`python -m tests.intercom_simulator` on a free port; stats() reads its counters."""

    def __init__(
        self, conversations: int, latency_ms: float, jitter_ms: float, rate_limit: int | None, *extra: str
    ) -> None:
        argv = [
            PYTHON,
            "-m",
            "tests.intercom_simulator",
            "--port",
            "0",
            "--conversations",
            str(conversations),
            "--latency-ms",
            str(latency_ms),
            "--jitter-ms",
            str(jitter_ms),
            *extra,
        ]
        if rate_limit is not None:
            argv += ["--rate-limit", str(rate_limit)]
        self.conversations, self.rate_limit = conversations, rate_limit
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip() if self.process.stdout else ""
        if "listening on " not in line:
            self.process.kill()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1]

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/__stats", timeout=10) as answer:
            return json.load(answer)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def simulator(
    conversations: int,
    *,
    latency_ms: float = LATENCY_MS,
    jitter_ms: float = JITTER_MS,
    rate_limit: int | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[Simulator]:
    sim = Simulator(conversations, latency_ms, jitter_ms, rate_limit, *extra)
    try:
        yield sim
    finally:
        sim.stop()


def delta(before: dict, after: dict) -> dict:
    return {
        "calls": after["requests"] - before["requests"],
        "searches": after["by_route"].get("search", 0) - before["by_route"].get("search", 0),
        "gets": after["by_route"].get("retrieve", 0) - before["by_route"].get("retrieve", 0),
        "429": after["rate_limited"] - before["rate_limited"],
    }


# ---- PostgreSQL ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_schema() -> Iterator[str]:
    """A fresh schema (the tests' own) with the table applied, dropped afterwards."""
    with helpers.scratch_schema(DATABASE_URL) as name:
        subprocess.run(
            [TABLE, "--sqlalchemy-url", sqlalchemy_url(), "--schema", name],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        yield name


def sqlalchemy_url() -> str:
    return helpers.sqlalchemy_url(DATABASE_URL)


def row_count(schema: str) -> int:
    with psycopg.connect(DATABASE_URL) as conn:
        return conn.execute(f'SELECT count(*) FROM "{schema}".{STREAM}').fetchone()[0]


def loader_config(schema: str) -> dict:
    """target-postgres's config from meltano.yml (what users run), into the scratch schema."""
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    loader = next(p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres")
    return {**loader.get("config", {}), "sqlalchemy_url": sqlalchemy_url(), "default_target_schema": schema}


# ---- one run of the tap, piped into target-postgres or into a file ----------------------------------------------


@dataclass
class Run:
    seconds: float
    tap_rss_mb: float
    tap_seconds: float = 0.0  # the tap's own exit, from its start
    calls: dict = field(default_factory=dict)
    last_state: dict | None = None
    rows: int | None = None
    loader: dict = field(default_factory=dict)  # LoaderWatch.stop()
    tap_cpu_s: float = 0.0  # the tap's user + system CPU seconds
    stopped: bool = False  # stopped by SIGTERM after stop_after seconds (the sweep's bound on a run's length)
    stats: dict = field(default_factory=dict)  # the simulator's counters after the run
    machine_busy: float | None = None  # share of all CPUs busy (anyone's work) from the tap's start to its end


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot (Linux /proc/stat), or None."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # less idle and iowait


def busy_share(before: tuple[int, int] | None) -> float | None:
    after = machine_cpu()
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a running process so far (Linux /proc), or 0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_usage(process: subprocess.Popen) -> tuple[float, float]:
    """Reap the process; its peak RSS in MB (ru_maxrss, KB on Linux) and its CPU seconds (user + system)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def run_tap(
    sim: Simulator,
    tap_settings: dict,
    *,
    schema: str | None = None,
    out: Path | None = None,
    state: dict | None = None,
    align: bool = False,
    catalog: dict | None = None,
    stop_after: float | None = None,
    target: str = TARGET,
) -> Run:
    """tap | target-postgres into `schema`, or the tap alone into the file `out`; with `catalog`, its selection;
    stop_after: SIGTERM then; target: another loader's executable."""
    target_bin = target
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        folder = Path(tmp)
        config = {"access_token": "sim-token", "api_url": sim.url, **tap_settings}
        catalog_args: tuple[str, ...] = ()
        if catalog is not None:
            (folder / "catalog.json").write_text(json.dumps(catalog))
            catalog_args = ("--catalog", str(folder / "catalog.json"))
        if align:  # start on a window boundary: the first window is partly spent starting up
            time.sleep(WINDOW - time.time() % WINDOW + 0.01)
        before = sim.stats()
        machine_before = machine_cpu()
        tap_err = (folder / "tap.err").open("w+")
        if schema is None:
            assert out is not None
            with out.open("w") as sink:
                started = time.perf_counter()
                tap = helpers.start_tap(folder, config, state, *catalog_args, tap=TAP, stdout=sink, stderr=tap_err)
                rss, cpu = wait_usage(tap)
                seconds = tap_seconds = time.perf_counter() - started
            last_state = None
        else:
            started = time.perf_counter()
            tap, target = helpers.start_pipe(
                folder,
                config,
                loader_config(schema),
                state,
                tap_args=catalog_args,
                tap_stderr=tap_err,
                tap=TAP,
                loader=target_bin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            watch = LoaderWatch(target.pid)
            result: dict = {}
            reaper = threading.Thread(
                target=lambda: result.update(
                    zip(("rss", "cpu"), wait_usage(tap), strict=True), tap_seconds=time.perf_counter() - started
                )
            )
            reaper.start()
            if stop_after is not None:
                reaper.join(timeout=stop_after)
                if reaper.is_alive():
                    result["stopped"] = True
                    tap.send_signal(signal.SIGTERM)
            target_out, target_err = target.communicate(timeout=1800)
            seconds = time.perf_counter() - started
            loader = watch.stop()
            reaper.join()
            rss, tap_seconds, cpu = result["rss"], result["tap_seconds"], result["cpu"]
            if target.returncode != 0:
                sys.exit(f"target-postgres failed:\n{target_err[-3000:]}")
            states = [line for line in target_out.splitlines() if line.strip()]
            last_state = json.loads(states[-1]) if states else None
        tap_err.seek(0)
        stopped = schema is not None and result.get("stopped", False)
        if tap.returncode != 0 and not (stopped and tap.returncode == 128 + signal.SIGTERM):
            sys.exit(f"the tap failed ({tap.returncode}):\n{tap_err.read()[-3000:]}")
        tap_err.close()
    stats = sim.stats()
    run = Run(
        seconds,
        rss,
        tap_seconds,
        delta(before, stats),
        last_state,
        tap_cpu_s=cpu,
        stopped=stopped,
        stats=stats,
        machine_busy=busy_share(machine_before),
    )
    if schema is not None:
        run.loader, run.rows = loader, row_count(schema)
    return run


def run_target_alone(messages: Path, schema: str) -> tuple[float, dict]:
    """Seconds, and what the loader waited for (LoaderWatch), loading the file `messages` into `schema`."""
    config = Path(tempfile.mkstemp(prefix="bench-target-", suffix=".json")[1])
    try:
        config.write_text(json.dumps(loader_config(schema)))
        with messages.open() as stdin:
            started = time.perf_counter()
            target = subprocess.Popen(
                [TARGET, "--config", str(config)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            watch = LoaderWatch(target.pid)
            _, target_err = target.communicate(timeout=1800)
            seconds = time.perf_counter() - started
            loader = watch.stop()
    finally:
        config.unlink()
    if target.returncode != 0:
        sys.exit(f"target-postgres failed:\n{target_err[-3000:]}")
    return seconds, loader


# ---- the measurements ---------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def ceiling(conversations: int, rate_limit: int) -> tuple[int, float]:
    """(calls a backfill needs, conversations per second at R/10 calls per second less the search calls)."""
    searches = conversations // PER_PAGE + 1
    calls = conversations + searches
    return calls, rate_limit / WINDOW * conversations / calls


def hydrated(
    conversations: int,
    rate_limit: int | None,
    runs: int,
    settings: dict | None = None,
    latency_ms: float = LATENCY_MS,
    jitter_ms: float = JITTER_MS,
) -> dict:
    settings = settings or {}
    with simulator(conversations, latency_ms=latency_ms, jitter_ms=jitter_ms, rate_limit=rate_limit) as sim:
        results = []
        for _ in range(runs):
            with scratch_schema() as schema:
                run = run_tap(sim, settings, schema=schema, align=rate_limit is not None, target=LOADER)
            if run.rows != conversations:
                sys.exit(f"hydrated backfill loaded {run.rows} rows of {conversations}")
            results.append(run)
            print(
                f"  hydrated n={conversations} R={rate_limit} {settings}: {run.seconds:.1f}s "
                f"(tap {run.tap_seconds:.1f}s) "
                f"{conversations / run.seconds:.1f}/s calls={run.calls} rss={run.tap_rss_mb:.0f}MB",
                file=sys.stderr,
                flush=True,
            )
    seconds = median([r.seconds for r in results])
    row = {
        "conversations": conversations,
        "rate_limit": rate_limit,
        "settings": settings,
        "seconds": seconds,
        "tap_seconds": median([r.tap_seconds for r in results]),
        "per_second": conversations / seconds,
        "calls": median([r.calls["calls"] for r in results]),
        "429": sum(r.calls["429"] for r in results),
        "runs": runs,
        "rss_mb": median([r.tap_rss_mb for r in results]),
    }
    if rate_limit is not None:
        row["ceiling"] = ceiling(conversations, rate_limit)[1]
        row["fraction"] = row["per_second"] / row["ceiling"]
    return row


def search_only(conversations: int, runs: int, latency_ms: float, jitter_ms: float) -> dict:
    settings = {"include_conversation_parts": False}
    with (
        simulator(conversations, latency_ms=latency_ms, jitter_ms=jitter_ms) as sim,
        tempfile.TemporaryDirectory(prefix="bench-search-") as tmp,
    ):
        messages = Path(tmp) / "messages.jsonl"
        tap_alone, target_alone, both, watched_alone, watched_both = [], [], [], [], []
        run_tap(sim, settings, out=messages)  # warms the simulator's row cache
        for _ in range(runs):
            tap_alone.append(run_tap(sim, settings, out=messages).seconds)
            with scratch_schema() as schema:
                seconds, loader = run_target_alone(messages, schema)
                target_alone.append(seconds)
                watched_alone.append(loader)
                if row_count(schema) != conversations:
                    sys.exit("target-postgres alone did not load every row")
            with scratch_schema() as schema:
                run = run_tap(sim, settings, schema=schema)
                if run.rows != conversations:
                    sys.exit(f"search-only loaded {run.rows} rows of {conversations}")
                both.append(run.seconds)
                watched_both.append(run.loader)
            print(
                f"  search-only n={conversations} latency={latency_ms}: tap alone {tap_alone[-1]:.1f}s, "
                f"target alone {target_alone[-1]:.1f}s {watched_alone[-1]}, end to end {both[-1]:.1f}s "
                f"{watched_both[-1]}",
                file=sys.stderr,
                flush=True,
            )
    ratios = sorted(alone / piped for alone, piped in zip(target_alone, both, strict=True))  # run by run
    return {
        "conversations": conversations,
        "latency_ms": latency_ms,
        "runs": runs,
        "tap_alone": conversations / median(tap_alone),
        "target_alone": conversations / median(target_alone),
        "end_to_end": conversations / median(both),
        "ratio": median(ratios),
        "ratios": ratios,
        "loader_alone": watched_median(watched_alone),
        "loader_piped": watched_median(watched_both),
    }


@contextlib.contextmanager
def stopped_share(sim: Simulator, share: float) -> Iterator[None]:
    """The simulator stopped (SIGSTOP) `share` of every 50 ms: a search answers slower the more are in flight,
    as on a machine loaded by other work (how figure 3's search-only regression of issue #25 was met)."""
    if not share:
        yield
        return
    done = threading.Event()

    def duty_cycle() -> None:
        while not done.is_set():
            sim.process.send_signal(signal.SIGSTOP)
            time.sleep(0.05 * share)
            sim.process.send_signal(signal.SIGCONT)
            time.sleep(0.05 * (1 - share))

    thread = threading.Thread(target=duty_cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        sim.process.send_signal(signal.SIGCONT)


def memory(
    conversations: int, parts: bool, latency_ms: float = 0.0, rate_limit: int | None = None, stopped: float = 0.0
) -> dict:
    """The tap's peak RSS, the tap alone into a file (a slower loader only blocks the tap's writes), no latency.

    With a latency (± 20 %) and a limit: as many calls in flight as that latency needs (hydrated, default settings).
    stopped: the share of the time the simulator is stopped (stopped_share).
    """
    with (
        simulator(conversations, latency_ms=latency_ms, jitter_ms=latency_ms * 0.2, rate_limit=rate_limit) as sim,
        tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp,
        stopped_share(sim, stopped),
    ):
        run = run_tap(sim, {"include_conversation_parts": parts}, out=Path(tmp) / "messages.jsonl")
        rows = sum(
            1
            for line in (Path(tmp) / "messages.jsonl").open()
            if line.startswith('{"type":"RECORD"') and json.loads(line)["stream"] == STREAM  # not the parts' records
        )
    if rows != conversations:
        sys.exit(f"memory run emitted {rows} records of {conversations}")
    print(
        f"  memory n={conversations} parts={parts} latency={latency_ms} R={rate_limit} stopped={stopped}: "
        f"{run.tap_rss_mb:.1f} MB, {run.seconds:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    return {
        "conversations": conversations,
        "parts": parts,
        "runs": 1,
        "rss_mb": run.tap_rss_mb,
        "seconds": run.seconds,
        "latency_ms": latency_ms,
        "rate_limit": rate_limit,
        "stopped": stopped,
    }


def memory_search(latencies: list[float], stopped: float, runs: int) -> list[dict]:
    """Figure 3 search-only at 10,000 and 100,000 conversations, runs alternating; each cell the median."""
    rows = []
    for latency in latencies:
        results: dict[int, list[dict]] = {10000: [], 100000: []}
        for _ in range(runs):
            for n in results:
                results[n].append(memory(n, False, latency, stopped=stopped))
        for cell in results.values():
            rows.append(
                {
                    **cell[0],
                    "runs": runs,
                    "rss_mb": median([r["rss_mb"] for r in cell]),
                    "seconds": median([r["seconds"] for r in cell]),
                }
            )
    return rows


def incremental(conversations: int, runs: int) -> dict:
    """A hydrated backfill, then runs from its final STATE with nothing changed."""
    with simulator(conversations) as sim, scratch_schema() as schema:
        first = run_tap(sim, {}, schema=schema, target=LOADER)
        if first.rows != conversations or first.last_state is None:
            sys.exit("the backfill before the incremental runs did not load every row")
        results = []
        for _ in range(runs):
            run = run_tap(sim, {}, schema=schema, state=first.last_state, target=LOADER)
            results.append(run)
            print(f"  incremental: {run.calls} {run.seconds:.2f}s", file=sys.stderr, flush=True)
    return {
        "conversations": conversations,
        "runs": runs,
        "calls": median([r.calls["calls"] for r in results]),
        "max_calls": max(r.calls["calls"] for r in results),
        "seconds": median([r.seconds for r in results]),
    }


def full_windows(stats: dict) -> list[int]:
    """Calls the simulator counted in each rate-limit window of a run, less its first and last (partial) windows."""
    counts = [count for _, count in sorted((int(reset), count) for reset, count in stats["windows"].items())]
    return counts[1:-1]


def latency_cell(limit: int, latency_ms: float) -> dict:
    """Figure 1 at one latency (± 20 %) and one limit, default settings: how much of the limit its full windows use.

    The run holds enough conversations for SWEEP_WINDOWS windows at the limit, and is stopped (SIGTERM) after
    SWEEP_SECONDS when the tap is slower than that; only the windows between its first and its last count.
    """
    conversations = limit * SWEEP_WINDOWS
    with (
        simulator(conversations, latency_ms=latency_ms, jitter_ms=latency_ms * 0.2, rate_limit=limit) as sim,
        scratch_schema() as schema,
    ):
        simulator_cpu = process_cpu(sim.process.pid)
        run = run_tap(sim, {}, schema=schema, align=True, stop_after=SWEEP_SECONDS)
        simulator_cpu = process_cpu(sim.process.pid) - simulator_cpu
    if not run.stopped and run.rows != conversations:
        sys.exit(f"latency sweep loaded {run.rows} rows of {conversations}")
    windows = full_windows(run.stats)
    gets = run.calls["gets"]
    row = {
        "limit": limit,
        "latency_ms": latency_ms,
        "conversations": run.rows,
        "stopped": run.stopped,
        "windows": len(windows),
        "share": sum(windows) / (limit * len(windows)) if windows else 0.0,
        "min_share": min(windows) / limit if windows else 0.0,
        "per_second": sum(windows) / (WINDOW * len(windows)) * gets / max(run.calls["calls"], 1) if windows else 0,
        "429": run.calls["429"],
        "peak_in_flight": run.stats["max_in_flight"],
        "rss_mb": run.tap_rss_mb,
        "cpu_s": run.tap_cpu_s,
        "cpu_ms_per_get": 1000 * run.tap_cpu_s / max(gets, 1),
        "seconds": run.seconds,
        "tap_seconds": run.tap_seconds,
        "simulator_cpu_s": simulator_cpu,
        "loader_cpu_s": run.loader.get("cpu_s"),
        "machine_busy": run.machine_busy,
    }
    print(f"  sweep R={limit} latency={latency_ms:.0f}ms: {row}", file=sys.stderr, flush=True)
    return row


PAIR_CELLS = ((4167, 150, 24000), (INTERCOM_LIMIT, 150, 10000), (INTERCOM_LIMIT, 450, 10000))


def since(before: dict, after: dict) -> dict:
    """The simulator's per-window call counts of what happened between two of its stats (one run on it)."""
    counts = {reset: count - before["windows"].get(reset, 0) for reset, count in after["windows"].items()}
    return {**after, "windows": {reset: count for reset, count in counts.items() if count > 0}}


def part_rows(schema: str) -> int:
    with psycopg.connect(DATABASE_URL) as conn:
        return conn.execute(f'SELECT count(*) FROM "{schema}".intercom_conversation_part_v1').fetchone()[0]


def pair_cell(limit: int, latency_ms: float, conversations: int) -> dict:
    """Issue 25: hydrated, parts on, at a limit and a latency (± 20 %): the tap alone into a file, then the tap piped
    into target-intercom-postgres, on one simulator. Each: the share of the limit its full windows used; the pair:
    how long the loader ran after the tap's exit, and whether both tables hold every record the tap alone wrote."""
    with (
        simulator(conversations, latency_ms=latency_ms, jitter_ms=latency_ms * 0.2, rate_limit=limit) as sim,
        tempfile.TemporaryDirectory(prefix="bench-pair-") as tmp,
    ):
        messages = Path(tmp) / "messages.jsonl"
        alone = run_tap(sim, {}, out=messages, align=True)
        emitted = {STREAM: 0, "intercom_conversation_part_v1": 0}
        for line in messages.open("rb"):
            if line.startswith(b'{"type":"RECORD"'):
                stream = json.loads(line)["stream"]
                emitted[stream] = emitted.get(stream, 0) + 1
        with scratch_schema() as schema:
            pair = run_tap(sim, {}, schema=schema, align=True, target=LOADER)
            parts = part_rows(schema)
    windows_alone, windows_pair = full_windows(alone.stats), full_windows(since(alone.stats, pair.stats))
    row = {
        "limit": limit,
        "latency_ms": latency_ms,
        "conversations": conversations,
        "part_rows": emitted["intercom_conversation_part_v1"],
        "share_alone": sum(windows_alone) / (limit * len(windows_alone)) if windows_alone else 0.0,
        "share_pair": sum(windows_pair) / (limit * len(windows_pair)) if windows_pair else 0.0,
        "windows": len(windows_pair),
        "min_share_pair": min(windows_pair) / limit if windows_pair else 0.0,
        "tap_seconds_alone": alone.seconds,
        "tap_seconds": pair.tap_seconds,
        "pair_seconds": pair.seconds,
        "loader_after_tap": pair.seconds - pair.tap_seconds,
        "loader_cpu_s": pair.loader.get("cpu_s"),
        "tap_cpu_s": pair.tap_cpu_s,
        "429": pair.calls["429"],
        "complete": pair.rows == emitted[STREAM] == conversations and parts == emitted["intercom_conversation_part_v1"],
        "rows": (pair.rows, parts),
        "load": load(),
    }
    print(f"  pair R={limit} latency={latency_ms:.0f}ms: {row}", file=sys.stderr, flush=True)
    return row


def report_pair(rows: list[dict]) -> None:
    print("\n### The pair at a workspace's limit (hydrated, parts on; tap → target-intercom-postgres)\n")
    print(
        "| R per 10 s | latency ms | conversations (part rows) | full windows | share of R: tap alone | share of R: "
        "pair (lowest window) | loader exit after the tap's | tables complete | CPU s: tap, loader | 429s | "
        "load average after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['limit']:,} | {r['latency_ms']:.0f} | {r['conversations']:,} ({r['part_rows']:,}) "
            f"| {r['windows']} | {r['share_alone']:.2f} | **{r['share_pair']:.2f}** ({r['min_share_pair']:.2f}) | "
            f"{r['loader_after_tap']:.1f} s | {'yes' if r['complete'] else 'NO ' + str(r['rows'])} | "
            f"{r['tap_cpu_s']:.1f}, {r['loader_cpu_s'] or 0:.1f} | {r['429']} | {r['load']} |"
        )


def tap_default_concurrency() -> int:
    from tap_intercom_conversation.tap import TapIntercomConversation

    return int(TapIntercomConversation.config_jsonschema["properties"]["max_concurrent_requests"]["default"])


# ---- the report -------------------------------------------------------------------------------------------------


def load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with psycopg.connect(DATABASE_URL) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory_gb:.0f} GB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {server}; simulator, tap, target-postgres and "
        "PostgreSQL on the same machine"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~2-minute sanity run: smaller and once each")
    parser.add_argument(
        "--runs",
        type=int,
        help=f"runs per measurement, the median is reported (default 3, figure 2 {SEARCH_RUNS}; quick 1)",
    )
    parser.add_argument(
        "--only",
        default="hydrated,search,memory,incremental",
        help="comma-separated: hydrated, search, memory, incremental; not in the default set: latency "
        "(figure 1 swept over latency x rate limit, ~25 min), memory-latency (figure 3 hydrated at "
        "10,000 and 100,000 conversations for each of --latencies, R = 4,167), memory-search (figure 3 "
        "search-only at 10,000 and 100,000 conversations, for each of --search-latencies, default 0), "
        "pair (issue 25: the tap and target-intercom-postgres at R = 4,167 and 1,667 per 10 s, 150 and "
        "450 ms, ~8 min)",
    )
    parser.add_argument("--search-latencies", help="ms, comma-separated, for figure 2 (default 0,150; ± 20 %%)")
    parser.add_argument(
        "--latencies", default=",".join(map(str, SWEEP_LATENCIES)), help="ms, for --only latency and memory-latency"
    )
    parser.add_argument("--limits", default=",".join(map(str, SWEEP_LIMITS)), help="per 10 s, for --only latency")
    parser.add_argument(
        "--sweep",
        help="comma-separated max_concurrent_requests values: hydrated throughput "
        "without a rate limit and at R = 1,667, instead of the benchmark",
    )
    parser.add_argument("--sweep-conversations", type=int, default=3000)
    parser.add_argument(
        "--simulator-stopped",
        type=float,
        default=0.0,
        help="for --only memory-search: the share of every 50 ms the simulator is stopped (SIGSTOP), "
        "its answers slower the more searches are in flight, as on a loaded machine",
    )
    args = parser.parse_args()
    os.chdir(REPO)
    runs = args.runs or (1 if args.quick else 3)
    search_runs = args.runs or (1 if args.quick else SEARCH_RUNS)
    started = time.time()
    concurrency = tap_default_concurrency()
    load_before = load()
    print(
        f"## Benchmark ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, median of {runs} run(s)"
        f"{f', figure 2 {search_runs}' if search_runs != runs else ''}"
        f"{', --quick' if args.quick else ''})\n\nMachine: {machine()}."
    )
    if args.sweep:
        rows = []
        for value in [int(v) for v in args.sweep.split(",")]:
            for limit in (None, INTERCOM_LIMIT):
                rows.append(hydrated(args.sweep_conversations, limit, runs, {"max_concurrent_requests": value}))
        report_sweep(rows)
        print(
            f"\nTotal benchmark time {time.time() - started:.0f} s; load average {load_before} before, "
            f"{load()} after (other processes share this machine when above ~{os.cpu_count()})."
        )
        return
    only = set(args.only.split(","))
    if "hydrated" in only:
        n = 1500 if args.quick else HYDRATED
        limits = [1000] if args.quick else [1000, INTERCOM_LIMIT]
        report_hydrated([hydrated(n, limit, runs) for limit in limits], concurrency, LATENCY_MS, JITTER_MS)
    if "latency" in only:
        cells = [
            latency_cell(limit, float(latency))
            for limit in map(int, args.limits.split(","))
            for latency in args.latencies.split(",")
        ]
        report_latency_sweep(cells, concurrency, load_before, load())
    if "search" in only:
        latencies = (
            [float(ms) for ms in args.search_latencies.split(",")]
            if args.search_latencies
            else [0.0]
            if args.quick
            else [0.0, LATENCY_MS]
        )
        rows = [
            search_only(10000 if args.quick else SEARCH_ONLY, search_runs, ms, ms * JITTER_MS / LATENCY_MS)
            for ms in latencies
        ]
        report_search(rows)
    if "memory" in only:
        sizes = (
            [(1000, True), (5000, True), (20000, False)]
            if args.quick
            else [(2000, True), (10000, True), (20000, True), (10000, False), (100000, False), (200000, False)]
        )
        report_memory([memory(n, parts) for n, parts in sizes])  # peak RSS barely varies: one run each
    if "memory-latency" in only:  # hydrated at R = 4,167: the most in flight each latency calls for
        cells = [(n, float(ms)) for ms in args.latencies.split(",") for n in (10000, 100000)]
        report_memory([memory(n, True, ms, SWEEP_LIMITS[-1]) for n, ms in cells])
    if "memory-search" in only:
        latencies = [float(ms) for ms in (args.search_latencies or "0").split(",")]
        report_memory(memory_search(latencies, args.simulator_stopped, args.runs or 1))
    if "pair" in only:
        report_pair([pair_cell(limit, float(ms), n) for limit, ms, n in PAIR_CELLS])
    if "incremental" in only:
        report_incremental(incremental(1000 if args.quick else 2000, runs))
    print(
        f"\nTotal benchmark time {time.time() - started:.0f} s; load average {load_before} before, "
        f"{load()} after (other processes share this machine when above ~{os.cpu_count()})."
    )


if __name__ == "__main__":
    main()
