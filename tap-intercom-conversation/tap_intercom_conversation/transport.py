"""The HTTP transport of every stream's session: each send waits for the tap's rate governor (governor.py)."""

from __future__ import annotations

import threading
import time
import typing as t

from requests.adapters import HTTPAdapter
from typing_extensions import override

from tap_intercom_conversation.errors import IntercomRequestFailed

if t.TYPE_CHECKING:
    import logging

    import requests

    from tap_intercom_conversation.runtime import Runtime

SEARCH = "POST /conversations/search"
MAX_RATE_LIMITED = 60  # 429s in a row for one request (ten minutes of windows) before giving up


def describe(method: str, path: str) -> str:
    return f"{method} {path.split('?')[0]}"


class GovernedAdapter(HTTPAdapter):
    """The session's transport: every send waits for the tap's governor; a 429 waits for the reset and goes again.

    Each answer also tells the tap's server clock its Date, the governor its window, and the concurrency
    its latency (body included); sent_after() tells the sending thread when its request went out (freshness.py).
    """

    def __init__(self, runtime: Runtime, logger: logging.Logger, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        self._runtime = runtime
        self._logger = logger
        self._sent = threading.local()  # each thread's last send: a session's sends run in the caller's thread

    def sent_after(self) -> int | None:
        """Intercom's second, at most, when this thread's last answered request went out (freshness.py)."""
        return t.cast("int | None", getattr(self._sent, "after", None))

    @override
    def send(  # type: ignore[override]  # requests' own keywords are passed on untouched
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: t.Any
    ) -> requests.Response:
        governor, clock = self._runtime.governor, self._runtime.clock
        where = describe(request.method or "", request.path_url)
        for _ in range(MAX_RATE_LIMITED):
            governor.acquire()
            sent_after = clock.floor()
            sent = time.monotonic()
            response = super().send(request, stream=stream, **kwargs)
            if not stream:
                _ = response.content  # read here, as Session.send would: latency includes the body
            self._runtime.concurrency.observe(time.monotonic() - sent, search=where == SEARCH)
            self._sent.after = sent_after
            governor.observe(response.headers)
            clock.observe(response.headers)
            if response.status_code != 429:
                return response
            governor.rate_limited_until(response.headers)
            self._logger.info("Rate limited (429) on %s; waiting for the window to reset", where)
        raise IntercomRequestFailed(
            f"{where} answered 429 rate_limit_exceeded {MAX_RATE_LIMITED} times in a row; "
            "another client is using this app's whole rate limit"
        )
