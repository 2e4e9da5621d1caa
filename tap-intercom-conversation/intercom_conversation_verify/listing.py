"""Every conversation Intercom has, as (id, updated_at, parts count): the tap's search, for the verify command.

The tap's own search is reused as it is, through the conversations stream's public search API
(search_pages, search_by_ids, fetch_conversation): the same spans, paginator and restarts, the same client
(rate governor, retries, errors). Only the spans differ from a hydrating run: verify reads no parts, so its
spans are always searched concurrently (up to 16), one request per 150 conversations. Looking conversations
up by id (to confirm that a row is gone, or to repair a search-only table) is a search too, with
`id IN [...]`, never a GET per conversation.
"""

from __future__ import annotations

import typing as t

import msgspec

from tap_intercom_conversation.concurrency import SEARCHES_IN_FLIGHT
from tap_intercom_conversation.errors import IntercomError, IntercomRefused
from tap_intercom_conversation.progress import Progress

if t.TYPE_CHECKING:
    from tap_intercom_conversation.freshness import Fetched
    from tap_intercom_conversation.records import SearchRow
    from tap_intercom_conversation.streams import ConversationsStream

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


class Listing:
    """What verify reads from Intercom, through the tap's conversations stream and its public search API.

    Only the spans differ from a hydrating run: verify reads no parts, so its spans are always searched
    concurrently (up to 16).
    """

    def __init__(self, stream: ConversationsStream) -> None:
        self.stream = stream
        self.config, self.runtime, self.url_base = stream.config, stream.runtime, stream.url_base
        self.searches_in_flight = min(SEARCHES_IN_FLIGHT, int(stream.config["max_concurrent_requests"]))
        self.progress = stream.progress = Progress(stream.logger, "verify listing", stream.runtime.governor)

    def listed(self, lower: int | None, through: int) -> t.Iterator[Listed]:
        """Every conversation updated in [lower, through), in updated_at order, with progress lines."""
        for page in self.stream.search_pages(lower, through, workers=self.searches_in_flight):
            if page.cut:
                raise IntercomError(
                    "the search stopped early (Intercom returned a cursor it had already returned): "
                    "the listing is incomplete, so nothing can be verified; run it again"
                )
            self.progress.done += len(page.rows)
            self.progress.page()
            for row in page.rows:
                yield str(row["id"]), int(row["updated_at"]), parts_count(row)  # type: ignore[arg-type]  # rows of a search answer
        self.stream.logger.info(self.progress.line())

    def app(self) -> dict | None:
        """The workspace the token belongs to (GET /me: the admin with its app), None when Intercom does not tell."""
        stream = self.stream
        prepared = stream.build_prepared_request(method="GET", url=f"{self.url_base}/me", headers=stream.http_headers)
        try:
            body = stream.fetch(prepared).body
        except IntercomRefused:  # 403 (a token without that permission) or 404: the check goes on without it
            return None
        app = body.get("app") if isinstance(body, dict) else None
        return app if isinstance(app, dict) else None

    def by_ids(self, ids: t.Sequence[str]) -> t.Iterator[SearchRow]:
        """The search rows of these conversations (those Intercom still has), searched 150 ids at a time."""
        return self.stream.search_by_ids(ids, workers=self.searches_in_flight)

    def fetch_conversation(self, conversation_id: str) -> Fetched | None:
        """GET /conversations/{id} with its parts; None when it was deleted meanwhile."""
        return self.stream.fetch_conversation(conversation_id)
