"""The deletions stream: conversations deleted in Intercom, so the table stops showing them alive."""

from __future__ import annotations

import time
import typing as t

from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.pagination import PageNumberPaginator
from typing_extensions import override

from intercom_conversation_shared.schema_files import schema_path
from tap_intercom_conversation.client import IntercomStream
from tap_intercom_conversation.records import BadPayload, is_unix_seconds, to_iso

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

DELETION_STREAM = "intercom_conversation_v1_deletion"
FIRST_VERSION_WITH_DELETIONS = (2, 16)


def supports_deletions(api_version: str) -> bool:
    if api_version == "Unstable":
        return True
    major, minor = (int(part) for part in api_version.split("."))
    return (major, minor) >= FIRST_VERSION_WITH_DELETIONS


class _DeletedPages(PageNumberPaginator):
    """Page numbers, until the last page or until the stream has found every new deletion."""

    def __init__(self, stream: DeletedConversationsStream) -> None:
        super().__init__(1)
        self._stream = stream

    @override
    def has_more(self, response: requests.Response) -> bool:
        return self._stream.next_page and not self._stream.found_every_new_one


class DeletedConversationsStream(IntercomStream):
    """`GET /conversations/deleted` (API 2.16): id, deleted_at and metrics_retained of each deletion.

    The endpoint has no date filter and documents its order only as "ascending or descending", so the
    run does not trust any order. Deletions only accumulate: when `total_count` grew by N since the last
    run, and N deletions dated after that run's read have been seen, every new one has been found and
    paging stops (one request when nothing was deleted). Otherwise the whole list is read. Every
    deletion read is emitted (loading one twice changes nothing). The bookmark is that count and the
    second of the read.
    """

    name = DELETION_STREAM
    path = "/conversations/deleted"
    primary_keys = ("intercom_id",)
    replication_key = None
    schema = StreamSchema(SchemaDirectory(schema_path(f"{DELETION_STREAM}.json").parent))
    PER_PAGE = 60  # the endpoint's maximum

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.found_every_new_one = False
        self.emitted = 0
        self._total: int | None = None
        self._read_at: int | None = None
        self.next_page = False  # the last page read names a next one

    @override
    def get_new_paginator(self) -> _DeletedPages:
        return _DeletedPages(self)

    @override
    def get_url_params(self, context: Context | None, next_page_token: int | None) -> dict:
        return {"per_page": self.PER_PAGE, "order": "desc", "page": next_page_token or 1}

    @override
    def request_records(self, context: Context | None) -> t.Iterable[dict]:
        """The SDK's page loop, each page asked for through fetch: read as JSON, a broken body retried."""
        paginator = self.get_new_paginator()
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            while not paginator.finished:
                prepared = self.build_prepared_request(
                    method="GET",
                    url=self.get_url(context),
                    headers=self.http_headers,
                    params=self.get_url_params(context, paginator.current_value),
                )
                answer = self.fetch(prepared)
                request_counter.increment()
                rows = self.rows(answer.body)
                if not rows:
                    break
                yield from rows
                self.next_page = bool((answer.body.get("pages") or {}).get("next"))
                paginator.advance(answer.response)

    def rows(self, body: t.Any) -> list[dict]:
        """The deletions of one page, checked; the first page's count is the run's total."""
        rows = body.get("conversations") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not isinstance(body.get("total_count"), int):
            raise BadPayload("the deleted conversations answer has no `conversations` list or `total_count`")
        if self._total is None:
            self._total = body["total_count"]
            self._read_at = self.runtime.clock.floor()  # this answer's Date: Intercom's clock, as deleted_at is
        for row in rows:
            if not isinstance(row, dict) or not row.get("id") or not is_unix_seconds(row.get("deleted_at")):
                raise BadPayload(f"a deleted conversation without id or deleted_at: {str(row)[:120]!r}")
        return rows

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        if not supports_deletions(self.config["api_version"]):
            self.logger.warning(
                "api_version %s is older than 2.16, which lists deleted conversations: deletions are not "
                "replicated in this run",
                self.config["api_version"],
            )
            return
        state = self.get_context_state(context)
        stored_total, stored_read = state.get("deleted_total"), state.get("read_at")
        incremental = isinstance(stored_total, int) and isinstance(stored_read, int)
        known_total = stored_total if isinstance(stored_total, int) else 0
        last_read = stored_read if isinstance(stored_read, int) else 0
        read_at = int(time.time())  # only without a Date header: then this machine's clock is all there is
        remove_row = self.config["deleted_conversations"] == "remove"
        new_seen = 0
        for row in self.request_records(context):
            if incremental:
                if self._total is not None and self._total <= known_total:
                    self.found_every_new_one = True  # nothing was deleted since the last run
                    break
                new_seen += row["deleted_at"] > last_read
                self.found_every_new_one = new_seen >= (self._total or 0) - known_total
            self.emitted += 1
            yield {
                "intercom_id": str(row["id"]),
                "deleted_at": to_iso(row["deleted_at"]),
                "metrics_retained": row.get("metrics_retained"),
                "remove_row": remove_row,
            }
        if self._total is not None:
            state["deleted_total"], state["read_at"] = self._total, self._read_at or read_at
