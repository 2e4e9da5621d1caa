"""The only place the tap touches singer-sdk's private or `@final` surface (pinned: singer-sdk ~=0.54.9).

An SDK upgrade starts here: each entry below names the private API, why no public hook does the job,
and what to check when the SDK changes. Everything else in the package uses public singer-sdk API only.

# --- the tap (tap.py) ---

# --- the HTTP client (client.py) ---
None. The governor, 429 waits and clock/latency observation are an HTTPAdapter mounted on the public
`requests_session`; retries use the public backoff_* hooks and `request_decorator`; the METRIC line is
`singer_sdk.metrics.log` on `metrics_logger`. (The deletions stream's pages go through the SDK's own
`request_records`, which calls its private `_request` internally: nothing here overrides or calls it.)

# --- the streams (streams.py, messages.py, parts.py) ---
"""

from __future__ import annotations

# --- the tap (tap.py) ---


# --- the HTTP client (client.py) ---


# --- the streams (streams.py, messages.py, parts.py) ---
