"""Render API payloads from compact records, deterministically.

- :func:`list_item` is a search/list row (the spec's ``conversation_list_item``:
  no ``conversation_parts``).
- :func:`conversation` is the GET /conversations/{id} payload: the row plus
  ``conversation_parts`` capped at the 500 most recent, with the real total.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from . import histories
from .data import ADMINS, BODIES, Rec
from .static import Static, conversation_part, part_author, static_for

PART_CAP = 500
NOTES = [
    "<p>Internal note: customer is on the legacy plan.</p>",
    "<p>Escalating to tier 2 🔧</p>",
    "<p>Refund approved — 20 €</p>",
]


NUMBER = "__sim_number__:"  # a string NUMBER + "1e400" is written as the number 1e400 (see dumps)
_NUMBER = re.compile(rb'"__sim_number__:([^"]*)"')


def dumps(value: Any) -> bytes:
    """UTF-8 JSON; a lone surrogate written as its escape, as Intercom does; NUMBER strings as numbers."""
    try:
        data = json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8: only an escape can carry it
        data = json.dumps(value).encode()
    return _NUMBER.sub(rb"\1", data) if NUMBER.encode() in data else data


def _break(row: dict[str, Any], defect: str) -> None:
    """What real data holds and JSON allows, in the search row (and so in the GET payload too)."""
    custom = dict(row["custom_attributes"])  # static_for's dict is shared: never changed in place
    if defect == "nul_in_title":
        row["title"] = "Pasted from Word\x00 and a NUL"
    elif defect == "lone_high_surrogate":
        row["title"] = "Cut in half \ud83d"
    elif defect == "nul_in_custom_attribute_key":
        custom["Order\x00number"] = "A-1001"
    elif defect == "lone_low_surrogate":
        custom["Feedback"] = "\ude00 the other half"
    elif defect == "huge_numbers":
        custom["Lifetime value"] = NUMBER + "1e400"
        custom["Account number"] = 1234567890123456789012345678901234567890
    elif defect == "escaped_backslash":
        row["title"] = "C:\\u0000 is a path, not a NUL"
    row["custom_attributes"] = custom


def list_item(seed: int, rec: Rec) -> dict[str, Any]:
    st = static_for(seed, rec)
    row: dict[str, Any] = {
        "type": "conversation",
        "id": str(rec.id),
        "title": rec.title,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "waiting_since": rec.waiting_since,
        "snoozed_until": rec.snoozed_until,
        "open": rec.state != "closed",
        "state": rec.state,
        "read": rec.read,
        "priority": rec.priority,
        "admin_assignee_id": rec.admin_assignee_id,
        "team_assignee_id": rec.team_assignee_id,
    }
    if "company" in st:
        row["company"] = st["company"]
    for key in (
        "tags",
        "conversation_rating",
        "source",
        "contacts",
        "teammates",
        "custom_attributes",
        "first_contact_reply",
        "sla_applied",
    ):
        row[key] = st[key]
    row["statistics"] = statistics(rec, st)
    for key in (
        "linked_objects",
        "ai_agent_participated",
        "ai_agent",
        "sales_agent_participated",
        "sales_agent",
        "channel",
        "external_references",
    ):
        row[key] = st[key]
    if rec.defect is not None:
        _break(row, rec.defect)
    if rec.history is not None:
        histories.apply(row, rec, st)
    return row


def conversation(seed: int, rec: Rec) -> dict[str, Any]:
    row = list_item(seed, rec)
    st = static_for(seed, rec)
    total = rec.n_parts
    row["conversation_parts"] = {
        "type": "conversation_part.list",
        "conversation_parts": histories.parts(rec, st)[-PART_CAP:]
        if rec.history is not None
        else [_part(seed, rec, st, k) for k in range(max(0, total - PART_CAP), total)],
        "total_count": total,
    }
    if rec.defect == "nul_in_part_body" and row["conversation_parts"]["conversation_parts"]:
        row["conversation_parts"]["conversation_parts"][-1]["body"] = "<p>Copied from a PDF\x00</p>"
    return row


def statistics(rec: Rec, st: Static) -> dict[str, Any]:
    if rec.history is not None:
        return histories.statistics(rec)
    rng = random.Random(st.stats_seed)  # type: ignore[attr-defined]
    c0, span = rec.created_at, max(0, rec.base_updated_at - rec.created_at)
    out: dict[str, Any] = {"type": "conversation_statistics"}
    if st.kind in ("customer", "email"):  # type: ignore[attr-defined]
        out["first_contact_reply_at"] = c0
        out["last_contact_reply_at"] = _last(rec, "user", c0)
    if rec.n_base:
        reply = rng.randint(0, span)
        assign = rng.randint(0, reply)
        out.update(
            time_to_assignment=assign,
            first_assignment_at=c0 + assign,
            last_assignment_at=c0 + assign,
            time_to_admin_reply=reply,
            first_admin_reply_at=c0 + reply,
            last_assignment_admin_reply_at=c0 + reply,
            last_admin_reply_at=_last(rec, "admin", c0 + reply),
            median_time_to_reply=reply,
        )
    closes = [t for t, kind, _ in rec.touches if kind == "close"]
    if rec.base_state == "closed":
        closes = [rec.base_updated_at, *closes]
    if closes:
        out.update(
            time_to_first_close=closes[0] - c0,
            time_to_last_close=closes[-1] - c0,
            first_close_at=closes[0],
            last_close_at=closes[-1],
            last_closed_by_id=str(rec.admin_assignee_id or ADMINS[0][0]),
        )
    reopens = sum(1 for _, kind, who in rec.touches if kind == "comment" and who == "user")
    out.update(
        count_reopens=reopens,
        count_assignments=1 if rec.admin_assignee_id else 0,
        count_conversation_parts=rec.n_parts,
        assigned_team_first_response_time=[],
        assigned_team_first_response_time_in_office_hours=[],
        handling_time=min(span, 3600),
        adjusted_handling_time=None,
    )
    return out


def _last(rec: Rec, who: str, default: int) -> int:
    for t, _, author in reversed(rec.touches):
        if author == who:
            return t
    return default


def _base_part(rec: Rec, k: int, rng: random.Random) -> tuple[int, str, str, str]:
    """(created_at, part_type, author kind, state) of generated part k."""
    t = rec.created_at + (rec.base_updated_at - rec.created_at) * (k + 1) // rec.n_base
    if k == rec.n_base - 1:
        if rec.base_state == "closed":
            return t, "close", "admin", "closed"
        if rec.base_state == "snoozed":
            return t, "snoozed", "admin", "snoozed"
        return t, "comment", "user" if rec.base_waiting else "admin", "open"
    r = rng.random()
    if r < 0.25:
        return t, "comment", "user", "open"
    if r < 0.5:
        return t, "comment", "admin", "open"
    kinds = [
        ("note", "admin"),
        ("assignment", "admin"),
        ("conversation_attribute_updated_by_admin", "admin"),
        ("comment", "bot"),
        ("custom_action_started", "admin"),
        ("open", "admin"),
        ("away_mode_assignment", "bot"),
    ]
    kind, who = kinds[int((r - 0.5) * 2 * len(kinds))]
    return t, kind, who, "open"


def _part(seed: int, rec: Rec, st: Static, k: int) -> dict[str, Any]:
    rng = random.Random((abs(seed) << 84) ^ (rec.id << 22) ^ k)
    if k < rec.n_base:
        t, kind, who, state = _base_part(rec, k, rng)
    else:
        t, kind, who = rec.touches[k - rec.n_base]
        state = {"close": "closed", "snoozed": "snoozed"}.get(kind, "open")
    body: str | None = None
    if kind == "comment":
        body = rng.choice(BODIES)
    elif kind == "note":
        body = rng.choice(NOTES)
    part = conversation_part(rec.id, k, kind, body, t, part_author(st, who, lambda: rng.choice(ADMINS)[0]), state)
    edited = max((at for index, at in rec.edits if index == k), default=None)
    if edited is not None:  # a redaction: the body goes, the part says so
        part.update(body=None, redacted=True, updated_at=edited)
    if kind in ("assignment", "away_mode_assignment"):
        part["assigned_to"] = {"type": "admin", "id": str(rng.choice(ADMINS)[0])}
    elif kind == "conversation_attribute_updated_by_admin":
        part["event_details"] = {
            "attribute": {"name": "Issue type"},
            "value": {"name": rng.choice(["Billing", "Bug"]), "previous": None},
        }
    elif kind == "custom_action_started":
        part["event_details"] = {"action": {"name": "Jira Create Issue"}}
        part["app_package_code"] = "test-integration"
    elif kind == "comment" and rng.random() < 0.05:
        part["attachments"] = [
            {
                "type": "upload",
                "name": "invoice.pdf",
                "url": "https://files.example.com/i.pdf",
                "content_type": "application/pdf",
                "filesize": 48213,
                "width": 0,
                "height": 0,
            }
        ]
    return part


def facet(seed: int, rec: Rec, field: str, cache: dict[str, dict[Any, Any]]) -> Any:
    """The value of a searchable field that is not stored in the record (memoised per store).

    Static fields depend only on the id (touches never change them); statistics on the record.
    """
    table = cache.setdefault(field, {})
    key: Any = rec if field.startswith("statistics.") else rec.id
    try:
        return table[key]
    except KeyError:
        table[key] = value = _facet(seed, rec, field)
        return value


def _facet(seed: int, rec: Rec, field: str) -> Any:
    st = static_for(seed, rec)
    rating = st["conversation_rating"] or {}
    special = {
        "contact_ids": lambda: [c["id"] for c in st["contacts"]["contacts"]],
        "teammate_ids": lambda: [t["id"] for t in (st["teammates"] or {}).get("teammates", [])],
        "tag_ids": lambda: [t["id"] for t in st["tags"]["tags"]],
        "channel_initiated": lambda: st["channel"]["initial"],
        "conversation_rating.score": lambda: rating.get("rating"),
        "conversation_rating.replied_at": lambda: rating.get("created_at"),
        "conversation_rating.requested_at": lambda: rating.get("created_at"),
        "conversation_rating.contact_id": lambda: (rating.get("contact") or {}).get("id"),
        "conversation_rating.admin_id": lambda: (rating.get("teammate") or {}).get("id"),
        "conversation_rating.admin_d": lambda: (rating.get("teammate") or {}).get("id"),  # sic, the spec's table
    }
    if field in special:
        return special[field]()
    head, _, rest = field.partition(".")
    obj: Any = statistics(rec, st) if head == "statistics" else st.get(head)
    for key in rest.split(".") if rest else []:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


class EncodedRows(list):
    """List items already encoded as UTF-8 JSON: a page of them is joined, not encoded again."""


class RowCache:
    """Each conversation's list item as UTF-8 JSON, until the conversation changes.

    The simulator's CPU is not Intercom's, yet it shares the benchmark's machine with the tap and the
    loader: rendering and encoding every row of every page again took as much CPU as the tap itself,
    and encoding each page's joined text again was still most of what was left.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._encoded: dict[int, tuple[Rec, bytes]] = {}

    def rows(self, recs: list[Rec]) -> EncodedRows:
        encoded = EncodedRows()
        for rec in recs:
            cached = self._encoded.get(rec.id)
            if cached is None or cached[0] is not rec:  # records are immutable: a change is a new one
                cached = (rec, dumps(list_item(self.seed, rec)))
                self._encoded[rec.id] = cached
            encoded.append(cached[1])
        return encoded


def encode(payload: Any) -> bytes:
    """The JSON body, its list items joined as they are when they were encoded already."""
    rows = payload.get("conversations") if isinstance(payload, dict) else None
    if not isinstance(rows, EncodedRows):
        return dumps(payload)
    head = json.dumps({key: value for key, value in payload.items() if key != "conversations"}, ensure_ascii=False)
    return b"".join((head[:-1].encode(), b', "conversations": [', b", ".join(rows), b"]}"))
