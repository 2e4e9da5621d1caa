"""CLI: python -m tests.intercom_simulator --port 8080 --conversations 1000 ...

Prints one line ``intercom simulator listening on http://HOST:PORT`` and
serves until SIGTERM/SIGINT, then exits cleanly. ``GET /__stats`` answers the
request counters (``IntercomSimulator.stats``) as JSON, itself uncounted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .faults import Faults
from .simulator import IntercomSimulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.intercom_simulator", description="Intercom REST API 2.16 (conversations) simulator"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token", default="sim-token")
    p.add_argument("--now", type=int, default=None, help="unix seconds used as 'now' for the history")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--rate-limit", type=int, default=None, help="calls per 10-second window (enforced)")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--html-fraction", type=float, default=0.5)
    p.add_argument("--drop-rate", type=float, default=0.0)
    p.add_argument("--slow-rate", type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--bad-json-rate", type=float, default=0.0)
    p.add_argument("--change-rate", type=float, default=0.0)
    p.add_argument("--changes-per-event", type=int, default=1)
    p.add_argument("--fault-seed", type=int, default=None, help="defaults to --seed")
    p.add_argument("--date-comparison", choices=("strict", "inclusive"), default="strict")
    p.add_argument("--long-conversation-parts", type=int, default=0)
    p.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        help="seconds the simulated Intercom's clock is ahead of this machine's (negative: behind)",
    )
    p.add_argument(
        "--bad-data",
        action="store_true",
        help="add conversations holding U+0000, lone surrogates and numbers a float cannot hold",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faults = Faults(
        seed=args.seed if args.fault_seed is None else args.fault_seed,
        error_rate=args.error_rate,
        html_fraction=args.html_fraction,
        drop_rate=args.drop_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        bad_json_rate=args.bad_json_rate,
        change_rate=args.change_rate,
        changes_per_event=args.changes_per_event,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = IntercomSimulator(
        conversations=args.conversations,
        seed=args.seed,
        token=args.token,
        now=args.now,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        rate_limit=args.rate_limit,
        faults=faults,
        date_comparison=args.date_comparison,
        long_conversation_parts=args.long_conversation_parts,
        host=args.host,
        port=args.port,
        clock_offset=args.clock_offset,
        bad_data=args.bad_data,
    ).start()
    print(f"intercom simulator listening on {sim.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
