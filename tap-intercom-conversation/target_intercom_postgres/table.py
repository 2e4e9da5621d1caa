"""intercom-conversation-table: make intercom_conversation_v1 and its parts table ready for target-postgres.

target-postgres 0.8.1 can neither create these tables correctly (it makes timestamp without time
zone and no pk) nor load the documented ones (it copies its staged pk values, so the second batch
of new rows collides). schemas/intercom_conversation_v1.sql and schemas/intercom_conversation_part_v1.sql
fix both; this applies every table of the product (schema_files.TABLES) where target-postgres will
look: the schema its `default_target_schema` names, all in one transaction.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ModuleNotFoundError as missing:  # installed without the [postgres] extra: one line, not a traceback
    sys.exit(f"intercom-conversation-table: {missing.name} is missing: install tap-intercom-conversation[postgres]")

from intercom_conversation_shared.schema_files import STREAM_NAME, TABLES, table_sql
from target_intercom_postgres.errors import InputError

PROG = "intercom-conversation-table"
URL_ENV = "TARGET_POSTGRES_SQLALCHEMY_URL"
SCHEMA_ENV = "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"
CONNECT_TIMEOUT_SECONDS = 10
# postgresql://, postgres://, postgresql+psycopg://, postgresql+psycopg2://, ...
_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://", re.IGNORECASE)


def url_secrets(url: str) -> set[str]:
    """Every spelling of the password in the URL, so no message can print it."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        found = []
    return {text for secret in found if secret for text in (secret, unquote(secret))}


def scrub(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def one_line(error: Exception) -> str:
    """The server's own message and detail (or libpq's), on one line."""
    diag = getattr(error, "diag", None)
    text = str(error)
    if diag is not None and diag.message_primary:
        text = diag.message_primary + (f" ({diag.message_detail})" if diag.message_detail else "")
    return " ".join(text.split())


def libpq_url(sqlalchemy_url: str) -> str:
    """The libpq form of a SQLAlchemy URL: same URL, without the +driver part of the scheme.

    Host, port, user, percent-encoded password and query parameters (?host=/socket/dir) mean
    the same to libpq, so nothing else needs translating.
    """
    if not _SCHEME.match(sqlalchemy_url):
        raise InputError(f"not a PostgreSQL URL: {sqlalchemy_url} (expected postgresql+psycopg://user@host:5432/db)")
    url = _SCHEME.sub("postgresql://", sqlalchemy_url, count=1)
    try:
        conninfo_to_dict(url)
    except psycopg.Error as error:
        raise InputError(f"invalid database URL {url}: {one_line(error)}") from None
    return url


def check_schema(schema: str) -> None:
    """Refuse names PostgreSQL would reject or silently truncate, before connecting."""
    if not schema or "\x00" in schema or len(schema.encode()) > 63:
        raise InputError(f"bad schema name {schema!r}: it must be 1 to 63 bytes, without NUL")
    if schema.lower().startswith("pg_"):
        raise InputError(f"bad schema name {schema!r}: the prefix pg_ is reserved by PostgreSQL")


def apply(url: str, schema: str) -> str:
    """Create the schema if missing and apply every table's SQL in it (TABLES, in order), all in one transaction.

    Returns what happened to each table: created, migrated (with what the migration did) or already as documented.
    """
    where = f"database {conninfo_to_dict(url).get('dbname') or '(default)'}"
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.Error as error:
        raise InputError(f"cannot connect to {url}: {one_line(error)}") from None
    migrations: dict[str, str] = {}

    def note_migration(diag: psycopg.errors.Diagnostic) -> None:
        """A table's migration block says `<table>: migrated ...` (RAISE NOTICE) when it reshaped a careless table."""
        for name in TABLES:
            if (diag.message_primary or "").startswith(f"{name}: migrated "):
                migrations[name] = (diag.message_primary or "").removeprefix(f"{name}: ")

    conn.add_notice_handler(note_migration)
    applying = STREAM_NAME
    try:
        with conn, conn.transaction():
            row = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %(s)s),"
                " array(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                "       WHERE n.nspname = %(s)s AND c.relname = ANY(%(t)s))",
                {"s": schema, "t": list(TABLES)},
            ).fetchone()
            schema_exists, existed = row if row else (False, [])
            # Only when missing: CREATE SCHEMA checks the CREATE privilege on the database first,
            # even with IF NOT EXISTS, and a loader role may own a schema without that privilege.
            if not schema_exists:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            for applying in TABLES:
                conn.execute(table_sql(applying))  # no parameters: sent as is, several statements at once
    except psycopg.Error as error:
        raise InputError(f"cannot apply {applying}.sql in schema {schema!r} of {where}: {one_line(error)}") from None

    def state(name: str, unchanged: str) -> str:
        return migrations.get(name) or (unchanged if name in existed else "created")

    conversations = state(STREAM_NAME, "already in the documented shape")
    others = ", ".join(f"{name} ({state(name, 'already there')})" for name in TABLES[1:])
    return f"{STREAM_NAME} in schema {schema!r} of {where} is ready ({conversations}), with {others}"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sqlalchemy-url",
        help=f"target-postgres's sqlalchemy_url, e.g. postgresql+psycopg://user@host:5432/db (env {URL_ENV})",
    )
    parser.add_argument("--schema", help=f"target-postgres's default_target_schema (env {SCHEMA_ENV}, default public)")
    parser.add_argument(
        "--loader",
        help="through Meltano (meltano invoke intercom-conversation-table:apply): the loader whose database and "
        "schema to use, as Meltano resolves its settings",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point: 0 and one line on stdout, or 1 and one line on stderr."""
    args = _parse_args(argv)
    url = args.sqlalchemy_url or os.environ.get(URL_ENV) or ""
    schema = args.schema if args.schema is not None else os.environ.get(SCHEMA_ENV) or "public"
    secrets = url_secrets(url)
    try:
        if args.loader:  # the loader's own settings, from Meltano (job_settings.py)
            from target_intercom_postgres.job_settings import meltano_settings

            if args.sqlalchemy_url or args.schema:
                raise InputError("--sqlalchemy-url and --schema come from the loader with --loader: set them there")
            loader = meltano_settings(None, args.loader)
            url, schema = loader.database_url, loader.schema
            secrets = url_secrets(url) | {str(loader.loader[k]) for k in ("password",) if loader.loader.get(k)}
        if not url:
            raise InputError(f"no database URL: pass --sqlalchemy-url or set {URL_ENV}")
        check_schema(schema)
        print(scrub(apply(libpq_url(url), schema), secrets))
    except InputError as error:
        print(f"{PROG}: {scrub(str(error), secrets)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
