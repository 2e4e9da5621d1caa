"""intercom-conversation-verify: prove that the job's tables match Intercom, and repair them if not.

Settings: the job's own, through Meltano (--extractor/--loader: job_settings.py asks Meltano for each
plugin's config as `meltano run` hands it over), or without Meltano (--config FILE, or ENV: exported
variables only, never a .env). A table the loader marked as another Intercom's (source_mark.py) is refused.

Lists every conversation Intercom has with the tap's own search (one request per 150 conversations,
spans searched at once under the tap's rate governor, never a GET per conversation), compares
(intercom_id, updated_at) and the part rows per conversation with the tables in SQL, GETs only the
conversations whose part rows fall short of Intercom's count, and reports each class of difference
after naming what it compared. --repair fetches what is missing or stale and writes it through the
tap's row building and the tables' triggers, applies the deletion rule to rows Intercom no longer has,
and compares again. The tap's bookmark is never read or moved.

Exit 0: the tables match; 1: they differ, or the table is not this job's (refused); 2: an error (one
line, never the token or a password).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
import typing as t
from collections.abc import Sequence
from dataclasses import dataclass, field

from singer_sdk.logging import ConsoleFormatter

from intercom_conversation_shared import source_mark
from intercom_conversation_verify.listing import Listing, parts_count
from intercom_conversation_verify.verify_table import PARTS, TABLE, Differences, TableCheck
from tap_intercom_conversation.checks import read_json
from tap_intercom_conversation.errors import IntercomError
from tap_intercom_conversation.hydration import ordered_map
from tap_intercom_conversation.parts import decoded_part, part_record
from tap_intercom_conversation.progress import Progress
from tap_intercom_conversation.records import as_record, to_iso, to_unix
from target_intercom_postgres.errors import InputError
from target_intercom_postgres.job_settings import (
    LOADER_CONNECTION,
    LOADER_PREFIX,
    TAP_PREFIX,
    JobSettings,
    environment_settings,
    meltano_settings,
)
from target_intercom_postgres.table import check_schema, libpq_url, scrub, url_secrets

PROG = "intercom-conversation-verify"
WRITE_BATCH = 500
LAG_MARGIN_SECONDS = 300  # conversations updated this close to the check's start may not be searchable yet
CLASSES = {
    "missing": "Missing: {n:,} conversations in Intercom are not in the table",
    "stale": "Stale: {n:,} rows are older than Intercom's conversation",
    "gone": "Not in Intercom: {n:,} rows are not marked deleted",
    "parts": "Parts: {n:,} hydrated rows hold fewer parts than statistics.count_conversation_parts",
    "part_rows": "Part rows: {n:,} conversations lack rows in intercom_conversation_part_v1",
}
logger = logging.getLogger(PROG)


class Refused(Exception):
    """The table is not the one this job loads: one line, exit 1, nothing compared or written."""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        help="without Meltano: the tap's settings file (JSON), or ENV for the TAP_INTERCOM_CONVERSATION_* and "
        "TARGET_POSTGRES_* variables exported in this shell (no .env is read)",
    )
    parser.add_argument("--extractor", help="through Meltano: the job's extractor (its settings, resolved by Meltano)")
    parser.add_argument("--loader", help="through Meltano: the loader of the job (its database and schema)")
    parser.add_argument(
        "--database-url",
        help=f"with --config: postgresql+psycopg://user@host:5432/db (else {LOADER_PREFIX}SQLALCHEMY_URL, or "
        f"{LOADER_PREFIX}HOST, _PORT, _USER, _PASSWORD, _DATABASE)",
    )
    parser.add_argument(
        "--schema", help=f"with --config: the table's schema (else {LOADER_PREFIX}DEFAULT_TARGET_SCHEMA, public)"
    )
    parser.add_argument(
        "--through",
        help="compare conversations updated before this ISO 8601 date-time (default: the check's start "
        f"minus {LAG_MARGIN_SECONDS} s, for Intercom's search index lag)",
    )
    parser.add_argument(
        "--repair", action="store_true", help="fetch and write what differs, apply the deletion rule, then verify again"
    )
    parser.add_argument(
        "--adopt",
        action="store_true",
        help="with --repair: a table that carries no source mark (loaded without Meltano) is marked as this "
        "Intercom's, then repaired",
    )
    return parser.parse_args(argv)


def job_settings(args: argparse.Namespace) -> JobSettings:
    """The tap's and the loader's settings: from Meltano (--extractor/--loader), or without it (--config)."""
    if args.config and (args.extractor or args.loader):
        raise InputError("--config reads settings without Meltano: do not combine it with --extractor or --loader")
    if not args.config:
        if not (args.extractor and args.loader):
            raise InputError("pass --config (without Meltano), or --extractor and --loader (through Meltano)")
        if args.database_url or args.schema:
            raise InputError("--database-url and --schema are the loader's settings through Meltano: set them there")
        return meltano_settings(args.extractor, args.loader)
    from tap_intercom_conversation.tap import TapIntercomConversation

    if args.config == "ENV":
        tap = environment_settings(TapIntercomConversation.config_jsonschema["properties"], TAP_PREFIX)
        source = f"the variables exported in this shell ({TAP_PREFIX}*, {LOADER_PREFIX}*)"
    else:
        tap = read_json(args.config, "configuration")
        source = f"{args.config} and " + ("--database-url" if args.database_url else f"{LOADER_PREFIX}* variables")
    loader: dict[str, t.Any] = environment_settings(LOADER_CONNECTION, LOADER_PREFIX)
    if args.database_url:
        loader = {"sqlalchemy_url": args.database_url}
    if args.schema:
        loader["default_target_schema"] = args.schema
    if not loader.get("sqlalchemy_url") and not loader.get("host"):
        raise InputError(f"no database URL: pass --database-url or set {LOADER_PREFIX}SQLALCHEMY_URL")
    return JobSettings(tap, loader, source)


def _stream(config: dict[str, t.Any]) -> Listing:
    """The tap, built on these settings with its own checks (the same one-line errors), and its search."""
    from tap_intercom_conversation.streams import ConversationsStream
    from tap_intercom_conversation.tap import TapIntercomConversation

    tap = TapIntercomConversation(config=config, parse_env_config=False, setup_mapper=False)
    return Listing(ConversationsStream(tap=tap))


def describe_database(url: str) -> str:
    """Host, port, database and user of a libpq URL: never the password."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    host = info.get("host") or "(local socket)"
    port = f":{info['port']}" if info.get("port") else ""
    user = f", user {info['user']}" if info.get("user") else ""
    return f"{host}{port}, database {info.get('dbname') or '(default)'}{user}"


