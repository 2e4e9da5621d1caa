"""target-intercom-postgres: MeltanoLabs target-postgres that owns the product's tables.

Stock target-postgres 0.8.1 creates a wrong intercom_conversation_v1 (no pk, timestamps without time
zone) and cannot load the documented one (see schemas/intercom_conversation_v1.sql). This loader is
target-postgres with three additions, all driven by its own settings, however they were given
(`meltano config set`, environment variables, Meltano environments, an `inherit_from` loader):

- before reading its input, it applies the table SQL (table.apply) in the schema and database it
  will load into, so the tables it loads are always the documented ones;
- a stream of the product that would land anywhere else (a stream map renaming it, a setting that
  adds columns) stops the run before anything is written, with one line saying what to fix;
- a table found empty while the tap resumes from a bookmark (the schema or database changed under an
  old state) stops the run with one line naming `--full-refresh`: loading only what changed since the
  bookmark would leave every older conversation out, silently; a table with rows while the tap resumes
  from no bookmark (a full backfill) is one warning line;
- it commits every sink at least every 30 s as well as after each full batch, and acknowledges (writes
  on stdout, where Meltano stores it) the newest STATE whose records are all committed, right after the
  commit (acknowledge.py), so a killed run redoes at most 30 s of work; SIGTERM/SIGINT commit what was
  read and exit 143/130 within seconds;
- its log is one summary line (rows per table, seconds), warnings, and per-batch lines only with
  log_metrics or at debug (logs.py); a failure is one line naming the table, host:port and database;
  when the tap failed, its line (handed over in its last STATE, logs.EXTRACTOR_FAILED) ends the log,
  at error level, after the summary.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import sys
import threading
import time
import typing as t
from types import FrameType

try:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from target_postgres.target import TargetPostgres

    from target_intercom_postgres.copy_load import CopySink
except ModuleNotFoundError as missing:  # the distribution was installed without its [postgres] extra
    sys.exit(f"target-intercom-postgres: {missing.name} is missing: install tap-intercom-conversation[postgres]")

from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from intercom_conversation_shared import logs, source_mark
from intercom_conversation_shared.logs import EXTRACTOR_FAILED
from intercom_conversation_shared.schema_files import STREAM_NAME
from intercom_conversation_shared.sdk_adapter import TargetAdapter, records_read
from intercom_conversation_shared.settings import coerce_strings, schema_problem
from target_intercom_postgres.acknowledge import CommitLedger, GuardedReader
from target_intercom_postgres.errors import InputError
from target_intercom_postgres.table import apply, check_schema, libpq_url, scrub, url_secrets

PROG = "target-intercom-postgres"
PREFIX = "intercom_conversation"  # every table (and stream) of the product starts with it
# A mark on the conversation table: its last complete load left it empty (an empty workspace), so
# an empty table with a bookmark is expected there, not a sign of a changed schema or database.
EMPTY_MARK = "tap-intercom-conversation: loaded, empty"
# What the documented tables need; the loader's defaults, and a run stops when they are changed.
# use_copy: the loader's COPY path keeps instants exact, target-postgres's INSERT path shifts DST's repeated hour.
REQUIRED = {"add_record_metadata": False, "activate_version": False, "load_method": "upsert", "use_copy": True}
SECRET_SETTINGS = frozenset({"sqlalchemy_url", "password"})
DEFAULTS = {
    **REQUIRED,
    "default_target_schema": "public",
    "validate_records": True,
    "log_metrics": False,
}
# Between the starts of two commits; with the commit's own seconds, a killed run redoes at most 30 s of work.
COMMIT_EVERY_SECONDS = 25.0
MAX_CAUSE_CHARS = 1000  # of the tap's failure line, logged as it came


class LoaderError(Exception):
    """A setting or a database the loader cannot load correctly: one line, exit 1, nothing written."""

    exit_code = 1


class Stopped(LoaderError):
    """SIGTERM or SIGINT: what was read is committed and acknowledged; exit 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def _config_schema() -> dict:
    schema = copy.deepcopy(TargetPostgres.config_jsonschema)
    for name, value in DEFAULTS.items():
        schema["properties"].setdefault(name, {"type": ["boolean" if isinstance(value, bool) else "string"]})
        schema["properties"][name]["default"] = value
    return schema


