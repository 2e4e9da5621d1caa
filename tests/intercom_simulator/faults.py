"""Fault injection (seeded) and the per-token fixed-window rate limiter."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


@dataclass
class Faults:
    """Per-request fault probabilities; one seeded draw per authenticated request.

    error_rate: answer 500/502/503 (``html_fraction`` of them with an HTML body);
    drop_rate: close the connection without any response (``reset_fraction`` of
    them as an abortive close, a TCP RST: "connection reset by peer"); slow_rate: sleep
    ``slow_seconds`` before answering; bad_json_rate: answer 200 with a
    truncated JSON body. change_rate: on each search request, with this
    probability touch ``changes_per_event`` random live conversations first.
    """

    seed: int = 0
    error_rate: float = 0.0
    html_fraction: float = 0.5
    drop_rate: float = 0.0
    reset_fraction: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    bad_json_rate: float = 0.0
    change_rate: float = 0.0
    changes_per_event: int = 1


class Plan(NamedTuple):
    kind: str | None  # None | "error" | "drop" | "reset" | "slow" | "bad_json"
    status: int = 200
    html: bool = False


class FaultInjector:
    def __init__(self, faults: Faults | None) -> None:
        self.faults = faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.lock = threading.Lock()

    def draw(self) -> Plan:
        f = self.faults
        if not (f.error_rate or f.drop_rate or f.slow_rate or f.bad_json_rate):
            return Plan(None)
        with self.lock:
            r = self.rng.random()
            if r < f.error_rate:
                return Plan("error", self.rng.choice([500, 502, 503]), self.rng.random() < f.html_fraction)
            r -= f.error_rate
            if r < f.drop_rate:
                return Plan("reset") if f.reset_fraction and self.rng.random() < f.reset_fraction else Plan("drop")
            r -= f.drop_rate
            if r < f.slow_rate:
                return Plan("slow")
            r -= f.slow_rate
            return Plan("bad_json") if r < f.bad_json_rate else Plan(None)

    def changes(self) -> int:
        """How many conversations to touch before answering this search request."""
        f = self.faults
        if not f.change_rate:
            return 0
        with self.lock:
            return f.changes_per_event if self.rng.random() < f.change_rate else 0

    def child_rng(self) -> random.Random:
        with self.lock:
            return random.Random(self.rng.getrandbits(64))


DEFAULT_REPORTED_LIMIT = 1667  # 10,000/min per app, i.e. per 10-second window (rounded up)
WINDOW = 10


class RateLimiter:
    """Fixed 10-second windows aligned to Intercom's clock, counted per token."""

    def __init__(self, limit: int | None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # Intercom's clock: windows and X-RateLimit-Reset follow it
        self.enforce = limit is not None
        self.limit = DEFAULT_REPORTED_LIMIT if limit is None else int(limit)
        self.windows: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def hit(self, token: str) -> tuple[bool, dict[str, str]]:
        start = int(self.clock()) // WINDOW * WINDOW
        with self.lock:
            window, count = self.windows.get(token, (start, 0))
            count = count + 1 if window == start else 1
            self.windows[token] = (start, count)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - count)),
            "X-RateLimit-Reset": str(start + WINDOW),
        }
        return (not self.enforce or count <= self.limit), headers
