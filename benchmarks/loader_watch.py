"""What target-postgres waited for during a benchmark run (Linux /proc); used by benchmarks/bench.py."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path


class LoaderWatch:
    """Samples target-postgres every 10 ms: how often it waits on an empty pipe, i.e. for the tap.

    /proc/<pid>/wchan names where a sleeping process waits (anon_pipe_read: its stdin is empty);
    /proc/<pid>/schedstat gives its CPU time and its time runnable but waiting for a CPU, which is
    what the tap, the simulator and PostgreSQL cost it by sharing the machine. Without /proc: None.
    """

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self.pipe_waits = pid, 0, 0
        self.cpu_seconds: float | None = None
        self.queue_seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        proc = Path(f"/proc/{self.pid}")
        while not self._stop.is_set():
            try:
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                waits_for_stdin = state == "S" and "pipe_read" in (proc / "wchan").read_text()
                on_cpu, queued = (proc / "schedstat").read_text().split()[:2]
            except (OSError, IndexError, ValueError):
                return
            self.samples += 1
            self.pipe_waits += waits_for_stdin
            self.cpu_seconds, self.queue_seconds = int(on_cpu) / 1e9, int(queued) / 1e9
            time.sleep(0.01)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {
            "pipe_wait": self.pipe_waits / self.samples if self.samples else None,
            "cpu_s": self.cpu_seconds,
            "queue_s": self.queue_seconds,
        }


def watched_median(watched: list[dict]) -> dict:
    """Each LoaderWatch figure's median over the runs; None where /proc told nothing."""
    keys = ("pipe_wait", "cpu_s", "queue_s")
    return {
        key: statistics.median(values) if (values := [w[key] for w in watched if w.get(key) is not None]) else None
        for key in keys
    }
