"""How an Intercom conversation payload becomes a row of intercom_conversation_v1.

Payloads are checked, never coerced: a conversation without `id` or `updated_at`, or with a column
field of the wrong type, stops the run with an error naming it rather than loading a wrong row.
"""

from __future__ import annotations

import datetime as dt

from tap_intercom_conversation.client import IntercomError

UTC = dt.timezone.utc
_TEXT_COLUMNS = ("title", "state")
_BOOLEAN_COLUMNS = ("open", "read")


class BadPayload(IntercomError):
    """Intercom sent something that is not a conversation as documented."""


def to_iso(unix_seconds: int) -> str:
    return dt.datetime.fromtimestamp(unix_seconds, tz=UTC).isoformat()


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
    msg = f"{what} {value!r} is not an ISO 8601 date-time (e.g. 2024-01-31T00:00:00Z)"
    raise IntercomError(msg)


def _is_unix_seconds(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def checked_row(payload: object) -> dict:
    """The payload itself, once it is known to have what a row needs."""
    if not isinstance(payload, dict):
        raise BadPayload(f"Intercom sent a conversation that is not an object: {str(payload)[:80]!r}")
    conversation_id = payload.get("id")
    if not isinstance(conversation_id, str | int) or isinstance(conversation_id, bool) or not str(conversation_id):
        raise BadPayload(f"Intercom sent a conversation without an id (updated_at={payload.get('updated_at')!r})")
    if not _is_unix_seconds(payload.get("updated_at")):
        raise BadPayload(
            f"conversation {conversation_id}: updated_at {payload.get('updated_at')!r} is not unix seconds"
        )
    created_at = payload.get("created_at")
    if created_at is not None and not _is_unix_seconds(created_at):
        raise BadPayload(f"conversation {conversation_id}: created_at {created_at!r} is not unix seconds")
    for field in _TEXT_COLUMNS:
        if payload.get(field) is not None and not isinstance(payload[field], str):
            raise BadPayload(f"conversation {conversation_id}: {field} {payload[field]!r} is not a string")
    for field in _BOOLEAN_COLUMNS:
        if payload.get(field) is not None and not isinstance(payload[field], bool):
            raise BadPayload(f"conversation {conversation_id}: {field} {payload[field]!r} is not a boolean")
    return payload


def as_record(payload: dict) -> dict:
    """The row; `data` is the payload untouched, every field as Intercom sent it."""
    created_at = payload.get("created_at")
    return {
        "intercom_id": str(payload["id"]),
        "title": payload.get("title"),
        "state": payload.get("state"),
        "open": payload.get("open"),
        "read": payload.get("read"),
        "created_at": None if created_at is None else to_iso(created_at),
        "updated_at": to_iso(payload["updated_at"]),
        "data": payload,
    }
