"""The tap, its settings, and the checks that run before the first request."""

from __future__ import annotations

import decimal
import io
import ipaddress
import os
import re
import signal
import sys
import time
import types
import typing as t
from urllib.parse import urlsplit

import click
from jsonschema.validators import validator_for
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers._util import load_json

from tap_intercom_conversation.client import REGION_URLS, REQUEST_STATS, IntercomError, IntercomStream
from tap_intercom_conversation.deletions import DELETION_STREAM, DeletedConversationsStream
from tap_intercom_conversation.progress import run_summary
from tap_intercom_conversation.records import to_unix
from tap_intercom_conversation.schema_files import STREAM_NAME
from tap_intercom_conversation.streams import ConversationsStream

DEFAULT_LOOKBACK_SECONDS = 600
API_VERSION = re.compile(r"^(1\.[0-4]|2\.([0-9]|1[0-6])|Unstable)$")
NO_CONVERSATION_SEARCH = re.compile(r"^1\.")  # POST /conversations/search arrived with 2.0
SECRET_SETTINGS = frozenset({"access_token"})
FUTURE_BOOKMARK_SECONDS = 86400  # a bookmark further ahead than this is not a clock skew
_JSON_KINDS = {
    "integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
    "object": "an object", "array": "a list",
}


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
            description="Sent as Intercom-Version on every request: 2.0-2.16 or Unstable (1.x has no conversation "
            "search). title is null before 2.2; deletions need 2.16. Tested against 2.16.",
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
        th.Property(
            "deleted_conversations", th.StringType, default="mark", allowed_values=["mark", "remove"],
            description="What a conversation deleted in Intercom becomes in the table (API 2.16+): mark keeps "
            'the row and adds "deleted": true and "deleted_at" to its data; remove deletes the row.',
        ),
    ).to_dict()

    def discover_streams(self) -> list[IntercomStream]:
        return [ConversationsStream(tap=self), DeletedConversationsStream(tap=self)]

    def sync_all(self) -> None:
        """The sync, then one summary line (also when it stops on an error)."""
        started = time.monotonic()
        try:
            super().sync_all()
        finally:
            conversations = self.streams[STREAM_NAME]
            deletions = self.streams[DELETION_STREAM]
            self.logger.info(run_summary(
                conversations.counts, deletions.emitted, REQUEST_STATS.retries, REQUEST_STATS.rate_limited,
                time.monotonic() - started,
            ))

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """JSON-schema validation, then the checks it cannot express; the first mistake, naming its setting.

        A sync stops on it (IntercomError: one line, exit 1). Discovery, which needs no request, goes on
        with one warning line instead, so a catalog can be made before the secrets are set.
        """
        try:
            super()._validate_config(raise_errors=True)  # also fills in the defaults
            check_settings(self.config)
        except ConfigValidationError:
            problem = IntercomError(f"configuration: {schema_problem(self.config_jsonschema, self._config)}")
        except IntercomError as err:
            problem = err
        else:
            return []
        if raise_errors:
            raise problem
        self.logger.warning("%s (discovery goes on; a sync would stop here)", problem)
        return [str(problem)]

    def _handle_termination(self, signum: int, frame: types.FrameType | None) -> None:
        """SIGTERM/SIGINT: the STATE so far (it covers only records already written), then exit 128 + signum.

        The SDK's handler exits 0, which would tell a scheduler that an interrupted run completed.
        """
        try:
            self._state_writer.write_state(self.state)
        finally:
            name = signal.Signals(signum).name
            raise Interrupted(f"interrupted by {name}; the last STATE covers every record written before it", signum)

    def load_state(self, state: dict[str, t.Any]) -> None:
        """Refuse a state whose bookmark cannot be trusted, before anything is requested."""
        check_state(state)
        super().load_state(state)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """--config files: one line naming the file when one is missing or is not a JSON object."""
        for path in value:
            if path != "ENV":
                _read_json(path, "configuration")
        return super().cb_config(ctx, param, value)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        """A sync; the --state file is read here first so that a broken one is one clear line."""
        if about:
            super().invoke(about=about, about_format=about_format)
            return
        if state is not None:
            text = state.read()
            _parse_json(text, getattr(state, "name", "--state"), "state")
            state = io.StringIO(text)
        try:
            super().invoke(config=config, state=state, catalog=catalog)
        except BrokenPipeError:  # click would exit 1 without a word
            raise OutputClosed("the output was closed (the target stopped reading)") from None


