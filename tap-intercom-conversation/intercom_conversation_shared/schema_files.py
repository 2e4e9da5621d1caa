"""The stream's JSON schema and the table's SQL, kept once in the repository's schemas/.

A wheel carries them inside the package (hatch force-include); an editable install reads them
from the repository itself.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

STREAM_NAME = "intercom_conversation_v1"
PARTS_STREAM = "intercom_conversation_part_v1"
# Every table of the product, in the order they are applied: the parts table's triggers read the
# conversation table's deletions.
TABLES = (STREAM_NAME, PARTS_STREAM)

_PACKAGED = Path(__file__).parent / "schemas"
_REPOSITORY = Path(__file__).resolve().parents[2] / "schemas"


def schema_path(filename: str) -> Path:
    for folder in (_PACKAGED, _REPOSITORY):
        if (folder / filename).is_file():
            return folder / filename
    msg = f"{filename} is missing: neither {_PACKAGED} nor {_REPOSITORY} has it"
    raise FileNotFoundError(msg)


@cache
def stream_schema() -> dict:
    return json.loads(schema_path(f"{STREAM_NAME}.json").read_text(encoding="utf-8"))


def table_sql(table: str = STREAM_NAME) -> str:
    return schema_path(f"{table}.sql").read_text(encoding="utf-8")
