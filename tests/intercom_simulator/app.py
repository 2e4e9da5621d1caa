"""Request handling, independent of the HTTP plumbing: (method, target, headers, body) -> Response."""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from . import render
from .errors import HTML_5XX, NOT_FOUND, SERVER_ERRORS, UNAUTHORIZED, VERSION_UNAVAILABLE, ApiError, error_bytes
from .faults import FaultInjector, Plan, RateLimiter
from .query import Compiled, compile_query, invalid
from .store import SORT_FIELDS, Store

JSON = "application/json; charset=utf-8"
VERSIONS = [f"1.{i}" for i in range(5)] + [f"2.{i}" for i in range(17)] + ["Unstable"]
MATCH_ALL = Compiled(lambda r: True, None, None, True)
_TAG_RE = re.compile(r"<[^>]+>")
ROUTES = ("search", "retrieve", "list", "deleted")
STATS_PATH = "/__stats"  # GET: Stats.snapshot() as JSON, for a simulator run from the CLI


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = {}


RESET = Response(-1, b"")  # injected fault: reset the connection (TCP RST) without any response


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.by_route = dict.fromkeys(ROUTES, 0)
            self.by_status: dict[int, int] = {}
            self.rate_limited = 0
            self.faults = dict.fromkeys(("error", "html", "drop", "reset", "slow", "bad_json"), 0)
            self.intercepted = 0
            self.changes = 0
            self.windows: dict[int, int] = {}  # rate-limit window (its reset) -> calls the limiter counted in it
            self.in_flight = 0  # requests being answered (latency included), and the most at once
            self.max_in_flight = 0

    def add(self, what: str, key: Any = None, n: int = 1) -> None:
        with self.lock:
            if key is None:
                setattr(self, what, getattr(self, what) + n)
            else:
                table = getattr(self, what)
                table[key] = table.get(key, 0) + n

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "by_route": dict(self.by_route),
                "by_status": dict(self.by_status),
                "rate_limited": self.rate_limited,
                "faults": dict(self.faults),
                "changes": self.changes,
                "intercepted": self.intercepted,
                "windows": dict(self.windows),
                "max_in_flight": self.max_in_flight,
            }

    def enter(self, n: int) -> None:
        with self.lock:
            self.in_flight += n
            self.max_in_flight = max(self.max_in_flight, self.in_flight)


def version_key(value: str | None) -> tuple[int, int]:
    if value is None or value.strip() == "":
        return (2, 16)
    value = value.strip()
    if value.lower() == "unstable":
        return (99, 0)
    if value not in VERSIONS:
        raise ApiError(
            400,
            "intercom_version_invalid",
            f"Intercom-Version header value {value!r} is not a valid API version. "
            f"Valid versions: {', '.join(VERSIONS)}",
        )
    major, minor = value.split(".")
    return int(major), int(minor)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_cursor(cursor: Any) -> int:
    if cursor is None or cursor == "":
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(str(cursor).encode()))
        offset = data["offset"]
        if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise invalid(f"starting_after {cursor!r} is not a valid cursor")


