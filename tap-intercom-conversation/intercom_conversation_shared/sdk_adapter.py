"""The only place the tap touches singer-sdk's private or `@final` surface (pinned: singer-sdk ~=0.54.9).

An SDK upgrade starts here: each entry below names the private API, why no public hook does the job,
and what to check when the SDK changes. The tap and the client use public singer-sdk API only outside
this module; tests/test_sdk_seam.py fails on any such use elsewhere, and on a change in the source of
a private member this module relies on (pinned per singer-sdk version in tests/sdk_pins.json).

# --- the tap (tap.py) ---
TapAdapter, the base of TapIntercomConversation (its settings check is SettingsAdapter, shared with the loader):
- `_validate_config` (override): the SDK calls it from PluginBase.__init__, after merging the settings
  from the environment, with no public hook around it; the tap coerces string values, adds the checks
  JSON schema cannot express, and turns a violation into one line. Forwarded to `validate_settings`.
- `_config` (use): the settings as given, which that check coerces in place before validation; the
  public `config` is a read-only view of it. Handed to `validate_settings` as its argument.
- `sync_all` (`@final` override): the run summary line must be printed also when the sync stops on an
  error, and the target told why, and `Tap.invoke` builds the tap and calls sync_all with nothing public
  around the call. Forwarded to `on_sync_failed` and `log_run_summary` (in a finally block).
- `_handle_termination` (override): PluginBase.__init__ installs it for SIGINT/SIGTERM itself; replacing
  it with signal.signal after __init__ would leave a window in which a signal exits 0. Forwarded to
  `on_termination`.
Public instead since issue 17: `state_writer` (was `_state_writer`).

# --- the loader (target_intercom_postgres/target.py) ---
TargetAdapter, the base of TargetIntercomPostgres (target-postgres's TargetPostgres after it):
- `_validate_config` (override): as the tap's, Meltano's text settings are typed and a violation is
  one line naming the setting. Forwarded to `validate_settings`, with `_config` (use) as its argument.
- `_process_schema_message`, `_process_state_message` (override): the loader must see the tap's first
  STATE before any SCHEMA (an empty table with a bookmark means a changed database), and note each
  STATE with what it waits for (acknowledge.py); the SDK has no public per-message hook. Forwarded to
  `on_schema_message` and `on_state_message`.
- `_process_record_message` (override): a record of the product's streams that the loader's reader
  already decoded and checked with its types (copy_load.py), with no stream map, goes straight to its
  sink's batch, its counters and its drain (issue 25: the SDK's per-record path, written for maps and
  validation that such a record does not need, was the loader's largest Python cost); any other
  record the SDK's way. Forwarded to `on_record_message`.
- `_get_context` (use): the batch a record joins, which `process_record` fills. Exposed as
  `batch_context(sink, record)`.
- `drain_one` (`@final` override): the SDK acknowledges STATE only after draining every sink; the
  loader acknowledges the STATE a batch commit covers right after that commit, and names the table a
  failed commit was for. Forwarded to `after_drain` / `on_drain_failed`.
- `_write_state_message` (override): the SDK's full drain writes its latest STATE; the loader keeps
  its own acknowledgements in order with it. Forwarded to `write_state`.
- `_handle_termination` (override): installed by PluginBase.__init__; the SDK's drains all sinks from
  inside the signal handler, also in the middle of a batch. Forwarded to `on_termination`.
- `_total_records_read` (use): a sink's records read in all, which acknowledge.py compares with its
  public `current_size`. Exposed as `records_read(sink)`.
- `_latest_state`, `_sinks_active`, `_sinks_to_clear` (use): the latest STATE read and every sink that
  may hold uncommitted records (no public accessor). Exposed as `latest_state` and `sinks()`.

# --- the loader's sink (copy_load.py) ---
SinkAdapter, the base of CopySink (target-postgres's PostgresSink after it):
- `_validate_and_parse` (override): the SDK validates every record with jsonschema and parses its
  date-times in Python before batching it, with no public hook around either (`get_validator` can
  only drop the validation, not the parsing); a record the loader's reader already decoded with its
  types (issue 25: half the stock loader's CPU) is kept as it is. Forwarded to `validate_and_parse`.

# --- the HTTP client (client.py) ---
None. The governor, 429 waits and clock/latency observation are an HTTPAdapter mounted on the public
`requests_session`; retries use the public backoff_* hooks and `request_decorator`; the METRIC line is
`singer_sdk.metrics.log` on `metrics_logger`. (The deletions stream's pages go through the SDK's own
`request_records`, which calls its private `_request` internally: nothing here overrides or calls it.)

# --- the streams (streams.py, parts.py) ---
StreamAdapter, the base of the conversations and parts streams:
- `_increment_stream_state` (override): the bookmark is the search position (window.py), never a
  hydrated `updated_at`, which the SDK's version would take from the record. Forwarded to
  `advance_bookmark`.
- `_write_state_message` (use): a STATE after each window, before the catch-up waits, so the target can
  commit what it has while the tap waits for Intercom's clock. Exposed as `write_state_message`.
- `_sync_children` (override): a conversation's parts are written right after it, from the payload
  already in memory, instead of one SDK child sync per context. Forwarded to `sync_children`.
- `_write_record_message` (use): the parts stream writes one conversation's parts at once from there.
  Exposed as `write_record_message`.
- `_write_schema_message` (use): the parts stream, synced by its parent instead of the SDK, writes its
  SCHEMA itself, once, before the first conversation's parts. Exposed as `write_schema_message`.
- `_generate_record_messages` (override), with `_stream_version` (use) and `helpers._util.utc_now`
  (import): per record the SDK copies the record to walk its keys against the selection mask, conforms
  its types, and runs each stream map's transform; for these streams, with the identity map only,
  nothing deselected and TYPE_CONFORMANCE_LEVEL NONE, each step returns the record as it was (issue 25:
  about 5 % of the tap's CPU in a search-only backfill). There is no public hook between the record
  and its RECORD message (`post_process` runs before). When `records_pass_unchanged` (decided once per
  stream) the RECORD message is built as the SDK builds it; otherwise the SDK's own. It also serves
  the parts stream: `_write_record_message` calls it. On an SDK upgrade: compare the SDK's
  `_generate_record_messages` with the fast path (the message's fields, `stream_alias`, `utc_now`),
  and what `pop_deselected_record_properties` (SelectionMask's defaults), `conform_record_data_types`
  at NONE and SameRecordTransform's `transform` (flattening) do.
Public instead since issue 17: `post_process` decodes `data` when stream maps or a catalog read inside
it (messages.py). The copy of `_generate_record_messages` (with `helpers._typing` and `helpers._util`)
that wrote every record without the SDK's steps went then (its measurement: docs/benchmarks.md); since
issue 25 the override above skips them only where they provably change nothing, and defers to the SDK
otherwise. checks.py reads --config/--state with simplejson and Decimal, as the SDK's private
`helpers._util.load_json` does.
"""

