"""How an Intercom conversation payload becomes a row of intercom_conversation_v1.

Payloads are checked, never coerced: a conversation without `id` or `updated_at`, or with a column
field of the wrong type, stops the run with an error naming it rather than loading a wrong row.
The one documented coercion: an `id` sent as a JSON number becomes the same digits as text in
`intercom_id` (Intercom documents ids as strings of digits); `data` keeps it as sent.

A conversation's `data` is its own bytes from the answer (msgspec.Raw: a search row, or the whole body
of GET /conversations/{id}), written into the record without being decoded and encoded again: in a
search-only backfill that was most of the tap's CPU. Only the column fields (and the parts' count) are
decoded, so a number a float cannot hold (1e400, 40 digits) stays in `data` exactly as sent. What
PostgreSQL cannot store is replaced first (bodies.py); `replaced` says what, for the run's warning.
"""

from __future__ import annotations

import datetime as dt
import re

import msgspec

from intercom_conversation_shared.settings import show
from tap_intercom_conversation.bodies import Readable, decoded, kinds, plain
from tap_intercom_conversation.errors import IntercomError

UTC = dt.timezone.utc
_TEXT_COLUMNS = ("title", "state")
_BOOLEAN_COLUMNS = ("open", "read")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # also safe as a URL path segment
MAX_UNIX_SECONDS = 32503680000  # 3000-01-01: anything later is milliseconds or garbage


class BadPayload(IntercomError):
    """Intercom sent something that is not a conversation as documented."""


