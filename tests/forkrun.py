"""Run the tap's command line many times, fast: one interpreter imports the tap once and forks per run.

Every run is still its own process running `tap_intercom_conversation.tap:main` (what the console
script runs) with its own argv, stdout, stderr and exit code; only the ~1.3 s of interpreter start
and imports is shared. An exception escaping main() goes through sys.excepthook, as it would at
the top of a real interpreter, so a traceback still shows up on stderr.

    python -m tests.forkrun    # reads one JSON job per line, answers {"id", "returncode"} per finished job

Job: {"id", "args", "stdout": path, "stderr": path, "fast_retries": bool}. The tests use it through
`ForkRunner` (tests/helpers.py); `fast_retries` replaces the backoff waits by 10 ms, as helpers.run_tap does.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import sys


def _child(job: dict) -> int:
    import backoff

    from tap_intercom_conversation import tap
    from tap_intercom_conversation.client import IntercomStream

    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    stderr = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    if job.get("fast_retries"):
        IntercomStream.backoff_wait_generator = lambda self: backoff.constant(0.01)
    sys.argv = ["tap-intercom-conversation", *job["args"]]
    code = 0
    try:
        tap.main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def serve() -> None:
    from tap_intercom_conversation import tap  # noqa: F401  (the imports every child shares)

    running: dict[int, str] = {}
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    pending = b""  # read with os.read: a buffered readline() would hide lines from select()
    open_input = True
    while open_input or running:
        if open_input and selector.select(timeout=0.02):
            chunk = os.read(0, 65536)
            open_input = bool(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in filter(None, (line.strip() for line in lines)):
                job = json.loads(line)
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        code = _child(job)
                    finally:
                        os._exit(code)
                running[pid] = job["id"]
        elif not open_input:
            pid, status = os.waitpid(-1, 0)
            _report(running.pop(pid), status)
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            _report(running.pop(pid), status)


def _report(job_id: str, status: int) -> None:
    print(json.dumps({"id": job_id, "returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