from __future__ import annotations

import time
import typing as t
from functools import cached_property
from types import FrameType

from singer_sdk import Sink, Stream, Tap, Target
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.plugin_base import PluginBase
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record
    from singer_sdk.sinks import Sink

# --- the tap and the loader (tap.py, target.py) ---


class SettingsAdapter(PluginBase):
    """The settings check of a tap or a target: `_validate_config` forwarded to `validate_settings`."""

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        return self.validate_settings(self._config, raise_errors=raise_errors)

    def validate_settings(self, settings: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """The SDK's JSON-schema validation of `settings` (the mutable dict behind `config`)."""
        return super()._validate_config(raise_errors=raise_errors)


class TapAdapter(SettingsAdapter, Tap):
    """The tap's private SDK hooks, each forwarded to a public-named method the tap implements."""

    @override  # type: ignore[misc]  # sync_all is @final in the SDK: see the module docstring
    def sync_all(self) -> None:
        started = time.monotonic()
        try:
            super().sync_all()
        except Exception as error:
            self.on_sync_failed(error)
            raise
        finally:
            self.log_run_summary(time.monotonic() - started)

    def on_sync_failed(self, error: Exception) -> None:
        """The sync stops on `error` (raised again after this)."""

    def log_run_summary(self, seconds: float) -> None:
        """Called once the sync has ended, after `seconds`, however it ended."""

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        self.on_termination(signum, frame)

    def on_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: the SDK's handler (writes the STATE, then exits 0)."""
        super()._handle_termination(signum, frame)


# --- the HTTP client (client.py) ---


# --- the streams (streams.py, parts.py) ---


class StreamAdapter(Stream):
    """The streams' private SDK hooks, each forwarded to (or exposed as) a public-named method."""

    @override
    def _increment_stream_state(self, latest_record: dict, *, context: Context | None = None) -> None:
        self.advance_bookmark(latest_record, context)

    def advance_bookmark(self, latest_record: dict, context: Context | None) -> None:
        """After each record: the SDK's bookmark from the record's replication key."""
        super()._increment_stream_state(latest_record, context=context)

    @override
    def _sync_children(self, child_context: Context | None) -> None:
        self.sync_children(child_context)

    def sync_children(self, child_context: Context | None) -> None:
        """After each record: the SDK's sync of every child stream for its context."""
        super()._sync_children(child_context)

    @override
    def _generate_record_messages(self, record: Record) -> t.Generator[RecordMessage, None, None]:
        if self.records_pass_unchanged:
            yield RecordMessage(stream=self.name, record=record, version=self._stream_version, time_extracted=utc_now())
        else:
            yield from super()._generate_record_messages(record)

    @cached_property
    def records_pass_unchanged(self) -> bool:
        """True when the SDK's steps between a record and its RECORD message provably change nothing.

        - The selection walk pops a key whose breadcrumb the mask says is deselected; a breadcrumb the
          mask lacks takes its parent's value, up to the stream (True when absent). With every value in
          the mask True, nothing is popped at any depth, whatever the record holds (a `data` decoded by
          post_process included).
        - Type conformance at NONE returns the record itself.
        - The one map is the identity (SameRecordTransform, not a subclass) without flattening, under
          the stream's own name: its `transform` returns the record itself. Any other map, a second one
          (`__source__`) or a filter falls back to the SDK.
        Decided at the first record, when the catalog and the stream maps are in place for the run.
        """
        maps = self.stream_maps
        identity = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == self.name
        )
        return identity and self.TYPE_CONFORMANCE_LEVEL == TypeConformanceLevel.NONE and all(self.mask.values())

    def write_state_message(self) -> None:
        self._write_state_message()

    def write_record_message(self, record: dict) -> None:
        self._write_record_message(record)

    def write_schema_message(self) -> None:
        self._write_schema_message()


