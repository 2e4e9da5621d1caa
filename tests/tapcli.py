"""The tap's command line as users run it, and what its output must look like when something goes wrong.

`run_cli` runs the installed console script (`tap-intercom-conversation`) in a subprocess. With
`fast_retries=True` it runs the same `tap.main()` through `python -c`, after replacing the backoff
waits (0.5 s doubling up to 30 s, with jitter) by 10 ms: tests that exhaust the 8 tries then take
a second instead of half a minute. Nothing else changes, and users have no such switch.
With `runner=ForkRunner()` the same main() runs in a process forked from one that has already
imported the tap (tests/forkrun.py): the big tables of cases run in seconds instead of minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tests.pipeline import REPO, STREAM, TAP, TapRun
from tests.tools import tool

PYTHON = tool("dev", "python")
PROG = "tap-intercom-conversation"
ERROR_PREFIX = f"{PROG}: error: "
FAST_TAP = (
    "import sys, backoff\n"
    "from tap_intercom_conversation.client import IntercomStream\n"
    "IntercomStream.backoff_wait_generator = lambda self: backoff.constant(0.01)\n"
    "from tap_intercom_conversation.tap import main\n"
    f"sys.argv[0] = {PROG!r}\n"
    "main()\n"
)
# A log line of the SDK's console format: "2026-01-31 12:00:00,123 | INFO     | logger | message".
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \| (?P<level>[A-Z]+) +\| (?P<logger>\S+) +\| (?P<msg>.*)$"
)
RETRY_WARNING = ("Retrying after try",)
PYTHON_EOL_WARNING = ("SingerSDKPythonEOLWarning:",)  # singer-sdk under Python 3.10: the machine's, not the tap's


class ForkRunner:
    """tests/forkrun.py: the tap's main() in a forked process per run, without paying the interpreter start."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [PYTHON, "-m", "tests.forkrun"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._lock = threading.Lock()
        self._waiting: dict[str, Future] = {}
        threading.Thread(target=self._read_results, daemon=True, name="forkrun-results").start()

    def _read_results(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            result = json.loads(line)
            with self._lock:
                future = self._waiting.pop(result["id"])
            future.set_result(result["returncode"])

    def run(self, args: list[str], *, fast_retries: bool, timeout: float) -> tuple[int, str, str]:
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            job_id, future = uuid.uuid4().hex, Future()
            with self._lock:
                self._waiting[job_id] = future
                job = {"id": job_id, "args": args, "stdout": str(out), "stderr": str(err), "fast_retries": fast_retries}
                assert self._process.stdin is not None
                self._process.stdin.write(json.dumps(job) + "\n")
                self._process.stdin.flush()
            returncode = future.result(timeout=timeout)
            return returncode, out.read_text(), err.read_text()

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=60)


