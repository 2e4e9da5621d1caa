"""The tap's expected failures: each is reported as one line on stderr and a non-zero exit, never a traceback.

Anything that is not an IntercomError is a bug and keeps its traceback (see tap.main and client.py's log filter).
"""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError


class IntercomError(Exception):
    """An expected failure: reported as one line, without a traceback."""

    handed_over = False  # its line was written for the target too (tap.hand_over_failure)


class IntercomRequestFailed(IntercomError):
    """Intercom kept failing (5xx, drops, timeouts) after every retry."""


class IntercomRefused(IntercomError, FatalAPIError):
    """Intercom refused the request for a reason retrying cannot fix."""


class IntercomNotFound(IntercomRefused):
    """A 404: for a conversation, it was deleted after the search found it."""


class Interrupted(IntercomError):
    """A termination signal: the run stops and exits 128 + the signal's number, as a shell reports it."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class OutputClosed(IntercomError):
    """stdout is a pipe whose reader (the target) went away."""
