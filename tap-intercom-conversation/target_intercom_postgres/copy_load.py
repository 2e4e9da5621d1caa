"""The loader's fast path: a batch COPYed (binary) into a temporary table, then upserted into the documented table.

Stock target-postgres 0.8.1 spends most of its CPU per record in Python before a row reaches the
database: `json.loads` of the whole line (`data` included), jsonschema validation of every field,
datetime parsing of the timestamps, then a dict per row and `json.dumps` of `data` again for COPY
(docs/benchmarks.md, issue 25's profile). For the product's streams, whose schemas are flat (strings,
booleans, date-times and one JSON object), this does the same work once, in C where it can:

- `RecordReader` decodes a RECORD line of such a stream with msgspec into a typed struct built from the
  stream's JSON schema: the types, the required and the unknown fields are checked while decoding (what
  `validate_records` asks for), a date-time must be RFC 3339, and `data` stays the tap's own bytes
  (msgspec.Raw), never decoded. A line that does not fit is decoded as singer-sdk decodes it and goes
  through the SDK's own validation and parsing: nothing is accepted that the stock loader refuses.
- `CopySink.process_batch` writes the rows in COPY's binary format (no escaping; `data` as jsonb from
  its bytes; timestamps as text, so PostgreSQL parses their offsets: exact instants, DST's repeated hour
  included), then one `INSERT ... ON CONFLICT (key) DO UPDATE` into the table, whose triggers keep the
  pk, the newest payload and the deleted marks as before; `rows_inserted` and `rows_updated` count what it did.

What PostgreSQL cannot store (U+0000, lone surrogates) becomes U+FFFD, as in the tap (bodies.py).
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import struct
import sys
import threading
import time
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import msgspec
import psycopg
import simplejson
from psycopg import sql
from singer_sdk.io_base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json
from singer_sdk.sinks.core import BaseJSONSchemaValidator
from sqlalchemy.engine import make_url
from target_postgres.sinks import PostgresSink
from typing_extensions import override

from intercom_conversation_shared.escapes import readable
from intercom_conversation_shared.schema_files import TABLES
from intercom_conversation_shared.sdk_adapter import SinkAdapter, batch_context
from target_intercom_postgres.table import libpq_url

# RFC 3339 with its offset (what the tap writes); anything else goes the SDK's way.
DATE_TIME = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
TEXT, BOOLEAN, TIMESTAMP, JSON = "text", "boolean", "timestamptz", "jsonb"
_STAGED_TYPE = {TEXT: "text", BOOLEAN: "boolean", TIMESTAMP: "text", JSON: "jsonb"}
_RECORD_PREFIX = b'{"type":"RECORD","stream":"'
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_TRUE, _FALSE = b"\x00\x00\x00\x01\x01", b"\x00\x00\x00\x01\x00"
_LENGTH = struct.Struct(">i").pack
_JSONB_LENGTH = struct.Struct(">ib").pack  # the length, then jsonb's binary format version (1)
_FLUSH_BYTES = 1 << 20
# A batch is also full at this many bytes of JSON: 5,000 hydrated conversations with their parts are
# 75 MB, whose upsert after the tap's last record alone outlasted the tap by 10 s (issue 25).
BATCH_BYTES = 8 << 20
# With nothing in flight, a batch is full at batch_size_rows / EAGER_SHARE rows (CopySink.is_full).
EAGER_SHARE = 5
# Full batches of one table loaded at once, each on its own connection (CopySink): PostgreSQL runs a
# batch's COPY and upsert on one CPU; with two, a second CPU works while the first is busy (issue 25).
BATCHES_IN_FLIGHT = 2
# A batch that PostgreSQL chose as a deadlock's victim (two batches in flight updating the same rows in
# another order) is rolled back whole and loaded again, at most this many times.
DEADLOCK_RETRIES = 3
DEADLOCK_PAUSE_SECONDS = 0.2  # before the first retry; twice that before the second, and so on


class Column(t.NamedTuple):
    name: str
    kind: str  # TEXT, BOOLEAN, TIMESTAMP or JSON


def flat_columns(schema: dict) -> list[Column] | None:
    """The columns of a flat schema (strings, booleans, date-times, objects), or None if it is not one."""
    columns = []
    for name, prop in schema.get("properties", {}).items():
        types = prop.get("type")
        types = {types} if isinstance(types, str) else set(types or ())
        types.discard("null")
        if types == {"string"} and prop.get("format") == "date-time":
            kind = TIMESTAMP
        elif types == {"string"} and "format" not in prop:
            kind = TEXT
        elif types == {"boolean"}:
            kind = BOOLEAN
        elif types == {"object"}:
            kind = JSON
        else:
            return None
        columns.append(Column(name, kind))
    return columns or None


def line_decoder(schema: dict, columns: list[Column]) -> msgspec.json.Decoder:
    """A decoder of a RECORD line whose record has exactly the schema's types, its `data` kept raw."""
    required = set(schema.get("required", ()))
    fields: list[tuple] = []
    for name, kind in columns:
        types = schema["properties"][name].get("type")
        nullable = "null" in ([types] if isinstance(types, str) else types or [])
        base: t.Any = {
            TEXT: str,
            BOOLEAN: bool,
            JSON: msgspec.Raw,
            TIMESTAMP: t.Annotated[str, msgspec.Meta(pattern=DATE_TIME)],
        }[kind]
        kind_type = base | None if nullable else base
        fields.append((name, kind_type) if name in required else (name, kind_type, None))
    fields.sort(key=len)  # required fields first, as a struct needs
    record = msgspec.defstruct("Record", fields, forbid_unknown_fields=schema.get("additionalProperties") is False)
    line = msgspec.defstruct(
        "RecordLine",
        [
            ("type", str),
            ("stream", str),
            ("record", record),
            ("version", int | None, None),
            ("time_extracted", str | None, None),
        ],
    )
    return msgspec.json.Decoder(line)


