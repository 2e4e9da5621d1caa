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

# --option: (type, default, help) of IntercomSimulator's keyword of the same name ...
SIMULATOR_OPTIONS: dict[str, tuple[type, object, str]] = {
    "host": (str, "127.0.0.1", ""),
    "port": (int, 0, ""),
    "conversations": (int, 1000, ""),
    "seed": (int, 0, ""),
    "token": (str, "sim-token", ""),
    "now": (int, None, "unix seconds used as 'now' for the history"),
    "latency_ms": (float, 0.0, ""),
    "jitter_ms": (float, 0.0, ""),
    "rate_limit": (int, None, "calls per 10-second window (enforced)"),
    "long_conversation_parts": (int, 0, ""),
    "clock_offset": (
        float,
        0.0,
        "seconds the simulated Intercom's clock is ahead of this machine's (negative: behind)",
    ),
}
# ... and of Faults' (--fault-seed defaults to --seed).
FAULT_OPTIONS: dict[str, tuple[type, object, str]] = {
    "error_rate": (float, 0.0, ""),
    "html_fraction": (float, 0.5, ""),
    "drop_rate": (float, 0.0, ""),
    "slow_rate": (float, 0.0, ""),
    "slow_seconds": (float, 5.0, ""),
    "bad_json_rate": (float, 0.0, ""),
    "change_rate": (float, 0.0, ""),
    "changes_per_event": (int, 1, ""),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.intercom_simulator", description="Intercom REST API 2.16 (conversations) simulator"
    )
    for name, (kind, default, text) in (SIMULATOR_OPTIONS | FAULT_OPTIONS).items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=default, help=text or None)
    p.add_argument("--fault-seed", type=int, default=None, help="defaults to --seed")
    p.add_argument("--date-comparison", choices=("strict", "inclusive"), default="strict")
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
        **{name: getattr(args, name) for name in FAULT_OPTIONS},
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = IntercomSimulator(
        **{name: getattr(args, name) for name in SIMULATOR_OPTIONS},
        faults=faults,
        date_comparison=args.date_comparison,
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
