"""The tap, its settings, and the checks that run before the first request."""

from __future__ import annotations

import ipaddress
import re
import sys
import typing as t
from urllib.parse import urlsplit

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_intercom_conversation.client import REGION_URLS, IntercomError
from tap_intercom_conversation.records import to_unix
from tap_intercom_conversation.streams import ConversationsStream

DEFAULT_LOOKBACK_SECONDS = 600
API_VERSION = re.compile(r"^(1\.[0-4]|2\.([0-9]|1[0-6])|Unstable)$")


class TapIntercomConversation(Tap):
    """Intercom conversations, backfilled then kept in sync, for the table intercom_conversation_v1."""

    name = "tap-intercom-conversation"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "access_token", th.StringType, required=True, secret=True,
            description="Intercom access token: a private app's, or the OAuth token of an installed public app.",
        ),
        th.Property(
            "region", th.StringType, default="us", allowed_values=list(REGION_URLS),
            description="Intercom region of the workspace: us (api.intercom.io), eu or au. api_url overrides it.",
        ),
        th.Property(
            "api_url", th.StringType,
            description="Base URL of the API (default https://api.intercom.io, or the region's). "
            "https only, except http:// to a loopback host (a local simulator).",
        ),
        th.Property(
            "api_version", th.StringType, default="2.16",
            description="Sent as Intercom-Version on every request: 1.0-1.4, 2.0-2.16 or Unstable.",
        ),
        th.Property(
            "start_date", th.DateTimeType,
            description="Earliest updated_at to replicate (ISO 8601). Absent: all history.",
        ),
        th.Property(
            "lookback_window_seconds", th.IntegerType, default=DEFAULT_LOOKBACK_SECONDS,
            description="How far before the bookmark each incremental run searches again, for Intercom's "
            "search index lag and clock skew. Conversations already loaded are not fetched again.",
        ),
        th.Property(
            "include_conversation_parts", th.BooleanType, default=True,
            description="True: data is the full GET /conversations/{id} payload with its conversation_parts. "
            "False: data is the search payload (one request per 150 conversations).",
        ),
        th.Property(
            "max_concurrent_requests", th.IntegerType, default=48,
            description="Conversations hydrated concurrently (GET /conversations/{id}), all under one rate governor.",
        ),
        th.Property(
            "request_timeout_seconds", th.NumberType, default=60,
            description="Seconds to wait for an answer before the request is retried.",
        ),
    ).to_dict()

    def discover_streams(self) -> list[ConversationsStream]:
        return [ConversationsStream(tap=self)]

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """JSON-schema validation, then the checks it cannot express; each names its setting."""
        try:
            errors = super()._validate_config(raise_errors=raise_errors)
        except ConfigValidationError as exc:
            raise IntercomError(f"configuration: {_first_error(exc.errors)}") from None
        if raise_errors:
            check_settings(self.config)
        return errors


def _first_error(errors: list[str]) -> str:
    text = errors[0] if errors else "invalid configuration"
    if "'access_token' is a required property" in text:
        return "access_token is missing: set it (TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN)"
    return text


def check_settings(config: t.Mapping[str, t.Any]) -> None:
    """Raise IntercomError naming the first setting that cannot work."""
    if not str(config.get("access_token") or "").strip():
        raise IntercomError("configuration: access_token is blank")
    if config.get("start_date"):
        to_unix(config["start_date"], "configuration: start_date")
    if config.get("api_url"):
        _check_api_url(str(config["api_url"]))
    if not API_VERSION.match(str(config.get("api_version"))):
        raise IntercomError(
            f"configuration: api_version {config.get('api_version')!r} is not an Intercom version "
            "(1.0-1.4, 2.0-2.16 or Unstable)"
        )
    bounds = {
        "lookback_window_seconds": (0, 30 * 86400),
        "max_concurrent_requests": (1, 64),
        "request_timeout_seconds": (1, 600),
    }
    for name, (low, high) in bounds.items():
        value = config.get(name)
        if value is not None and not low <= value <= high:
            raise IntercomError(f"configuration: {name} {value!r} is out of range ({low} to {high})")


def _check_api_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise IntercomError(f"configuration: api_url {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise IntercomError(
            f"configuration: api_url {url!r} is plain http to a non-loopback host; the access token "
            "must not travel unencrypted (use https)"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    """The console script: expected failures are one line on stderr and exit 1, never a traceback."""
    try:
        TapIntercomConversation.cli()
    except IntercomError as err:
        sys.stderr.write(f"tap-intercom-conversation: error: {err}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