class RecordReader(GenericSingerReader[bytes]):
    """singer-sdk's reader, except that RECORD lines of registered streams are decoded by their typed decoder."""

    def __init__(self) -> None:
        super().__init__()
        self._decoders: dict[bytes, tuple[msgspec.json.Decoder, tuple[str, ...]]] = {}

    @property
    @override
    def default_input(self) -> t.IO[bytes]:
        return sys.stdin.buffer

    def register(self, stream: str, decoder: msgspec.json.Decoder | None, objects: tuple[str, ...] = ()) -> None:
        """Decode the stream's RECORD lines with `decoder` (its JSON columns: `objects`); None: as the SDK does."""
        if decoder is None:
            self._decoders.pop(stream.encode(), None)
        else:
            self._decoders[stream.encode()] = (decoder, objects)

    @override
    def deserialize_json(self, line: bytes | str) -> dict:
        if isinstance(line, str):  # `--input FILE`: the SDK opens it as text
            line = line.encode("utf-8", "surrogatepass")
        if line.startswith(_RECORD_PREFIX):
            end = line.find(b'"', len(_RECORD_PREFIX))
            found = self._decoders.get(line[len(_RECORD_PREFIX) : end])
            if found is not None:
                message = self._typed(line, *found)
                if message is not None:
                    return message
        try:
            return deserialize_json(line)
        except ValueError:  # json.JSONDecodeError, UnicodeDecodeError; a tap killed mid-line
            # named by its size, never printed: the line holds customer data
            raise InvalidInputLine(f"a line of input ({len(line):,} characters) is not JSON") from None

    @staticmethod
    def _typed(line: bytes, decoder: msgspec.json.Decoder, objects: tuple[str, ...]) -> dict | None:
        try:
            decoded = decoder.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None  # the SDK's way: its validation says what is wrong
        record = msgspec.structs.asdict(decoded.record)
        for name in objects:
            value = record[name]
            if value is not None and memoryview(value)[:1] != b"{":
                return None
        message: dict[str, t.Any] = {"type": "RECORD", "stream": decoded.stream, "record": record}
        if decoded.version is not None:
            message["version"] = decoded.version
        if decoded.time_extracted is not None:
            message["time_extracted"] = decoded.time_extracted
        return message


class DecodedOnly(BaseJSONSchemaValidator):
    """The SDK's validator for records the reader did not already check while decoding them (their `data` raw)."""

    def __init__(self, schema: dict, inner: BaseJSONSchemaValidator, objects: tuple[str, ...]) -> None:
        super().__init__(schema)
        self.inner, self.objects = inner, objects

    @override
    def validate(self, record: dict[str, t.Any]) -> None:
        if not any(isinstance(record.get(name), msgspec.Raw) for name in self.objects):
            self.inner.validate(record)


