"""Compact conversation records and their deterministic generation.

A conversation is stored as a small immutable :class:`Rec`; everything else in
an API payload (source, contacts, parts, ...) is rendered on demand from
``(seed, id, rec)`` by :mod:`.render`.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

DAY = 86_400
HISTORY_SECONDS = 730 * DAY  # conversations are spread over ~2 years before `now`
BIG_CLUSTER = 160  # > one page of 150 sharing one updated_at second

# A touch adds one part: (created_at, part_type, author kind "user"|"admin"|"bot").
Touch = tuple[int, str, str]


class Rec(NamedTuple):
    id: int
    created_at: int
    updated_at: int
    base_updated_at: int  # updated_at as generated, before any touch
    state: str  # open | closed | snoozed
    read: bool
    snoozed_until: int | None
    waiting_since: int | None
    n_base: int  # number of generated parts
    touches: tuple[Touch, ...]
    priority: str
    admin_assignee_id: int
    team_assignee_id: int
    title: str | None
    base_state: str = "open"  # state as generated: fixes how the generated parts render
    base_waiting: bool = False  # generated history ends with a contact's reply
    version: int = 0
    deleted_at: int | None = None
    metrics_retained: bool = False
    edits: tuple[tuple[int, int], ...] = ()  # (part index, when): parts edited (redacted) since they were made
    defect: str | None = None  # one of DEFECTS: what render.py breaks in this conversation (bad_data)
    history: Any = None  # a histories.History: a scripted conversation (rendered by histories.py)

    @property
    def n_parts(self) -> int:
        return self.n_base + len(self.touches)


ADMINS: list[tuple[int, str, str]] = [
    (991267601, "Ciaran Lee", "ciaran@example.com"),
    (991267602, "José Álvarez", "jose.alvarez@example.com"),
    (991267603, "王芳", "wang.fang@example.com"),
    (991267604, "Zoë O'Brien", "zoe.obrien@example.com"),
    (991267605, "محمد علي", "mohammed.ali@example.com"),
    (991267606, "Jamie Oliver", "jamie@example.com"),
    (991267607, "Søren Kierkegaard", "soren@example.com"),
    (991267608, "Priya Natarajan", "priya@example.com"),
    (991267609, "Łukasz Żółć", "lukasz@example.com"),
    (991267610, 'Ana "Nani" Silva', "ana.silva@example.com"),
]
BOT: tuple[str, str, str] = ("991267654", "Fin", "operator+fin@intercom.io")
TEAMS: list[tuple[int, str]] = [(5017691, "Support"), (5017692, "Billing"), (5017693, "Tier 2 🔧"), (5017694, "Ventes")]
TAGS: list[tuple[str, str]] = [
    ("123456", "VIP"),
    ("123457", "Bug 🐛"),
    ("123458", "Remboursement"),
    ("123459", "請求書"),
    ("123460", "churn-risk"),
    ("123461", '"quoted" tag'),
]
TITLES: list[str | None] = [
    None,
    None,
    None,
    None,
    None,
    "Refund request",
    "Can't log in",
    "Question about my invoice #4411",
    "🚀 Launch day — everything is on fire 🔥",
    "请帮我处理退款",
    "注文がまだ届きません",
    "مشكلة في الفاتورة",
    "בעיה בהתחברות",
    'He said "it\'s broken" & left <b>angry</b>',
    "Line one\nLine two\n\tindented",
    "Ünïcödé naïve café résumé",
    "  leading and trailing spaces  ",
    "Emoji only 😀😃😄",
    "A" * 300,
    "Zero\u200bwidth and e\u0301 combining",
]
PRIORITIES = ["none", "none", "none", "none", "low", "medium", "high", "urgent"]
BODIES: list[str] = [
    "<p>Hi there 👋 I need support with my account.</p>",
    "<p>Thanks again :)</p>",
    "<p>请问我的订单什么时候到？</p>",  # noqa: RUF001 - unicode on purpose
    "<p>مرحبا، لدي مشكلة في الفاتورة</p>",
    '<p>He said "it\'s broken" &amp; left</p>',
    "<p>Line one<br>Line two</p>",
    '<p>Could you <a href="https://example.com/help">check this link</a>?</p>',
    "<p>Okay!</p>",
    "<p>Je voudrais être remboursé, s'il vous plaît.</p>",
    "<p>Привет! Не работает оплата.</p>",  # noqa: RUF001 - unicode on purpose
]


# bad_data: one more conversation per case, each carrying what real workspaces hold and JSON allows.
DEFECTS = (
    "nul_in_title",  # "Pasted from Word\u0000"
    "nul_in_part_body",  # in a conversation part (GET only: search rows have no parts)
    "nul_in_custom_attribute_key",
    "lone_high_surrogate",  # the title, cut in half by UTF-16 units: "Cut in half \ud83d"
    "lone_low_surrogate",  # a custom attribute's value: "\ude00 the other half"
    "huge_numbers",  # custom attributes 1e400 and a 40-digit integer
    "escaped_backslash",  # "C:\\u0000": a backslash, then text; not a NUL, nothing to replace
)


def defective(now: int, next_id: int) -> tuple[list[Rec], int]:
    """One conversation per DEFECTS case, updated a day ago, a minute apart; returns (records, next_id)."""
    recs = []
    for index, defect in enumerate(DEFECTS):
        updated_at = now - DAY + 60 * index
        recs.append(
            Rec(
                id=next_id,
                created_at=updated_at - 3600,
                updated_at=updated_at,
                base_updated_at=updated_at,
                state="open",
                read=False,
                snoozed_until=None,
                waiting_since=updated_at,
                n_base=3,
                touches=(),
                priority="none",
                admin_assignee_id=ADMINS[0][0],
                team_assignee_id=TEAMS[0][0],
                title=None,
                base_waiting=True,
                defect=defect,
            )
        )
        next_id += 7
    return recs, next_id


def generate(seed: int, now: int, n: int, long_parts: int = 0, bad_data: bool = False) -> tuple[list[Rec], int]:
    """Generate `n` (+1 if `long_parts`, + len(DEFECTS) if `bad_data`) conversations; returns (records, next_id)."""
    rng = random.Random(seed)
    created = sorted(now - rng.randint(3600, HISTORY_SECONDS) for _ in range(n))
    recs: list[Rec] = []
    cid = 9000 + rng.randint(0, 999)
    for created_at in created:
        cid += rng.randint(1, 1500)
        recs.append(_one(rng, cid, created_at, now))
    _clusters(rng, recs, now)
    if long_parts > 0:
        cid += rng.randint(1, 1500)
        created_at = now - 60 * DAY
        recs.append(
            Rec(
                id=cid,
                created_at=created_at,
                updated_at=now - 3600,
                base_updated_at=now - 3600,
                state="open",
                read=False,
                snoozed_until=None,
                waiting_since=now - 3600,
                n_base=long_parts,
                touches=(),
                priority="high",
                admin_assignee_id=ADMINS[0][0],
                team_assignee_id=TEAMS[0][0],
                title="A very long conversation 📜",
                base_waiting=True,
            )
        )
    if bad_data:
        bad, cid = defective(now, cid + rng.randint(1, 1500))
        recs += bad
    return recs, cid + rng.randint(1, 1500)


def _one(rng: random.Random, cid: int, created_at: int, now: int) -> Rec:
    r = rng.random()
    if r < 0.10:
        n_parts = 0
    elif r < 0.85:
        n_parts = rng.randint(1, 8)
    elif r < 0.97:
        n_parts = rng.randint(9, 49)
    else:
        n_parts = rng.randint(50, 150)
    activity = rng.randint(0, 5) if n_parts == 0 else int(rng.expovariate(1 / (2 * DAY)))
    updated_at = min(created_at + activity, now)
    return _stateful(rng, cid, created_at, updated_at, n_parts)


def _stateful(rng: random.Random, cid: int, created_at: int, updated_at: int, n_parts: int) -> Rec:
    r = rng.random()
    state = "open" if r < 0.2 else "snoozed" if r < 0.3 else "closed"
    read = True if state == "snoozed" else rng.random() < (0.9 if state == "closed" else 0.4)
    snoozed = updated_at + rng.randint(3600, 7 * DAY) if state == "snoozed" else None
    waiting = updated_at if state == "open" and n_parts and rng.random() < 0.6 else None
    admin = 0 if rng.random() < 0.25 else rng.choice(ADMINS)[0]
    team = 0 if rng.random() < 0.3 else rng.choice(TEAMS)[0]
    return Rec(
        id=cid,
        created_at=created_at,
        updated_at=updated_at,
        base_updated_at=updated_at,
        state=state,
        read=read,
        snoozed_until=snoozed,
        waiting_since=waiting,
        n_base=n_parts,
        touches=(),
        priority=rng.choice(PRIORITIES),
        admin_assignee_id=admin,
        team_assignee_id=team,
        title=rng.choice(TITLES),
        base_state=state,
        base_waiting=waiting is not None,
    )


def _clusters(rng: random.Random, recs: list[Rec], now: int) -> None:
    """Make groups of conversations share one updated_at second, on purpose."""
    n = len(recs)
    if n < 4:
        return
    sizes = [BIG_CLUSTER] if n >= 1000 else []
    sizes += [rng.randint(2, 12) for _ in range(max(2, n // 250))]
    used: set[int] = set()
    for size in sizes:
        mid = rng.randint(n // 2, n - 1)
        t = min(now, recs[mid].created_at + rng.randint(0, 3 * DAY))
        pool: list[int] = []  # created (sorted) at or before recs[mid], hence before t
        i = mid
        while i >= 0 and len(pool) < 3 * size:
            if i not in used:
                pool.append(i)
            i -= 1
        if len(pool) < size:
            continue
        for i in rng.sample(pool, size):
            used.add(i)
            old = recs[i]
            rec = old._replace(updated_at=t, base_updated_at=t)
            if old.snoozed_until is not None:
                rec = rec._replace(snoozed_until=t + old.snoozed_until - old.updated_at)
            if rec.waiting_since is not None:
                rec = rec._replace(waiting_since=t)
            recs[i] = rec


def touched(rec: Rec, seed: int, at: int) -> Rec:
    """`rec` after one more change at `at`: a new part, maybe a new state/read."""
    rng = random.Random(f"{seed}/{rec.id}/touch/{rec.version}")
    at = max(at, rec.created_at)
    r = rng.random()
    state, read, waiting, snoozed = rec.state, rec.read, rec.waiting_since, rec.snoozed_until
    if rec.state == "closed":
        if r < 0.5:
            touch: Touch = (at, "comment", "user")
            state, read, waiting = "open", False, at
        else:
            touch = (at, "note", "admin")
    elif rec.state == "snoozed":
        if r < 0.5:
            touch, state, snoozed = (at, "unsnoozed", "admin"), "open", None
        else:
            touch = (at, "comment", "user")
            state, read, waiting, snoozed = "open", False, at, None
    elif r < 0.4:
        touch, read, waiting = (at, "comment", "admin"), True, None
    elif r < 0.65:
        touch, state, read, waiting = (at, "close", "admin"), "closed", True, None
    elif r < 0.8:
        touch, state, snoozed = (at, "snoozed", "admin"), "snoozed", at + rng.randint(3600, 3 * DAY)
        read = True
    else:
        touch, read = (at, "comment", "user"), False
        waiting = waiting if waiting is not None else at
    return rec._replace(
        updated_at=at,
        state=state,
        read=read,
        waiting_since=waiting,
        snoozed_until=snoozed,
        touches=(*rec.touches, touch),
        version=rec.version + 1,
    )


def part_edited(rec: Rec, k: int, at: int) -> Rec:
    """`rec` after its part `k` was edited (redacted) at `at`: the part and the conversation are updated then."""
    if not 0 <= k < rec.n_parts:
        raise KeyError(f"conversation {rec.id} has no part {k}")
    at = max(at, rec.updated_at)
    return rec._replace(updated_at=at, edits=(*rec.edits, (k, at)), version=rec.version + 1)


def new_record(seed: int, cid: int, at: int) -> Rec:
    rng = random.Random(f"{seed}/{cid}/create")
    rec = _stateful(rng, cid, at, at, 1)
    return rec._replace(
        state="open", read=False, snoozed_until=None, waiting_since=at, base_state="open", base_waiting=True
    )
