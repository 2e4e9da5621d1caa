"""IntercomSimulator: the public facade (server lifecycle, data access, mutations)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from . import render
from .app import App, Stats
from .faults import FaultInjector, Faults, RateLimiter
from .server import SimServer
from .store import Store


class IntercomSimulator:
    """Intercom REST API 2.16 (conversations) over real HTTP on loopback."""

    def __init__(
        self,
        conversations: int = 1000,
        seed: int = 0,
        token: str = "sim-token",
        now: int | None = None,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        rate_limit: int | None = None,
        faults: Faults | None = None,
        date_comparison: str = "strict",
        long_conversation_parts: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_offset: float = 0.0,
        bad_data: bool = False,
    ) -> None:
        """clock_offset: how far the simulated Intercom's clock is ahead of this machine's (negative: behind);
        its updated_at and deleted_at values, `Date` header, rate-limit windows and X-RateLimit-Reset follow it.
        bad_data: add one conversation per data.DEFECTS case (U+0000, lone surrogates, 1e400, ...).
        """
        if date_comparison not in ("strict", "inclusive"):
            raise ValueError("date_comparison must be 'strict' or 'inclusive'")
        self.seed, self.token, self.host, self.port = seed, token, host, port
        self.clock_offset = float(clock_offset)
        self.now = int(self.clock()) if now is None else int(now)
        self.date_comparison = date_comparison
        self.on_search_page: Callable[[int], None] | None = None
        # on_request(method, path, json_body_or_None) -> (status, body[, headers]) | None: answer a
        # request yourself (after authentication and the rate limit, before faults); a dict/list body
        # is sent as JSON, a str/bytes body as text/html; headers override the X-RateLimit-* ones.
        # None: handle it normally.
        self.on_request: Callable[[str, str, Any], tuple[Any, ...] | None] | None = None
        # on_payload(route, payload) -> payload: rewrite a successful answer before it is sent
        # (route: "search", "retrieve", "list" or "deleted"), e.g. to break a conversation.
        self.on_payload: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
        self._store = Store(seed, self.now, conversations, long_conversation_parts, bad_data, self.clock)
        self._stats = Stats()
        self._app = App(
            self._store,
            token,
            FaultInjector(faults),
            RateLimiter(rate_limit, self.clock),
            self._stats,
            date_comparison == "inclusive",
            latency_ms,
            jitter_ms,
            hook=lambda: self.on_search_page,
            base_url=lambda: self.url,
            on_request=lambda: self.on_request,
            on_payload=lambda: self.on_payload,
        )
        self._server: SimServer | None = None
        self._thread: threading.Thread | None = None

    def clock(self) -> float:
        """The simulated Intercom's clock: this machine's plus clock_offset."""
        return time.time() + self.clock_offset

    # ---- lifecycle ---------------------------------------------------------
    def start(self) -> IntercomSimulator:
        if self._server is None:
            self._server = SimServer((self.host, self.port), self._app)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="intercom-simulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> IntercomSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- data --------------------------------------------------------------
    def _rec(self, cid: str | int) -> Any:
        rec = self._store.get(int(cid))
        if rec is None:
            raise KeyError(f"no live conversation {cid}")
        return rec

    def conversation(self, cid: str | int) -> dict[str, Any]:
        """Exactly what GET /conversations/{id} returns now."""
        return copy.deepcopy(render.conversation(self.seed, self._rec(cid)))

    def search_row(self, cid: str | int) -> dict[str, Any]:
        """Exactly what the search (and list) endpoint returns for this conversation."""
        return copy.deepcopy(render.list_item(self.seed, self._rec(cid)))

    def sent(self, cid: str | int) -> bytes:
        """The body GET /conversations/{id} answers now, as bytes (bad_data: escapes and 1e400 as sent)."""
        return render.dumps(render.conversation(self.seed, self._rec(cid)))

    def sent_search_row(self, cid: str | int) -> bytes:
        """A search row for this conversation, as bytes, as the search endpoint writes it."""
        return render.dumps(render.list_item(self.seed, self._rec(cid)))

    def truth(self) -> dict[str, dict[str, Any]]:
        """Every live conversation id -> its GET payload."""
        return {str(r.id): copy.deepcopy(render.conversation(self.seed, r)) for r in self._store.snapshot()}

    def ids(self) -> list[str]:
        """Live ids, in (updated_at, id) order."""
        return self._store.ids()

    def touch(self, cid: str | int, at: int | None = None) -> int:
        return self._store.touch(int(cid), at)

    def edit_part(self, cid: str | int, part_id: str, at: int | None = None) -> int:
        """Edit (redact) one part of a conversation: its body goes, `redacted` and both updated_at change."""
        return self._store.edit_part(int(cid), part_id, at)

    def delete(self, cid: str | int, at: int | None = None) -> None:
        self._store.delete(int(cid), at)

    def create(self, at: int | None = None) -> str:
        return self._store.create(at)

    def add_history(self, history: Any, conversation_id: str | None = None) -> str:
        """Serve a scripted conversation (histories.History); with `conversation_id`, replace that one's history
        (its parts grow, its updated_at moves on). Returns the conversation's id."""
        return self._store.add_history(history, None if conversation_id is None else int(conversation_id))

    @property
    def faults(self) -> Faults:
        """The live fault switches: change them (e.g. ``sim.faults.change_rate = 0``) while serving."""
        return self._app.injector.faults

    @property
    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()
