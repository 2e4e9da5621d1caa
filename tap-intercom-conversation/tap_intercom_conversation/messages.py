"""How a record becomes RECORD messages, without the SDK's walk through every key of `data`."""

from __future__ import annotations

import typing as t
from functools import cached_property

import msgspec
import singer_sdk.singerlib as singer
from singer_sdk import Stream
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers._util import utc_now

from tap_intercom_conversation.bodies import decoded_json


class QuickRecordMessages(Stream):
    """For a stream whose records carry a payload as `data`: the conversations and their parts."""

    def _generate_record_messages(self, record: dict) -> t.Generator[singer.RecordMessage, None, None]:
        """The SDK's (singer-sdk 0.54.9), but deselected columns are dropped without a walk through `data`.

        The SDK looks up every key at every depth of the record in the selection mask: about a quarter
        of the tap's CPU with a conversation's `data` (hundreds of keys), a third of the parts stream's
        (measured: 35 us of about 100 per part), while the schema lists no key inside `data` that a
        catalog could deselect. A catalog that does name one gets the SDK's walk.
        `data` as sent (a search row's bytes) is decoded only for what reads inside it: that walk,
        stream maps or flattening.
        """
        if self._reads_inside_data and isinstance(record["data"], msgspec.Raw):
            record["data"] = decoded_json(bytes(record["data"]))
        if self._selects_inside_columns:
            yield from super()._generate_record_messages(record)
            return
        for column in self._deselected_columns:
            record.pop(column, None)
        record = conform_record_data_types(
            stream_name=self.name,
            record=record,
            schema=self.effective_schema,
            level=self.TYPE_CONFORMANCE_LEVEL,
            logger=self.logger,
        )
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield singer.RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )

    @cached_property
    def _deselected_columns(self) -> tuple[str, ...]:
        return tuple(column for column in self.schema["properties"] if not self.mask[("properties", column)])

    @cached_property
    def _selects_inside_columns(self) -> bool:
        return any(len(breadcrumb) > 2 and not selected for breadcrumb, selected in self.mask.items())

    @cached_property
    def _reads_inside_data(self) -> bool:
        maps = self.config.get("stream_maps") or self.config.get("flattening_enabled")
        return bool(maps) or self._selects_inside_columns