def header(stream: Listing, check: TableCheck, settings: JobSettings, app: dict | None, window: str) -> None:
    """What is compared with what: the report's first lines."""
    workspace = f", workspace {app.get('name')!s} (app {app.get('id_code')})" if app else " (GET /me: no workspace)"
    tables = [TABLE, *([PARTS] if check.has_parts else [])]
    print(f"Settings: {settings.source}")
    print(f"Intercom: {stream.url_base}{workspace}")
    print(f"Database: {describe_database(check.url)}")
    print(f"Schema: {check.schema}; tables: {', '.join(tables)}")
    print(f"Window: {window}", flush=True)


def report(found: Differences) -> None:
    for kind, line in CLASSES.items():
        shown = found.shown[kind]
        more = f", and {found.counts[kind] - len(shown):,} more" if found.counts[kind] > len(shown) else ""
        print(line.format(n=found.counts[kind]) + (f": {', '.join(shown)}{more}" if shown else ""))
    print(
        f"Totals: {found.listed:,} conversations in Intercom in the window ({found.after_cutoff:,} updated since "
        f"are not compared), {found.rows:,} rows in the table; {found.counts['missing']:,} missing, "
        f"{found.counts['stale']:,} stale, {found.counts['gone']:,} not in Intercom, {found.counts['parts']:,} "
        f"with missing parts, {found.counts['part_rows']:,} lacking part rows",
        flush=True,
    )


