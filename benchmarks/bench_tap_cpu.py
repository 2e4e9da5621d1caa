#!/usr/bin/env python3
"""The tap's CPU seconds for one search-only backfill, A/B between versions of the tap, runs alternating.

    .venvs/dev/bin/python benchmarks/bench_tap_cpu.py --tap NAME=COMMAND [--tap NAME=COMMAND ...] [--runs 5]

Each COMMAND runs a tap (e.g. `.venvs/dev/bin/tap-intercom-conversation`, or another checkout's package with
`env PYTHONPATH=/tmp/old/tap-intercom-conversation .venvs/dev/bin/python -m tap_intercom_conversation.tap`).
One simulator (`python -m tests.intercom_simulator`, no latency) serves every run; an unmeasured run warms
its row cache first. Each run is the tap alone with include_conversation_parts false, its stdout to
/dev/null; its CPU time (user + system, os.wait4) is what it costs on a machine it shares with the loader.
The versions run in turn (A B B A ...), so that the machine's drift within minutes falls on both alike;
on a busy machine that drift is larger than a small difference, so each run's pair is also compared
(each tap's CPU over the first tap's in the same round) and the median of those ratios is reported,
with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import REPO, TAP, simulator


def tap_cpu(command: list[str], config: Path) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one run."""
    with open(os.devnull, "w") as sink, tempfile.TemporaryFile() as log:
        started = os.times().elapsed
        tap = subprocess.Popen([*command, "--config", str(config)], stdout=sink, stderr=log, cwd=REPO)
        _, status, usage = os.wait4(tap.pid, 0)
        wall = os.times().elapsed - started
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{shlex.join(command)} failed:\n{log.read().decode()[-3000:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tap",
        action="append",
        metavar="NAME=COMMAND",
        help=f"a tap to measure (repeatable); default: this checkout's, {TAP}",
    )
    parser.add_argument("--conversations", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each tap")
    args = parser.parse_args()
    taps = dict(item.split("=", 1) for item in args.tap or [f"this={TAP}"])
    cpu: dict[str, list[float]] = {name: [] for name in taps}
    wall: dict[str, list[float]] = {name: [] for name in taps}
    load_before = os.getloadavg()
    with simulator(args.conversations, latency_ms=0, jitter_ms=0) as sim, tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "tap.json"
        config.write_text(
            json.dumps({"access_token": "sim-token", "api_url": sim.url, "include_conversation_parts": False})
        )
        names = list(taps)
        tap_cpu(shlex.split(taps[names[0]]), config)  # warms the simulator's row cache: not measured
        for run in range(args.runs):
            for name in names if run % 2 == 0 else names[::-1]:
                seconds, elapsed = tap_cpu(shlex.split(taps[name]), config)
                cpu[name].append(seconds)
                wall[name].append(elapsed)
                print(f"run {run + 1} {name}: {seconds:.2f} CPU-s, {elapsed:.2f} s", flush=True)
    load_after = os.getloadavg()
    print(f"\n{args.conversations:,} conversations, search-only, the tap alone; medians of {args.runs} runs")
    loads = [" ".join(f"{value:.2f}" for value in load) for load in (load_before, load_after)]
    print(f"load average (1, 5, 15 min): {loads[0]} before, {loads[1]} after")
    for name in names:
        paired = ""
        if name != names[0]:
            ratios = [mine / first for mine, first in zip(cpu[name], cpu[names[0]], strict=True)]
            paired = f"; paired {name}/{names[0]}: median {statistics.median(ratios):.3f} of {len(ratios)} rounds"
        print(
            f"{name}: {statistics.median(cpu[name]):.2f} CPU-s (runs: {', '.join(f'{s:.2f}' for s in cpu[name])}),"
            f" {statistics.median(wall[name]):.2f} s wall{paired}"
        )


if __name__ == "__main__":
    main()
