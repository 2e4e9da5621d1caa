"""The conversations stream: what is fetched, in which order, and how it becomes a record."""

from __future__ import annotations

import time
import typing as t
from functools import cached_property

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_intercom_conversation.bodies import describe
from tap_intercom_conversation.client import IntercomStream
from tap_intercom_conversation.errors import IntercomError, IntercomNotFound
from tap_intercom_conversation.freshness import Fetched, complete_through, date_seconds
from tap_intercom_conversation.hydration import ordered_map
from tap_intercom_conversation.messages import QuickRecordMessages
from tap_intercom_conversation.progress import Progress
from tap_intercom_conversation.records import as_record, checked_row, to_iso, to_unix
from tap_intercom_conversation.schema_files import STREAM_NAME, schema_path
from tap_intercom_conversation.search import SearchPaginator, search_body
from tap_intercom_conversation.spans import SPAN_ROWS, SearchRows, Span, Split, ordered_pages, split_span

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

MAX_PASSES = 5  # the first window, then catch-up windows for what changed while it ran
RECENT_LIMIT = 5000  # conversations remembered in STATE as already loaded at the bookmark's tail


class ConversationsStream(QuickRecordMessages, IntercomStream):
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
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # as_record builds every column in its schema type
    STATE_MSG_FREQUENCY = 150  # one STATE per page of search results: a killed run resumes near where it stopped
    schema = StreamSchema(SchemaDirectory(schema_path(f"{STREAM_NAME}.json").parent))

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._lower: int | None = None
        self._through = 0
        self._position = 0
        self._bookmark: int | None = None
        self._seen: dict[str, int] = {}
        self._search_cut = False  # a search stopped early: the bookmark must not pass it
        self._first_date: int | None = None  # the Date of the window's first search answer
        self._emitting: dict | None = None  # the payload of the record being emitted
        self.progress = Progress(self.logger, self.name, self.runtime.governor)
        self.counts = {
            "emitted": 0, "hydrated": 0, "skipped_deleted": 0, "truncated": 0, "replaced": 0, "search_rows": 0,
            "passes": 0, "parts": 0,
        }

    # Search requests

    def _search_span(self, span: Span, put: t.Callable[[object], None]) -> None:
        """Every row of one span, page after page (a span's thread); the rest handed back as spans if many.

        Its first page tells how many rows the span holds: past 2 * SPAN_ROWS, the seconds after the
        ones that page completes are split, and the page's last second is searched again with them.
        """
        paginator = SearchPaginator(span.lower)
        first = True
        while not paginator.finished:
            prepared = self.build_prepared_request(
                method="POST", url=f"{self.url_base}{self.path}", headers=self.http_headers,
                json=search_body(paginator.current_value, span.through),
            )
            response = self.send(prepared)
            self._note_date(response.headers)
            body = response.json_body  # type: ignore[attr-defined]  # checked by validate_response
            rows = body["conversations"]
            if paginator.accept(body):
                rows = [row for row in rows if span.holds(int(row["updated_at"]))]
                last = max((int(row["updated_at"]) for row in rows), default=None)
                total = body.get("total_count") or 0  # a count or absent (checked_search_answer)
                splits = self._searches_in_flight > 1 and total > 2 * SPAN_ROWS and last is not None
                if first and splits and last is not None and (span.lower is None or last > span.lower):
                    complete = [row for row in rows if int(row["updated_at"]) < last]
                    put(SearchRows(span, complete, total, first=True, sent_after=response.sent_after))  # type: ignore[attr-defined]
                    put(Split(split_span(last, span.through, total - len(complete))))
                    return
                put(SearchRows(span, rows, total, first=first, sent_after=response.sent_after))  # type: ignore[attr-defined]
                first = False
            paginator.advance(response)
        if paginator.stopped_on_repeated_cursor:
            put(SearchRows(span, [], 0, first=False, cut=True))

    @property
    def _searches_in_flight(self) -> int:
        """Spans searched at once, following latency; when hydrating, usually 1 (GETs are the bottleneck)."""
        hydrating = bool(self.config["include_conversation_parts"])
        return min(self.runtime.concurrency.searches(hydrating=hydrating), int(self.config["max_concurrent_requests"]))

    def _search_rows(self) -> t.Iterator[Fetched]:
        """The window's rows in `updated_at` order, its spans searched concurrently when nothing is hydrated."""
        root = Span(self._lower, self._through)
        for page in ordered_pages(root, self._search_span, workers=lambda: self._searches_in_flight):
            assert isinstance(page, SearchRows)
            if page.cut:
                self._search_cut = True
                return
            if page.first and page.span is root:
                self.progress.expect(page.total)
            self.progress.page()
            for row in page.rows:
                yield Fetched(row, page.sent_after)

    def _request_conversation(self, conversation_id: str) -> Fetched | None:
        """GET /conversations/{id}; None when it was deleted after the search found it."""
        prepared = self.build_prepared_request(
            method="GET", url=f"{self.url_base}/conversations/{conversation_id}", headers=self.http_headers
        )
        try:
            response = self.send(prepared)
        except IntercomNotFound:
            return None
        return Fetched(checked_row(response.json_body, conversation_id), response.sent_after)  # type: ignore[attr-defined]

    # The sync

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        self._start_from_state(context)
        lookback = int(self.config["lookback_window_seconds"])
        start = to_unix(self.config["start_date"], "start_date") if self.config.get("start_date") else None
        lower = None if self._bookmark is None else self._bookmark - lookback
        if start is not None:
            lower = start if lower is None else max(lower, start)
        started = time.time()
        through = int(started) - 1  # Intercom's clock is not known before its first answer: see _window_end
        for _ in range(MAX_PASSES):
            self._lower, self._through, self._first_date = lower, through, None
            self.counts["passes"] += 1
            emitted_before = self.counts["emitted"]
            yield from self._one_window(context)
            if self._search_cut:
                break
            covered, short = self._window_end(started)
            self._position = covered  # the whole window is in: the bookmark may move to its end
            self._increment_bookmark(context)
            self._write_state_message()  # before the catch-up waits: the target gets every record and their STATE
            if self.counts["emitted"] == emitted_before and not short:
                break
            lower, through = covered if lower is None else max(covered, lower), self._catch_up_through()
            if through <= lower:  # Intercom's clock is behind ours: what changed meanwhile is inside that window
                break
        self._remember_recent(context, lookback)
        self.logger.info(self.progress.line())
        self.logger.info(self.runtime.concurrency.summary(int(self.config["max_concurrent_requests"])))

    def _window_end(self, started: float) -> tuple[int, bool]:
        """Where the window just read ends by Intercom's clock, and whether a catch-up window must follow.

        The first window ends by this machine's clock, before any answer told Intercom's. If Intercom's is
        behind, that end lies in Intercom's future, and only the seconds before the window's first answer
        (its Date) are known complete: the bookmark stops there and a catch-up window reads on. If
        Intercom's is ahead, the window ended before the second the run started in at Intercom, and a
        catch-up window reads the changes made just before the run. Catch-up windows end by Intercom's
        clock already, so neither applies to them.
        """
        covered = self._through if self._first_date is None else min(self._through, self._first_date)
        offset = self.runtime.clock.offset()
        ahead = offset is not None and self._through < int(started + offset) - 1
        return covered, covered < self._through or (self.counts["passes"] == 1 and ahead)

    def _note_date(self, headers: t.Mapping[str, str]) -> None:
        """The earliest `Date` among the window's search answers (the first, unless threads race)."""
        second = date_seconds(headers.get("Date"))
        if second is not None and (self._first_date is None or second < self._first_date):
            self._first_date = second

    def _catch_up_through(self) -> int:
        """Where the next window ends: after every second in which the last one read anything.

        Intercom's clock decides, from the `Date` of its latest answer (the reads it answered happened
        in that second or before): once one more second has passed since that answer arrived, that
        second is over at Intercom. Without a `Date`, this machine's clock, with a second's margin.
        """
        latest = self.runtime.clock.latest()
        if latest is None:
            time.sleep(max(0.0, int(self.runtime.clock.answered_at) + 2 - time.time()))
            return int(time.time()) - 1
        second, first_seen = latest
        time.sleep(max(0.0, first_seen + 1 - time.monotonic()))
        return second + 1

    def _one_window(self, context: Context | None) -> t.Iterator[dict]:
        found = (row for row in self._search_rows() if self._first_sight(row.payload))
        if self.config["include_conversation_parts"]:
            workers = int(self.config["max_concurrent_requests"])  # the upper bound; below it, the latency decides
            pairs = ordered_map(
                lambda row: self._request_conversation(row.payload["id"]), found, workers=workers,
                concurrency=self.runtime.concurrency.target,
            )
        else:
            pairs = ((row, row) for row in found)
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
            newest = max(int(payload["updated_at"]), int(row["updated_at"]))
            self._seen[record["intercom_id"]] = complete_through(newest, fetched.sent_after)
            self._position = int(row["updated_at"])
            self.counts["emitted"] += 1
            yield record

    # The conversation parts (parts.py): written from the payload, right before the conversation

    @cached_property
    def _parts_selected(self) -> bool:
        return bool(self.config["include_conversation_parts"]) and any(c.selected for c in self.child_streams)

    def get_child_context(self, record: dict, context: Context | None) -> Context | None:
        """The hydrated payload, for its parts; None (nothing to do) without parts or when they are deselected.

        `data` is the answer's own bytes: the payload the record was made of has the parts (bodies.py).
        """
        payload = self._emitting
        if not self._parts_selected or payload is None or payload.get("conversation_parts") is None:
            return None
        return {"conversation": payload}

    def _sync_children(self, child_context: Context | None) -> None:
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
                payload["id"], total, returned,
            )

    def _warn_if_replaced(self, payload: dict) -> None:
        """One warning per conversation in which what PostgreSQL cannot store was replaced (bodies.py)."""
        replaced = getattr(payload, "replaced", None)
        if replaced:
            self.counts["replaced"] += 1
            self.logger.warning(
                "Conversation %s: replaced %s with U+FFFD (PostgreSQL cannot store them)",
                payload["id"], describe(replaced),
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