def verdict(found: Differences, where: str) -> str:
    if not found.total:
        return f"Verdict: {where} matches Intercom"
    return f"Verdict: {where} differs from Intercom in {found.total:,} conversations"


def check_mark(check: TableCheck, config: t.Mapping[str, t.Any], *, repair: bool, adopt: bool) -> str:
    """Refuse a table marked as another Intercom's (or, to repair, an unmarked one); the line the header shows."""
    found = check.source_mark()
    ours = json.loads(source_mark.mark(config, "verify"))[source_mark.KEY]
    where = f"{check.schema}.{TABLE} of {describe_database(check.url)}"
    if found is None:
        if repair and not adopt:
            raise Refused(
                f"{where} carries no mark of the job that loads it (target-intercom-postgres writes one under "
                f"`meltano run`), so it may not be this job's table: run the job once, or add --adopt to repair it "
                f"as {ours['api']}'s"
            )
        if repair:
            check.write_source_mark(source_mark.mark(config, "intercom-conversation-verify --adopt"))
            return f"Loaded from: unmarked; adopted as {ours['api']}'s (--adopt)"
        return "Loaded from: unmarked (loaded without Meltano's `meltano run`): --repair needs --adopt"
    if found.get("api") != ours["api"] or found.get("token_sha256") != ours["token_sha256"]:
        what = "host" if found.get("api") != ours["api"] else "access token"
        raise Refused(
            f"{where} is loaded from {found.get('api')} by {found.get('extractor')} with another {what} than this "
            f"check's ({ours['api']}): these are not the job's settings, or not its table; nothing was compared"
        )
    return f"Loaded from: {found.get('api')} by {found.get('extractor')} (the same host and access token)"


@dataclass
class Named:
    """What an error line may name (the Intercom host) and must not show (the database password)."""

    secrets: set[str] = field(default_factory=set)
    host: str | None = None


def verify(args: argparse.Namespace, named: Named) -> int:
    settings = job_settings(args)
    named.secrets |= url_secrets(settings.database_url) | {
        str(settings.loader[k]) for k in ("password", "sqlalchemy_url") if settings.loader.get(k)
    }
    stream = _stream(dict(settings.tap or {}))
    named.host = stream.url_base
    config = stream.config
    check_schema(settings.schema)
    started = time.time()
    if args.through:
        cutoff, why = to_unix(args.through, "--through"), "--through"
    else:
        cutoff = int(started) - LAG_MARGIN_SECONDS
        why = f"the check's start, {to_iso(int(started))}, minus {LAG_MARGIN_SECONDS} s for Intercom's search index lag"
    start = to_unix(config["start_date"], "configuration: start_date") if config.get("start_date") else None
    window = (
        f"conversations updated from {to_iso(start) + ' (start_date)' if start else 'the beginning'} "
        f"to before {to_iso(cutoff)} ({why})"
    )
    check = TableCheck(libpq_url(settings.database_url), settings.schema)
    try:
        marked = check_mark(check, config, repair=args.repair, adopt=args.adopt)
        app = stream.app()
        header(stream, check, settings, app, window)
        print(marked, flush=True)
        logger.info(
            "Listing every conversation in Intercom: search, 150 per page, %d spans at once", stream.searches_in_flight
        )
        listed = check.load_listing(stream.listed(start, int(started) + 1))
        logger.info("Listed %s conversations in %.1f s", f"{listed:,}", time.time() - started)
        confirm_unlisted(stream, check, start)
        empty = check.newest_updated_at() is None
        hydrated = bool(config["include_conversation_parts"]) if empty else check.hydrated()
        parts = PartsCheck(stream, check) if hydrated and check.has_parts else None
        found = compare(check, parts, cutoff, start, hydrated=hydrated)
        report(found)
        where = f"{check.schema}.{TABLE}"
        if args.repair and found.total:
            repair(stream, check, parts, hydrated=hydrated, remove=config["deleted_conversations"] == "remove")
            found = compare(check, parts, cutoff, start, hydrated=hydrated)
            print("After the repair:")
            report(found)
        print(verdict(found, where), flush=True)
        logger.info("Verified in %.1f s", time.time() - started)
        return 1 if found.total else 0
    finally:
        check.close()