def clean_text(text: str) -> str:
    """U+0000 and lone surrogates (PostgreSQL refuses them) as U+FFFD."""
    return _BAD_TEXT.sub("\ufffd", text)


def json_bytes(value: t.Any) -> bytes:
    """A JSON column's bytes as PostgreSQL can store them: the tap's own bytes, or a decoded value encoded."""
    if isinstance(value, msgspec.Raw):
        return readable(bytes(value)).content
    text = simplejson.dumps(value, use_decimal=True, separators=(",", ":"), default=str)  # ASCII: \\u escapes
    return readable(text.encode()).content


def _text_bytes(value: t.Any) -> bytes:
    if isinstance(value, str):
        try:
            return (clean_text(value) if "\x00" in value else value).encode()
        except UnicodeEncodeError:  # a lone surrogate (a line decoded by Python's json)
            return clean_text(value).encode()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat().encode()
    return str(value).encode()


def copy_rows(records: t.Iterable[dict], columns: list[Column]) -> t.Iterator[bytes]:
    """COPY's binary format for the records, in blocks of about 1 MB: header, a tuple per record, trailer."""
    count = struct.pack(">h", len(columns))
    block = bytearray(_COPY_HEADER)
    for record in records:
        block += count
        for name, kind in columns:
            value = record.get(name)
            if value is None:
                block += _NULL
            elif kind == JSON:
                data = json_bytes(value)
                block += _JSONB_LENGTH(len(data) + 1, 1)
                block += data
            elif kind == BOOLEAN:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} is {type(value).__name__}, not a boolean")
                block += _TRUE if value else _FALSE
            else:
                text = value.encode() if type(value) is str and "\x00" not in value else _text_bytes(value)
                block += _LENGTH(len(text))
                block += text
        if len(block) >= _FLUSH_BYTES:
            yield bytes(block)
            block.clear()
    block += _COPY_TRAILER
    yield bytes(block)


def _instant(value: t.Any) -> dt.datetime | None:
    """An updated_at to compare two copies of a row in one batch (None: unknown, the later one wins)."""
    try:
        instant = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.timezone.utc)


def newest_per_key(records: list[dict], key: str, newest_by: str | None) -> list[dict]:
    """One record per key (an upsert can touch a row once per statement): the newest by `newest_by`, else the last."""
    by_key: dict[t.Any, dict] = {}
    for record in records:
        seen = by_key.get(record[key])
        if seen is not None and newest_by is not None:
            before, now = _instant(seen.get(newest_by)), _instant(record.get(newest_by))
            if before is not None and (now is None or now < before):
                continue  # an older copy of the same row: the table's own rule
        by_key[record[key]] = record
    return list(by_key.values())


# A batch's rows are found in the table through its unique index, one probe each: without statistics
# on the temporary table (and with stale ones on a table a backfill grows), the planner hashed the
# whole table for every batch (55 ms at 25,000 rows, growing with the table; measured in issue 25).
PROBE_BY_INDEX = "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"


