"""The database side of intercom-conversation-verify: Intercom's listing beside the table, compared in SQL.

The listing (id, updated_at, parts count) is streamed into a temporary table with COPY while the
search runs, and every comparison is one query joining it to the table by intercom_id: no payload
leaves the database, and memory does not grow with the workspace. Only the differences (normally
none) come back, each class with its count and its first ids.

Repairs go through the table's own rules: rows are upserted (the BEFORE INSERT trigger draws pk from
the sequence, the BEFORE UPDATE trigger keeps pk and refuses an older payload), and a conversation
Intercom no longer has gets a row in intercom_conversation_v1_deletion, whose trigger marks or
removes its row exactly as a deletion the tap replicated would.
"""

from __future__ import annotations

import contextlib
import typing as t
from dataclasses import dataclass, field

import msgspec
import psycopg
from psycopg import sql

from intercom_conversation_shared import source_mark
from target_intercom_postgres.errors import InputError
from target_intercom_postgres.table import CONNECT_TIMEOUT_SECONDS, one_line

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from intercom_conversation_verify.listing import Listed

TABLE = "intercom_conversation_v1"
DELETIONS = "intercom_conversation_v1_deletion"
PARTS = "intercom_conversation_part_v1"
PART_CAP = 500  # Intercom returns at most the 500 most recent parts of a conversation
SHOWN = 20  # ids shown per class
KINDS = ("missing", "stale", "gone", "parts", "part_rows")