def compare(
    check: TableCheck, parts: PartsCheck | None, cutoff: int, start: int | None, *, hydrated: bool
) -> Differences:
    if parts is not None:
        parts.run(cutoff)
    elif hydrated:
        logger.info("%s is not in schema %r: its rows are not compared", PARTS, check.schema)
    return check.compare(cutoff, start, parts=hydrated)


class PartsCheck:
    """Part rows per conversation against Intercom's count (the search row's statistics); GET only where they disagree.

    A conversation is a candidate when its part rows are fewer than statistics.count_conversation_parts, capped at
    the 500 parts Intercom returns (rows the table keeps of older parts count too). Its GET then says which of the
    parts Intercom returns have no row: those are named, and --repair writes them.
    """

    def __init__(self, stream: Listing, check: TableCheck) -> None:
        self.stream, self.check = stream, check
        self.missing: dict[str, list[dict]] = {}  # conversation id -> the part records it lacks

    def run(self, cutoff: int) -> None:
        candidates = self.check.part_row_candidates(cutoff)
        self.missing = {}
        if not candidates:
            self.check.record_part_rows({})
            return
        logger.info("%s conversations have fewer part rows than Intercom counts: GET each", f"{len(candidates):,}")
        workers = int(self.stream.config["max_concurrent_requests"])
        fetched = ordered_map(
            self.stream.fetch_conversation,
            candidates,
            workers=workers,
            concurrency=self.stream.runtime.concurrency.target,
        )
        for conversation_id, got in fetched:
            if got is None:
                continue  # deleted since the listing: the next check sees it gone
            listed = (got.payload.get("conversation_parts") or {}).get("conversation_parts") or []
            records = [part_record(conversation_id, decoded_part(part)) for part in listed]
            stored = self.check.part_ids(conversation_id)
            lacking = [record for record in records if record["intercom_id"] not in stored]
            if lacking:
                self.missing[conversation_id] = lacking
        self.check.record_part_rows({cid: [r["intercom_id"] for r in rows] for cid, rows in self.missing.items()})


def confirm_unlisted(stream: Listing, check: TableCheck, start: int | None) -> None:
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


def repair(stream: Listing, check: TableCheck, parts_check: PartsCheck | None, *, hydrated: bool, remove: bool) -> None:
    """Write Intercom's current payload of every row that differs; apply the deletion rule to the rest."""
    ids = check.ids("missing", "stale", "parts")
    progress = Progress(logger, "repair", stream.runtime.governor)
    progress.expect(len(ids))
    if hydrated:  # as the tap writes them: GET /conversations/{id}, with its parts
        workers = int(stream.config["max_concurrent_requests"])
        fetched = ordered_map(
            stream.fetch_conversation, ids, workers=workers, concurrency=stream.runtime.concurrency.target
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
    if parts_check is not None:  # part rows missing beside a current conversation row
        for conversation_id, lacking in parts_check.missing.items():
            if conversation_id not in written:
                check.upsert_parts(lacking)
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
    """Console script: 0 when the table matches, 1 when it differs or is not this job's, 2 and one line on an error."""
    args = _parse_args(argv)
    _setup_logging()
    named = Named(secrets=url_secrets(args.database_url or ""))
    try:
        return verify(args, named)
    except Refused as err:
        print(f"{PROG}: refused: {scrub(str(err), named.secrets)}", file=sys.stderr)
        return 1
    except IntercomError as err:
        text = str(err) if not named.host or named.host in str(err) else f"Intercom at {named.host}: {err}"
        print(f"{PROG}: error: {scrub(text, named.secrets)}", file=sys.stderr)
        return 2
    except InputError as err:
        print(f"{PROG}: error: {scrub(str(err), named.secrets)}", file=sys.stderr)
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
