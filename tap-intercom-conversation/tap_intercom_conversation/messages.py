"""A record's `data` stays the answer's bytes (msgspec.Raw) unless something must read inside it."""

from __future__ import annotations

import typing as t
from functools import cached_property

import msgspec
from singer_sdk import Stream
from typing_extensions import override

from tap_intercom_conversation.bodies import decoded_json

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


class RawData(Stream):
    """For a stream whose records carry a payload as `data`: the conversations and their parts.

    `data` is written as sent, never decoded and encoded again; the SDK's selection walk stops at it
    (it descends only into dicts). Stream maps, flattening or a catalog that deselects a key inside a
    column need the decoded payload: then, and only then, `post_process` decodes it.
    """

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        if self._reads_inside_data and isinstance(row.get("data"), msgspec.Raw):
            row["data"] = decoded_json(bytes(row["data"]))
        return row

    @cached_property
    def _reads_inside_data(self) -> bool:
        maps = self.config.get("stream_maps") or self.config.get("flattening_enabled")
        selects_inside = any(len(breadcrumb) > 2 and not selected for breadcrumb, selected in self.mask.items())
        return bool(maps) or selects_inside
