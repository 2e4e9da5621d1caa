"""The access token never shows: not in logs at any level (DEBUG included, with the SDK's request
metrics and urllib3's connection logging), not in errors, not in STATE or records, not in --about or
--discover, not in this test's own output.

The tap runs at DEBUG against the simulator through every path that writes something: a sync with
faults (retries, a 429 wait, timeouts), a sync with the token from the environment, the failures
(401, giving up, a bad setting next to the token, a token of the wrong type), --about in each format
and --discover. Everything they wrote to stdout and stderr is searched for the token and for pieces
of it. Assertions name only where a leak is, never the text around it.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time

import pytest

from tests.helpers import run_all, run_tap, tap_config
from tests.intercom_simulator import Faults, IntercomSimulator

TOKEN = "tok_" + secrets.token_hex(20)
DEBUG = {**os.environ, "TAP_INTERCOM_CONVERSATION_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"}


def _pieces(token: str) -> list[str]:
    """The token and every 12-character piece of it: a truncated or split token is a leak too."""
    return [token, *(token[i : i + 12] for i in range(0, len(token) - 11, 4))]


def _leaks(outputs: dict[str, str]) -> list[str]:
    return sorted({name for name, text in outputs.items() for piece in _pieces(TOKEN) if piece in text})


def _one_429_then_normal():
    done = threading.Event()

    def answer(method, path, body):
        if method == "GET" and not done.is_set():
            done.set()
            body = {"type": "error.list", "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded"}]}
            return 429, body, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)}
        return None

    return answer


@pytest.mark.slow
def test_the_token_never_appears_in_any_output_at_debug_level():
    faults = Faults(seed=8, error_rate=0.05, drop_rate=0.03, slow_rate=0.02, slow_seconds=2, bad_json_rate=0.02)
    with (
        IntercomSimulator(conversations=300, seed=8, token=TOKEN, faults=faults) as sim,
        IntercomSimulator(conversations=5, seed=8, token=TOKEN, faults=Faults(seed=1, error_rate=1.0)) as broken,
    ):
        sim.on_request = _one_429_then_normal()
        config = tap_config(sim, request_timeout_seconds=1, max_concurrent_requests=8)
        env_only = {key: value for key, value in config.items() if key != "access_token"}
        runs = dict(
            zip(
                [
                    "sync",
                    "sync-token-from-env",
                    "401",
                    "give-up",
                    "bad-setting",
                    "token-wrong-type",
                    "about-text",
                    "about-json",
                    "about-markdown",
                    "discover",
                ],
                run_all(
                    [
                        lambda: run_tap(config, None, env=DEBUG),
                        lambda: run_tap(
                            env_only,
                            None,
                            "--config",
                            "ENV",
                            env={**DEBUG, "TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN": TOKEN},
                        ),
                        lambda: run_tap({**config, "access_token": TOKEN[::-1]}, None, env=DEBUG),  # rejected: 401
                        lambda: run_tap(tap_config(broken), None, fast_retries=True, env=DEBUG),
                        lambda: run_tap({**config, "api_version": "9.9"}, None, env=DEBUG),
                        lambda: run_tap({**config, "access_token": [TOKEN]}, None, env=DEBUG),
                        lambda: run_tap(config, None, "--about", env=DEBUG),
                        lambda: run_tap(config, None, "--about", "--format", "json", env=DEBUG),
                        lambda: run_tap(config, None, "--about", "--format", "markdown", env=DEBUG),
                        lambda: run_tap(config, None, "--discover", env=DEBUG),
                    ],
                    workers=4,
                ),
                strict=True,
            )
        )
        stats = sim.stats

    # Every path really ran, at DEBUG, and went where it should (checked as booleans, so that a failure
    # prints no output that might hold the token).
    sync, from_env = runs["sync"], runs["sync-token-from-env"]
    checks = {
        "sync completed": sync.returncode == 0 and len(sync.records) >= 300 and bool(sync.states),
        "sync logged at DEBUG, request metrics included": "| DEBUG" in sync.stderr and "METRIC" in sync.stderr,
        "sync retried": "Retrying after try" in sync.stderr and sum(stats["faults"].values()) > 0,
        "a sync waited out a 429": stats["by_status"].get(429, 0) >= 1
        and "Rate limited (429)" in sync.stderr + from_env.stderr,
        "token from the environment": from_env.returncode == 0 and len(from_env.records) >= 300,
        "401": "Intercom rejected the access token" in runs["401"].stderr,
        "give-up": "gave up after 8 tries" in runs["give-up"].stderr,
        "bad setting": "api_version '9.9'" in runs["bad-setting"].stderr,
        "token of the wrong type": "access_token is not a string" in runs["token-wrong-type"].stderr,
        "about": "access_token" in runs["about-text"].stdout
        and "access_token" in json.loads(runs["about-json"].stdout)["settings"]["properties"]
        and "access_token" in runs["about-markdown"].stdout,
        "discover": bool(json.loads(runs["discover"].stdout)["streams"]),
        **{f"{name} without traceback": "Traceback" not in run.stderr for name, run in runs.items()},
    }
    assert [check for check, passed in checks.items() if not passed] == []

    outputs = {f"{name} {where}": getattr(run, where) for name, run in runs.items() for where in ("stdout", "stderr")}
    assert _leaks(outputs) == []
