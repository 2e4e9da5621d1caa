"""The tap and its settings; checks.py holds the checks that run before the first request."""

from __future__ import annotations

import io
import signal
import sys
import types
import typing as t
import warnings

import click
import simplejson
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from intercom_conversation_shared import logs
from intercom_conversation_shared.schema_files import STREAM_NAME
from intercom_conversation_shared.sdk_adapter import TapAdapter
from intercom_conversation_shared.settings import REGION_URLS, coerce_strings, schema_problem
from tap_intercom_conversation.checks import check_settings, check_state, parse_json, read_json
from tap_intercom_conversation.client import IntercomStream
from tap_intercom_conversation.deletions import DELETION_STREAM, DeletedConversationsStream
from tap_intercom_conversation.errors import IntercomError, Interrupted, OutputClosed
from tap_intercom_conversation.parts import ConversationPartsStream
from tap_intercom_conversation.progress import run_summary
from tap_intercom_conversation.runtime import Runtime
from tap_intercom_conversation.streams import ConversationsStream
from tap_intercom_conversation.writer import WholeLineWriter, detach_stdout, end_output, state_line, with_failure

DEFAULT_LOOKBACK_SECONDS = 600
DEFAULT_MAX_CONCURRENT_REQUESTS = 500  # 4,167 calls per 10 s (25,000 a minute) x 1 s latency x 1.2
MAX_CONCURRENT_REQUESTS = 1000  # Intercom's highest limit at 2.4 s per request


