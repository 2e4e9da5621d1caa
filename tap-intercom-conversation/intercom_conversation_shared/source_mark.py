"""Which Intercom a table is loaded from: the mark the loader writes and verify --repair checks.

The loader knows the extractor it loads from only through Meltano: inside `meltano run` (and `meltano
el`) it receives the extractor's resolved settings as MELTANO_EXTRACT_<SETTING> and its name as
MELTANO_EXTRACTOR_NAME. From them it writes, as the comment of intercom_conversation_v1.intercom_id,
the Intercom API host and a fingerprint of the access token (a truncated SHA-256: it identifies the
token without revealing it). verify computes the same from its own settings: a different host or token
means the table is not the one this job loads, and it refuses to repair it (or to judge it).

A token is the one credential that belongs to exactly one Intercom workspace, so two workspaces on the
same host (api.intercom.io) have different marks; after a token is rotated, the next run re-marks.
"""

from __future__ import annotations

import hashlib
import json
import typing as t

from intercom_conversation_shared.settings import REGION_URLS

KEY = "tap-intercom-conversation source"
EXTRACT_PREFIX = "MELTANO_EXTRACT_"
NAMESPACE = "tap_intercom_conversation"
# The mark of a table given as a quoted regclass literal ({table}): psycopg.sql formats it.
READ_SQL = (
    "SELECT col_description(a.attrelid, a.attnum) FROM pg_attribute a"
    " WHERE a.attrelid = {table}::regclass AND a.attname = 'intercom_id'"
)


def api_host(config: t.Mapping[str, t.Any]) -> str:
    """The base URL the tap calls for these settings (api_url, else the region's)."""
    return str(config.get("api_url") or REGION_URLS.get(str(config.get("region") or "us"), REGION_URLS["us"])).rstrip(
        "/"
    )


def fingerprint(token: str) -> str:
    return hashlib.sha256(f"{NAMESPACE}:{token}".encode()).hexdigest()[:16]


def mark(config: t.Mapping[str, t.Any], extractor: str) -> str:
    """The comment text: host, token fingerprint, and the extractor's name (for people reading it)."""
    return json.dumps(
        {
            KEY: {
                "api": api_host(config),
                "token_sha256": fingerprint(str(config.get("access_token") or "")),
                "extractor": extractor,
            }
        },
        sort_keys=True,
    )


def read(comment: str | None) -> dict[str, str] | None:
    """The mark in a column comment, or None when there is none."""
    try:
        found = json.loads(comment or "")
    except ValueError:
        return None
    value = found.get(KEY) if isinstance(found, dict) else None
    return value if isinstance(value, dict) else None


def from_meltano_env(env: t.Mapping[str, str]) -> str | None:
    """The mark of the extractor Meltano runs this loader with, None outside a Meltano pipeline of this tap."""
    # An inherited extractor's namespace is its own name's (tap_intercom_conversation__b), not its parent's.
    namespace = env.get("MELTANO_EXTRACTOR_NAMESPACE") or ""
    if not namespace.startswith(NAMESPACE) or not env.get(f"{EXTRACT_PREFIX}ACCESS_TOKEN"):
        return None
    settings = {name: env.get(f"{EXTRACT_PREFIX}{name.upper()}") for name in ("access_token", "api_url", "region")}
    return mark(settings, env.get("MELTANO_EXTRACTOR_NAME") or NAMESPACE)
