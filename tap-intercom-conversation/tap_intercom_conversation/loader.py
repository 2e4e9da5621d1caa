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
  bookmark would leave every older conversation out, silently.
"""

from __future__ import annotations

import copy
import sys
import typing as t

try:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url
    from target_postgres.target import TargetPostgres

    from tap_intercom_conversation.copy_load import CopySink, RecordReader
except ModuleNotFoundError as missing:  # the distribution was installed without its [postgres] extra
    sys.exit(f"target-intercom-postgres: {missing.name} is missing: install tap-intercom-conversation[postgres]")

from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_intercom_conversation.checks import coerce_strings, schema_problem
from tap_intercom_conversation.schema_files import STREAM_NAME
from tap_intercom_conversation.sdk_adapter import TargetAdapter
from tap_intercom_conversation.table import InputError, apply, check_schema, libpq_url, scrub, url_secrets

PROG = "target-intercom-postgres"
PREFIX = "intercom_conversation"  # every table (and stream) of the product starts with it
# A mark on the conversation table: its last complete load left it empty (an empty workspace), so
# an empty table with a bookmark is expected there, not a sign of a changed schema or database.
EMPTY_MARK = "tap-intercom-conversation: loaded, empty"
# What the documented tables need; the loader's defaults, and a run stops when they are changed.
# use_copy: the loader's COPY path keeps instants exact, target-postgres's INSERT path shifts DST's repeated hour.
REQUIRED = {"add_record_metadata": False, "activate_version": False, "load_method": "upsert", "use_copy": True}
SECRET_SETTINGS = frozenset({"sqlalchemy_url", "password"})
DEFAULTS = {**REQUIRED, "default_target_schema": "public", "validate_records": True}


class LoaderError(Exception):
    """A setting or a database the loader cannot load correctly: one line, exit 1, nothing written."""


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
    message_reader_class = RecordReader

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except AssertionError as error:  # target-postgres checks its connection settings with assert
            raise LoaderError(f"configuration: {error}") from None
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
        self._seen_schema = True
        super().on_schema_message(message_dict)

    @override
    def on_state_message(self, message_dict: dict) -> None:
        """The tap writes the state it resumes from before its first SCHEMA: check it against the table."""
        if not self._seen_schema and self._was_empty:
            bookmark = (message_dict.get("value") or {}).get("bookmarks", {}).get(STREAM_NAME, {})
            if isinstance(bookmark, dict) and bookmark.get("replication_key_value"):
                raise LoaderError(
                    f"{self.target_schema}.{STREAM_NAME} is empty, but the tap resumes from a bookmark "
                    f"({bookmark['replication_key_value']}), so only newer conversations would be loaded: the "
                    "schema or database changed since that state was saved. Load everything into it with "
                    "`meltano run --full-refresh ...` (or clear the state: `meltano state clear ...`)"
                )
        super().on_state_message(message_dict)

    @override
    def process_endofpipe(self) -> None:
        """After the last commit: mark the conversation table if a complete load left it empty, unmark it if not."""
        super().process_endofpipe()
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


def main() -> None:
    """The console script: an unusable setting or database is one line on stderr and exit 1."""
    try:
        TargetIntercomPostgres.cli()
    except LoaderError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
