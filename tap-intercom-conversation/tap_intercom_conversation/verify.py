"""intercom-conversation-verify: prove that intercom_conversation_v1 matches Intercom, and repair it if not.

Lists every conversation Intercom has with the tap's own search (one request per 150 conversations,
spans searched at once under the tap's rate governor, never a GET per conversation), compares
(intercom_id, updated_at) with the table in SQL, and reports each class of difference. --repair
fetches what is missing or stale and writes it through the tap's row building and the table's
triggers, applies the deletion rule to rows Intercom no longer has, and compares again. The tap's
bookmark is never read or moved.

Exit 0: the table matches; 1: it differs; 2: an error (one line, never the token or a password).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
import typing as t
from collections.abc import Sequence

from singer_sdk.logging import ConsoleFormatter

from tap_intercom_conversation.checks import read_json
from tap_intercom_conversation.errors import IntercomError
from tap_intercom_conversation.hydration import ordered_map
from tap_intercom_conversation.listing import ListingStream, parts_count
from tap_intercom_conversation.parts import decoded_part, part_record
from tap_intercom_conversation.progress import Progress
from tap_intercom_conversation.records import as_record, to_iso, to_unix

if t.TYPE_CHECKING:
    from tap_intercom_conversation.verify_table import Differences, TableCheck

PROG = "intercom-conversation-verify"
URL_ENV = "TARGET_POSTGRES_SQLALCHEMY_URL"
SCHEMA_ENV = "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"
WRITE_BATCH = 500
CLASSES = {
    "missing": "Missing: {n:,} conversations in Intercom are not in the table",
    "stale": "Stale: {n:,} rows are older than Intercom's conversation",
    "gone": "Not in Intercom: {n:,} rows are not marked deleted",
    "parts": "Parts: {n:,} hydrated rows hold fewer parts than statistics.count_conversation_parts",
}
logger = logging.getLogger(PROG)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        required=True,
        help="the tap's settings file (JSON), or ENV for TAP_INTERCOM_CONVERSATION_* variables",
    )
    parser.add_argument(
        "--database-url", help=f"postgresql+psycopg://user@host:5432/db or postgresql://... (env {URL_ENV})"
    )
    parser.add_argument("--schema", help=f"schema of the table (env {SCHEMA_ENV}, default public)")
    parser.add_argument(
        "--through",
        help="compare conversations updated before this ISO 8601 date-time "
        "(default: the newest updated_at in the table, e.g. pass the tap's bookmark)",
    )
    parser.add_argument(
        "--repair", action="store_true", help="fetch and write what differs, apply the deletion rule, then verify again"
    )
    return parser.parse_args(argv)


def _stream(config_arg: str) -> ListingStream:
    """The tap, built on these settings with its own checks (the same one-line errors), and its search."""
    from tap_intercom_conversation.tap import TapIntercomConversation

    if config_arg == "ENV":
        tap = TapIntercomConversation(config=None, parse_env_config=True, setup_mapper=False)
    else:
        tap = TapIntercomConversation(
            config=read_json(config_arg, "configuration"), parse_env_config=False, setup_mapper=False
        )
    return ListingStream(tap=tap)


def report(found: Differences, cutoff: int, why: str) -> None:
    print(
        f"Cut-off: conversations updated before {to_iso(cutoff)} ({why}) are compared; "
        f"{found.after_cutoff:,} updated since are not"
    )
    for kind, line in CLASSES.items():
        shown = found.shown[kind]
        more = f", and {found.counts[kind] - len(shown):,} more" if found.counts[kind] > len(shown) else ""
        print(line.format(n=found.counts[kind]) + (f": {', '.join(shown)}{more}" if shown else ""))
    print(
        f"Totals: {found.listed:,} conversations in Intercom before the cut-off, {found.rows:,} rows in the table; "
        f"{found.counts['missing']:,} missing, {found.counts['stale']:,} stale, "
        f"{found.counts['gone']:,} not in Intercom, {found.counts['parts']:,} with missing parts: "
        + ("the table matches" if not found.total else f"{found.total:,} differences"),
        flush=True,
    )


def verify(args: argparse.Namespace) -> int:
    from tap_intercom_conversation.table import InputError, check_schema, libpq_url
    from tap_intercom_conversation.verify_table import TableCheck

    stream = _stream(args.config)
    config = stream.config
    url = args.database_url or os.environ.get(URL_ENV) or ""
    if not url:
        raise InputError(f"no database URL: pass --database-url or set {URL_ENV}")
    schema = args.schema or os.environ.get(SCHEMA_ENV) or "public"
    check_schema(schema)
    through = to_unix(args.through, "--through") if args.through else None
    start = to_unix(config["start_date"], "configuration: start_date") if config.get("start_date") else None
    check = TableCheck(libpq_url(url), schema)
    try:
        started = time.monotonic()
        logger.info(
            "Listing every conversation in Intercom: search, 150 per page, %d spans at once", stream._searches_in_flight
        )
        listed = check.load_listing(stream.listed(start, int(time.time()) + 1))
        logger.info("Listed %s conversations in %.1f s", f"{listed:,}", time.monotonic() - started)
        newest = check.newest_updated_at()
        if through is not None:
            cutoff, why = through, "--through"
        elif newest is not None:
            cutoff, why = min(newest, int(time.time()) + 1), "the newest updated_at in the table"
        else:
            cutoff, why = int(time.time()) + 1, "the table is empty: the start of this check"
        confirm_unlisted(stream, check, start)
        hydrated = check.hydrated() if newest is not None else bool(config["include_conversation_parts"])
        found = check.compare(cutoff, start, parts=hydrated)
        report(found, cutoff, why)
        if args.repair and found.total:
            repair(stream, check, hydrated=hydrated, remove=config["deleted_conversations"] == "remove")
            found = check.compare(cutoff, start, parts=hydrated)
            print("After the repair:")
            report(found, cutoff, why)
        logger.info("Verified in %.1f s", time.monotonic() - started)
        return 1 if found.total else 0
    finally:
        check.close()


def confirm_unlisted(stream: ListingStream, check: TableCheck, start: int | None) -> None:
    """Rows the listing lacks are looked up by id: one that moved while the search ran is not gone."""
    unlisted = check.unlisted(start)
    if not unlisted:
        return
    found = [(str(row["id"]), int(row["updated_at"]), parts_count(row)) for row in stream.by_ids(unlisted)]
    check.add_to_listing(found)
    logger.info(
        "%s rows of the table were not listed; looked up by id, Intercom still has %s",
        f"{len(unlisted):,}",
        f"{len(found):,}",
    )


def repair(stream: ListingStream, check: TableCheck, *, hydrated: bool, remove: bool) -> None:
    """Write Intercom's current payload of every row that differs; apply the deletion rule to the rest."""
    ids = check.ids("missing", "stale", "parts")
    progress = Progress(logger, "repair", stream.runtime.governor)
    progress.expect(len(ids))
    if hydrated:  # as the tap writes them: GET /conversations/{id}, with its parts
        workers = int(stream.config["max_concurrent_requests"])
        fetched = ordered_map(
            stream._request_conversation, ids, workers=workers, concurrency=stream.runtime.concurrency.target
        )
        payloads: t.Iterable[dict] = (got.payload for _, got in fetched if got is not None)
    else:  # the search rows themselves, looked up by id
        payloads = stream.by_ids(ids)
    written: set[str] = set()
    batch: list[dict] = []
    parts: list[dict] = []  # a hydrated conversation's parts, for the parts table (when it exists)
    for payload in payloads:
        batch.append(as_record(payload))
        written.add(batch[-1]["intercom_id"])
        if hydrated and check.has_parts:
            listed = (payload.get("conversation_parts") or {}).get("conversation_parts") or []
            parts += [part_record(batch[-1]["intercom_id"], decoded_part(part)) for part in listed]
        progress.done += 1
        if len(batch) >= WRITE_BATCH:
            check.upsert(batch)
            check.upsert_parts(parts)
            batch, parts = [], []
            progress.page()
    check.upsert(batch)
    check.upsert_parts(parts)
    vanished = [i for i in ids if i not in written]  # deleted since the listing
    gone = check.ids("gone") + vanished
    check.drop_from_listing(vanished)
    check.delete(gone, stream.runtime.clock.floor() or int(time.time()), remove=remove)
    logger.info(
        "Repaired: %s rows written, %s conversations Intercom no longer has %s",
        f"{len(written):,}",
        f"{len(gone):,}",
        "removed" if remove else "marked deleted",
    )


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    handler.addFilter(lambda record: record.name != "singer_sdk.metrics")  # a line per request: thousands
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script: 0 when the table matches, 1 when it differs, 2 and one line on an error."""
    args = _parse_args(argv)
    _setup_logging()
    url = args.database_url or os.environ.get(URL_ENV) or ""
    try:
        from tap_intercom_conversation.table import InputError, scrub, url_secrets
    except ImportError as err:  # psycopg: the [postgres] extra
        print(f"{PROG}: error: {err.name} is missing: install tap-intercom-conversation[postgres]", file=sys.stderr)
        return 2
    try:
        return verify(args)
    except (IntercomError, InputError) as err:
        print(f"{PROG}: error: {scrub(str(err), url_secrets(url))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted; nothing more was written", file=sys.stderr)
        return 130
    except Exception:  # a bug: its traceback, and still exit 2 (1 means "the table differs")
        traceback.print_exc()
        print(f"{PROG}: error: unexpected failure (the traceback above)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