class Upsert:
    """The SQL of one table: the temporary table a batch is copied into, and the upsert from it."""

    def __init__(
        self, schema_name: str, table_name: str, columns: list[Column], key: str, *, pk_by_trigger: bool = False
    ) -> None:
        """pk_by_trigger: the table's BEFORE INSERT trigger sets its `pk` (the product's tables): the insert
        names it (NULL), so its default does not draw from the sequence a second time."""
        self.columns, self.key = columns, key
        self.objects = tuple(c.name for c in columns if c.kind == JSON)
        self.staging = sql.Identifier(f"staged_{table_name}")
        self.create = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
            self.staging,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_STAGED_TYPE[c.kind])) for c in columns
            ),
        )
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        self.copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(self.staging, names)
        values = sql.SQL(", ").join(
            sql.SQL("{}::timestamptz").format(sql.Identifier(c.name)) if c.kind == TIMESTAMP else sql.Identifier(c.name)
            for c in columns
        )
        inserted_names, inserted_values = names, values
        if pk_by_trigger:
            inserted_names, inserted_values = sql.SQL("pk, ") + names, sql.SQL("NULL, ") + values
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c.name)) for c in columns if c.name != key
        )
        # The newest rule of the table's BEFORE UPDATE trigger, checked before the trigger runs: an
        # older payload is not even offered (the trigger stays the rule for every other writer).
        keeps_newest = any(c.name == "updated_at" and c.kind == TIMESTAMP for c in columns)
        newest = sql.SQL(
            " AND (t.updated_at IS NULL OR s.updated_at::timestamptz >= t.updated_at)" if keeps_newest else ""
        )
        newest_conflict = sql.SQL(
            " WHERE t.updated_at IS NULL OR excluded.updated_at >= t.updated_at" if keeps_newest else ""
        )
        table = sql.Identifier(schema_name, table_name)
        # The rows already there are updated, then the others inserted: a row that exists never reaches
        # the BEFORE INSERT trigger (it would draw a pk from the sequence for nothing). ON CONFLICT only
        # for another writer's row inserted meanwhile.
        self.update = sql.SQL(
            "UPDATE {table} AS t SET {sets} FROM {staging} AS s WHERE t.{key} = s.{key}{newest}"
        ).format(
            table=table,
            staging=self.staging,
            key=sql.Identifier(key),
            newest=newest,
            sets=sql.SQL(", ").join(
                sql.SQL("{} = s.{}{}").format(
                    sql.Identifier(c.name),
                    sql.Identifier(c.name),
                    sql.SQL("::timestamptz" if c.kind == TIMESTAMP else ""),
                )
                for c in columns
                if c.name != key
            ),
        )
        self.insert = sql.SQL(
            "WITH written AS (INSERT INTO {table} AS t ({names}) SELECT {values} FROM {staging} AS s"
            " WHERE NOT EXISTS (SELECT FROM {table} AS o WHERE o.{key} = s.{key})"
            " ON CONFLICT ({key}) DO UPDATE SET {updates}{newest} RETURNING (t.xmax = 0) AS inserted)"
            " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
        ).format(
            table=table,
            names=inserted_names,
            values=inserted_values,
            staging=self.staging,
            key=sql.Identifier(key),
            updates=updates,
            newest=newest_conflict,
        )

    def stage(self, conn: psycopg.Connection) -> None:
        """Inside the batch's transaction, before its COPY: the temporary table, and the planner set to probe."""
        conn.execute(self.create)
        conn.execute(PROBE_BY_INDEX)

    def load(self, conn: psycopg.Connection, records: list[dict]) -> tuple[int, int]:
        """COPY the records into the temporary table and upsert them, in one transaction: (inserted, updated)."""
        newest_by = "updated_at" if any(c.name == "updated_at" for c in self.columns) else None
        rows = newest_per_key(records, self.key, newest_by)
        with conn.transaction():
            self.stage(conn)
            with conn.cursor() as cursor, cursor.copy(self.copy) as copy:
                for block in copy_rows(rows, self.columns):
                    copy.write(block)
            updated = conn.execute(self.update).rowcount
            found = conn.execute(self.insert).fetchone()
        inserted, raced = (int(found[0]), int(found[1])) if found else (0, 0)
        return inserted, updated + raced


