"""Scripted conversation histories: what support metrics are computed from, with known answers.

A :class:`History` is a conversation told part by part (customer messages, admin replies, notes, bot
parts, assignments, snooze, close, reopen, ratings); the simulator serves it like any conversation
(``IntercomSimulator.add_history``), rendered as Intercom 2.16 describes it: each part's ``state`` is
the conversation's state when the part was created, a contact's reply reopens a closed or snoozed
conversation, ``statistics`` are derived from the same parts. Generated conversations are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .data import TAGS, Rec
from .static import Static, conversation_part, part_author

CONTACT = "user"  # an author: the conversation's contact; "bot"; or an admin's id (a str of digits)
STATE_AFTER = {
    "close": "closed",
    "snoozed": "snoozed",
    "open": "open",
    "unsnoozed": "open",
    "assign_and_reopen": "open",
}


@dataclass(frozen=True)
class Event:
    """One conversation part, `after` seconds after the conversation was created."""

    after: int
    part_type: str  # comment, note, assignment, close, snoozed, unsnoozed, open, quick_reply, ...
    author: str  # CONTACT, "bot" or an admin id
    assigned_to: str | None = None  # an admin id, on an assignment
    body: str | None = None


@dataclass(frozen=True)
class History:
    created_at: int
    started_by: str  # CONTACT (customer_initiated), an admin id (admin_initiated) or "bot" (operator_initiated)
    events: tuple[Event, ...]
    tags: tuple[str, ...] = ()  # names from data.TAGS
    rating: tuple[int, str, str] | None = None  # (score 1-5, remark, the rated admin's id)

    def states(self) -> list[str]:
        """The conversation's state after each event."""
        state, out = "open", []
        for event in self.events:
            if event.part_type in STATE_AFTER:
                state = STATE_AFTER[event.part_type]
            elif event.part_type == "comment" and event.author == CONTACT and state != "open":
                state = "open"  # a contact's reply reopens the conversation
            out.append(state)
        return out

    @property
    def updated_at(self) -> int:
        return self.created_at + max((e.after for e in self.events), default=0)


def record(cid: int, history: History, version: int = 0) -> Rec:
    """The store's record of a scripted conversation."""
    states = history.states()
    state = states[-1] if states else "open"
    assignee = next((int(e.assigned_to) for e in reversed(history.events) if e.assigned_to), 0)
    waiting = None
    if state == "open":
        for event in history.events:
            if event.part_type == "comment" and event.author == CONTACT and waiting is None:
                waiting = history.created_at + event.after
            elif event.part_type in ("comment", "quick_reply") and event.author not in (CONTACT, "bot"):
                waiting = None
    return Rec(
        id=cid,
        created_at=history.created_at,
        updated_at=history.updated_at,
        base_updated_at=history.updated_at,
        state=state,
        read=state != "open" or waiting is None,
        snoozed_until=None,
        waiting_since=waiting,
        n_base=len(history.events),
        touches=(),
        priority="none",
        admin_assignee_id=assignee,
        team_assignee_id=0,
        title=None,
        base_state=state,
        base_waiting=waiting is not None,
        version=version,
        history=history,
    )


def apply(row: dict[str, Any], rec: Rec, st: Static) -> None:
    """A search row (and so the GET payload) told by the history: source, tags, rating, teammates, statistics."""
    history: History = rec.history
    source = dict(row["source"])
    source.update(
        type="conversation",
        author=part_author(st, history.started_by),
        subject="",
        delivered_as={CONTACT: "customer_initiated", "bot": "operator_initiated"}.get(
            history.started_by, "admin_initiated"
        ),
    )
    row["source"] = source
    ids = dict((name, tid) for tid, name in TAGS)
    row["tags"] = {
        "type": "tag.list",
        "tags": [
            {
                "type": "tag",
                "id": ids[name],
                "name": name,
                "applied_at": history.created_at,
                "applied_by": {"type": "admin", "id": history.started_by if history.started_by.isdigit() else None},
            }
            for name in history.tags
        ],
    }
    user = st.users[0]  # type: ignore[attr-defined]
    row["conversation_rating"] = (
        None
        if history.rating is None
        else {
            "rating": history.rating[0],
            "remark": history.rating[1],
            "created_at": history.updated_at,
            "updated_at": history.updated_at,
            "contact": {"type": "contact", "id": user["id"], "external_id": user["external_id"]},
            "teammate": {"type": "admin", "id": history.rating[2]},
        }
    )
    admins = sorted({e.author for e in history.events if e.author.isdigit()})
    row["teammates"] = (
        {"type": "admin.list", "teammates": [{"type": "admin", "id": a} for a in admins]} if admins else None
    )
    row["first_contact_reply"] = None
    row["statistics"] = statistics(rec)


def statistics(rec: Rec) -> dict[str, Any]:
    """conversation_statistics as the spec describes them, from the parts (no office hours)."""
    history: History = rec.history
    c0 = history.created_at
    out: dict[str, Any] = {"type": "conversation_statistics"}
    contact = [c0 + e.after for e in history.events if e.part_type == "comment" and e.author == CONTACT]
    if history.started_by == CONTACT:
        contact.insert(0, c0)
    admin_replies = [
        c0 + e.after for e in history.events if e.part_type in ("comment", "quick_reply") and e.author.isdigit()
    ]
    states = history.states()
    before = ["open", *states[:-1]]  # a conversation starts open
    closes = [
        (c0 + e.after, e.author)
        for e, now, then in zip(history.events, states, before, strict=True)
        if now == "closed" and then != "closed"
    ]
    reopens = sum(1 for now, then in zip(states, before, strict=True) if then == "closed" and now != "closed")
    if contact:
        out.update(first_contact_reply_at=contact[0], last_contact_reply_at=contact[-1])
        after = [t for t in admin_replies if t >= contact[0]]
        if after:
            out.update(time_to_admin_reply=after[0] - contact[0], first_admin_reply_at=after[0])
    if admin_replies:
        out["last_admin_reply_at"] = admin_replies[-1]
    if closes:
        out.update(
            time_to_first_close=closes[0][0] - c0,
            time_to_last_close=closes[-1][0] - c0,
            first_close_at=closes[0][0],
            last_close_at=closes[-1][0],
            last_closed_by_id=closes[-1][1],
        )
    out.update(
        count_reopens=reopens,
        count_assignments=sum(1 for e in history.events if e.part_type == "assignment"),
        count_conversation_parts=len(history.events),
        assigned_team_first_response_time=[],
        assigned_team_first_response_time_in_office_hours=[],
        adjusted_handling_time=None,
    )
    return out


def parts(rec: Rec, st: Static) -> list[dict[str, Any]]:
    """The conversation_parts of the GET payload, oldest first."""
    history: History = rec.history
    out = []
    for k, (event, state) in enumerate(zip(history.events, history.states(), strict=True)):
        at = history.created_at + event.after
        body = event.body
        if body is None and event.part_type in ("comment", "note", "quick_reply"):
            body = f"<p>{event.part_type} {k + 1}</p>"
        part = conversation_part(rec.id, k, event.part_type, body, at, part_author(st, event.author), state)
        if event.assigned_to:
            part["assigned_to"] = {"type": "admin", "id": event.assigned_to}
        out.append(part)
    return out
