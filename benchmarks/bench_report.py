"""The markdown tables of benchmarks/bench.py."""

from __future__ import annotations


def report_hydrated(rows: list[dict], concurrency: int, latency_ms: float, jitter_ms: float) -> None:
    print(
        f"\n### 1. Hydrated backfill ({latency_ms:.0f} ms latency ± {jitter_ms:.0f} ms, "
        f"max_concurrent_requests {concurrency})\n"
    )
    print(
        "| conversations | rate limit R (per 10 s) | API calls | wall s (tap done) | conversations/s | ceiling/s | "
        "fraction of ceiling | 429s (all runs) | tap peak RSS MB | runs |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        limit = r["rate_limit"] if r["rate_limit"] is not None else "none"
        ceil = f"{r['ceiling']:.1f}" if "ceiling" in r else "-"
        frac = f"**{r['fraction']:.2f}**" if "fraction" in r else "-"
        print(
            f"| {r['conversations']:,} | {limit} | {r['calls']:.0f} | {r['seconds']:.1f} ({r['tap_seconds']:.1f}) | "
            f"{r['per_second']:.1f} | {ceil} | {frac} | {r['429']} | {r['rss_mb']:.0f} | {r['runs']} |"
        )


def report_search(rows: list[dict]) -> None:
    print("\n### 2. Search-only (include_conversation_parts false) into PostgreSQL\n")
    print(
        "| conversations | latency ms | tap alone → file rows/s | target-postgres alone from file rows/s | "
        "tap → target-postgres rows/s | end to end / target alone (of the medians) | "
        "the same run by run: median (each run) | runs |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        each = ", ".join(f"{ratio:.2f}" for ratio in r["ratios"])
        print(
            f"| {r['conversations']:,} | {r['latency_ms']:.0f} | {r['tap_alone']:.0f} | {r['target_alone']:.0f} | "
            f"{r['end_to_end']:.0f} | **{r['end_to_end'] / r['target_alone']:.2f}** | **{r['ratio']:.2f}** "
            f"({each}) | {r['runs']} |"
        )
    print("\nWhat target-postgres waited for (medians; sampled from /proc every 10 ms):\n")
    print(
        "| conversations | latency ms | waiting for the tap (stdin empty), end to end | its CPU s alone / end to end "
        "| waiting for a CPU s alone / end to end |"
    )
    print("|---:|---:|---:|---:|---:|")

    def show(value: float | None, form: str) -> str:
        return "n/a" if value is None else format(value, form)

    for r in rows:
        alone, piped = r["loader_alone"], r["loader_piped"]
        print(
            f"| {r['conversations']:,} | {r['latency_ms']:.0f} | **{show(piped['pipe_wait'], '.1%')}** | "
            f"{show(alone['cpu_s'], '.1f')} / {show(piped['cpu_s'], '.1f')} | "
            f"{show(alone['queue_s'], '.1f')} / {show(piped['queue_s'], '.1f')} |"
        )


def report_memory(rows: list[dict]) -> None:
    print("\n### 3. The tap's peak memory (ru_maxrss), the tap alone into a file\n")
    print(
        "| conversations | include_conversation_parts | latency ms | rate limit R | simulator stopped | "
        "tap peak RSS MB | wall s | runs |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        limit = r.get("rate_limit") or "none"
        print(
            f"| {r['conversations']:,} | {str(r['parts']).lower()} | {r.get('latency_ms', 0):.0f} | {limit} | "
            f"{r.get('stopped', 0):.0%} | {r['rss_mb']:.1f} | {r['seconds']:.1f} | {r['runs']} |"
        )


def report_incremental(row: dict) -> None:
    print("\n### 4. Incremental run, nothing changed (from the final STATE of a hydrated backfill)\n")
    print("| conversations | API calls (median, max) | wall s, tap start to target exit | runs |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {row['conversations']:,} | {row['calls']:.0f}, {row['max_calls']} | {row['seconds']:.2f} | {row['runs']} |"
    )


def report_sweep(rows: list[dict]) -> None:
    print("\n### max_concurrent_requests sweep (hydrated backfill)\n")
    print(
        "| max_concurrent_requests | conversations | rate limit R | wall s (tap done) | conversations/s | "
        "fraction of ceiling | 429s | tap peak RSS MB | runs |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        limit = r["rate_limit"] if r["rate_limit"] is not None else "none"
        frac = f"{r['fraction']:.2f}" if "fraction" in r else "-"
        print(
            f"| {r['settings']['max_concurrent_requests']} | {r['conversations']:,} | {limit} | "
            f"{r['seconds']:.1f} ({r['tap_seconds']:.1f}) | {r['per_second']:.1f} | {frac} | {r['429']} | "
            f"{r['rss_mb']:.0f} | {r['runs']} |"
        )


def report_latency_sweep(rows: list[dict], concurrency: object, load_before: str, load_after: str) -> None:
    print(
        f"\n### 5. Hydrated backfill by latency and rate limit (default settings: max_concurrent_requests "
        f"{concurrency}; load average {load_before} before, {load_after} after)\n"
    )
    print(
        "| R per 10 s | latency ms (± 20 %) | full windows | share of R used (lowest window) | conversations/s | "
        "429s | peak in flight | tap peak RSS MB | tap CPU s (ms per conversation) | CPU s: simulator, "
        "target-postgres | machine busy | conversations (wall s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def cpu(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    for r in rows:
        stopped = ", stopped" if r["stopped"] else ""
        busy = "n/a" if r["machine_busy"] is None else f"{r['machine_busy']:.0%}"
        print(
            f"| {r['limit']:,} | {r['latency_ms']:.0f} | {r['windows']} | "
            f"**{r['share']:.2f}** ({r['min_share']:.2f}) | "
            f"{r['per_second']:.1f} | {r['429']} | {r['peak_in_flight']} | {r['rss_mb']:.0f} | "
            f"{r['cpu_s']:.1f} ({r['cpu_ms_per_get']:.2f}) | {cpu(r['simulator_cpu_s'])}, {cpu(r['loader_cpu_s'])} | "
            f"{busy} | {r['conversations']:,} ({r['seconds']:.0f}{stopped}) |"
        )