class IntercomPostgresSink(CopySink):
    """A sink that refuses to create or alter a table of the product anywhere but where it was applied.

    The product's tables are loaded by COPY and an upsert (copy_load.py); any other stream as target-postgres does.
    """

    def __init__(self, target: TargetIntercomPostgres, *args: t.Any, **kwargs: t.Any) -> None:
        self._loader = target
        super().__init__(target, *args, **kwargs)

    @override
    def setup(self) -> None:
        self._loader.check_sink(self.stream_name, self.schema, self.schema_name, self.table_name)
        super().setup()

    @override
    def copies(self) -> bool:
        return self.schema_name == self._loader.target_schema and self.table_name in self._loader.tables


class TargetIntercomPostgres(TargetAdapter, TargetPostgres):
    """target-postgres that applies the product's tables with its own settings before loading."""

    name = "target-postgres"  # same settings and TARGET_POSTGRES_* variables as the loader it extends
    package_name = "tap-intercom-conversation"
    config_jsonschema = _config_schema()
    default_sink_class = IntercomPostgresSink
    message_reader_class = GuardedReader
    _busy = True  # handling a message or committing: a signal waits until that is done
    extractor_failed: str | None = None  # the tap's failure, as it handed it over
    _warned_full = False
    _stop_signal: int | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._started = time.monotonic()
        try:
            super().__init__(*args, **kwargs)
        except AssertionError as error:  # target-postgres checks its connection settings with assert
            raise LoaderError(f"configuration: {error}") from None
        logs.configure(self.name, per_batch=bool(self.config.get("log_metrics")))
        self.ledger = CommitLedger(records_read)
        self._ack_lock = threading.RLock()
        self._acknowledged_seq = 0
        self._last_commit = time.monotonic()
        self._sinks_drained: dict[int, t.Any] = {}
        self._direct: dict[str, CopySink] = {}  # streams whose decoded records skip the SDK's per-record path
        t.cast(GuardedReader, self.message_reader).guard = self.handle_message
        for name, value in REQUIRED.items():
            if self.config.get(name) != value:
                raise LoaderError(
                    f"configuration: {name} must be {str(value).lower()} for the documented tables "
                    f"(it is {self.config.get(name)!r}); remove the setting or set it to {str(value).lower()}"
                )
        self.target_schema = str(self.config.get("default_target_schema") or DEFAULTS["default_target_schema"])
        self._seen_schema = False
        # The database this loader writes to, as its own connector resolves it (sqlalchemy_url, or
        # host/port/user/password/database, through an SSH tunnel if configured).
        url = make_url(self.target_connector.sqlalchemy_url).render_as_string(hide_password=False)
        try:
            self._url = libpq_url(url)
            check_schema(self.target_schema)
            self.logger.info(apply(self._url, self.target_schema))
            self.tables, empty, self._marked = self._inspect()
        except InputError as error:
            raise LoaderError(scrub(str(error), url_secrets(url))) from None
        self._was_empty = empty and not self._marked
        self.mark_source()
        self._had_rows = not empty
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, COMMIT_EVERY_SECONDS)
        self._busy = False

    @override
    def validate_settings(self, settings: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """Text numbers and booleans (Meltano string settings) typed, then one line naming a bad setting."""
        coerce_strings(settings, self.config_jsonschema)
        try:
            return super().validate_settings(settings, raise_errors=raise_errors)
        except ConfigValidationError:
            problem = schema_problem(self.config_jsonschema, settings, secrets=SECRET_SETTINGS)
            raise LoaderError(f"configuration: {problem}") from None

    def _inspect(self) -> tuple[set[str], bool, bool]:
        """The product's tables in the target schema; whether the conversation table is empty, and marked so."""
        with psycopg.connect(self._url) as conn:
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname LIKE %s",
                    (self.target_schema, PREFIX.replace("_", r"\_") + "%"),
                )
            }
            row = conn.execute(
                sql.SQL("SELECT NOT EXISTS (SELECT FROM {}), obj_description({}::regclass, 'pg_class')").format(
                    self._table(), sql.Literal(f'"{self.target_schema}"."{STREAM_NAME}"')
                )
            ).fetchone()
        empty, mark = row if row else (True, None)
        return tables, bool(empty), mark == EMPTY_MARK

    def mark_source(self) -> None:
        """Under `meltano run`, record which Intercom the table is loaded from (source_mark.py), for verify --repair."""
        wanted = source_mark.from_meltano_env(os.environ)
        if wanted is None:
            return
        column = sql.Identifier(self.target_schema, STREAM_NAME, "intercom_id")
        table = sql.Literal(f'"{self.target_schema}"."{STREAM_NAME}"')
        with psycopg.connect(self._url) as conn:
            row = conn.execute(sql.SQL(source_mark.READ_SQL).format(table=table)).fetchone()
            if row and row[0] == wanted:
                return
            try:
                conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(column, sql.Literal(wanted)))
            except psycopg.Error as error:  # not the table's owner: verify --repair will refuse the table
                self.logger.warning("could not mark %s with its source: %s", STREAM_NAME, error.diag.message_primary)

    def _table(self) -> sql.Identifier:
        return sql.Identifier(self.target_schema, STREAM_NAME)

    def check_sink(self, stream_name: str, schema: dict, schema_name: str | None, table_name: str) -> None:
        """Stop before a stream of the product is written anywhere but into its documented table."""
        ours = stream_name.startswith(PREFIX) or "intercom_id" in schema.get("properties", {})
        if not ours or (schema_name == self.target_schema and table_name in self.tables):
            return
        raise LoaderError(
            f"stream {stream_name!r} would be loaded into {schema_name}.{table_name}, which is not one of the "
            f"documented tables ({', '.join(sorted(self.tables))} in schema {self.target_schema!r}): remove the "
            "stream map or alias that renames it"
        )

    @override
    def on_schema_message(self, message_dict: dict) -> None:
        if not self._seen_schema and self.latest_state is None:  # no STATE first: the tap resumes from nothing
            self.warn_full_backfill()
        self._seen_schema = True
        super().on_schema_message(message_dict)
        stream = message_dict["stream"]
        self._direct.pop(stream, None)
        try:
            sink = self.get_sink(stream)  # the stream's sink, new if its schema changed
        except KeyError:  # a stream map renamed it or dropped it: its records go the SDK's way
            return
        if isinstance(sink, CopySink) and sink.direct():
            self._direct[stream] = sink

    def warn_full_backfill(self) -> None:
        if self._had_rows and not self._warned_full:
            self._warned_full = True
            self.logger.warning(
                "%s.%s has rows, but the tap resumes from no bookmark: this run reads every conversation again "
                "(a full backfill; pass the last STATE to resume instead)",
                self.target_schema,
                STREAM_NAME,
            )

    @override
    def on_record_message(self, message_dict: dict) -> None:
        """A record the reader decoded with its stream's types goes straight to its sink (CopySink.direct)."""
        sink = self._direct.get(message_dict.get("stream"))  # type: ignore[arg-type]
        record = message_dict.get("record")
        if sink is None or not isinstance(record, dict) or not sink.decoded(record):
            super().on_record_message(message_dict)
            return
        sink.take(record)
        if sink.is_full:
            self.drain_one(sink)

    @override
    def on_state_message(self, message_dict: dict) -> None:
        """The tap writes the state it resumes from before its first SCHEMA: check it against the table.

        Every STATE is then noted with the records it waits for, and acknowledged at once if they are
        all committed. The tap's failure STATE only repeats its last one: its line is kept for the end.
        """
        if EXTRACTOR_FAILED in message_dict:
            self.extractor_failed = " ".join(str(message_dict[EXTRACTOR_FAILED]).split())[:MAX_CAUSE_CHARS]
            return
        if not self._seen_schema:
            bookmark = (message_dict.get("value") or {}).get("bookmarks", {}).get(STREAM_NAME, {})
            resumes = isinstance(bookmark, dict) and bookmark.get("replication_key_value")
            if resumes and self._was_empty:
                raise LoaderError(
                    f"{self.target_schema}.{STREAM_NAME} is empty, but the tap resumes from a bookmark "
                    f"({bookmark['replication_key_value']}), so only newer conversations would be loaded: the "
                    "schema or database changed since that state was saved. Load everything into it with "
                    "`meltano run --full-refresh ...` (or clear the state: `meltano state clear ...`)"
                )
            if not resumes:
                self.warn_full_backfill()
        if message_dict.get("value") == self.latest_state:
            return
        super().on_state_message(message_dict)
        self.ledger.read(message_dict["value"], self.sinks())
        self.acknowledge()

    # --- commits and acknowledgements ---

    def handle_message(self, callback: t.Callable[[dict], None], message: dict) -> None:
        """Each message of the input; then a stop or a commit that became due while it was handled."""
        self._busy = True
        try:
            callback(message)
        except (psycopg.Error, SQLAlchemyError) as error:  # creating or checking a table
            table = f"{self.target_schema}.{message.get('stream', STREAM_NAME)}"
            raise LoaderError(describe_failure(error, self._url, table)) from error
        finally:
            self._busy = False
        if self._stop_signal is not None:
            self.stop(self._stop_signal)
        elif time.monotonic() - self._last_commit >= COMMIT_EVERY_SECONDS:
            self.commit()

    def commit(self) -> None:
        """Commit every sink (whole batches) and acknowledge the latest STATE."""
        self._busy = True
        self._last_commit = time.monotonic()
        try:
            if any(sink.current_size for sink in self.sinks()):
                self.drain_all()
        finally:
            self._busy = False
        if self._stop_signal is not None:  # arrived during the commit
            self.stop(self._stop_signal)
        signal.setitimer(signal.ITIMER_REAL, COMMIT_EVERY_SECONDS)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        """Records waiting while the input is quiet (the tap waits for the rate limit) are committed too."""
        if self._busy:
            signal.setitimer(signal.ITIMER_REAL, 1.0)  # handle_message commits when the message is done
        else:
            self.commit()

    @override
    def after_drain(self, sink: t.Any) -> None:
        self._sinks_drained[id(sink)] = sink
        self.acknowledge()

    def acknowledge(self) -> None:
        """Write the newest STATE whose records are all committed, if not written yet."""
        with self._ack_lock:
            covered = self.ledger.covered()
            if covered is not None and covered[0] > self._acknowledged_seq:
                self._acknowledged_seq = covered[0]
                super().write_state(copy.deepcopy(covered[1]))

    @override
    def write_state(self, state: dict) -> None:
        """The SDK's full drain: every record read is committed, so its latest STATE is covered."""
        with self._ack_lock:
            latest = self.ledger.latest_seq
            self.ledger.clear()
            if latest > self._acknowledged_seq:
                self._acknowledged_seq = latest
                super().write_state(state)

    @override
    def on_drain_failed(self, sink: t.Any, error: Exception) -> None:
        if isinstance(error, LoaderError):
            return
        raise LoaderError(describe_failure(error, self._url, str(sink.full_table_name))) from error

    @override
    def on_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: after the message being handled (at once between messages), commit, acknowledge, exit."""
        self._stop_signal = signum
        if not self._busy:
            self.stop(signum)

    def stop(self, signum: int) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._busy = True
        self.drain_all(is_endofpipe=True)
        self.log_summary()
        name = signal.Signals(signum).name
        raise Stopped(f"interrupted by {name}; every record read was committed and its STATE acknowledged", signum)

    def log_summary(self) -> None:
        """One line: the rows each table received, inserted and updated when the sink counts them, and seconds."""
        self.logger.info(load_summary(self.sinks_loaded(), time.monotonic() - self._started))

    def sinks_loaded(self) -> list[t.Any]:
        return list({**self._sinks_drained, **{id(sink): sink for sink in self.sinks()}}.values())

    @override
    def process_endofpipe(self) -> None:
        """After the last commit: the summary, and the tap's failure (if it failed) as the last line.

        The load itself succeeded (exit 0): Meltano reports the tap's exit as "Extractor failed".
        """
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._busy = True
        super().process_endofpipe()
        self.log_summary()
        if self.extractor_failed is None:
            self.mark_if_empty()
            return
        logs.fail(
            self.logger,
            f"{PROG}: the extractor failed: {self.extractor_failed} (everything it sent before is committed "
            "and its last STATE acknowledged)",
        )

    def mark_if_empty(self) -> None:
        """Mark the conversation table if this complete load left it empty (or unmark it)."""
        if not (self._was_empty or self._marked):
            return
        with psycopg.connect(self._url) as conn:
            row = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(self._table())).fetchone()
            empty = bool(row and row[0])
            if empty == self._marked:
                return
            mark = sql.Literal(EMPTY_MARK if empty else None)
            try:
                conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(self._table(), mark))
            except psycopg.Error as error:  # not the table's owner: an empty table with a bookmark stops the run
                self.logger.warning("could not mark %s: %s", STREAM_NAME, error.diag.message_primary)


def load_summary(sinks: list[t.Any], seconds: float) -> str:
    """`rows_inserted` / `rows_updated` from a sink that counts them, else the rows it committed.

    Rows neither inserted nor updated are named too: the table already held them as they are, or newer
    (a resumed run's lookback, a record sent twice), so the counts add up for whoever reads the line.
    """
    rows: dict[str, int] = {}
    split: dict[str, tuple[int, int] | None] = {}
    for sink in sinks:
        table = str(sink.table_name)
        rows[table] = rows.get(table, 0) + records_read(sink) - sink.current_size
        inserted, updated = getattr(sink, "rows_inserted", None), getattr(sink, "rows_updated", None)
        before = split.get(table, (0, 0))
        counted = isinstance(inserted, int) and isinstance(updated, int) and before is not None
        split[table] = (before[0] + inserted, before[1] + updated) if counted else None  # type: ignore[index,operator]
    parts = []
    for table in sorted(rows):
        counts = split[table]
        detail = ""
        if counts is not None:
            unchanged = rows[table] - counts[0] - counts[1]
            also = f", {unchanged:,} unchanged" if unchanged > 0 else ""
            detail = f" ({counts[0]:,} inserted, {counts[1]:,} updated{also})"
        parts.append(f"{table} {rows[table]:,} rows{detail}")
    return f"Load summary: {'; '.join(parts) or 'no rows'}, {seconds:.1f} s"


def describe_failure(error: BaseException, url: str, table: str) -> str:
    """One line for a failed batch: the table, host:port and database, and PostgreSQL's (or libpq's) reason."""
    cause: BaseException = getattr(error, "orig", None) or error  # SQLAlchemy wraps psycopg's error
    diag = getattr(cause, "diag", None)
    reason = (diag.message_primary if diag is not None and diag.message_primary else None) or str(cause)
    reason = " ".join(reason.split()) or type(cause).__name__
    info = psycopg.conninfo.conninfo_to_dict(url)
    where = f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
    return scrub(f"loading {table} into {where} failed: {reason}", url_secrets(url))


def main() -> None:
    """The console script: an unusable setting or database is one line, and exit 1 (SIGTERM: 143)."""
    try:
        TargetIntercomPostgres.cli()
    except LoaderError as error:
        logs.fail(TargetIntercomPostgres.logger, f"{PROG}: error: {error}")
        sys.exit(error.exit_code)
    except SystemExit as done:  # click's end of a command that succeeded
        if done.code not in (0, None):
            raise
        exit_now()


def exit_now() -> None:
    """Exit 0 once everything is committed, acknowledged and logged, skipping Python's teardown.

    Freeing every module (SQLAlchemy's above all) took 0.4 CPU s and up to a second after the summary
    line (issue 25), which Meltano, and a run scheduled after this one, waited for. Nothing is left to
    do by then: the sinks have closed their connections and their threads (clean_up). Under a profiler
    or a debugger (cProfile writes its file at exit) the usual exit.
    """
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(0)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a reader gone: Python's own exit says so (and exits 120)
        sys.exit(0)
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
