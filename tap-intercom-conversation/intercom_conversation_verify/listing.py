"""Every conversation Intercom has, as (id, updated_at, parts count): the tap's search, for the verify command.

The tap's own search is reused as it is: the same spans searched at once, the same paginator and
restarts, the same client (rate governor, retries, errors). Only the spans differ from a hydrating
run: verify reads no parts, so its spans are always searched concurrently (up to 16), one request per
150 conversations. Looking conversations up by id (to confirm that a row is gone, or to repair a
search-only table) is a search too, with `id IN [...]`, never a GET per conversation.
"""

from __future__ import annotations

import typing as t

import msgspec
from typing_extensions import override

from tap_intercom_conversation.concurrency import SEARCHES_IN_FLIGHT
from tap_intercom_conversation.errors import IntercomError, IntercomRefused
from tap_intercom_conversation.hydration import ordered_map
from tap_intercom_conversation.progress import Progress
from tap_intercom_conversation.search import PER_PAGE
from tap_intercom_conversation.spans import SearchRows, Span, ordered_pages
from tap_intercom_conversation.streams import ConversationsStream

if t.TYPE_CHECKING:
    from tap_intercom_conversation.records import SearchRow

Listed = tuple[str, int, "int | None"]  # intercom_id, updated_at, statistics.count_conversation_parts


class _Statistics(msgspec.Struct):
    """The one field of a search row that verify reads beside the columns; the decoder skips the rest."""

    statistics: object = None


_STATISTICS = msgspec.json.Decoder(_Statistics)


def parts_count(row: SearchRow) -> int | None:
    """statistics.count_conversation_parts of a search row, None when absent or not a count."""
    try:
        statistics = _STATISTICS.decode(row.raw).statistics
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    count = statistics.get("count_conversation_parts") if isinstance(statistics, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


class ListingStream(ConversationsStream):
    """The conversations stream's search, its spans searched at once even when the tap hydrates."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = Progress(self.logger, "verify listing", self.runtime.governor)

    @property
    @override
    def _searches_in_flight(self) -> int:
        return min(SEARCHES_IN_FLIGHT, int(self.config["max_concurrent_requests"]))

    def listed(self, lower: int | None, through: int) -> t.Iterator[Listed]:
        """Every conversation updated in [lower, through), in updated_at order, with progress lines."""
        root = Span(lower, through)
        for page in ordered_pages(root, self._search_span, workers=self._searches_in_flight):
            assert isinstance(page, SearchRows)
            if page.cut:
                raise IntercomError(
                    "the search stopped early (Intercom returned a cursor it had already returned): "
                    "the listing is incomplete, so nothing can be verified; run it again"
                )
            if page.first and page.span is root:
                self.progress.expect(page.total)
            self.progress.done += len(page.rows)
            self.progress.page()
            for row in page.rows:
                yield str(row["id"]), int(row["updated_at"]), parts_count(row)  # type: ignore[arg-type]  # rows of a search answer
        self.logger.info(self.progress.line())

    def app(self) -> dict | None:
        """The workspace the token belongs to (GET /me: the admin with its app), None when Intercom does not tell."""
        prepared = self.build_prepared_request(method="GET", url=f"{self.url_base}/me", headers=self.http_headers)
        try:
            body = self.send(prepared).json_body  # type: ignore[attr-defined]  # checked by validate_response
        except IntercomRefused:  # 403 (a token without that permission) or 404: the check goes on without it
            return None
        app = body.get("app") if isinstance(body, dict) else None
        return app if isinstance(app, dict) else None

    def by_ids(self, ids: t.Sequence[str]) -> t.Iterator[SearchRow]:
        """The search rows of these conversations (those Intercom still has), searched 150 ids at a time."""
        chunks = [list(ids[i : i + PER_PAGE]) for i in range(0, len(ids), PER_PAGE)]
        for _, rows in ordered_map(self._search_ids, chunks, workers=self._searches_in_flight):
            yield from rows

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
            body = self.send(prepared).json_body  # type: ignore[attr-defined]  # checked by validate_response
            rows += [row for row in body["conversations"] if str(row["id"]) in ids]
            cursor = ((body.get("pages") or {}).get("next") or {}).get("starting_after")
            if not cursor or not body["conversations"]:
                break
        return rows