_DAY_SECONDS = 86400
_DAY_LIMIT = 4096  # days remembered (11 years of history); then forgotten and learnt again
_DAYS: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DD"
_HOURS_MINUTES = tuple(f"T{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
_SECONDS_UTC = tuple(f"{second:02d}+00:00" for second in range(60))


def to_iso(unix_seconds: int) -> str:
    """The UTC date-time of `unix_seconds`, as `datetime.fromtimestamp(s, tz=UTC).isoformat()` writes it.

    Two to three times a record (its created_at, updated_at, the bookmark): the date of a day is made once,
    the time of day is looked up, five times less CPU than asking datetime each time. The date comes from
    datetime itself, so a second outside its years (1-9999) fails as datetime fails.
    """
    days, second = divmod(unix_seconds, _DAY_SECONDS)
    day = _DAYS.get(days)
    if day is None:
        if len(_DAYS) >= _DAY_LIMIT:
            _DAYS.clear()
        day = _DAYS[days] = dt.datetime.fromtimestamp(days * _DAY_SECONDS, tz=UTC).isoformat()[:10]
    minute, second = divmod(second, 60)
    return day + _HOURS_MINUTES[minute] + _SECONDS_UTC[second]


def to_unix(value: object, what: str) -> int:
    """Seconds since the epoch from an ISO 8601 date-time (naive means UTC) or a date."""
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            pass
        else:
            return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
    msg = f"{what} {show(value)} is not an ISO 8601 date-time (e.g. 2024-01-31T00:00:00Z)"
    raise IntercomError(msg)


def is_unix_seconds(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_UNIX_SECONDS


def checked_row(payload: object, expected_id: str | None = None) -> dict:
    """The payload itself, once it is known to have what a row needs.

    expected_id: the id that was asked for (GET /conversations/{id}); the payload must be that conversation.
    """
    if not isinstance(payload, dict):
        raise BadPayload(f"Intercom sent a conversation that is not an object: {show(payload)}")
    conversation_id = payload.get("id")
    if conversation_id is None or conversation_id == "":
        raise BadPayload(f"Intercom sent a conversation without an id (updated_at={show(payload.get('updated_at'))})")
    if (
        not isinstance(conversation_id, str | int)
        or isinstance(conversation_id, bool)
        or not _ID.match(str(conversation_id))
    ):
        raise BadPayload(f"Intercom sent a conversation whose id is not an id: {show(conversation_id)}")
    if expected_id is not None and str(conversation_id) != str(expected_id):
        raise BadPayload(f"conversation {expected_id}: Intercom answered with conversation {conversation_id} instead")
    if "updated_at" not in payload or payload["updated_at"] is None:
        raise BadPayload(f"conversation {conversation_id}: updated_at is missing")
    if not is_unix_seconds(payload.get("updated_at")):
        raise BadPayload(
            f"conversation {conversation_id}: updated_at {show(payload.get('updated_at'))} is not unix seconds"
        )
    created_at = payload.get("created_at")
    if created_at is not None and not is_unix_seconds(created_at):
        raise BadPayload(f"conversation {conversation_id}: created_at {show(created_at)} is not unix seconds")
    for field in _TEXT_COLUMNS:
        if payload.get(field) is not None and not isinstance(payload[field], str):
            raise BadPayload(f"conversation {conversation_id}: {field} {show(payload[field])} is not a string")
    for field in _BOOLEAN_COLUMNS:
        if payload.get(field) is not None and not isinstance(payload[field], bool):
            raise BadPayload(f"conversation {conversation_id}: {field} {show(payload[field])} is not a boolean")
    parts = payload.get("conversation_parts")
    if parts is not None and (
        not isinstance(parts, dict)
        or not isinstance(parts.get("conversation_parts", []), list)
        or not isinstance(parts.get("total_count", 0), int)
    ):
        raise BadPayload(f"conversation {conversation_id}: conversation_parts {show(parts)} is not a list of parts")
    return payload


def checked_search_answer(body: object) -> dict:
    """A POST /conversations/search answer with the documented envelope (the rows are checked one by one)."""
    if not isinstance(body, dict):
        raise BadPayload(f"the search answer is not an object: {show(body)}")
    if not isinstance(body.get("conversations"), list):
        raise BadPayload("the search answer has no `conversations` list")
    total = body.get("total_count")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise BadPayload(f"the search answer's total_count {show(total)} is not a count")
    pages = body.get("pages")
    if pages is not None and not isinstance(pages, dict):
        raise BadPayload(f"the search answer's pages {show(pages)} is not an object")
    following = (pages or {}).get("next")
    if following is not None and not isinstance(following, dict):
        raise BadPayload(f"the search answer's pages.next {show(following)} is not an object")
    cursor = (following or {}).get("starting_after")
    if cursor is not None and not isinstance(cursor, str):
        raise BadPayload(f"the search answer's pages.next.starting_after {show(cursor)} is not a cursor")
    return body


class _Columns(msgspec.Struct, omit_defaults=True):
    """The fields of a conversation that make its columns; the decoder skips every other one.

    omit_defaults: msgspec.to_builtins leaves out the fields absent or null, as a SearchRow holds them.
    """

    id: object = None
    updated_at: object = None
    created_at: object = None
    title: object = None
    state: object = None
    open: object = None
    read: object = None


class _Parts(msgspec.Struct):
    """conversation_parts: each part kept as sent, only counted."""

    conversation_parts: list[msgspec.Raw] | None = None
    total_count: int | None = None


class _Conversation(_Columns):
    conversation_parts: _Parts | None = None


class _SearchAnswer(msgspec.Struct):
    conversations: list[msgspec.Raw]
    total_count: object = None
    pages: object = None


_COLUMNS = msgspec.json.Decoder(_Columns)
_CONVERSATION = msgspec.json.Decoder(_Conversation)
_SEARCH_ANSWER = msgspec.json.Decoder(_SearchAnswer)


_NOTHING_REPLACED: dict[str, int] = {}  # shared by every row in which nothing was replaced; never mutated


class SearchRow(dict):
    """A conversation's column fields (absent and null alike left out); `raw`, the whole conversation as sent.

    `replaced`: what was replaced in it (bodies.py), e.g. {"U+0000": 2}; empty for almost every one.
    Slots, not an instance dict: the rows of every page read ahead are in memory at once (spans.py).
    """

    __slots__ = ("raw", "replaced")

    def __init__(self, fields: dict, raw: msgspec.Raw, replaced: dict[str, int] | None = None) -> None:
        super().__init__(fields)
        self.raw = raw
        self.replaced = replaced or _NOTHING_REPLACED


def decoded_search_answer(content: bytes) -> dict:
    """A search answer, its envelope and its rows checked; each row a SearchRow.

    Content that is not JSON, even to Python's json, raises msgspec.DecodeError or json's (both ValueError).
    """
    try:
        answer, body = decoded(content, _SEARCH_ANSWER.decode)
    except msgspec.ValidationError as err:
        checked_search_answer(plain(content))  # raises, naming what is wrong
        raise BadPayload(f"the search answer is not as documented: {err}") from None
    checked = checked_search_answer(
        {"conversations": answer.conversations, "total_count": answer.total_count, "pages": answer.pages}
    )  # the envelope first, then each row
    rows = answer.conversations
    if body.replaced:
        checked["conversations"] = [
            checked_search_row(raw, replaced) for raw, replaced in zip(rows, _per_row(rows, body), strict=True)
        ]
    else:
        checked["conversations"] = [checked_search_row(raw) for raw in rows]
    return checked


def _per_row(rows: list[msgspec.Raw], body: Readable) -> list[dict[str, int]]:
    """What was replaced in each row: the replacements between the row's first and last byte in the body."""
    found, position = [], 0
    for raw in rows:
        start = body.content.find(bytes(raw), position)  # rows follow one another: the next match is this one
        position = start + len(raw)
        found.append(kinds(body.replaced, start, position))
    return found


def checked_search_row(raw: msgspec.Raw, replaced: dict[str, int] | None = None) -> SearchRow:
    try:
        columns = _COLUMNS.decode(raw)
    except msgspec.ValidationError as err:
        checked_row(plain(raw))  # raises: the row is not an object
        raise BadPayload(f"Intercom sent a conversation that is not as documented: {err}") from None
    fields = msgspec.to_builtins(columns)  # in C: half a microsecond less a row than filtering asdict's
    return checked_row(SearchRow(fields, raw, replaced))  # type: ignore[return-value]


def decoded_conversation(content: bytes) -> SearchRow:
    """GET /conversations/{id}: the column fields and the parts' count decoded, `raw` the whole body."""
    try:
        conversation, body = decoded(content, _CONVERSATION.decode)
    except msgspec.ValidationError as err:
        checked_row(plain(content))  # raises, naming what is wrong
        raise BadPayload(f"Intercom sent a conversation that is not as documented: {err}") from None
    parts = conversation.conversation_parts
    conversation.conversation_parts = None
    fields = {name: value for name, value in msgspec.structs.asdict(conversation).items() if value is not None}
    if parts is not None:
        fields["conversation_parts"] = {
            name: value for name, value in msgspec.structs.asdict(parts).items() if value is not None
        }
    return checked_row(SearchRow(fields, msgspec.Raw(body.content), kinds(body.replaced)))  # type: ignore[return-value]


def as_record(payload: dict) -> dict:
    """The row; `data` is the payload as Intercom sent it (what PostgreSQL cannot store replaced)."""
    created_at = payload.get("created_at")
    return {
        "intercom_id": str(payload["id"]),
        "title": payload.get("title"),
        "state": payload.get("state"),
        "open": payload.get("open"),
        "read": payload.get("read"),
        "created_at": None if created_at is None else to_iso(created_at),
        "updated_at": to_iso(payload["updated_at"]),
        "data": payload.raw if isinstance(payload, SearchRow) else payload,
    }
