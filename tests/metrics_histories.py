"""Four scripted conversations and their support metrics, computed by hand (docs/metrics.md).

A, B: two admins. Times are seconds after each conversation was created; day D is 2026-06-01 (UTC).
"""

from __future__ import annotations

from tests.intercom_simulator.histories import CONTACT, Event, History

A, B = "991267601", "991267602"
D = 1_780_308_000  # 2026-06-01 10:00:00 UTC

# 1. A contact asks; Fin (a bot) answers first, A assigns to itself and writes a note (none of them a
# response), replies at 600 s; the contact writes twice, B replies at 1500 s, snoozes, the snooze ends,
# A closes at 4000 s; the contact writes again (a reopen), A replies, B closes at 11000 s; rated 4 for B.
STORY = History(
    D,
    CONTACT,
    (
        Event(60, "comment", "bot"),
        Event(120, "assignment", A, assigned_to=A),
        Event(300, "note", A),
        Event(600, "comment", A),
        Event(900, "comment", CONTACT),
        Event(1000, "comment", CONTACT),
        Event(1500, "comment", B),
        Event(1600, "snoozed", B),
        Event(3600, "unsnoozed", B),
        Event(4000, "close", A),
        Event(10000, "comment", CONTACT),
        Event(10900, "comment", A),
        Event(11000, "close", B),
    ),
    tags=("VIP", "Bug 🐛"),
    rating=(4, "Thanks!", B),
)
# 2. B writes first (outbound); the contact answers at 7200 s, B replies 300 s later and closes.
OUTBOUND = History(
    D + 7200,
    B,
    (
        Event(7200, "comment", CONTACT),
        Event(7500, "comment", B),
        Event(8000, "close", B),
    ),
)
# 3. A contact asks the next day; only Fin answers; the contact writes again; still open.
UNANSWERED = History(
    D + 82800,
    CONTACT,
    (
        Event(30, "comment", "bot"),
        Event(100, "comment", CONTACT),
    ),
)
# 3, later: A answers at 7200 s (the wait counts from the contact's first unanswered message), after
# QUICK's last part, so that an incremental run of the tap finds the change.
ANSWERED = History(UNANSWERED.created_at, CONTACT, (*UNANSWERED.events, Event(7200, "comment", A)))
# 4. A contact asks; A replies at 1200 s and closes at 1300 s; rated 2 for A. Deleted later.
QUICK = History(
    D + 86400,
    CONTACT,
    (
        Event(1200, "comment", A),
        Event(1300, "close", A),
    ),
    rating=(2, "", A),
)

# intercom_conversation_enhanced and intercom_conversation_metrics, by conversation.
# The four scripted conversations by name (the simulator adds each: sim.add_history).
SCRIPTED = {"STORY": STORY, "OUTBOUND": OUTBOUND, "UNANSWERED": UNANSWERED, "QUICK": QUICK}

EXPECTED = {
    "STORY": dict(
        state="closed",
        started_by="contact",
        first_assignee_id=A,
        current_assignee_id=A,
        tags=["Bug 🐛", "VIP"],
        rating=4,
        rating_remark="Thanks!",
        rating_admin_id=B,
        parts_count=13,
        contact_messages=3,
        admin_replies=3,
        notes=1,
        bot_parts=1,
        part_type_counts={"assignment": 1, "close": 2, "comment": 7, "note": 1, "snoozed": 1, "unsnoozed": 1},
        author_type_counts={"admin": 9, "bot": 1, "user": 3},
        time_to_first_admin_response_seconds=600,
        first_response_admin_id=A,
        time_to_first_close_seconds=4000,
        time_to_last_close_seconds=11000,
        last_closed_by_admin_id=B,
        closes=2,
        reopens=1,
        snoozes=1,
        median_reply_wait_seconds=600,
        is_deleted=False,
    ),
    "OUTBOUND": dict(
        state="closed",
        started_by="admin",
        first_assignee_id=None,
        tags=[],
        rating=None,
        parts_count=3,
        admin_replies=1,
        time_to_first_admin_response_seconds=300,
        first_response_admin_id=B,
        time_to_first_close_seconds=8000,
        time_to_last_close_seconds=8000,
        closes=1,
        reopens=0,
        median_reply_wait_seconds=300,
    ),
    "UNANSWERED": dict(
        state="open",
        started_by="contact",
        parts_count=2,
        admin_replies=0,
        bot_parts=1,
        time_to_first_admin_response_seconds=None,
        time_to_first_close_seconds=None,
        closes=0,
        reopens=0,
        median_reply_wait_seconds=None,
    ),
    "QUICK": dict(
        state="closed",
        rating=2,
        rating_remark=None,
        rating_admin_id=A,
        time_to_first_admin_response_seconds=1200,
        time_to_first_close_seconds=1300,
        closes=1,
        median_reply_wait_seconds=1200,
        is_deleted=False,
    ),
}
# intercom_admin_metrics: participated, closed, first responses, median to first response, median to
# (last) close, ratings, average rating.
ADMINS = {
    A: (2, 2, 2, 900, 1300, 1, 2),
    B: (2, 2, 1, 300, 9500, 1, 4),
}
# After UNANSWERED became ANSWERED and QUICK was deleted.
ADMINS_LATER = {
    A: (2, 1, 2, 3900, None, 0, None),
    B: (2, 2, 1, 300, 9500, 1, 4),
}
# intercom_daily_metrics: day -> (opened, closed, closes, reopens, open_backlog).
DAYS = {"2026-06-01": (2, 2, 3, 1, 0), "2026-06-02": (2, 1, 1, 0, 1), "2026-06-03": (0, 0, 0, 0, 1)}
DAYS_LATER = {"2026-06-01": (2, 2, 3, 1, 0), "2026-06-02": (1, 0, 0, 0, 1), "2026-06-03": (0, 0, 0, 0, 1)}