_CREATE = """
CREATE TEMPORARY TABLE verify_listed (intercom_id text, updated_at bigint, parts integer);
CREATE TEMPORARY TABLE verify_difference (kind text, intercom_id text, listed bigint, stored bigint,
                                          detail text);
CREATE TEMPORARY TABLE verify_part_rows (intercom_id text PRIMARY KEY, missing text[]);
"""
# Current conversations (the row at Intercom's updated_at, not deleted) with fewer part rows than Intercom
# counts, up to the 500 parts it returns; rows the table keeps of older parts count. Their GET decides.
_PART_ROW_CANDIDATES = """
SELECT l.intercom_id FROM verify_listing l JOIN {table} t ON t.intercom_id = l.intercom_id
LEFT JOIN (SELECT conversation_intercom_id, count(*) AS n FROM {parts} GROUP BY 1) p
  ON p.conversation_intercom_id = l.intercom_id
WHERE l.updated_at < %(cutoff)s AND t.updated_at = to_timestamp(l.updated_at) AND NOT t.data ? 'deleted'
  AND coalesce(p.n, 0) < least(l.parts, {cap})
ORDER BY l.updated_at, l.intercom_id
"""
# Sent without parameters: its % signs are literal.
_PART_ROWS = """
INSERT INTO verify_difference
SELECT 'part_rows', intercom_id, NULL, NULL,
       format('%s without a row: %s', cardinality(missing),
              array_to_string(missing[1:3], ', ') || CASE WHEN cardinality(missing) > 3 THEN ', ...' ELSE '' END)
FROM verify_part_rows
"""
# A search can return a conversation twice (its cursor is stateless); the newest sighting counts.
_DEDUPLICATE = """
CREATE TEMPORARY TABLE verify_listing AS
  SELECT DISTINCT ON (intercom_id) intercom_id, updated_at, parts FROM verify_listed
  ORDER BY intercom_id, updated_at DESC;
ALTER TABLE verify_listing ADD PRIMARY KEY (intercom_id);
DROP TABLE verify_listed;
ANALYZE verify_listing;
"""
# Rows of the table that Intercom's listing does not hold, not marked deleted: "gone" once confirmed.
# Rows updated before start_date are not compared (the listing starts there too).
_UNLISTED = """
FROM {table} t
WHERE NOT EXISTS (SELECT FROM verify_listing l WHERE l.intercom_id = t.intercom_id)
  AND (%(start)s::bigint IS NULL OR t.updated_at IS NULL OR t.updated_at >= to_timestamp(%(start)s))
  AND NOT t.data ? 'deleted'
"""
# Conversations Intercom has that the table lacks, or holds at an older updated_at.
_MISSING_OR_STALE = """
INSERT INTO verify_difference
SELECT CASE WHEN t.intercom_id IS NULL THEN 'missing' ELSE 'stale' END, l.intercom_id, l.updated_at,
       extract(epoch FROM t.updated_at)::bigint,
       CASE WHEN t.intercom_id IS NOT NULL
            THEN format('%%s in the table, %%s in Intercom', t.updated_at, to_timestamp(l.updated_at)) END
FROM verify_listing l LEFT JOIN {table} t ON t.intercom_id = l.intercom_id
WHERE l.updated_at < %(cutoff)s
  AND (t.intercom_id IS NULL OR t.updated_at IS NULL OR t.updated_at < to_timestamp(l.updated_at))
"""
_GONE = (
    """
INSERT INTO verify_difference
SELECT 'gone', t.intercom_id, NULL, extract(epoch FROM t.updated_at)::bigint, NULL
"""
    + _UNLISTED
)
# Hydrated rows at Intercom's version whose stored parts are fewer than Intercom counts (up to the 500
# it returns). Only run on a hydrated table: it reads every row's data.
_PARTS = """
INSERT INTO verify_difference
SELECT 'parts', intercom_id, listed, listed, format('%%s of %%s parts', stored, expected) FROM (
  SELECT l.intercom_id, l.updated_at AS listed,
         jsonb_array_length(t.data #> '{{conversation_parts,conversation_parts}}') AS stored,
         least(coalesce(l.parts, CASE WHEN jsonb_typeof(t.data #> '{{conversation_parts,total_count}}') = 'number'
                                 THEN (t.data #>> '{{conversation_parts,total_count}}')::numeric::integer END),
               {cap}) AS expected
  FROM verify_listing l JOIN {table} t ON t.intercom_id = l.intercom_id
  WHERE l.updated_at < %(cutoff)s AND t.updated_at = to_timestamp(l.updated_at)
    AND jsonb_typeof(t.data #> '{{conversation_parts,conversation_parts}}') = 'array'
) c WHERE stored < expected;
"""
_UPSERT = """
INSERT INTO {table} (intercom_id, title, state, open, read, created_at, updated_at, data)
VALUES (%s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz, %s::jsonb)
ON CONFLICT (intercom_id) DO UPDATE SET title = EXCLUDED.title, state = EXCLUDED.state, open = EXCLUDED.open,
  read = EXCLUDED.read, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, data = EXCLUDED.data
"""
# The parts of a repaired hydrated conversation (the parts table, when it exists), by the same rules.
_PART_COLUMNS = (
    "intercom_id",
    "conversation_intercom_id",
    "part_type",
    "author_type",
    "author_id",
    "assigned_to_type",
    "assigned_to_id",
    "body",
    "redacted",
    "created_at",
    "updated_at",
    "data",
)
_UPSERT_PART = (
    "INSERT INTO {parts} ("
    + ", ".join(_PART_COLUMNS)
    + ") VALUES ("
    + ", ".join(["%s"] * 9)
    + ", %s::timestamptz, %s::timestamptz, %s::jsonb) ON CONFLICT (intercom_id) DO UPDATE SET "
    + ", ".join(f"{column} = EXCLUDED.{column}" for column in _PART_COLUMNS[1:])
)
_DELETE = """
INSERT INTO {deletions} (intercom_id, deleted_at, remove_row) VALUES (%s, to_timestamp(%s), %s)
ON CONFLICT (intercom_id) DO UPDATE SET remove_row = EXCLUDED.remove_row
"""


