"""The base stream: Intercom's auth, headers, error policy, retries and the shared rate governor."""

from __future__ import annotations

import typing as t
from functools import cached_property

import backoff
import requests
from requests.adapters import HTTPAdapter
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.streams import RESTStream

from tap_intercom_conversation.governor import GOVERNOR

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

REGION_URLS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
MAX_TRIES = 8  # first try + 7 retries, about two minutes of backoff at most


class IntercomError(Exception):
    """An expected failure: reported as one line, without a traceback."""


class IntercomRequestFailed(IntercomError):
    """Intercom kept failing (5xx, drops, timeouts) after every retry."""


class IntercomRefused(IntercomError, FatalAPIError):
    """Intercom refused the request for a reason retrying cannot fix."""


class IntercomNotFound(IntercomRefused):
    """A 404: for a conversation, it was deleted after the search found it."""


def describe(method: str, path: str) -> str:
    return f"{method} {path.split('?')[0]}"


def error_code(response: requests.Response) -> tuple[str, str]:
    """Intercom's first error code and message from an `error.list` body, if any."""
    try:
        first = response.json()["errors"][0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""


class IntercomStream(RESTStream):
    """Everything every Intercom request shares."""

    records_jsonpath = "$[*]"
    retries = 0  # retried requests in this run, for the summary

    @property
    def url_base(self) -> str:
        return (self.config.get("api_url") or REGION_URLS[self.config.get("region", "us")]).rstrip("/")

    @cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["access_token"])

    @property
    def http_headers(self) -> dict:
        return {"Intercom-Version": self.config["api_version"], "Accept": "application/json"}

    @property
    def timeout(self) -> float:
        return float(self.config["request_timeout_seconds"])

    @property
    def requests_session(self) -> requests.Session:
        """A session whose connection pool fits the hydration pool."""
        if not self._requests_session:
            session = requests.Session()
            size = max(10, int(self.config.get("max_concurrent_requests", 1)) * 2)
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            self._requests_session = session
        return self._requests_session

    # Retries: exponential with full jitter, bounded; waiting for the rate limit is not a retry.

    def backoff_wait_generator(self) -> t.Generator[float, None, None]:
        return backoff.expo(base=2, factor=0.5, max_value=30)

    def backoff_max_tries(self) -> int:
        return MAX_TRIES

    def backoff_jitter(self, value: float) -> float:
        return backoff.full_jitter(value)

    def backoff_handler(self, details: dict) -> None:
        self.retries += 1
        request = details["args"][0]
        self.logger.warning(
            "Retrying %s after try %d (%s); waiting %.1f s",
            describe(request.method, request.path_url),
            details["tries"],
            details.get("exception"),
            details["wait"],
        )

    def _request(self, prepared_request: requests.PreparedRequest, context: Context | None) -> requests.Response:
        """Send under the rate governor; a 429 waits for the window to reset and goes again."""
        authenticated = self.authenticator(prepared_request)
        while True:
            GOVERNOR.acquire()
            response = self.requests_session.send(authenticated, timeout=self.timeout, allow_redirects=False)
            GOVERNOR.observe(response.headers)
            if response.status_code != 429:
                break
            GOVERNOR.rate_limited_until(response.headers)
            self.logger.info("Rate limited on %s; waiting for the window to reset", describe(
                prepared_request.method or "", prepared_request.path_url))
        self._write_request_duration_log(endpoint=self.path, response=response, context=context, extra_tags=None)
        self.validate_response(response)
        return response

    def request_decorator(self, func: t.Callable) -> t.Callable:
        """The SDK's bounded backoff; when it runs out, one line naming the endpoint and the last failure."""
        retried = super().request_decorator(func)

        def request_or_give_up(prepared_request: requests.PreparedRequest, context: Context | None) -> t.Any:
            try:
                return retried(prepared_request, context)
            except RetriableAPIError as err:
                raise IntercomRequestFailed(f"{err} (gave up after {MAX_TRIES} tries)") from None
            except requests.RequestException as err:
                failure = "timed out" if isinstance(err, requests.Timeout) else f"failed ({type(err).__name__})"
                where = describe(prepared_request.method or "", prepared_request.path_url)
                raise IntercomRequestFailed(f"{where} {failure} (gave up after {MAX_TRIES} tries)") from None

        return request_or_give_up

    def send(self, prepared_request: requests.PreparedRequest) -> requests.Response:
        return self.request_decorator(self._request)(prepared_request, None)

    def validate_response(self, response: requests.Response) -> None:
        where = describe(response.request.method or "", response.request.path_url)
        status = response.status_code
        if status in {408, 500, 502, 503, 504} or status > 504:
            raise RetriableAPIError(f"{where} answered {status} {response.reason}", response)
        if status == 401:
            raise IntercomRefused(f"Intercom rejected the access token (401 on {where})")
        if status == 403:
            code, message = error_code(response)
            raise IntercomRefused(
                f"Intercom refused {where} (403 {code or 'forbidden'}: {message or response.reason}); "
                "the workspace's plan or the token's scopes do not allow reading conversations"
            )
        if status == 400:
            code, message = error_code(response)
            hint = " (check the api_version setting)" if code == "intercom_version_invalid" else ""
            raise IntercomRefused(f"Intercom refused {where} (400 {code}: {message}){hint}")
        if status == 404:
            raise IntercomNotFound(f"{where} answered 404 not_found")
        if 400 <= status < 500:
            code, message = error_code(response)
            raise IntercomRefused(f"{where} answered {status} {code or response.reason} {message}".rstrip())
        try:
            response.json_body = response.json()  # parsed once, read by parse_response
        except ValueError:
            raise RetriableAPIError(f"{where} answered {status} with a body that is not valid JSON", response) from None