class TapIntercomConversation(TapAdapter, Tap):
    """Intercom conversations, backfilled then kept in sync, for the table intercom_conversation_v1."""

    name = "tap-intercom-conversation"
    message_writer_class = WholeLineWriter

    # The single source of every setting: type, default, limits, pattern and description. checks.py words
    # a violation from it; tests/test_settings.py holds meltano.yml, plugin-definitions/ and the README to it.
    config_jsonschema = th.PropertiesList(
        th.Property(
            "access_token",
            th.StringType,
            required=True,
            secret=True,
            description="Intercom access token: a private app's, or the OAuth token of an installed public app.",
        ),
        th.Property(
            "region",
            th.StringType,
            default="us",
            allowed_values=list(REGION_URLS),
            description="Intercom region of the workspace: us (api.intercom.io), eu or au. api_url overrides it.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            description="Base URL of the API (default https://api.intercom.io, or the region's). "
            "https only, except http:// to a loopback host (a local simulator).",
        ),
        th.Property(
            "api_version",
            th.StringType(pattern=r"^(1\.[0-4]|2\.([0-9]|1[0-6])|Unstable)$"),
            default="2.16",
            pattern_meaning="an Intercom version (1.0-1.4, 2.0-2.16 or Unstable)",
            description="Sent as Intercom-Version on every request: 2.0-2.16 or Unstable (1.x has no conversation "
            "search). title is null before 2.2; deletions need 2.16. Tested against 2.16.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            description="Earliest updated_at to replicate (ISO 8601). Absent: all history.",
        ),
        th.Property(
            "lookback_window_seconds",
            th.IntegerType(minimum=0, maximum=30 * 86400),
            default=DEFAULT_LOOKBACK_SECONDS,
            description="How far before the bookmark each incremental run searches again, for Intercom's "
            "search index lag and clock skew. Conversations already loaded are not fetched again.",
        ),
        th.Property(
            "include_conversation_parts",
            th.BooleanType,
            default=True,
            description="True: data is the full GET /conversations/{id} payload with its conversation_parts. "
            "False: data is the search payload (one request per 150 conversations).",
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType(minimum=1, maximum=MAX_CONCURRENT_REQUESTS),
            default=DEFAULT_MAX_CONCURRENT_REQUESTS,
            description="Upper bound of the requests in flight at once (1-1000). Below it, the tap keeps as many "
            "conversations hydrating (GET /conversations/{id}) as the rate limit needs at the latency it observes "
            "(calls per second x latency x 1.5, plus 4); 500 covers Intercom's highest limit, 25,000 calls a "
            "minute, at 1 s per request. With include_conversation_parts false: 16 to 32 searches over disjoint "
            "updated_at spans, as many as the latency needs. One rate governor keeps every 10-second window "
            "under the limit.",
        ),
        th.Property(
            "request_timeout_seconds",
            th.NumberType(minimum=1, maximum=600),
            default=60,
            description="Seconds to wait for an answer before the request is retried.",
        ),
        th.Property(
            "deleted_conversations",
            th.StringType,
            default="mark",
            allowed_values=["mark", "remove"],
            description="What a conversation deleted in Intercom becomes in the table (API 2.16+): mark keeps "
            'the row and adds "deleted": true and "deleted_at" to its data; remove deletes the row.',
        ),
        th.Property(
            "log_metrics",
            th.BooleanType,
            default=False,
            description="True: singer-sdk's METRIC line for every request and stream. False: the log is progress "
            "lines, warnings and the run summary (at log level debug, a METRIC line per stream and minute, never "
            "per request).",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.runtime = Runtime()  # before the SDK builds the streams: each reads it from its tap
        super().__init__(*args, **kwargs)
        # A METRIC line per request would be most of the log (a million lines for a million conversations):
        # at debug too, the request lines are dropped (logs.PerRequestMetrics) unless log_metrics asks for them.
        logs.configure(self.name, per_batch=bool(self.config.get("log_metrics")))

    @override
    def discover_streams(self) -> list[IntercomStream]:
        return [ConversationsStream(tap=self), ConversationPartsStream(tap=self), DeletedConversationsStream(tap=self)]

    @override
    def log_run_summary(self, seconds: float) -> None:
        """One line for the whole run, also when the sync stopped on an error."""
        conversations = t.cast(ConversationsStream, self.streams[STREAM_NAME])
        deletions = t.cast(DeletedConversationsStream, self.streams[DELETION_STREAM])
        self.logger.info(
            run_summary(
                conversations.counts,
                deletions.emitted,
                self.runtime,
                seconds,
            )
        )

    @override
    def on_sync_failed(self, error: Exception) -> None:
        """Hand the failure's line to the target, which ends its log with it (logs.EXTRACTOR_FAILED)."""
        writer = self.message_writer
        if isinstance(writer, WholeLineWriter):
            hand_over_failure(error, writer.write_failure)

    @override
    def validate_settings(self, settings: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """JSON-schema validation, then the checks it cannot express; the first mistake, naming its setting.

        A sync stops on it (IntercomError: one line, exit 1). Discovery, which needs no request, goes on
        with one warning line instead, so a catalog can be made before the secrets are set.
        """
        coerce_strings(settings, self.config_jsonschema)
        try:
            super().validate_settings(settings, raise_errors=True)  # also fills in the defaults
            check_settings(self.config, self.config_jsonschema)
        except ConfigValidationError:
            problem = IntercomError(f"configuration: {schema_problem(self.config_jsonschema, settings)}")
        except IntercomError as err:
            problem = err
        else:
            return []
        if raise_errors:
            raise problem
        self.logger.warning("%s (discovery goes on; a sync would stop here)", problem)
        return [str(problem)]

    @override
    def on_termination(self, signum: int, frame: types.FrameType | None) -> None:
        """SIGTERM/SIGINT: the STATE so far (it covers only records already written), then exit 128 + signum.

        The SDK's handler exits 0, which would tell a scheduler that an interrupted run completed.
        """
        writer = self.message_writer
        if isinstance(writer, WholeLineWriter) and writer.writing:
            writer.pending = lambda: self.on_termination(signum, frame)
            return
        try:
            self.state_writer.write_state(self.state)
        finally:
            name = signal.Signals(signum).name
            raise Interrupted(f"interrupted by {name}; the last STATE covers every record written before it", signum)

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Refuse a state whose bookmark cannot be trusted, before anything is requested."""
        check_state(state)
        super().load_state(state)

    @override
    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """--config files: one line naming the file when one is missing or is not a JSON object."""
        for path in value:
            if path != "ENV":
                read_json(path, "configuration")
        return super().cb_config(ctx, param, value)

    @override
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
        resumes_from = b"{}"
        if state is not None:
            text = state.read()
            name = getattr(state, "name", "--state")
            given = parse_json(text, name, "state")
            if given.get("type") == "STATE":  # a STATE message (the last line of a run's output): its value
                if not isinstance(given.get("value"), dict):
                    raise IntercomError(f"state: {name} is a STATE message whose value is not a JSON object")
                text = simplejson.dumps(given["value"])
            state = io.StringIO(text)
            resumes_from = text.encode()
        try:
            super().invoke(config=config, state=state, catalog=catalog)
            end_output()
        except BrokenPipeError:  # click would exit 1 without a word
            raise OutputClosed("the output was closed (the target stopped reading)") from None
        except IntercomError as error:  # one raised before the sync began (a setting, the state) is handed over here
            hand_over_failure(error, lambda cause: write_stdout(with_failure(state_line(resumes_from), cause)))
            raise


def hand_over_failure(error: Exception, write: t.Callable[[str], None]) -> None:
    """Tell the target why the run stops: `write` its one line (an unexpected error: its name), once.

    Meltano closes the loader's input only after the tap has exited, so the loader's summary always
    comes after the tap's error line; the loader ends its log with this line instead. Nothing is
    handed over when the target is gone, or is being stopped by the same signal.
    """
    if isinstance(error, (Interrupted, OutputClosed, BrokenPipeError)) or getattr(error, "handed_over", False):
        return
    if isinstance(error, IntercomError):
        cause = str(error)
        error.handed_over = True
    else:
        cause = f"{type(error).__name__}, an unexpected error: the extractor's traceback above says where"
    try:
        write(cause)
    except OSError:  # the target is gone: its own error line says why; Python must not complain at exit
        detach_stdout()


def write_stdout(line: bytes) -> None:
    sys.stdout.buffer.write(line)
    sys.stdout.flush()


def one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    """A Python warning as one log line, without the source line Python prints after it.

    singer-sdk warns on every run under Python 3.10 (end of life); its three lines would break the
    promise that stderr holds log lines and at most one error line.
    """
    return f"{category.__name__}: {message}"


def main() -> None:
    """The console script: expected failures are one line on stderr and exit 1, never a traceback."""
    warnings.formatwarning = one_line_warning
    try:
        TapIntercomConversation.cli()
    except IntercomError as err:
        closed = isinstance(err, OutputClosed)
        if closed:  # nothing more can be delivered, and Python must not complain at exit
            detach_stdout()
        # The output closed: the target stopped on an error, and its line is the cause.
        logs.fail(TapIntercomConversation.logger, f"tap-intercom-conversation: error: {err}", caused_elsewhere=closed)
        sys.exit(getattr(err, "exit_code", 1))


if __name__ == "__main__":
    main()
