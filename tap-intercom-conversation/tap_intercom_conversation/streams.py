"""The conversations stream: what is fetched, in which order, and how it becomes a record."""

from __future__ import annotations

import time
import typing as t
from functools import cached_property

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.helpers.conform import TypeConformanceLevel
from typing_extensions import override

from intercom_conversation_shared.schema_files import STREAM_NAME, schema_path
from intercom_conversation_shared.sdk_adapter import StreamAdapter
from tap_intercom_conversation.bodies import describe
from tap_intercom_conversation.client import Answer, IntercomStream
from tap_intercom_conversation.errors import IntercomError, IntercomNotFound
from tap_intercom_conversation.freshness import Fetched, complete_through, date_seconds
from tap_intercom_conversation.hydration import ordered_map
from tap_intercom_conversation.messages import RawData
from tap_intercom_conversation.progress import Progress
from tap_intercom_conversation.records import (
    as_record,
    checked_row,
    decoded_conversation,
    decoded_search_answer,
    to_iso,
    to_unix,
)
from tap_intercom_conversation.search import PER_PAGE, search_span
from tap_intercom_conversation.spans import SearchRows, Span, ordered_pages
from tap_intercom_conversation.window import MAX_PASSES, Windows

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_intercom_conversation.records import SearchRow


class ConversationsStream(RawData, StreamAdapter, IntercomStream):
    """Every conversation, found by search in `updated_at` order and hydrated with its parts.

    A run reads windows of `updated_at` until one finds nothing new; window.py holds the rules (bounds,
    catch-up, bookmark, conversations already seen), so emitted order and bookmark stay consistent
    for `is_sorted`. This class fetches and emits.
    """

    name = STREAM_NAME
    path = "/conversations/search"
    http_method = "POST"
    primary_keys = ("intercom_id",)
    replication_key = "updated_at"
    is_sorted = True
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # as_record builds every column in its schema type
    STATE_MSG_FREQUENCY = 150  # one STATE per page of search results: a killed run resumes near where it stopped
    schema = StreamSchema(SchemaDirectory(schema_path(f"{STREAM_NAME}.json").parent))

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.windows = Windows(bookmark=None, lookback=0, start=None)  # made from the state in get_records
        self._search_cut = False  # a search stopped early: the bookmark must not pass it
        self._emitting: dict | None = None  # the payload of the record being emitted
        self._bookmarked: int | None = None  # the bookmark last handed to the SDK's state (see _increment_bookmark)
        self.progress = Progress(self.logger, self.name, self.runtime.governor)
        self.counts = {
            "emitted": 0,
            "hydrated": 0,
            "skipped_deleted": 0,
            "truncated": 0,
            "replaced": 0,
            "search_rows": 0,
            "passes": 0,
            "parts": 0,
        }

    # The search API: the sync's, and verify's (intercom_conversation_verify reads Intercom only through it)

    def search_pages(
        self, lower: int | None, through: int, *, workers: int | t.Callable[[], int]
    ) -> t.Iterator[SearchRows]:
        """The one search-page loop: every page of `updated_at` in [lower, through), in that order.

        `workers` spans are searched at once (a callable is asked again at each page); a span holding many
        rows is split while more than one may run. A page with `cut` set (a repeated cursor) is the last.
        """

        def in_flight() -> int:
            return workers() if callable(workers) else workers

        def search(span: Span, put: t.Callable[[object], None]) -> None:
            search_span(span, put, post=self._post_search, may_split=lambda: in_flight() > 1)

        root = Span(lower, through)
        for page in ordered_pages(root, search, workers=workers):
            assert isinstance(page, SearchRows)
            if page.first and page.span is root and not page.cut:
                self.progress.expect(page.total)
            yield page
            if page.cut:
                return

    def search_by_ids(self, ids: t.Sequence[str], *, workers: int) -> t.Iterator[SearchRow]:
        """The search rows of these conversations (those Intercom still has), searched 150 ids at a time."""
        chunks = [list(ids[i : i + PER_PAGE]) for i in range(0, len(ids), PER_PAGE)]
        for _, rows in ordered_map(self._search_ids, chunks, workers=workers):
            yield from rows

    def fetch_conversation(self, conversation_id: str) -> Fetched | None:
        """GET /conversations/{id}; None when it was deleted after the search found it."""
        prepared = self.build_prepared_request(
            method="GET", url=f"{self.url_base}/conversations/{conversation_id}", headers=self.http_headers
        )
        try:
            answer = self.fetch(prepared, decoded_conversation)
        except IntercomNotFound:
            return None
        return Fetched(checked_row(answer.body, conversation_id), answer.sent_after)

    def _post_search(self, body: dict) -> Answer:
        prepared = self.build_prepared_request(
            method="POST",
            url=f"{self.url_base}{self.path}",
            headers=self.http_headers,
            json=body,
        )
        answer = self.fetch(prepared, decoded_search_answer)
        self.windows.note_date(date_seconds(answer.response.headers.get("Date")))
        return answer

    def _search_ids(self, ids: list[str]) -> list[SearchRow]:
        rows: list[SearchRow] = []
        cursor = None
        for _ in range(len(ids) // PER_PAGE + 2):  # one page holds them all; a cursor is followed once at most
            pagination: dict = {"per_page": PER_PAGE}
            if cursor:
                pagination["starting_after"] = cursor
            prepared = self.build_prepared_request(
                method="POST",
                url=f"{self.url_base}{self.path}",
                headers=self.http_headers,
                json={"query": {"field": "id", "operator": "IN", "value": ids}, "pagination": pagination},
            )
            body = self.fetch(prepared, decoded_search_answer).body
            rows += [row for row in body["conversations"] if str(row["id"]) in ids]
            cursor = ((body.get("pages") or {}).get("next") or {}).get("starting_after")
            if not cursor or not body["conversations"]:
                break
        return rows

    @property
    def _searches_in_flight(self) -> int:
        """Spans searched at once, following latency; when hydrating, usually 1 (GETs are the bottleneck)."""
        hydrating = bool(self.config["include_conversation_parts"])
        return min(self.runtime.concurrency.searches(hydrating=hydrating), int(self.config["max_concurrent_requests"]))

    def _search_rows(self) -> t.Iterator[Fetched]:
        """The window's rows in `updated_at` order, its spans searched concurrently when nothing is hydrated."""
        pages = self.search_pages(self.windows.lower, self.windows.through, workers=lambda: self._searches_in_flight)
        for page in pages:
            if page.cut:
                self._search_cut = True
                return
            self.progress.page()
            for row in page.rows:
                yield Fetched(row, page.sent_after)

    # The sync

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        windows = self.windows = self._windows_from_state(context)
        self._bookmarked = None  # the state's value was just rewritten from the state given
        started = time.time()
        lower, through = windows.first(started)
        for _ in range(MAX_PASSES):
            windows.open(lower, through)
            self.counts["passes"] += 1
            emitted_before = self.counts["emitted"]
            yield from self._one_window(context)
            if self._search_cut:
                break
            covered, short = windows.end(started, self.runtime.clock.offset())
            self._increment_bookmark(context)
            self.write_state_message()  # before the catch-up waits: the target gets every record and their STATE
            if self.counts["emitted"] == emitted_before and not short:
                break
            lower, through = windows.next_lower(covered), windows.catch_up_through(self.runtime.clock)
            if through <= lower:  # Intercom's clock is behind ours: what changed meanwhile is inside that window
                break
        self.get_context_state(context)["recent_conversations"] = windows.recent()
        self.logger.info(self.progress.line())
        self.logger.info(self.runtime.concurrency.summary(int(self.config["max_concurrent_requests"])))

    def _one_window(self, context: Context | None) -> t.Iterator[dict]:
        pairs: t.Iterable[tuple[Fetched, Fetched | None]]
        if self.config["include_conversation_parts"]:
            workers = int(self.config["max_concurrent_requests"])  # the upper bound; below it, the latency decides
            pairs = ordered_map(
                lambda row: self.fetch_conversation(row.payload["id"]),
                (row for row in self._search_rows() if self._first_sight(row.payload)),
                workers=workers,
                concurrency=self.runtime.concurrency.target,
            )
        else:  # each row is its own record: one generator between the search and the loop, run once a record
            pairs = ((row, row) for row in self._search_rows() if self._first_sight(row.payload))
        for (row, _), fetched in pairs:
            if fetched is None:
                self.counts["skipped_deleted"] += 1
                self.logger.info("Conversation %s was deleted after the search found it; skipped", row["id"])
                continue
            payload = fetched.payload
            if payload is not row:
                self.counts["hydrated"] += 1
                self._warn_if_truncated(payload)
            self._warn_if_replaced(payload)
            record = as_record(payload)
            self._emitting = payload  # for get_child_context: the record's data is the answer's bytes
            searched = int(row["updated_at"])
            newest = searched if payload is row else max(int(payload["updated_at"]), searched)
            complete = complete_through(newest, fetched.sent_after)
            self.windows.emitted(record["intercom_id"], complete, searched)
            self.counts["emitted"] += 1
            yield record

    # The conversation parts (parts.py): written from the payload, right before the conversation

    @cached_property
    def _parts_selected(self) -> bool:
        return bool(self.config["include_conversation_parts"]) and any(c.selected for c in self.child_streams)

    @override
    def get_child_context(self, record: dict, context: Context | None) -> Context | None:
        """The hydrated payload, for its parts; None (nothing to do) without parts or when they are deselected.

        `data` is the answer's own bytes: the payload the record was made of has the parts (bodies.py).
        """
        payload = self._emitting
        if not self._parts_selected or payload is None or payload.get("conversation_parts") is None:
            return None
        return {"conversation": payload}

    @override
    def generate_child_contexts(self, record: dict, context: Context | None) -> t.Iterable[Context | None]:
        """The one child context, or none at all (search-only, parts deselected): the SDK then asks no stream
        map's filter and syncs no children for the record, where sync_children would do nothing."""
        child_context = self.get_child_context(record, context)
        return () if child_context is None else (child_context,)

    @override
    def sync_children(self, child_context: Context | None) -> None:
        """Each selected child writes this conversation's records at once (see parts.py), not a sync per context."""
        if child_context is None:
            return
        for child in self.child_streams:
            if child.selected:
                self.counts["parts"] += child.write_parts(child_context)  # type: ignore[attr-defined]

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
                payload["id"],
                total,
                returned,
            )

    def _warn_if_replaced(self, payload: dict) -> None:
        """One warning per conversation in which what PostgreSQL cannot store was replaced (bodies.py)."""
        replaced = getattr(payload, "replaced", None)
        if replaced:
            self.counts["replaced"] += 1
            self.logger.warning(
                "Conversation %s: replaced %s with U+FFFD (PostgreSQL cannot store them)",
                payload["id"],
                describe(replaced),
            )

    def _first_sight(self, row: dict) -> bool:
        self.counts["search_rows"] += 1
        self.progress.done += 1
        return self.windows.first_sight(str(row["id"]), int(row["updated_at"]))

    # State

    def _windows_from_state(self, context: Context | None) -> Windows:
        state = self.get_context_state(context)
        value = state.get("replication_key_value")
        bookmark = None if value is None else to_unix(value, "the state's bookmark")
        if bookmark is not None:
            state["replication_key_value"] = to_iso(bookmark)  # one format, so comparisons hold
        recent = state.pop("recent_conversations", None) or {}  # kept out of every STATE but the last
        if not isinstance(recent, dict) or not all(isinstance(v, int) for v in recent.values()):
            raise IntercomError("state: recent_conversations is not a map of conversation id to updated_at")
        start = to_unix(self.config["start_date"], "start_date") if self.config.get("start_date") else None
        return Windows(
            bookmark=bookmark,
            lookback=int(self.config["lookback_window_seconds"]),
            start=start,
            recent={str(key): value for key, value in recent.items()},
        )

    @override
    def advance_bookmark(self, latest_record: dict, context: Context | None) -> None:
        """Bookmark the search position of the record just emitted (see the class docstring)."""
        self._increment_bookmark(context)

    def _increment_bookmark(self, context: Context | None) -> None:
        """The SDK's bookmark := the search position, asked of the SDK only when the position has moved.

        Records that share a second (a bulk action, a busy workspace) leave the bookmark as it is. For a sorted,
        unpartitioned stream the SDK's increment_state only sets `replication_key` and
        `replication_key_value`, raising if the value goes back; with the value it wrote last it changes
        nothing and cannot raise, so that call is skipped and the state (and every STATE) stays the same.
        """
        bookmark = self.windows.bookmark_now()
        if bookmark == self._bookmarked and context is None:
            return
        self.state_manager.increment_state(
            {"updated_at": to_iso(bookmark)}, context=context, replication_key="updated_at"
        )
        self._bookmarked = bookmark if context is None else None