# --- the loader's sink (copy_load.py) ---


class SinkAdapter(Sink):
    """The sink's private SDK hook, forwarded to a public-named method."""

    @override
    def _validate_and_parse(self, record: dict) -> dict:
        return self.validate_and_parse(record)

    def validate_and_parse(self, record: dict) -> dict:
        """The SDK's validation and timestamp parsing of a record, before it is batched."""
        return super()._validate_and_parse(record)


# --- the loader (target_intercom_postgres/target.py) ---


def records_read(sink: Sink) -> int:
    """How many records `sink` has read since it was created (committed or not)."""
    return int(sink._total_records_read)


class TargetAdapter(SettingsAdapter, Target):
    """The loader's private SDK hooks, each forwarded to a public-named method."""

    @property
    def latest_state(self) -> dict | None:
        """The latest STATE value read."""
        return self._latest_state

    def sinks(self) -> list[Sink]:
        """Every sink that may hold records read and not committed (those replaced by a new SCHEMA too)."""
        return [*self._sinks_to_clear, *self._sinks_active.values()]

    @override  # type: ignore[misc]  # drain_one is @final in the SDK: see the module docstring
    def drain_one(self, sink: Sink) -> None:
        try:
            super().drain_one(sink)
        except Exception as error:
            self.on_drain_failed(sink, error)
            raise
        self.after_drain(sink)

    def after_drain(self, sink: Sink) -> None:
        """After a sink committed its batch (also from the SDK's threads during a full drain)."""

    def on_drain_failed(self, sink: Sink, error: Exception) -> None:
        """A sink's batch failed: raise what should be reported instead, or return to let `error` go on."""

    @override
    def _write_state_message(self, state: dict) -> None:
        self.write_state(state)

    def write_state(self, state: dict) -> None:
        """The SDK's full drain acknowledges its latest STATE (one JSON line on stdout)."""
        super()._write_state_message(state)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        self.on_termination(signum, frame)

    def on_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: the SDK's handler (drains every sink, writes the STATE, exits 0)."""
        super()._handle_termination(signum, frame)

    @override
    def _process_schema_message(self, message_dict: dict) -> None:
        self.on_schema_message(message_dict)

    def on_schema_message(self, message_dict: dict) -> None:
        super()._process_schema_message(message_dict)

    @override
    def _process_state_message(self, message_dict: dict) -> None:
        self.on_state_message(message_dict)

    def on_state_message(self, message_dict: dict) -> None:
        super()._process_state_message(message_dict)

    @override
    def _process_record_message(self, message_dict: dict) -> None:
        self.on_record_message(message_dict)

    def on_record_message(self, message_dict: dict) -> None:
        """A RECORD: the SDK's map transform, validation and batching, then a drain if its sink is full."""
        super()._process_record_message(message_dict)


def batch_context(sink: Sink, record: dict) -> dict:
    """The batch a record joins (BatchSink's: a new one after each drain), as the SDK hands it to process_record."""
    return sink._get_context(record)
