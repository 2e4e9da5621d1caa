"""The log a run prints, for the tap and the loader: levels kept under Meltano, per-batch lines only when asked for.

Meltano 4.4 hands each singer-sdk plugin a logging configuration (SINGER_SDK_LOG_CONFIG, at Meltano's
own --log-level) and keeps a line's level only when the line is singer-sdk's structured JSON (the
plugins declare the `structured-logging` capability); a line written straight to stderr is logged
again at [info]. So an expected failure is logged at error level through the logging system when
that formatter is in use, and written as one plain line otherwise (a terminal, a Singer pipe).
"""

from __future__ import annotations

import logging
import os
import sys

from singer_sdk.logging import StructuredFormatter
from singer_sdk.metrics import METRICS_LOGGER_NAME, Metric
from typing_extensions import override

# target-postgres's lines for every batch: at info they are most of a run's log (issue 24); and
# singer-sdk's routine lines that say nothing a run's summary does not. Both shown at debug.
PER_BATCH = (
    "Inserting with SQL:",
    "Upserted ",  # the loader's COPY path (target_intercom_postgres/copy_load.py), one line a batch
    "is full. Current size is",
    "Emitting completed target state",
    "Skipping parse of env var settings",
    "Added '",
    "Pagination stopped after",
    "Reader '",
)
# singer-sdk's sink logs each record at debug together with its whole batch (customer data, GBs).
NEVER = ("Processed record:",)
# Libraries whose debug lines carry SQL parameters or request details: never below warning.
QUIET_LIBRARIES = ("sqlalchemy", "psycopg", "urllib3", "joblib", "backoff")
# A tap that fails ends its output with one more STATE: the last one it wrote, repeated, with the failure's
# line under this key beside `value` (never inside it: Meltano and every Singer target keep only `value`).
# Meltano closes the loader's input only once the tap has exited, so the loader's summary always follows
# the tap's error line; the loader ends its log with this line at error level, after its summary.
EXTRACTOR_FAILED = "extractor_failed"


class BatchLines(logging.Filter):
    """Drops the per-record line, and shows the per-batch lines only at debug or with log_metrics."""

    def __init__(self, *, per_batch: bool) -> None:
        super().__init__()
        self.per_batch = per_batch

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = str(record.msg)
        if message.startswith(NEVER):
            return False
        if message.startswith(PER_BATCH) or " is full. Current size is " in message:
            if self.per_batch:
                return True
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return True
            return False
        return True


class PerRequestMetrics(logging.Filter):
    """Drops singer-sdk's METRIC line of each HTTP request (without log_metrics, at debug too): a line per
    conversation hydrated. Its counters (requests, records, per stream and minute) and timers stay."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        point = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return getattr(point, "metric", None) != Metric.HTTP_REQUEST_DURATION


class ShownAtInfo(logging.Filter):
    """Under Meltano, a plugin asked for debug (`<PLUGIN>_LOGLEVEL=debug`) shows its debug lines as info lines
    starting with `debug: `: Meltano drops a parsed line below its own level, and its own debug level
    (`meltano --log-level=debug`) also logs every message the tap writes, records included."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"debug: {record.msg}"
        return True


def structured() -> bool:
    """Whether the plugin logs singer-sdk's structured JSON (as Meltano asks), rather than plain lines."""
    return any(isinstance(handler.formatter, StructuredFormatter) for handler in logging.getLogger().handlers)


def configure(plugin_name: str, *, per_batch: bool) -> None:
    """Called when the plugin starts: the filters on every handler, libraries quiet, the plugin's own LOGLEVEL.

    singer-sdk sets the root level from `<PLUGIN>_LOGLEVEL`, then lets SINGER_SDK_LOG_CONFIG (Meltano's
    level) replace it; the plugin's own variable is the more specific, so it is applied again.
    """
    root = logging.getLogger()
    for handler in root.handlers:
        add_once(handler, BatchLines(per_batch=per_batch))
    metrics = logging.getLogger(METRICS_LOGGER_NAME)
    if not per_batch:
        add_once(metrics, PerRequestMetrics())
    prefix = plugin_name.upper().replace("-", "_")
    level = os.environ.get(f"{prefix}_LOGLEVEL")
    if level and isinstance(logging.getLevelName(level.upper()), int):
        root.setLevel(level.upper())
        if structured() and root.getEffectiveLevel() < logging.INFO:
            for handler in root.handlers:
                add_once(handler, ShownAtInfo())
    if not per_batch and metrics.getEffectiveLevel() > logging.DEBUG:
        metrics.setLevel(logging.WARNING)  # singer-sdk's METRIC lines (per request, per batch) only when asked for
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def add_once(filterer: logging.Filterer, new: logging.Filter) -> None:
    """`new` on a handler or logger that has no filter of its class yet (configure may run twice in a process)."""
    if not any(isinstance(existing, type(new)) for existing in filterer.filters):
        filterer.addFilter(new)


def fail(logger: logging.Logger, line: str, *, caused_elsewhere: bool = False) -> None:
    """The one line an expected failure ends with: at error level under Meltano, plain on a terminal.

    `caused_elsewhere`: the other plugin failed first and its own line says why (the target stopped
    reading); under Meltano this line is then only a debug line, so that the cause stays the last line.
    """
    if structured():
        logger.log(logging.DEBUG if caused_elsewhere else logging.ERROR, line)
    else:
        sys.stderr.write(f"{line}\n")
        sys.stderr.flush()
