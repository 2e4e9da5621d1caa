"""How the search endpoint is asked and paged.

Intercom documents `>` and `<` for dates without saying whether they are strict, so every query is
written to be right under both readings: asking `updated_at > lower - 1 AND updated_at < through`
always returns every conversation updated in [lower, through - 1], perhaps also one second either side.

The cursor (`pages.next.starting_after`) is stateless: when a conversation changes between two page
requests, rows can shift, so one can be returned twice or skipped. A changed `total_count` is the sign
of that, and the paginator then starts a fresh query from the last `updated_at` it returned.
"""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass

from singer_sdk.pagination import BaseAPIPaginator
from typing_extensions import override

from tap_intercom_conversation.spans import SPAN_ROWS, SearchRows, Span, Split, split_span

if t.TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from tap_intercom_conversation.client import Answer

PER_PAGE = 150
logger = logging.getLogger("tap-intercom-conversation")


@dataclass(frozen=True)
class SearchPage:
    """Where the next search request starts: the window's first second and the cursor within it."""

    lower: int | None
    cursor: str | None = None


def search_body(page: SearchPage, through: int) -> dict:
    """The search request for conversations updated from page.lower up to through - 1."""
    filters: list[dict] = [{"field": "updated_at", "operator": "<", "value": through}]
    if page.lower is not None:
        filters.insert(0, {"field": "updated_at", "operator": ">", "value": page.lower - 1})
    pagination: dict = {"per_page": PER_PAGE}
    if page.cursor:
        pagination["starting_after"] = page.cursor
    return {
        "query": filters[0] if len(filters) == 1 else {"operator": "AND", "value": filters},
        "pagination": pagination,
        "sort": {"field": "updated_at", "order": "ascending"},
    }


class SearchPaginator(BaseAPIPaginator[SearchPage]):
    """Follows the cursor while the result set holds still; restarts from the last safe second if not.

    A page whose `total_count` differs from the query's first page was computed over a changed result
    set: an offset-like cursor may have skipped rows just before it. Such a page is dropped unread and
    a fresh query starts at the last second of the previous page, so nothing is skipped and the
    bookmark never passes a row that was not read.
    """

    MAX_RESTARTS = 100  # per window; past it, pages are taken as they come (and a warning says so)

    def __init__(self, lower: int | None) -> None:
        super().__init__(SearchPage(lower))
        self._expected_total: int | None = None
        self._safe_second: int | None = lower  # rows before this second were all read consistently
        self._restart_from: int | None = None
        self._cursors_seen: set[str] = set()
        self._page: dict = {}  # the body of the page accept() last read: where get_next finds the cursor
        self.restarts = 0
        self.stopped_on_repeated_cursor = False

    def accept(self, body: dict) -> bool:
        """Whether this page's rows may be used; False means it is dropped and the query restarts."""
        self._page = body
        rows = body.get("conversations") or []
        total = body.get("total_count")
        current = self.current_value
        shifted = current.cursor is not None and total != self._expected_total
        # Restarting at the query's own first second is allowed: within a second holding more than a page
        # (a bulk action) it is the only way back to a consistent read; MAX_RESTARTS bounds the repeats.
        can_restart = self._safe_second is not None
        if shifted and can_restart and self.restarts < self.MAX_RESTARTS:
            self.restarts += 1
            self._restart_from = self._safe_second
            logger.info(
                "Search results changed while paging (total_count %s -> %s); restarting from updated_at %d",
                self._expected_total,
                total,
                self._safe_second,
            )
            return False
        if shifted:
            logger.warning("Search results changed while paging and the search cannot restart; rows may shift")
        self._expected_total = total
        if rows:
            self._safe_second = max(int(row["updated_at"]) for row in rows)
        return True

    @override
    def get_next(self, response: requests.Response) -> SearchPage | None:
        if self._restart_from is not None:
            restart, self._restart_from = SearchPage(self._restart_from), None
            self._cursors_seen.clear()  # a fresh query may hand out the same cursors again
            return restart
        body = self._page
        cursor = ((body.get("pages") or {}).get("next") or {}).get("starting_after")
        if not body.get("conversations") or not cursor:
            return None
        if cursor in self._cursors_seen:
            self.stopped_on_repeated_cursor = True
            logger.warning(
                "Intercom returned a cursor it had already returned; stopping this search here rather than "
                "looping. The bookmark stays at the last conversation emitted, so the next run resumes there."
            )
            return None
        self._cursors_seen.add(cursor)
        return SearchPage(self.current_value.lower, cursor)


def search_span(
    span: Span,
    put: Callable[[object], None],
    *,
    post: Callable[[dict], Answer],
    may_split: Callable[[], bool],
) -> None:
    """Every row of one span, page after page (a span's thread); the rest handed back as spans if many.

    `post` sends one search body and returns its checked answer. The first page tells how many rows
    the span holds: past 2 * SPAN_ROWS (and when `may_split`), the seconds after the ones that page
    completes are split, and the page's last second is searched again with them.
    """
    paginator = SearchPaginator(span.lower)
    first = True
    while not paginator.finished:
        answer = post(search_body(paginator.current_value, span.through))
        body, sent_after = answer.body, answer.sent_after  # checked by decoded_search_answer
        rows = body["conversations"]
        if paginator.accept(body):
            rows = [row for row in rows if span.holds(int(row["updated_at"]))]
            last = max((int(row["updated_at"]) for row in rows), default=None)
            total = body.get("total_count") or 0  # a count or absent (checked_search_answer)
            splits = total > 2 * SPAN_ROWS and last is not None and may_split()
            if first and splits and last is not None and (span.lower is None or last > span.lower):
                complete = [row for row in rows if int(row["updated_at"]) < last]
                put(SearchRows(span, complete, total, first=True, sent_after=sent_after))
                put(Split(split_span(last, span.through, total - len(complete))))
                return
            put(SearchRows(span, rows, total, first=first, sent_after=sent_after))
            first = False
        paginator.advance(answer.response)  # the page is the body accept() read
    if paginator.stopped_on_repeated_cursor:
        put(SearchRows(span, [], 0, first=False, cut=True))
