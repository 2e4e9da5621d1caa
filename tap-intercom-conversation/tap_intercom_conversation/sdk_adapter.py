"""The only place the tap touches singer-sdk's private or `@final` surface (pinned: singer-sdk ~=0.54.9).

An SDK upgrade starts here: each entry below names the private API, why no public hook does the job,
and what to check when the SDK changes. Everything else in the package uses public singer-sdk API only.

# --- the tap (tap.py) ---

# --- the HTTP client (client.py) ---

# --- the streams (streams.py, messages.py, parts.py) ---
"""

from __future__ import annotations

# --- the tap (tap.py) ---


# --- the HTTP client (client.py) ---


# --- the streams (streams.py, messages.py, parts.py) ---
