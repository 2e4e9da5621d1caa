"""The checks that run before the first request: settings, the --config and --state files.

Each mistake becomes one IntercomError naming the setting or file, never a traceback, and never the
value of a secret.
"""

from __future__ import annotations

import decimal
import ipaddress
import re
import time
import typing as t
from urllib.parse import urlsplit

import simplejson

from intercom_conversation_shared.schema_files import STREAM_NAME
from tap_intercom_conversation.errors import IntercomError
from tap_intercom_conversation.records import to_unix

NO_CONVERSATION_SEARCH = re.compile(r"^1\.")  # POST /conversations/search arrived with 2.0
FUTURE_BOOKMARK_SECONDS = 86400  # a bookmark further ahead than this is not a clock skew


def read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as err:
        raise IntercomError(f"{what}: cannot read {path} ({err.strerror or type(err).__name__})") from None
    return parse_json(text, path, what)


def parse_json(text: str, name: str, what: str) -> dict:
    """The JSON object in a settings or state file; the message never quotes the file's content."""
    if not text.strip():
        raise IntercomError(f"{what}: {name} is empty (expected a JSON object)")
    try:
        value = simplejson.loads(text, parse_float=decimal.Decimal)  # as the SDK reads these files
    except ValueError as err:
        where = f"{getattr(err, 'msg', 'parse error')} at line {getattr(err, 'lineno', '?')}"
        raise IntercomError(f"{what}: {name} is not valid JSON ({where} column {getattr(err, 'colno', '?')})") from None
    if not isinstance(value, dict):
        raise IntercomError(f"{what}: {name} is not a JSON object")
    return value


def check_state(state: object) -> None:
    """Raise IntercomError when the state's bookmark is not one this tap wrote: never a silent full resync."""
    if not isinstance(state, dict):
        raise IntercomError("state: not a JSON object")
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise IntercomError("state: bookmarks is not an object")
    for name, value in bookmarks.items():
        if not isinstance(value, dict):
            raise IntercomError(f"state: bookmarks.{name} is not an object")
    ours = bookmarks.get(STREAM_NAME)
    if ours is None:
        return
    key = ours.get("replication_key")
    if key not in (None, "updated_at"):
        raise IntercomError(f"state: the bookmark of {STREAM_NAME} is on {key!r}, not updated_at")
    value = ours.get("replication_key_value")
    if value is None and key is not None:
        raise IntercomError(f"state: the bookmark of {STREAM_NAME} has no replication_key_value")
    if value is not None:
        bookmark = to_unix(value, f"state: the bookmark of {STREAM_NAME} (replication_key_value)")
        if bookmark > time.time() + FUTURE_BOOKMARK_SECONDS:
            raise IntercomError(
                f"state: the bookmark of {STREAM_NAME} ({value}) is in the future; nothing before it would be read"
            )
    recent = ours.get("recent_conversations")
    if recent is not None and (
        not isinstance(recent, dict)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in recent.values())
    ):
        raise IntercomError(f"state: {STREAM_NAME}.recent_conversations is not a map of conversation id to updated_at")


def check_settings(config: t.Mapping[str, t.Any], schema: dict) -> None:
    """Raise IntercomError naming the first setting that cannot work."""
    for name, spec in schema["properties"].items():
        if "pattern" in spec and name in config and config[name] is None:  # JSON schema's pattern skips null
            raise IntercomError(f"configuration: {name} None is not {spec['pattern_meaning']}")
    token = str(config.get("access_token") or "")
    if not token.strip():
        raise IntercomError("configuration: access_token is blank")
    if not token.isprintable() or token != token.strip() or " " in token:
        raise IntercomError(
            "configuration: access_token contains spaces or control characters (a newline copied with it?)"
        )
    if config.get("start_date"):
        to_unix(config["start_date"], "configuration: start_date")
    if config.get("api_url"):
        _check_api_url(str(config["api_url"]))
    if NO_CONVERSATION_SEARCH.match(str(config.get("api_version"))):
        raise IntercomError(
            f"configuration: api_version {config.get('api_version')!r} has no conversation search; "
            "the tap needs 2.0 or later (2.16 recommended)"
        )


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