class CopySink(SinkAdapter, PostgresSink):
    """target-postgres's sink, with the fast path above for a stream whose table `copies()` allows.

    Every other stream, and a stream whose schema is not flat or that stream maps or flattening
    rewrite, is loaded by target-postgres's own process_batch.

    A full batch is loaded by one of the sink's threads while the next one is read (the database's time,
    most of a batch's, no longer stops the reading); at most BATCHES_IN_FLIGHT are in flight, each on its
    own connection, so that PostgreSQL loads two at once on two CPUs. Their commits may end in any order;
    the table's rule (an older payload never replaces a newer one) makes the order of two batches holding
    the same conversation irrelevant. Any other drain (the SDK's drain of every sink at the end, on a
    signal, before it writes a STATE) is a partial batch, or none: it waits until every batch in flight
    and its own are committed. `current_size` counts the rows in flight until they are seen committed,
    the oldest batch first: the SDK then does not skip a sink whose only batches are in flight, and the
    loader's STATE acknowledgement (acknowledge.py: read minus current_size is what is committed) is
    never ahead of the table, even when a later batch commits before an earlier one. `is_full` counts
    the rows being read only.
    """

    def __init__(self, target: t.Any, *args: t.Any, **kwargs: t.Any) -> None:
        self.rows_inserted = 0  # rows the upserts added, and rows they changed (read by the run summary)
        self.rows_updated = 0
        self._reader = getattr(target, "message_reader", None)
        self._upsert: Upsert | None = None
        self._connections: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()  # idle, kept between batches
        self._opened: list[psycopg.Connection] = []
        self._worker = ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="copy-load")
        self._in_flight: deque[tuple[Future[None], int]] = deque()  # batches and their rows, oldest first
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._batch_bytes = 0
        self._filled = False  # is_full said so: the SDK drains the batch at once, and it loads in a sink's thread
        super().__init__(target, *args, **kwargs)

    def copies(self) -> bool:
        """Whether this stream's table takes the fast path (a subclass narrows it to the tables it knows)."""
        return True

    def _columns(self) -> list[Column] | None:
        if self.config.get("stream_maps") or self.config.get("flattening_enabled"):
            return None  # a map may read inside `data`: the records must be decoded
        columns = flat_columns(self.schema)
        key = list(self.key_properties or ())
        if columns is None or len(key) != 1 or key[0] not in {c.name for c in columns}:
            return None
        return columns

    def _objects(self) -> tuple[str, ...]:
        return tuple(c.name for c in flat_columns(self.schema) or () if c.kind == JSON)

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        inner = super().get_validator()
        objects = self._objects()
        return DecodedOnly(self.schema, inner, objects) if inner is not None and objects else inner

    @override
    def setup(self) -> None:
        super().setup()
        columns = self._columns() if self.copies() else None
        if columns is not None:
            self._upsert = Upsert(
                str(self.schema_name),
                self.table_name,
                columns,
                self.key_properties[0],
                pk_by_trigger=self.table_name in TABLES,
            )
        if isinstance(self._reader, RecordReader):
            decoder = line_decoder(self.schema, columns) if columns is not None else None
            self._reader.register(self.stream_name, decoder, self._objects())

    def direct(self) -> bool:
        """Whether the target may hand this sink the records its reader decoded, without the SDK's per-record path.

        That path maps (no stream map here: `_columns`), validates (the reader did, while decoding), parses
        date-times (PostgreSQL does) and drops `_sdc_` fields (the record has only the schema's): `take` is
        what is left of it.
        """
        return self._upsert is not None and bool(self._upsert.objects)

    def decoded(self, record: dict) -> bool:
        """A record the reader decoded with its types: its JSON columns are the tap's bytes (or null)."""
        assert self._upsert is not None
        return any(isinstance(record.get(name), msgspec.Raw) for name in self._upsert.objects)

    def take(self, record: dict) -> None:
        """A decoded record into the batch, counted as the SDK counts it (records read, the METRIC counter)."""
        self.tally_record_read()
        self.process_record(record, batch_context(self, record))
        self.record_counter_metric.increment()

    @override
    def validate_and_parse(self, record: dict) -> dict:
        """A record the reader decoded with its types (its `data` raw) is already checked and stays as it is."""
        if self._upsert is not None and self.decoded(record):
            return record
        return super().validate_and_parse(record)

    @override
    def process_record(self, record: dict, context: dict) -> None:
        PostgresSink.process_record(self, record, context)  # BatchSink's (mypy sees Sink's abstract one first)
        if self._upsert is not None:
            for name in self._upsert.objects:
                value = record.get(name)
                if isinstance(value, msgspec.Raw):
                    self._batch_bytes += len(value)

    @property
    @override
    def is_full(self) -> bool:
        """A full batch (the SDK then drains it, and process_batch hands it to one of the sink's threads).

        A batch is also full at a fifth of batch_size_rows when nothing is in flight: the database,
        idle otherwise, starts on it at once, and the batch left when the input ends (which the run
        waits for) is what arrived during the last load rather than up to a whole batch (issue 25);
        and at half of it when a connection is free: the second CPU starts too, on a batch large
        enough that its fixed costs (a commit, four statements) stay small.
        """
        reading = super().current_size
        loading = sum(not future.done() for future, _ in tuple(self._in_flight))
        threshold = self.max_size
        if self._upsert is not None and loading < BATCHES_IN_FLIGHT:
            threshold = self.max_size // EAGER_SHARE if loading == 0 else self.max_size // 2
        self._filled = reading >= max(1, threshold) or self._batch_bytes >= BATCH_BYTES
        return self._filled

    @property
    def _in_flight_rows(self) -> int:
        return sum(rows for _, rows in tuple(self._in_flight))

    @property
    @override
    def current_size(self) -> int:
        return super().current_size + self._in_flight_rows

    @override
    def process_batch(self, context: dict) -> None:
        if self._upsert is None:
            super().process_batch(context)
            return
        records = context.get("records", [])
        # Full: the SDK drained it because is_full said so, right after its last record (never the case of
        # a drain of every sink: at the end, on a signal, on the timer, which waits until it is committed).
        full, self._filled = self._filled, False
        self._batch_bytes = 0
        with self._lock:  # the SDK drains sinks from its own threads at the end
            if not full:  # loaded beside the batches in flight (on a free connection at once), then all awaited
                if records:
                    self._in_flight.append((self._worker.submit(self._load, records), len(records)))
                self.wait_for_batch()
                return
            self._settle()
            while len(self._in_flight) >= BATCHES_IN_FLIGHT:
                self._settle(wait=True)
            self._in_flight.append((self._worker.submit(self._load, records), len(records)))

    def _settle(self, *, wait: bool = False) -> None:
        """Forget the oldest batches that are committed (wait: the oldest one at least); a failed one's error is raised.

        Only the oldest first: a later batch committed before an earlier one stays counted until the earlier
        one is committed too, so read minus current_size is always a prefix of what was read.
        """
        while self._in_flight and (wait or self._in_flight[0][0].done()):
            future, _ = self._in_flight[0]
            try:
                future.result()
            except BaseException:  # the run stops on it: its rows, and every later batch's, stay counted
                self._stop_loading()
                raise
            self._in_flight.popleft()
            wait = False

    def _stop_loading(self) -> None:
        """A batch failed: the others in flight end (committed or not), then every connection is closed, so that
        nothing of the sink's is left for Python's exit to close (with a ResourceWarning line after the error)."""
        for future, _ in tuple(self._in_flight):
            future.exception()  # waits; what it was is the failed batch's to say
        self._close_connections()

    def wait_for_batch(self) -> None:
        """Until every batch in flight is committed; the first error, if one failed, is raised here."""
        while self._in_flight:
            self._settle(wait=True)

    def _load(self, records: list[dict]) -> None:
        assert self._upsert is not None
        started = time.monotonic()
        conn = self._connection()
        try:
            for attempt in range(DEADLOCK_RETRIES + 1):
                try:
                    inserted, updated = self._upsert.load(conn, records)
                    break
                except psycopg.errors.DeadlockDetected:  # rolled back whole: nothing of it was written
                    if attempt == DEADLOCK_RETRIES:
                        raise
                    self.logger.info(
                        "A batch of %s.%s met another in a deadlock; loading it again",
                        self.schema_name,
                        self.table_name,
                    )
                    time.sleep(DEADLOCK_PAUSE_SECONDS * (attempt + 1))  # the other one first takes what it waited for
        except BaseException:  # the run stops on it (_stop_loading closes the others)
            conn.close()
            raise
        self._connections.put(conn)
        with self._counts_lock:
            self.rows_inserted += inserted
            self.rows_updated += updated
        self.logger.info(  # one line a batch, no data: shown with log_metrics or at debug (logs.PER_BATCH)
            "Upserted %d rows into %s.%s by COPY: %d inserted, %d updated, %.2f s",
            len(records),
            self.schema_name,
            self.table_name,
            inserted,
            updated,
            time.monotonic() - started,
        )

    def _connection(self) -> psycopg.Connection:
        """An idle connection of the sink to the database target-postgres's connector names, or a new one."""
        while True:
            try:
                conn = self._connections.get_nowait()
            except queue.Empty:
                break
            if not conn.closed and not conn.broken:
                return conn
        url = make_url(self.connector.sqlalchemy_url).render_as_string(hide_password=False)
        conn = psycopg.connect(libpq_url(url), autocommit=True)
        self._opened.append(conn)
        return conn

    @override
    def clean_up(self) -> None:
        with self._lock:
            self.wait_for_batch()
        self._worker.shutdown()
        super().clean_up()
        self._close_connections()

    def _close_connections(self) -> None:
        """Every connection the sink opened, closed."""
        opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
