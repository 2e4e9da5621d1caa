"""The conversation parts stream: each part of a hydrated conversation as a record of its own.

The parts come from the `GET /conversations/{id}` payload the conversation stream already fetched:
no request of their own. It is a child stream of the conversation stream (singer-sdk's
`parent_stream_type`), so discovery, `--about`, selection, stream maps and flattening treat it like
any other stream; but the parent writes each conversation's parts itself, right before the
conversation's own record (ConversationsStream.sync_children), instead of the SDK's sync per
child context. That sync would write a SCHEMA message, two log lines and two metrics per
conversation, and its STATE would not be the conversation stream's. So the parts of a conversation
always reach the target before the STATE that covers the conversation, and its progress is the
conversation stream's bookmark: the parts stream keeps no state of its own.
"""

from __future__ import annotations

import typing as t

import msgspec
from singer_sdk import SchemaDirectory, StreamSchema
from singer_sdk.helpers.conform import TypeConformanceLevel
from typing_extensions import override

from intercom_conversation_shared.schema_files import PARTS_STREAM, schema_path
from intercom_conversation_shared.sdk_adapter import StreamAdapter
from intercom_conversation_shared.settings import show
from tap_intercom_conversation.bodies import plain
from tap_intercom_conversation.client import IntercomStream
from tap_intercom_conversation.messages import RawData
from tap_intercom_conversation.records import BadPayload, SearchRow, is_unix_seconds, to_iso
from tap_intercom_conversation.streams import ConversationsStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

_TEXT_FIELDS = ("part_type", "body")
_IDS = (str, int)


def _text_id(value: object) -> str | None:
    """An id as text (Intercom sends ids as strings; a number becomes its digits), None when absent."""
    if value is None or value == "":
        return None
    return str(value)


def decoded_part(part: object) -> object:
    """A part as the conversation's answer keeps it (msgspec.Raw): its fields decoded, `raw` kept for `data`.

    What PostgreSQL cannot store was already replaced in the answer's bytes (bodies.py).
    """
    if not isinstance(part, msgspec.Raw):
        return part
    try:
        fields = msgspec.json.decode(part)
    except ValueError:  # 1e400, which msgspec will not make a float: `data` keeps it as sent
        fields = plain(part)
    return SearchRow(fields, part) if isinstance(fields, dict) else fields


def part_record(conversation_id: str, part: object) -> dict:
    """The row of one part; `data` is the part untouched. A part that cannot be a row stops the run, named."""
    where = f"conversation {conversation_id}"
    if not isinstance(part, dict):
        raise BadPayload(f"{where}: a conversation part that is not an object: {show(part)}")
    part_id = part.get("id")
    if part_id is None or part_id == "" or isinstance(part_id, bool) or not isinstance(part_id, _IDS):
        raise BadPayload(f"{where}: a conversation part without an id (part_type={show(part.get('part_type'))})")
    where = f"{where}, part {part_id}"
    for field in ("created_at", "updated_at"):
        if part.get(field) is not None and not is_unix_seconds(part[field]):
            raise BadPayload(f"{where}: {field} {show(part[field])} is not unix seconds")
    for field in _TEXT_FIELDS:
        if part.get(field) is not None and not isinstance(part[field], str):
            raise BadPayload(f"{where}: {field} {show(part[field])} is not a string")
    if part.get("redacted") is not None and not isinstance(part["redacted"], bool):
        raise BadPayload(f"{where}: redacted {show(part['redacted'])} is not a boolean")
    author, assigned_to = part.get("author"), part.get("assigned_to")
    for field, value in (("author", author), ("assigned_to", assigned_to)):
        if value is not None and not isinstance(value, dict):
            raise BadPayload(f"{where}: {field} {show(value)} is not an object")
    author, assigned_to = author or {}, assigned_to or {}
    created_at, updated_at = part.get("created_at"), part.get("updated_at")
    return {
        "intercom_id": str(part_id),
        "conversation_intercom_id": conversation_id,
        "part_type": part.get("part_type"),
        "author_type": _text_id(author.get("type")),
        "author_id": _text_id(author.get("id")),
        "assigned_to_type": _text_id(assigned_to.get("type")),
        "assigned_to_id": _text_id(assigned_to.get("id")),
        "body": part.get("body"),
        "redacted": part.get("redacted"),
        "created_at": None if created_at is None else to_iso(created_at),
        "updated_at": None if updated_at is None else to_iso(updated_at),
        "data": getattr(part, "raw", part),
    }


class ConversationPartsStream(RawData, StreamAdapter, IntercomStream):
    """`intercom_conversation_part_v1`: one record per part of each conversation the parent emits.

    Nothing with `include_conversation_parts: false` (a search row has no parts). Intercom returns a
    conversation's 500 most recent parts: older ones are not in the payload, and stay in the table
    from the runs that saw them.
    """

    name = PARTS_STREAM
    parent_stream_type = ConversationsStream
    primary_keys = ("intercom_id",)
    replication_key = None
    state_partitioning_keys: t.ClassVar[list[str]] = []  # no state per conversation (see the module docstring)
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # part_record builds every column in its schema type
    schema = StreamSchema(SchemaDirectory(schema_path(f"{PARTS_STREAM}.json").parent))

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_written = False

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        conversation = (context or {}).get("conversation") or {}
        listed = conversation.get("conversation_parts") or {}
        conversation_id = str(conversation.get("id"))
        for part in listed.get("conversation_parts") or []:
            yield part_record(conversation_id, decoded_part(part))

    def write_parts(self, context: Context) -> int:
        """Write the parts of one conversation (its context from the parent); how many records they were.

        The SCHEMA message goes first, once per run, when the first conversation's parts are written.
        """
        if not self._schema_written:
            self.write_schema_message()
            self._schema_written = True
        written = 0
        for record in self.get_records(context):
            processed = self.post_process(record, context)
            if processed is not None:
                self.write_record_message(processed)
                written += 1
        return written