@dataclass
class Differences:
    """Each class's count and first ids (with what was found, where it helps)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    shown: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    listed: int = 0  # conversations in Intercom's listing before the cut-off
    after_cutoff: int = 0  # ... and at or after it (not compared)
    rows: int = 0  # rows in the table

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class TableCheck:
    """One connection to the database; the listing and the differences live in its temporary tables."""

    def __init__(self, url: str, schema: str) -> None:
        self.schema, self.url = schema, url
        try:
            self.conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True)
        except psycopg.Error as error:
            raise InputError(f"cannot connect to {url}: {one_line(error)}") from None
        self.table = sql.Identifier(schema, TABLE)
        self.deletions = sql.Identifier(schema, DELETIONS)
        self.parts = sql.Identifier(schema, PARTS)
        with self._errors("look at"):
            found = self.conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (self.table.as_string(self.conn), self.deletions.as_string(self.conn)),
            ).fetchone()
            if not found or not all(found):
                raise InputError(
                    f"schema {schema!r} has no {TABLE} (or no {DELETIONS}): apply the table first "
                    "(intercom-conversation-table) and load it"
                )
            has_parts = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.parts.as_string(self.conn),))
            self.has_parts = bool((has_parts.fetchone() or (False,))[0])
            self.conn.execute("SET TIME ZONE 'UTC'")
            self.conn.execute(_CREATE)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """A database error as one InputError line naming what was being done."""
        try:
            yield
        except psycopg.Error as error:
            raise InputError(f"cannot {doing} {TABLE} in schema {self.schema!r}: {one_line(error)}") from None

    def _q(self, query: str) -> sql.Composed:
        return sql.SQL(query).format(
            table=self.table, deletions=self.deletions, parts=self.parts, cap=sql.Literal(PART_CAP)
        )

    def newest_updated_at(self) -> int | None:
        with self._errors("read"):
            newest = self._q("SELECT extract(epoch FROM max(updated_at))::bigint FROM {table}")
            row = self.conn.execute(newest).fetchone()
        return row[0] if row else None

    def hydrated(self) -> bool:
        """Whether rows hold conversation_parts (a sample of 100 rows decides)."""
        with self._errors("read"):
            sample = "SELECT FROM (SELECT data FROM {table} LIMIT 100) s WHERE data ? 'conversation_parts'"
            row = self.conn.execute(self._q(f"SELECT EXISTS ({sample})")).fetchone()
        return bool(row and row[0])

    def load_listing(self, listed: Iterable[Listed]) -> int:
        """COPY the listing in as it arrives from the search; returns how many rows came."""
        count = 0
        with self._errors("copy the listing beside"), self.conn.cursor() as cur:
            with cur.copy("COPY verify_listed (intercom_id, updated_at, parts) FROM STDIN") as copy:
                for row in listed:
                    copy.write_row(row)
                    count += 1
            cur.execute(_DEDUPLICATE)
        return count

    def add_to_listing(self, listed: Iterable[Listed]) -> None:
        with self._errors("copy the listing beside"):
            self.conn.cursor().executemany(
                "INSERT INTO verify_listing VALUES (%s, %s, %s) ON CONFLICT (intercom_id) DO UPDATE "
                "SET updated_at = greatest(verify_listing.updated_at, EXCLUDED.updated_at), parts = EXCLUDED.parts",
                list(listed),
            )

    def drop_from_listing(self, ids: list[str]) -> None:
        with self._errors("copy the listing beside"):
            self.conn.execute("DELETE FROM verify_listing WHERE intercom_id = ANY(%s)", (ids,))

    def unlisted(self, start: int | None) -> list[str]:
        with self._errors("compare"):
            return [row[0] for row in self.conn.execute(self._q("SELECT t.intercom_id" + _UNLISTED), {"start": start})]

    def compare(self, cutoff: int, start: int | None, *, parts: bool) -> Differences:
        params = {"cutoff": cutoff, "start": start}
        found = Differences()
        with self._errors("compare"), self.conn.cursor() as cur:
            cur.execute("TRUNCATE verify_difference")
            cur.execute(self._q(_MISSING_OR_STALE), params)
            cur.execute(self._q(_GONE), params)
            if parts:
                cur.execute(self._q(_PARTS), params)
            cur.execute(_PART_ROWS)
            cur.execute(
                "SELECT count(*) FILTER (WHERE updated_at < %(cutoff)s), count(*) FILTER "
                "(WHERE updated_at >= %(cutoff)s) FROM verify_listing",
                params,
            )
            found.listed, found.after_cutoff = cur.fetchone() or (0, 0)
            found.rows = (cur.execute(self._q("SELECT count(*) FROM {table}")).fetchone() or (0,))[0]
            cur.execute(
                "SELECT kind, count(*), (array_agg(intercom_id || coalesce(' (' || detail || ')', '') "
                f"ORDER BY intercom_id))[1:{SHOWN}] FROM verify_difference GROUP BY kind"
            )
            for kind, count, shown in cur.fetchall():
                found.counts[kind], found.shown[kind] = count, shown
        return found

    def source_mark(self) -> dict[str, str] | None:
        """The mark the loader left on the table (source_mark.py), None when there is none."""
        with self._errors("read the source mark of"):
            row = self.conn.execute(
                sql.SQL(source_mark.READ_SQL).format(table=sql.Literal(self.table.as_string(self.conn)))
            ).fetchone()
        return source_mark.read(row[0] if row else None)

    def write_source_mark(self, mark: str) -> None:
        column = sql.Identifier(self.schema, TABLE, "intercom_id")
        with self._errors("mark"):
            self.conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(column, sql.Literal(mark)))

    def part_row_candidates(self, cutoff: int) -> list[str]:
        with self._errors("compare the parts of"):
            return [row[0] for row in self.conn.execute(self._q(_PART_ROW_CANDIDATES), {"cutoff": cutoff})]

    def part_ids(self, conversation_id: str) -> set[str]:
        with self._errors("read the parts of"):
            query = self._q("SELECT intercom_id FROM {parts} WHERE conversation_intercom_id = %s")
            return {row[0] for row in self.conn.execute(query, (conversation_id,))}

    def record_part_rows(self, missing: dict[str, list[str]]) -> None:
        """The part ids each conversation lacks (from its GET), for compare() to report."""
        with self._errors("compare the parts of"), self.conn.cursor() as cur:
            cur.execute("TRUNCATE verify_part_rows")
            cur.executemany("INSERT INTO verify_part_rows VALUES (%s, %s)", list(missing.items()))

    def ids(self, *kinds: str) -> list[str]:
        with self._errors("read the differences of"):
            return [
                row[0]
                for row in self.conn.execute(
                    "SELECT intercom_id FROM verify_difference WHERE kind = ANY(%s) ORDER BY listed, intercom_id",
                    (list(kinds),),
                )
            ]

    def upsert(self, records: list[dict]) -> None:
        """Rows built by records.as_record, through the table's triggers; never an older payload over a newer one."""
        rows = [
            (
                r["intercom_id"],
                r["title"],
                r["state"],
                r["open"],
                r["read"],
                r["created_at"],
                r["updated_at"],
                bytes(r["data"] if isinstance(r["data"], msgspec.Raw) else msgspec.json.encode(r["data"])).decode(),
            )
            for r in records
        ]
        with self._errors("write to"):
            self.conn.cursor().executemany(self._q(_UPSERT), rows)

    def upsert_parts(self, records: list[dict]) -> None:
        """Rows built by parts.part_record, into the parts table (its triggers rule as for conversations)."""
        rows = [(*(r[c] for c in _PART_COLUMNS[:-1]), msgspec.json.encode(r["data"]).decode()) for r in records]
        with self._errors("write to"):
            self.conn.cursor().executemany(self._q(_UPSERT_PART), rows)

    def delete(self, ids: list[str], deleted_at: int, *, remove: bool) -> None:
        """The deletion rule, through intercom_conversation_v1_deletion: its trigger marks or removes each row."""
        with self._errors("write to"):
            self.conn.cursor().executemany(self._q(_DELETE), [(i, deleted_at, remove) for i in ids])

    def close(self) -> None:
        self.conn.close()
