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

if t.TYPE_CHECKING:
    import requests

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
    """Follows the cursor; restarts from the last seen second when the result set changed under it."""

    def __init__(self, lower: int | None) -> None:
        super().__init__(SearchPage(lower))
        self._total_at_first_page: int | None = None
        self._cursors_seen: set[str] = set()
        self.restarts = 0
        self.stopped_on_repeated_cursor = False

    def get_next(self, response: requests.Response) -> SearchPage | None:
        body = response.json_body  # type: ignore[attr-defined]
        rows = body.get("conversations") or []
        cursor = ((body.get("pages") or {}).get("next") or {}).get("starting_after")
        if not rows or not cursor:
            return None
        current = self.current_value
        total = body.get("total_count")
        last_second = max(int(row["updated_at"]) for row in rows)
        if current.cursor is None:
            self._total_at_first_page = total
        elif total != self._total_at_first_page and (current.lower is None or last_second > current.lower):
            self.restarts += 1
            self._cursors_seen.clear()  # a fresh query may hand out the same cursors again
            logger.info(
                "Search results changed while paging (total_count %s -> %s); restarting from updated_at %d",
                self._total_at_first_page, total, last_second,
            )
            return SearchPage(last_second)
        if cursor in self._cursors_seen:
            self.stopped_on_repeated_cursor = True
            logger.warning(
                "Intercom returned a cursor it had already returned; stopping this search here rather than "
                "looping. The bookmark stays at the last conversation emitted, so the next run resumes there."
            )
            return None
        self._cursors_seen.add(cursor)
        return SearchPage(current.lower, cursor)
