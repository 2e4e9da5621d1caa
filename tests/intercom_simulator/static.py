"""The parts of a conversation payload that never change: rendered from (seed, id).

Everything here depends only on fields of :class:`Rec` that touches do not
modify (id, created_at, base_updated_at, n_base, base assignment), so the
same conversation renders the same source/contacts/tags forever.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .data import ADMINS, BODIES, BOT, TAGS, Rec

FIRST = ["Joe", "Ana", "Mei", "Ahmed", "Olga", "Léa", "Noa", "Kwame", "Yūki", "Sean"]
LAST = ["Bloggs", "Silva", "Chen", "Haddad", "Ivanova", "Dupont", "Levi", "Mensah", "Sato", "O'Neil"]
SUBJECTS = ["", "", "", "Re: Your invoice", "Question about my order", "Ayuda con mi cuenta 🙏"]
URLS = [None, None, "https://example.com/pricing", "https://example.com/app/settings?tab=billing"]
CHANNELS = ["chat", "chat", "chat", "email", "phone", "whatsapp"]


class Static(dict[str, Any]):
    """Static payload fragments plus a few private facts used by the renderer."""


def _contact(rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "id": f"{rng.getrandbits(96):024x}",
        "external_id": str(rng.randint(1, 99999)) if rng.random() < 0.6 else None,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{rng.randint(1, 999)}@example.org".replace("ū", "u").replace("é", "e"),
    }


def admin_author(admin_id: int) -> dict[str, Any]:
    for aid, name, email in ADMINS:
        if aid == admin_id:
            return {"type": "admin", "id": str(aid), "name": name, "email": email}
    return {"type": "admin", "id": str(admin_id), "name": None, "email": "unknown@example.com"}


def part_author(st: Static, who: str, choose_admin: Callable[[], int] | None = None) -> dict[str, Any]:
    """A part's author: the conversation's contact ("user"), Fin ("bot"), else the admin `who` (an id), or the one
    `choose_admin()` gives (called only then: a generated history draws it from its random sequence)."""
    if who == "user":
        user = st.users[0]  # type: ignore[attr-defined]
        return {"type": "user", "id": user["id"], "name": user["name"], "email": user["email"]}
    if who == "bot":
        return {
            "type": "bot",
            "id": BOT[0],
            "name": BOT[1],
            "email": BOT[2],
            "from_ai_agent": True,
            "is_ai_answer": True,
        }
    return admin_author(int(who) if choose_admin is None else choose_admin())


def conversation_part(
    conversation_id: int, k: int, part_type: str, body: str | None, at: int, author: dict[str, Any], state: str
) -> dict[str, Any]:
    """Part k of a conversation as Intercom returns it (its id made of the conversation's and k), assigned to none."""
    return {
        "type": "conversation_part",
        "id": str(conversation_id * 1_000_000 + k),
        "part_type": part_type,
        "body": body,
        "created_at": at,
        "updated_at": at,
        "notified_at": at,
        "assigned_to": None,
        "author": author,
        "attachments": [],
        "external_id": None,
        "redacted": False,
        "metadata": {},
        "email_message_metadata": None,
        "state": state,
        "tags": [],
        "event_details": None,
        "app_package_code": None,
    }


@lru_cache(maxsize=4096)
def static(seed: int, rec_id: int, created_at: int, base_updated_at: int, n_base: int, admin_id: int) -> Static:
    rng = random.Random(f"{seed}/{rec_id}/static")
    contacts = [_contact(rng) for _ in range(1 if rng.random() < 0.9 else rng.randint(2, 3))]
    user = contacts[0]
    admin = admin_id or rng.choice(ADMINS)[0]
    r = rng.random()
    kind = "customer" if r < 0.6 else "email" if r < 0.75 else "admin" if r < 0.95 else "bot"
    source: dict[str, Any] = {
        "type": "email" if kind == "email" else "conversation",
        "id": str(403_900_000 + rec_id),
        "delivered_as": {
            "customer": "customer_initiated",
            "email": "customer_initiated",
            "admin": "admin_initiated",
            "bot": "operator_initiated",
        }[kind],
        "subject": rng.choice(SUBJECTS) if kind == "email" else "",
        "body": rng.choice(BODIES),
        "author": (
            {"type": "user", "id": user["id"], "name": user["name"], "email": user["email"]}
            if kind in ("customer", "email")
            else {"type": "bot", "id": BOT[0], "name": BOT[1], "email": BOT[2]}
            if kind == "bot"
            else admin_author(admin)
        ),
        "attachments": [],
        "url": rng.choice(URLS) if kind == "customer" else None,
        "redacted": False,
    }
    if rng.random() < 0.1:
        source["attachments"].append(
            {
                "type": "upload",
                "name": "screenshot 📷.png",
                "url": f"https://files.example.com/{rec_id}.png",
                "content_type": "image/png",
                "filesize": rng.randint(1000, 900000),
                "width": 640,
                "height": 480,
            }
        )
    if kind == "email":
        source["subject"] = source["subject"] or "Help"
        source["recipients"] = [{"type": "to", "email": "support@example.com", "drop_reason": None}]
        source["reply_to"] = [{"email": user["email"], "name": user["name"]}]
        source["email_message_metadata"] = {
            "message_id": f"<{rec_id}.{rng.getrandbits(32):x}@mail.example.org>",
            "subject": source["subject"],
            "email_address_headers": [{"type": "from", "email_address": user["email"], "name": user["name"]}],
            "history": "",
        }
    tags = [
        {
            "type": "tag",
            "id": tid,
            "name": name,
            "applied_at": created_at + rng.randint(0, 3600),
            "applied_by": {"type": "admin", "id": str(admin)},
        }
        for tid, name in rng.sample(TAGS, rng.choice([0, 0, 0, 1, 1, 2, 3]))
    ]
    custom: dict[str, Any] = {}
    if rng.random() < 0.5:
        custom = {
            "Issue type": rng.choice(["Billing", "Bug", "Question", "Facturación"]),
            "Order number": rng.randint(1000, 99999),
        }
        if rng.random() < 0.3:
            custom["Notes ✍️"] = 'Café ☕ order "#42"\nsecond line'
    teammate_ids = sorted({admin_id} - {0} | ({rng.choice(ADMINS)[0]} if n_base and rng.random() < 0.3 else set()))
    rated = n_base > 0 and rng.random() < 0.2
    ai = rng.random() < 0.15
    channel = "email" if kind == "email" else rng.choice(CHANNELS)
    st = Static(
        tags={"type": "tag.list", "tags": tags},
        conversation_rating={
            "rating": rng.randint(1, 5),
            "remark": rng.choice(["", "Great help!", "Très bien 👍"]),
            "created_at": base_updated_at,
            "updated_at": base_updated_at,
            "contact": {"type": "contact", "id": user["id"], "external_id": user["external_id"]},
            "teammate": {"type": "admin", "id": str(admin)},
        }
        if rated
        else None,
        source=source,
        contacts={
            "type": "contact.list",
            "contacts": [{"type": "contact", "id": c["id"], "external_id": c["external_id"]} for c in contacts],
        },
        teammates={"type": "admin.list", "teammates": [{"type": "admin", "id": str(a)} for a in teammate_ids]}
        if teammate_ids
        else None,
        custom_attributes=custom,
        first_contact_reply={"created_at": created_at, "type": "conversation", "url": source["url"]}
        if kind in ("customer", "email")
        else None,
        sla_applied={
            "type": "conversation_sla_summary",
            "sla_name": "VIP 1h",
            "sla_status": rng.choice(["hit", "missed", "cancelled", "active"]),
        }
        if rng.random() < 0.15
        else None,
        linked_objects={"type": "list", "total_count": 0, "has_more": False, "data": []},
        ai_agent_participated=ai,
        ai_agent={
            "source_type": "workflow",
            "source_title": "Fin — first line",
            "last_answer_type": "ai_answer",
            "resolution_state": rng.choice(["assumed_resolution", "escalated", "confirmed_resolution"]),
            "rating": None,
            "rating_remark": None,
            "created_at": created_at,
            "updated_at": created_at,
            "content_sources": {
                "type": "content_source.list",
                "total_count": 1,
                "content_sources": [{"content_type": "article", "url": "/help/articles/42", "locale": "en"}],
            },
        }
        if ai
        else None,
        sales_agent_participated=False,
        sales_agent=None,
        channel={"initial": channel, "current": channel},
        external_references=[],
    )
    if rng.random() < 0.05:
        st["linked_objects"] = {
            "type": "list",
            "total_count": 1,
            "has_more": False,
            "data": [{"type": "ticket", "id": str(7000 + rec_id % 1000), "category": "Customer"}],
        }
    if rng.random() < 0.2:
        st["company"] = {
            "type": "company",
            "id": f"{rng.getrandbits(96):024x}",
            "name": rng.choice(["Blue Sun", "Acme Ltd", "株式会社テスト"]),
            "app_id": "sim0app",
            "company_id": str(rng.randint(1, 500)),
            "remote_created_at": created_at - 86400,
            "created_at": created_at - 86400,
            "updated_at": created_at,
            "last_request_at": created_at,
            "size": rng.randint(1, 5000),
            "website": "https://example.com",
            "industry": "Software",
            "monthly_spend": rng.randint(0, 10000),
            "session_count": rng.randint(0, 900),
            "user_count": rng.randint(1, 90),
            "custom_attributes": {},
            "tags": {"type": "tag.list", "tags": []},
            "segments": {"type": "segment.list", "segments": []},
        }
    st.users = contacts  # type: ignore[attr-defined]
    st.kind = kind  # type: ignore[attr-defined]
    st.stats_seed = rng.getrandbits(32)  # type: ignore[attr-defined]
    return st


def static_for(seed: int, rec: Rec) -> Static:
    return static(seed, rec.id, rec.created_at, rec.base_updated_at, rec.n_base, rec.admin_assignee_id)
