"""The base stream: Intercom's auth, headers, error policy, retries and the shared rate governor."""

from __future__ import annotations

import logging
import re
import sys
import typing as t
from functools import cached_property
from urllib.parse import urlsplit

import backoff
import requests
from requests.utils import resolve_proxies
from singer_sdk import metrics
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.streams import RESTStream
from typing_extensions import override

from intercom_conversation_shared.settings import REGION_URLS
from tap_intercom_conversation.bodies import decoded_json
from tap_intercom_conversation.errors import IntercomError, IntercomNotFound, IntercomRefused, IntercomRequestFailed
from tap_intercom_conversation.transport import GovernedAdapter, describe

if t.TYPE_CHECKING:
    from backoff.types import Details
    from singer_sdk import Tap

    from tap_intercom_conversation.runtime import Runtime


class Answer(t.NamedTuple):
    """A checked answer: its body, decoded as the stream that asked said, and when it was asked (freshness.py)."""

    response: requests.Response
    body: t.Any
    sent_after: int | None


_CONVERSATION_ID = re.compile(r"/\d+$")
MAX_TRIES = 8  # first try + 7 retries, about two minutes of backoff at most
SEARCH_CONNECTIONS = 16  # kept beside the hydration's: the search thread(s) and the deleted list
# What is retried with backoff: Intercom's 5xx/408 and unparsable 200s (RetriableAPIError), timeouts,
# connections refused, reset or dropped, and bodies cut short.
RETRIED = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def failure(request: requests.PreparedRequest, error: BaseException, timeout: float) -> str:
    """What went wrong with a request, in one line that names the endpoint (never headers, never the token).

    A connection that failed also names the host:port it was to (api_url, or the region's).
    """
    where = describe(request.method or "", request.path_url)
    if isinstance(error, RetriableAPIError):
        return str(error)
    if isinstance(error, requests.exceptions.Timeout) and not isinstance(error, requests.exceptions.ConnectTimeout):
        return f"{where} got no answer within request_timeout_seconds ({timeout:g} s)"
    host = host_port(request.url or "")
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return f"{where} could not connect to {host} within request_timeout_seconds ({timeout:g} s)"
    chain = repr(error)
    if "RemoteDisconnected" in chain:
        reason = f"the connection to {host} was closed without an answer"
    elif "ConnectionResetError" in chain or "reset by peer" in chain:
        reason = f"the connection to {host} was reset"
    elif "ConnectionRefusedError" in chain or "Connection refused" in chain:
        reason = f"the connection to {host} was refused"
    elif "NameResolutionError" in chain or "Name or service not known" in chain:
        reason = f"the host name of {host} did not resolve"
    elif isinstance(error, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        reason = "the answer was cut short"
    else:
        reason = f"the connection to {host} failed ({type(error).__name__})"
    return f"{where}: {reason}"


def host_port(url: str) -> str:
    """`api.intercom.io:443` of a request's URL (the port its scheme implies when none is given)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class _QuietExpectedFailures(logging.Filter):
    """Drops the SDK's "An unhandled error occurred" line when the error is an expected one.

    An IntercomError (or a closed stdout) is reported once, as one line, by tap.main; anything else
    keeps its log line and its traceback, because it is a bug.
    """

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("An unhandled error occurred"):
            return not isinstance(sys.exc_info()[1], IntercomError | BrokenPipeError)
        return True


_QUIET = _QuietExpectedFailures()


def error_code(response: requests.Response) -> tuple[str, str]:
    """Intercom's first error code and message from an `error.list` body, if any."""
    try:
        first = response.json()["errors"][0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""


class IntercomStream(RESTStream):
    allow_redirects = False  # the SDK's own sends (the deletions' pages) too
    """Everything every Intercom request shares."""

    records_jsonpath = "$[*]"

    @override
    def __init__(self, tap: Tap, *args: t.Any, **kwargs: t.Any) -> None:
        self.runtime: Runtime = tap.runtime  # type: ignore[attr-defined]  # the tap's, shared by its streams
        self._proxy_cache: dict[tuple[str, str], dict] = {}  # (scheme, host) -> the proxies requests resolves
        self._transport: GovernedAdapter | None = None  # mounted on this stream's session by requests_session
        super().__init__(tap, *args, **kwargs)
        if _QUIET not in self.logger.filters:
            self.logger.addFilter(_QUIET)

    @property
    @override
    def url_base(self) -> str:
        return (self.config.get("api_url") or REGION_URLS[self.config.get("region", "us")]).rstrip("/")

    @cached_property
    @override
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["access_token"])

    @property
    @override
    def http_headers(self) -> dict:
        return {"Intercom-Version": self.config["api_version"], "Accept": "application/json"}

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]  # the SDK says int; the setting allows 0.5 s
        return float(self.config["request_timeout_seconds"])

    @property
    @override
    def requests_session(self) -> requests.Session:
        """A session whose connection pool fits the requests in flight (the SDK makes a default one first).

        Connections are opened as calls need them, so their number follows the calls in flight; the pool
        keeps up to max_concurrent_requests of them (and the searches') for reuse.
        """
        session = super().requests_session
        if self._transport is None:
            size = int(self.config.get("max_concurrent_requests", 1)) + SEARCH_CONNECTIONS
            self._transport = GovernedAdapter(self.runtime, self.logger, pool_connections=4, pool_maxsize=size)
            session.mount("https://", self._transport)
            session.mount("http://", self._transport)
        return session

    def _proxies(self, request: requests.PreparedRequest) -> dict:
        """The proxies for Intercom's host, resolved from the environment once, not on every request.

        requests resolves them on each send (NO_PROXY matching): 4 % of the tap's CPU when hydrating.
        """
        host = urlsplit(request.url or "")[:2]
        proxies = self._proxy_cache.get(host)
        if proxies is None:
            session = self.requests_session
            proxies = self._proxy_cache[host] = resolve_proxies(request, session.proxies, session.trust_env)
        return proxies

    # Retries: exponential with full jitter, bounded; waiting for the rate limit is not a retry.

    @override
    def backoff_wait_generator(self) -> t.Generator[float, None, None]:
        return backoff.expo(base=2, factor=0.5, max_value=30)

    @override
    def backoff_max_tries(self) -> int:
        return MAX_TRIES

    @override
    def backoff_jitter(self, value: float) -> float:
        return backoff.full_jitter(value)

    @override
    def backoff_handler(self, details: Details) -> None:
        self.runtime.stats.add_retry()
        self.logger.warning(
            "Retrying after try %d of %d: %s; waiting %.1f s",
            details["tries"],
            MAX_TRIES,
            failure(details["args"][0], details["exception"], self.timeout),
            details["wait"],
        )

    def send_once(self, prepared_request: requests.PreparedRequest, decode: t.Callable[[bytes], t.Any]) -> Answer:
        """One try: authenticated, sent through the governed adapter (governor, 429 waits), timed, validated, decoded.

        A body that is not valid JSON is retried like a 5xx.
        """
        authenticated = self.authenticator(prepared_request)
        session = self.requests_session
        response = session.send(
            authenticated,
            timeout=self.timeout,
            allow_redirects=self.allow_redirects,
            proxies=self._proxies(authenticated),
        )
        sent_after = self._transport.sent_after() if self._transport is not None else None
        if self.metrics_logger.isEnabledFor(logging.INFO):  # log_metrics (at debug, logs.PerRequestMetrics drops it)
            succeeded = response.status_code < 400
            endpoint = _CONVERSATION_ID.sub("/{id}", prepared_request.path_url.split("?")[0])  # one tag per endpoint
            metrics.log(
                self.metrics_logger,
                metrics.Point(
                    "timer",
                    metric=metrics.Metric.HTTP_REQUEST_DURATION,
                    value=response.elapsed.total_seconds(),
                    tags={
                        metrics.Tag.STREAM: self.name,
                        metrics.Tag.ENDPOINT: endpoint,
                        metrics.Tag.HTTP_STATUS_CODE: response.status_code,
                        metrics.Tag.STATUS: metrics.Status.SUCCEEDED if succeeded else metrics.Status.FAILED,
                    },
                ),
            )
        self.validate_response(response)
        try:  # parsed once, by msgspec unless only Python's json reads it (bodies.py); envelopes checked by `decode`
            body = decode(response.content)
        except ValueError:
            where = describe(prepared_request.method or "", prepared_request.path_url)
            raise RetriableAPIError(
                f"{where} answered {response.status_code} with a body that is not valid JSON", response
            ) from None
        return Answer(response, body, sent_after)

    @override
    def request_decorator(self, func: t.Callable) -> t.Callable:
        """Bounded backoff; when it runs out, one line naming the endpoint and the last failure.

        The SDK's decorator is not used: its backoff logger adds a "Giving up" ERROR line of its own.
        """
        retried = backoff.on_exception(
            self.backoff_wait_generator,
            RETRIED,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            logger=None,
        )(func)

        def request_or_give_up(prepared_request: requests.PreparedRequest, *args: t.Any) -> t.Any:
            try:
                return retried(prepared_request, *args)
            except RETRIED as err:
                last = failure(prepared_request, err, self.timeout)
                raise IntercomRequestFailed(f"{last} (gave up after {self.backoff_max_tries()} tries)") from None
            except requests.RequestException as err:  # not worth retrying: a request the tap could not even send
                where = describe(prepared_request.method or "", prepared_request.path_url)
                raise IntercomRequestFailed(f"{where} could not be sent ({type(err).__name__})") from None

        return request_or_give_up

    @cached_property
    def request_with_retries(self) -> t.Callable[[requests.PreparedRequest, t.Callable[[bytes], t.Any]], Answer]:
        """Built once: hydration sends one request per conversation."""
        return self.request_decorator(self.send_once)

    def fetch(
        self, prepared_request: requests.PreparedRequest, decode: t.Callable[[bytes], t.Any] = decoded_json
    ) -> Answer:
        """The answer to this request, its body read by `decode` (the asking stream knows what it asked for)."""
        return self.request_with_retries(prepared_request, decode)

    @override
    def validate_response(self, response: requests.Response) -> None:
        """The error policy, in one place: each status code becomes a retry or one clear error.

        Only the status is read here; the body is decoded by the stream that asked (fetch's `decode`).
        """
        where = describe(response.request.method or "", response.request.path_url)
        status = response.status_code
        if status in {408, 500, 502, 503, 504} or status > 504:
            raise RetriableAPIError(f"{where} answered {status} {response.reason}".rstrip(), response)
        if status == 401:
            raise IntercomRefused(f"Intercom rejected the access token (401 on {where}): check access_token")
        if status == 403:
            code, message = error_code(response)
            if code == "api_plan_restricted":
                why = "the workspace's Intercom plan does not include API access"
            else:
                why = "the access token is not allowed to read conversations (a scope or permission is missing)"
            detail = f"403 {code or 'forbidden'}: {message or response.reason}"
            raise IntercomRefused(f"Intercom refused {where} ({detail}); {why}")
        if status == 400:
            code, message = error_code(response)
            if code == "intercom_version_invalid":
                version = response.request.headers.get("Intercom-Version")
                raise IntercomRefused(
                    f"Intercom refused api_version {version!r} on {where} (400 intercom_version_invalid: {message}); "
                    "set api_version to a version Intercom accepts, e.g. 2.16"
                )
            detail = f"400 {code or 'bad_request'}: {message or response.reason}"
            raise IntercomRefused(f"Intercom refused {where} ({detail})")
        if status == 404:
            raise IntercomNotFound(f"{where} answered 404 not_found")
        if 400 <= status < 500 or status < 200 or 300 <= status < 400:
            code, message = error_code(response)
            raise IntercomRefused(f"{where} answered {status} {code or response.reason} {message}".rstrip())