class Interrupted(IntercomError):
    """A termination signal: the run stops and exits 128 + the signal's number, as a shell reports it."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class OutputClosed(IntercomError):
    """stdout is a pipe whose reader (the target) went away."""


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as err:
        raise IntercomError(f"{what}: cannot read {path} ({err.strerror or type(err).__name__})") from None
    return _parse_json(text, path, what)


def _parse_json(text: str, name: str, what: str) -> dict:
    """The JSON object in a settings or state file; the message never quotes the file's content."""
    if not text.strip():
        raise IntercomError(f"{what}: {name} is empty (expected a JSON object)")
    try:
        value = load_json(text)
    except ValueError as err:
        where = f"{getattr(err, 'msg', 'parse error')} at line {getattr(err, 'lineno', '?')}"
        raise IntercomError(f"{what}: {name} is not valid JSON ({where} column {getattr(err, 'colno', '?')})") from None
    if not isinstance(value, dict):
        raise IntercomError(f"{what}: {name} is not a JSON object")
    return value


def schema_problem(schema: dict, config: t.Mapping[str, t.Any]) -> str:
    """The first JSON-schema violation in the settings, naming the setting (a secret's value is never shown)."""
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return "the settings do not match their schema"
    error = errors[0]
    name = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else str(error.validator_value)
        if missing == "access_token":
            return "access_token is missing: set it (TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN)"
        return f"{missing} is missing"
    shown = "" if name.split(".")[0] in SECRET_SETTINGS else f" {_show(error.instance)}"
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        wanted = " or ".join(_JSON_KINDS.get(kind, kind) for kind in kinds if kind != "null")
        return f"{name}{shown} is not {wanted}"
    if error.validator == "enum":
        return f"{name}{shown} is not one of {', '.join(str(v) for v in error.validator_value)}"
    return f"{name} is invalid" if not shown else f"{name}{shown} is invalid ({error.validator})"


def _show(value: object) -> str:
    text = str(value) if isinstance(value, decimal.Decimal) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def check_settings(config: t.Mapping[str, t.Any]) -> None:
    """Raise IntercomError naming the first setting that cannot work."""
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
    if not API_VERSION.match(str(config.get("api_version"))):
        raise IntercomError(
            f"configuration: api_version {config.get('api_version')!r} is not an Intercom version "
            "(1.0-1.4, 2.0-2.16 or Unstable)"
        )
    if NO_CONVERSATION_SEARCH.match(str(config.get("api_version"))):
        raise IntercomError(
            f"configuration: api_version {config.get('api_version')!r} has no conversation search; "
            "the tap needs 2.0 or later (2.16 recommended)"
        )
    bounds = {
        "lookback_window_seconds": (0, 30 * 86400),
        "max_concurrent_requests": (1, 64),
        "request_timeout_seconds": (1, 600),
    }
    for name, (low, high) in bounds.items():
        value = config.get(name)
        if value is not None and not low <= value <= high:
            raise IntercomError(f"configuration: {name} {_show(value)} is out of range ({low} to {high})")


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
        if isinstance(err, OutputClosed):  # nothing more can be delivered, and Python must not complain at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stderr.write(f"tap-intercom-conversation: error: {err}\n")
        sys.exit(getattr(err, "exit_code", 1))


if __name__ == "__main__":
    main()