def _per_page(value: Any, default: int, maximum: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise invalid(f"per_page must be an integer between 1 and {maximum}, got {value!r}")
    return value


def _strip_html(obj: Any) -> None:
    """display_as=plaintext: bodies and subjects without markup."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("body", "subject") and isinstance(value, str):
                obj[key] = _TAG_RE.sub("", value)
            else:
                _strip_html(value)
    elif isinstance(obj, list):
        for item in obj:
            _strip_html(item)


class App:
    def __init__(
        self,
        store: Store,
        token: str,
        injector: FaultInjector,
        limiter: RateLimiter,
        stats: Stats,
        inclusive: bool,
        latency_ms: float,
        jitter_ms: float,
        hook: Callable[[], Callable[[int], None] | None],
        base_url: Callable[[], str],
        on_request: Callable[[], Callable[..., Any] | None] = lambda: None,
        on_payload: Callable[[], Callable[..., Any] | None] = lambda: None,
    ) -> None:
        self.store, self.token, self.injector, self.limiter = store, token, injector, limiter
        self.stats, self.inclusive, self.hook, self.base_url = stats, inclusive, hook, base_url
        self.on_request, self.on_payload = on_request, on_payload
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms
        self.jitter_rng = random.Random(store.seed)
        self.jitter_lock = threading.Lock()
        self.row_cache = render.RowCache(store.seed)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response | None:
        """The response, or None to drop the connection without answering."""
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if method == "GET" and path == STATS_PATH:  # for benchmarks: not counted, no auth, no latency
            return Response(200, json.dumps(self.stats.snapshot()).encode())
        self.stats.add("requests")
        route, arg = None, ""
        if method == "POST" and path == "/conversations/search":
            route = "search"
        elif method == "GET" and path == "/conversations":
            route = "list"
        elif method == "GET" and path == "/conversations/deleted":
            route = "deleted"
        elif method == "GET" and path.startswith("/conversations/") and path.count("/") == 2:
            route, arg = "retrieve", path.rsplit("/", 1)[1]
        elif method == "GET" and path == "/me":
            route = "me"  # not one of the counted ROUTES: tests compare those counts whole
        if route in ROUTES:
            self.stats.add("by_route", route)
        self.stats.enter(1)
        try:
            self._latency()
            resp = self._handle(route, arg, parse_qs(url.query), headers, body, method, path)
        finally:
            self.stats.enter(-1)
        if resp is not None and resp is not RESET:
            self.stats.add("by_status", resp.status)
        return resp

    def _latency(self) -> None:
        if self.latency_ms <= 0 and self.jitter_ms <= 0:
            return
        with self.jitter_lock:
            jitter = self.jitter_rng.uniform(-self.jitter_ms, self.jitter_ms)
        time.sleep(max(0.0, self.latency_ms + jitter) / 1000)

    def _intercepted(self, method: str, path: str, body: bytes, rl: Mapping[str, str]) -> Response | None:
        """The answer the test's on_request hook chose for this request, if any."""
        hook = self.on_request()
        if hook is None:
            return None
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        answer = hook(method, path, parsed)
        if answer is None:
            return None
        self.stats.add("intercepted")
        status, payload, *more = answer
        headers = {**rl, **(more[0] if more else {})}
        if isinstance(payload, bytes | str):
            data = payload.encode() if isinstance(payload, str) else payload
            return Response(status, data, "text/html", headers)
        return Response(status, json.dumps(payload).encode(), JSON, headers)

    def _handle(
        self,
        route: str | None,
        arg: str,
        params: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        method: str = "GET",
        path: str = "/",
    ) -> Response | None:
        auth = headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if not token or token != self.token:
            return self._error(ApiError(401, *UNAUTHORIZED), {})  # no rate-limit headers without valid credentials
        allowed, rl = self.limiter.hit(token)
        self.stats.add("windows", int(rl["X-RateLimit-Reset"]))
        if not allowed:
            self.stats.add("rate_limited")
            return self._error(
                ApiError(429, "rate_limit_exceeded", f"Exceeded rate limit of {self.limiter.limit} in 10_seconds"), rl
            )
        intercepted = self._intercepted(method, path, body, rl)
        if intercepted is not None:
            return intercepted
        try:
            version = version_key(headers.get("Intercom-Version"))
            if route is None:
                raise ApiError(404, *NOT_FOUND)
            plan = self.injector.draw()
            if plan.kind == "drop":
                self.stats.add("faults", "drop")
                return None
            if plan.kind == "reset":
                self.stats.add("faults", "reset")
                return RESET
            if plan.kind == "error":
                return self._server_error(plan, rl)
            if plan.kind == "slow":
                self.stats.add("faults", "slow")
                time.sleep(self.injector.faults.slow_seconds)
            payload = self._route(route, arg, params, body, version)
            rewrite = self.on_payload()
            if rewrite is not None:
                payload = rewrite(route, payload)
            data = render.encode(payload)
            if plan.kind == "bad_json":
                self.stats.add("faults", "bad_json")
                data = data[: len(data) // 2]
            return Response(200, data, JSON, rl)
        except ApiError as err:
            return self._error(err, rl)

    def _error(self, err: ApiError, rl: Mapping[str, str]) -> Response:
        return Response(err.status, error_bytes(err), JSON, rl)

    def _server_error(self, plan: Plan, rl: Mapping[str, str]) -> Response:
        self.stats.add("faults", "error")
        code, message = SERVER_ERRORS[plan.status]
        if plan.html:
            self.stats.add("faults", "html")
            reason = message if plan.status != 503 else "Service Temporarily Unavailable"
            html = HTML_5XX.format(status=plan.status, reason=reason)
            return Response(plan.status, html.encode(), "text/html", rl)
        return self._error(ApiError(plan.status, code, message), rl)

    def _route(
        self, route: str, arg: str, params: dict[str, list[str]], body: bytes, version: tuple[int, int]
    ) -> dict[str, Any]:
        if route == "search":
            return self._search(body)
        if route == "list":
            q = {k: v[-1] for k, v in params.items()}
            per_page = _per_page(q.get("per_page"), 20, 150)
            return self._page(MATCH_ALL, "updated_at", True, decode_cursor(q.get("starting_after")), per_page)
        if route == "me":
            return self._me()
        if route == "deleted":
            if version < (2, 16):
                raise ApiError(400, "intercom_version_invalid", VERSION_UNAVAILABLE)
            return self._deleted(params)
        rec = self.store.get(int(arg)) if arg.isdigit() else None
        if rec is None:
            raise ApiError(404, *NOT_FOUND)
        payload = render.conversation(self.store.seed, rec)
        if params.get("display_as", [""])[-1] == "plaintext":
            payload = json.loads(json.dumps(payload))
            _strip_html(payload)
        return payload

    def _me(self) -> dict[str, Any]:
        """GET /me (identifyAdmin): the admin the token acts for, with its app, as the spec's example."""
        return {
            "type": "admin",
            "id": "991267459",
            "email": "admin1@email.com",
            "name": "Simulated Admin",
            "email_verified": True,
            "app": {
                "type": "app",
                "id_code": f"sim{self.store.seed:04d}app",
                "name": f"Simulator {self.store.seed}",
                "created_at": 1734537243,
                "identity_verification": False,
                "timezone": "America/Los_Angeles",
                "region": "US",
            },
            "avatar": {"type": "avatar", "image_url": None},
            "has_inbox_seat": True,
        }

    def _search(self, body: bytes) -> dict[str, Any]:
        try:
            req = json.loads(body or b"null")
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"Request body is not valid JSON: {exc}") from None
        if not isinstance(req, dict) or "query" not in req:
            raise ApiError(400, "parameter_not_found", "query is required", "query")
        seed, cache = self.store.seed, self.store.facet_cache
        q = compile_query(req["query"], self.inclusive, lambda r, field: render.facet(seed, r, field, cache))
        pagination = req.get("pagination") or {}
        if not isinstance(pagination, dict):
            raise invalid("pagination must be an object")
        per_page = _per_page(pagination.get("per_page"), 20, 150)
        offset = decode_cursor(pagination.get("starting_after"))
        sort = req.get("sort") or {}
        if not isinstance(sort, dict):
            raise invalid("sort must be an object")
        field, order = sort.get("field", "updated_at"), sort.get("order", "descending")
        if order not in ("ascending", "descending"):
            raise ApiError(
                400, "invalid_sort_order", f"Invalid sort order '{order}'. Must be one of: ascending, descending"
            )
        if field not in SORT_FIELDS:
            raise invalid(f"Invalid sort field {field!r}. Must be one of: {', '.join(SORT_FIELDS)}")
        hook = self.hook()
        if hook is not None:
            hook(offset // per_page)
        changes = self.injector.changes()
        if changes:
            self.stats.add("changes", n=self.store.touch_random(self.injector.child_rng(), changes))
        return self._page(q, field, order == "descending", offset, per_page)

    def _page(self, q: Compiled, field: str, descending: bool, offset: int, per_page: int) -> dict[str, Any]:
        total, recs = self.store.search(q, field, descending, offset, per_page)
        seed = self.store.seed
        pages: dict[str, Any] = {
            "type": "pages",
            "page": offset // per_page + 1,
            "per_page": per_page,
            "total_pages": math.ceil(total / per_page),
        }
        if offset + per_page < total:
            pages["next"] = {"per_page": per_page, "starting_after": encode_cursor(offset + per_page)}
        rows = [render.list_item(seed, r) for r in recs] if self.on_payload() else self.row_cache.rows(recs)
        return {"type": "conversation.list", "pages": pages, "total_count": total, "conversations": rows}

    def _deleted(self, params: dict[str, list[str]]) -> dict[str, Any]:
        q = {k: v[-1] for k, v in params.items()}
        per_page = _per_page(q.get("per_page"), 20, 60)
        page = q.get("page", "1")
        if not page.isdigit() or int(page) < 1:
            raise invalid(f"page must be a positive integer, got {page!r}")
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid(f"order must be asc or desc, got {order!r}")
        total, recs = self.store.deleted_page(int(page), per_page, order == "desc")
        pages: dict[str, Any] = {
            "type": "pages",
            "page": int(page),
            "per_page": per_page,
            "total_pages": math.ceil(total / per_page),
        }
        if int(page) * per_page < total:
            pages["next"] = (
                f"{self.base_url()}/conversations/deleted?per_page={per_page}&order={order}&page={int(page) + 1}"
            )
        return {
            "type": "conversations.list",
            "total_count": total,
            "pages": pages,
            "conversations": [
                {
                    "type": "conversation",
                    "id": str(r.id),
                    "metrics_retained": r.metrics_retained,
                    "deleted_at": r.deleted_at,
                }
                for r in recs
            ],
        }
