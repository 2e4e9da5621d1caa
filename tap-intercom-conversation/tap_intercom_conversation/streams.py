"""The conversations stream: what is fetched, in which order, and how it becomes a record."""

from __future__ import annotations

import time
import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_intercom_conversation.client import IntercomError, IntercomNotFound, IntercomStream
from tap_intercom_conversation.hydration import ordered_map
from tap_intercom_conversation.progress import Progress
from tap_intercom_conversation.records import as_record, checked_row, to_iso, to_unix
from tap_intercom_conversation.schema_files import STREAM_NAME, schema_path
from tap_intercom_conversation.search import SearchPage, SearchPaginator, search_body

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

MAX_PASSES = 5  # the first window, then catch-up windows for what changed while it ran
RECENT_LIMIT = 5000  # conversations remembered in STATE as already loaded at the bookmark's tail


class ConversationsStream(IntercomStream):
    """Every conversation, found by search in `updated_at` order and hydrated with its parts.

    A run covers windows of `updated_at` seconds: the first from the bookmark minus the lookback (or
    `start_date`, or the beginning) up to the moment the run started, then catch-up windows for what
    changed while the previous one ran, until one finds nothing new. The bookmark is the search
    position, never a hydrated `updated_at` (which can be newer), and never moves backwards while the
    lookback re-reads older rows, so emitted order and bookmark stay consistent for `is_sorted`.
    """

    name = STREAM_NAME
    path = "/conversations/search"
    http_method = "POST"
    primary_keys = ("intercom_id",)
    replication_key = "updated_at"
    is_sorted = True
    STATE_MSG_FREQUENCY = 150  # one STATE per page of search results: a killed run resumes near where it stopped
    schema = StreamSchema(SchemaDirectory(schema_path(f"{STREAM_NAME}.json").parent))

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._lower: int | None = None
        self._through = 0
        self._position = 0
        self._bookmark: int | None = None
        self._seen: dict[str, int] = {}
        self.paginator: SearchPaginator | None = None
        self.progress = Progress(self.logger, self.name)
        self.counts = {
            "emitted": 0, "hydrated": 0, "skipped_deleted": 0, "truncated": 0, "search_rows": 0, "passes": 0,
        }

    # Search requests

    def get_new_paginator(self) -> SearchPaginator:
        self.paginator = SearchPaginator(self._lower)
        self._restarts_counted = 0
        return self.paginator

    def prepare_request_payload(self, context: Context | None, next_page_token: SearchPage | None) -> dict:
        return search_body(next_page_token or SearchPage(self._lower), self._through)

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        body = response.json_body  # type: ignore[attr-defined]  # its envelope checked by validate_response
        rows = [checked_row(row) for row in body["conversations"]]
        if self.paginator is not None:
            if not self.paginator.accept(body):
                return
            if self.paginator.current_value.cursor is None and self.paginator.restarts == self._restarts_counted:
                total = body.get("total_count")
                self.progress.expect(total if isinstance(total, int) else 0)  # a new window, not a restart
            self._restarts_counted = self.paginator.restarts
        self.progress.page()
        yield from rows

    def _request_conversation(self, conversation_id: str) -> dict | None:
        """GET /conversations/{id}; None when it was deleted after the search found it."""
        prepared = self.build_prepared_request(
            method="GET", url=f"{self.url_base}/conversations/{conversation_id}", headers=self.http_headers
        )
        try:
            payload = self.send(prepared).json_body  # type: ignore[attr-defined]
        except IntercomNotFound:
            return None
        return checked_row(payload, conversation_id)

    # The sync

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._start_from_state(context)
        lookback = int(self.config["lookback_window_seconds"])
        start = to_unix(self.config["start_date"], "start_date") if self.config.get("start_date") else None
        lower = None if self._bookmark is None else self._bookmark - lookback
        if start is not None:
            lower = start if lower is None else max(lower, start)
        for _ in range(MAX_PASSES):
            self._lower, self._through = lower, int(time.time()) - 1
            self.counts["passes"] += 1
            emitted_before = self.counts["emitted"]
            yield from self._one_window(context)
            if self.paginator and self.paginator.stopped_on_repeated_cursor:
                break
            self._position = self._through  # the whole window is in: the bookmark may move to its end
            self._increment_bookmark(context)
            if self.counts["emitted"] == emitted_before:
                break
            lower = self._through
            # What changed while this window ran carries its second or later: the next window must end after it.
            time.sleep(max(0.0, int(time.time()) + 2 - time.time()))
        self._remember_recent(context, lookback)
        self.logger.info(self.progress.line())

    def _one_window(self, context: Context | None) -> t.Iterator[dict]:
        fresh_rows = (row for row in self.request_records(context) if self._first_sight(row))
        if self.config["include_conversation_parts"]:
            workers = int(self.config["max_concurrent_requests"])
            pairs = ordered_map(lambda row: self._request_conversation(row["id"]), fresh_rows, workers=workers)
        else:
            pairs = ((row, row) for row in fresh_rows)
        for row, payload in pairs:
            if payload is None:
                self.counts["skipped_deleted"] += 1
                self.logger.info("Conversation %s was deleted after the search found it; skipped", row["id"])
                continue
            if payload is not row:
                self.counts["hydrated"] += 1
                self._warn_if_truncated(payload)
            record = as_record(payload)
            self._seen[record["intercom_id"]] = max(int(payload["updated_at"]), int(row["updated_at"]))
            self._position = int(row["updated_at"])
            self.counts["emitted"] += 1
            yield record

    def _warn_if_truncated(self, payload: dict) -> None:
        """Intercom returns at most the 500 most recent parts; `data` stays as sent, the gap is reported."""
        parts = payload.get("conversation_parts")
        if not isinstance(parts, dict):
            return
        total, returned = parts.get("total_count"), len(parts.get("conversation_parts") or [])
        if isinstance(total, int) and total > returned:
            self.counts["truncated"] += 1
            self.logger.warning(
                "Conversation %s has %d parts; Intercom returned only the %d most recent",
                payload["id"], total, returned,
            )

    def _first_sight(self, row: dict) -> bool:
        """False for a row whose version (or a newer one) this run or the last one already emitted."""
        self.counts["search_rows"] += 1
        self.progress.done += 1
        conversation_id, updated_at = str(row["id"]), int(row["updated_at"])
        if self._seen.get(conversation_id, -1) >= updated_at:
            return False
        self._seen[conversation_id] = updated_at
        if len(self._seen) > 4 * RECENT_LIMIT:  # rows far behind the search position cannot come back
            horizon = self._position - int(self.config["lookback_window_seconds"])
            self._seen = {key: value for key, value in self._seen.items() if value >= horizon}
        return True

    # State

    def _start_from_state(self, context: Context | None) -> None:
        state = self.get_context_state(context)
        value = state.get("replication_key_value")
        self._bookmark = None if value is None else to_unix(value, "the state's bookmark")
        if self._bookmark is not None:
            state["replication_key_value"] = to_iso(self._bookmark)  # one format, so comparisons hold
        self._position = self._bookmark or 0
        recent = state.pop("recent_conversations", None) or {}  # kept out of every STATE but the last
        if not isinstance(recent, dict) or not all(isinstance(v, int) for v in recent.values()):
            raise IntercomError("state: recent_conversations is not a map of conversation id to updated_at")
        self._seen = {str(key): value for key, value in recent.items()}

    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        """Bookmark the search position of the record just emitted (see the class docstring)."""
        self._increment_bookmark(context)

    def _bookmark_now(self) -> int:
        """The search position reached, never before the bookmark the run started from."""
        return max(self._position, self._bookmark or 0)

    def _increment_bookmark(self, context: Context | None) -> None:
        self.state_manager.increment_state(
            {"updated_at": to_iso(self._bookmark_now())}, context=context, replication_key="updated_at"
        )

    def _remember_recent(self, context: Context | None, lookback: int) -> None:
        """What the next run's lookback may meet again and need not fetch twice."""
        state = self.get_context_state(context)
        horizon = self._bookmark_now() - lookback
        recent = sorted(((v, k) for k, v in self._seen.items() if v >= horizon), reverse=True)[:RECENT_LIMIT]
        state["recent_conversations"] = {key: value for value, key in recent}