def run_cli(
    config: Mapping | None,
    state: Mapping | None = None,
    *args: str,
    fast_retries: bool = False,
    config_text: str | None = None,
    state_text: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
    runner: ForkRunner | None = None,
) -> TapRun:
    """Run the tap with these settings (and state) files; Singer messages on stdout are parsed.

    Without a runner: the installed console script (or `python -c` for fast retries), a new interpreter.
    """
    with tempfile.TemporaryDirectory() as folder:
        argv: list[str] = []
        if config is not None or config_text is not None:
            (Path(folder) / "config.json").write_text(json.dumps(config) if config_text is None else config_text)
            argv += ["--config", str(Path(folder) / "config.json")]
        if state is not None or state_text is not None:
            (Path(folder) / "state.json").write_text(json.dumps(state) if state_text is None else state_text)
            argv += ["--state", str(Path(folder) / "state.json")]
        argv += args
        if runner is not None:
            assert env is None, "a forked run shares the test's environment"
            returncode, stdout, stderr = runner.run(argv, fast_retries=fast_retries, timeout=timeout)
        else:
            program = [PYTHON, "-c", FAST_TAP] if fast_retries else [TAP]
            done = subprocess.run(
                [*program, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=None if env is None else dict(env),
            )
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    run = TapRun(returncode, stdout, stderr)
    run.messages = [message for message in map(_message, stdout.splitlines()) if message]
    return run


def _message(line: str) -> dict | None:
    """A Singer message, or None for other output (--discover and --about print indented JSON)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "type" in message else None


def run_all(calls: Iterable, workers: int = 4) -> list:
    """Run several zero-argument callables at once (each mostly waits on its own subprocess)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def unexpected_lines(stderr: str, allowed_warnings: tuple[str, ...] = RETRY_WARNING) -> list[str]:
    """stderr lines that are neither the one error line nor an INFO/DEBUG log line (or an allowed warning)."""
    odd = []
    for line in stderr.splitlines():
        if line.startswith(ERROR_PREFIX):
            continue
        match = LOG_LINE.match(line)
        if match and match["level"] in {"INFO", "DEBUG"}:
            continue
        if match and match["level"] == "WARNING" and match["msg"].startswith(allowed_warnings + PYTHON_EOL_WARNING):
            continue
        odd.append(line)
    return odd


def assert_hands_over_only_its_failure(run: TapRun, cause: str, state: dict | None = None) -> None:
    """stdout is one STATE: the state the run resumed from (`state`, none: {}), unchanged, carrying the failure's
    line for the target beside its value (logs.EXTRACTOR_FAILED); no record, no other state."""
    assert run.messages == [{"type": "STATE", "value": state or {}, "extractor_failed": cause}], run.stdout[-2000:]


def assert_fails_with_one_line(
    run: TapRun, *fragments: str, allowed_warnings: tuple[str, ...] = RETRY_WARNING, returncode: int = 1
) -> str:
    """Exit 1, exactly one `tap-intercom-conversation: error: ...` line containing every fragment, no traceback."""
    assert run.returncode == returncode, f"exit {run.returncode}; stderr tail: {run.stderr[-1500:]}"
    errors = error_lines(run.stderr)
    assert len(errors) == 1, f"expected one error line, got {errors}; stderr tail: {run.stderr[-1500:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    odd = unexpected_lines(run.stderr, allowed_warnings)
    assert not odd, f"stderr lines besides logs and the error line: {odd[:5]}"
    line = errors[0]
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert stdout_is_whole_lines(run.stdout), "stdout ends in a partial line"
    return line[len(ERROR_PREFIX) :]


def stdout_is_whole_lines(stdout: str) -> bool:
    if not stdout:
        return True
    if not stdout.endswith("\n"):
        return False
    for line in stdout.splitlines():
        json.loads(line)
    return True


def conversations(run: TapRun) -> list[dict]:
    """The conversation records the run emitted, in order."""
    return [m["record"] for m in run.messages if m["type"] == "RECORD" and m["stream"] == STREAM]


def unix(value: str) -> int:
    return int(dt.datetime.fromisoformat(value).timestamp())


def assert_state_never_ahead(run: TapRun, updated_at: Mapping[str, int]) -> None:
    """Every STATE covers only what was emitted before it.

    A bookmark b sends the next run (even with no lookback) to conversations updated at b or later,
    so every conversation updated before b must already have been emitted, at that version or later;
    and every conversation the state remembers as loaded must have been emitted at that version.
    """
    emitted: dict[str, int] = {}
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == STREAM:
            record = message["record"]
            emitted[record["intercom_id"]] = max(emitted.get(record["intercom_id"], -1), unix(record["updated_at"]))
        elif message["type"] == "STATE":
            ours = message["value"].get("bookmarks", {}).get(STREAM, {})
            value = ours.get("replication_key_value")
            if value is None:
                continue
            bookmark = unix(value)
            missing = [i for i, at in updated_at.items() if at < bookmark and emitted.get(i, -1) < at]
            assert not missing, f"STATE at {value} covers {len(missing)} conversations not emitted, e.g. {missing[:3]}"
            for conversation_id, at in (ours.get("recent_conversations") or {}).items():
                assert emitted.get(conversation_id, -1) >= at, f"STATE remembers {conversation_id} as loaded"
