"""Conversation search query grammar (POST /conversations/search), per the 2.16 spec.

A query is one filter ``{"field", "operator", "value"}`` or a group
``{"operator": "AND"|"OR", "value": [...]}``; groups nest at most 2 levels and
hold at most 15 items. Operators and the types they apply to are those of the
searchConversations description's "Accepted Operators" table (``<=``/``>=``
exist in the shared schema enum but are documented for contacts only, so they
are rejected here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .data import Rec
from .errors import ApiError

MAX_DEPTH = 2
MAX_ITEMS = 15
SCALAR_OPS = {"=", "!=", "IN", "NIN"}
OPS_BY_TYPE: dict[str, set[str]] = {
    "string": SCALAR_OPS | {"~", "!~", "^", "$"},
    "integer": SCALAR_OPS | {">", "<"},
    "date": SCALAR_OPS | {">", "<"},
    "boolean": SCALAR_OPS,
}
ALL_OPS = set().union(*OPS_BY_TYPE.values())

_STR, _INT, _DATE, _BOOL = "string", "integer", "date", "boolean"
FIELDS: dict[str, str] = {
    "id": _STR,
    "title": _STR,
    "created_at": _DATE,
    "updated_at": _DATE,
    "waiting_since": _DATE,
    "snoozed_until": _DATE,
    "open": _BOOL,
    "read": _BOOL,
    "state": _STR,
    "priority": _STR,
    "admin_assignee_id": _INT,
    "team_assignee_id": _INT,
    "contact_ids": _STR,
    "teammate_ids": _STR,
    "tag_ids": _STR,
    "channel_initiated": _STR,
    "ai_agent_participated": _BOOL,
    **{f"source.{k}": _STR for k in ("type", "id", "delivered_as", "subject", "body", "url")},
    **{f"source.author.{k}": _STR for k in ("id", "type", "name", "email")},
    **{
        f"statistics.{k}": _INT
        for k in (
            "time_to_assignment",
            "time_to_admin_reply",
            "time_to_first_close",
            "time_to_last_close",
            "median_time_to_reply",
            "count_reopens",
            "count_assignments",
            "count_conversation_parts",
        )
    },
    **{
        f"statistics.{k}": _DATE
        for k in (
            "first_contact_reply_at",
            "first_assignment_at",
            "first_admin_reply_at",
            "first_close_at",
            "last_assignment_at",
            "last_assignment_admin_reply_at",
            "last_contact_reply_at",
            "last_admin_reply_at",
            "last_close_at",
        )
    },
    "statistics.last_closed_by_id": _STR,
    "conversation_rating.requested_at": _DATE,
    "conversation_rating.replied_at": _DATE,
    "conversation_rating.score": _INT,
    "conversation_rating.remark": _STR,
    "conversation_rating.contact_id": _STR,
    "conversation_rating.admin_d": _STR,
    "conversation_rating.admin_id": _STR,
    **{
        f"ai_agent.{k}": _STR
        for k in ("resolution_state", "last_answer_type", "rating_remark", "source_type", "source_title")
    },
    "ai_agent.rating": _INT,
}
DIRECT: dict[str, Callable[[Rec], Any]] = {
    "id": lambda r: str(r.id),
    "title": lambda r: r.title,
    "created_at": lambda r: r.created_at,
    "updated_at": lambda r: r.updated_at,
    "waiting_since": lambda r: r.waiting_since,
    "snoozed_until": lambda r: r.snoozed_until,
    "open": lambda r: r.state != "closed",
    "read": lambda r: r.read,
    "state": lambda r: r.state,
    "priority": lambda r: r.priority,
    "admin_assignee_id": lambda r: r.admin_assignee_id,
    "team_assignee_id": lambda r: r.team_assignee_id,
    "statistics.count_conversation_parts": lambda r: r.n_parts,
}
_INT_RE = re.compile(r"-?\d+")
_TOKEN_RE = re.compile(r"\w+")
_TAG_RE = re.compile(r"<[^>]*>")

Predicate = Callable[[Rec], bool]
Facet = Callable[[Rec, str], Any]  # (record, field) -> value of a field not stored in Rec


@dataclass
class Compiled:
    predicate: Predicate
    lo: int | None  # updated_at bounds (inclusive) implied by the top-level AND
    hi: int | None
    pure_range: bool  # the query is only updated_at >/</= filters joined by AND


def invalid(message: str) -> ApiError:
    return ApiError(400, "parameter_invalid", message)


def compile_query(query: Any, inclusive: bool, facets: Facet) -> Compiled:
    pred = _node(query, 0, inclusive, facets)
    items = query.get("value") if query.get("operator") == "AND" and "field" not in query else [query]
    lo = hi = None
    pure = True
    for item in items:
        if item.get("field") == "updated_at" and item.get("operator") in (">", "<", "="):
            v = _coerce(_DATE, item["value"], "updated_at")
            if v is None:
                pure = False
                continue
            if item["operator"] in (">", "="):
                low = v if item["operator"] == "=" or inclusive else v + 1
                lo = low if lo is None else max(lo, low)
            if item["operator"] in ("<", "="):
                high = v if item["operator"] == "=" or inclusive else v - 1
                hi = high if hi is None else min(hi, high)
        else:
            pure = False
    return Compiled(pred, lo, hi, pure)


def _node(node: Any, depth: int, inclusive: bool, facets: Facet) -> Predicate:
    if not isinstance(node, dict):
        raise invalid("Each query item must be an object")
    if "field" in node:
        return _filter(node, inclusive, facets)
    op = node.get("operator")
    if op not in ("AND", "OR"):
        raise invalid(f"Invalid operator for a multiple filter query: {op!r}. Must be one of: AND, OR")
    depth += 1
    if depth > MAX_DEPTH:
        raise invalid(f"Query nesting is limited to {MAX_DEPTH} levels")
    items = node.get("value")
    if not isinstance(items, list):
        raise invalid("The value of an AND/OR group must be an array of filters")
    if len(items) > MAX_ITEMS:
        raise invalid(f"An AND/OR group can contain at most {MAX_ITEMS} filters, got {len(items)}")
    preds = [_node(item, depth, inclusive, facets) for item in items]
    if op == "AND":
        return lambda r: all(p(r) for p in preds)
    return lambda r: any(p(r) for p in preds)


def _coerce(ftype: str, value: Any, field: str) -> Any:
    if value is None:
        return None
    if ftype in (_INT, _DATE):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return int(value)
    elif ftype == _BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif isinstance(value, str):
        return value
    elif isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise invalid(f"Invalid value {json.dumps(value)} for field '{field}': expected {ftype}")


def _filter(node: dict[str, Any], inclusive: bool, facets: Facet) -> Predicate:
    field, op = node.get("field"), node.get("operator")
    if not isinstance(field, str) or field not in FIELDS:
        raise invalid(f"{field!r} is not a searchable conversation field")
    ftype = FIELDS[field]
    if op not in ALL_OPS:
        raise invalid(f"Unsupported operator {op!r}. Must be one of: {', '.join(sorted(ALL_OPS))}")
    if op not in OPS_BY_TYPE[ftype]:
        raise invalid(f"Operator {op!r} is not supported for {ftype} field {field!r}")
    raw = node.get("value")
    if op in ("IN", "NIN"):
        if not isinstance(raw, list):
            raise invalid(f"Operator {op} requires an array value")
        wanted: Any = {_coerce(ftype, v, field) for v in raw}
    elif isinstance(raw, (list, dict)):
        raise invalid(f"Operator {op!r} requires a single value")
    else:
        wanted = _coerce(ftype, raw, field)
        if wanted is None and op not in ("=", "!="):
            raise invalid(f"Operator {op!r} requires a non-null value")
    direct = DIRECT.get(field)
    get: Callable[[Rec], Any] = direct if direct else (lambda r: facets(r, field))
    test = _test(op, wanted, inclusive, field == "source.body")
    return lambda r: test(get(r))


def _test(op: str, wanted: Any, inclusive: bool, tokens: bool) -> Callable[[Any], bool]:
    def one(v: Any) -> bool:
        if op == "=":
            return v == wanted
        if op == "!=":
            return v != wanted
        if op == "IN":
            return v in wanted
        if op == "NIN":
            return v not in wanted
        if v is None:
            return op == "!~"
        if op == ">":
            return v >= wanted if inclusive else v > wanted
        if op == "<":
            return v <= wanted if inclusive else v < wanted
        s, w = str(v).lower(), str(wanted).lower()
        if op == "~":
            return w in s
        if op == "!~":
            return w not in s
        if op == "^":
            return s.startswith(w)
        return s.endswith(w)  # "$"

    negative = op in ("!=", "NIN", "!~")

    def test(v: Any) -> bool:
        if tokens and isinstance(v, str) and op in ("=", "!=", "IN", "NIN"):
            v = _TOKEN_RE.findall(_TAG_RE.sub(" ", v))
        if isinstance(v, list):  # contact_ids, tag_ids, ...: match any element
            return all(one(x) for x in v) if negative else any(one(x) for x in v)
        return one(v)

    return test
