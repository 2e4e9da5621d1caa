"""The loader reads its input ahead while it starts (read_ahead.py): the tap is not held back, nothing changes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import typing as t

import pytest

from intercom_conversation_shared.schema_files import STREAM_NAME, stream_schema
from target_intercom_postgres.read_ahead import ReadAhead, read_stdin_ahead
from tests.helpers import conversation_record, start_loader, table_rows, target_config, ts


def written_once_blocked(written: t.Callable[[], int]) -> int:
    """What a writer thread has written once it stops making progress (blocked on the full pipe)."""
    before, now = -1, written()
    while now != before:
        time.sleep(0.3)
        before, now = now, written()
    return now


def test_the_input_reads_back_byte_for_byte_and_at_most_the_limit_waits_in_memory():
    limit, sent = 256 * 1024, os.urandom(4 << 20)
    read_fd, write_fd = os.pipe()
    written = 0

    def write() -> None:
        nonlocal written
        with os.fdopen(write_fd, "wb", buffering=0) as pipe:
            for start in range(0, len(sent), 65536):
                pipe.write(sent[start : start + 65536])
                written = start + 65536

    writer = threading.Thread(target=write, daemon=True)
    reader = io.BufferedReader(ReadAhead(read_fd, limit=limit))
    writer.start()
    blocked_at = written_once_blocked(lambda: written)  # the read-ahead holds its limit
    assert limit <= blocked_at <= limit + 4 * 65536  # the limit, the last read, the pipe's own 64 KB, a write
    received = reader.read()
    writer.join(timeout=10)
    assert received == sent and reader.read() == b""
    os.close(read_fd)


def test_once_stopped_it_reads_no_further_and_the_writer_waits_on_the_full_pipe():
    """A loader that fails stops reading its input: the tap blocks on its full pipe instead of running on while the
    loader's Python exits (Meltano then stops it)."""
    read_fd, write_fd = os.pipe()
    written = 0

    def write() -> None:
        nonlocal written
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_fd, "wb", buffering=0) as pipe:
            while True:
                pipe.write(b"x" * 65536)
                written += 65536

    reader = ReadAhead(read_fd)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    while written < 4 << 20:  # reading ahead, far below its 32 MB
        time.sleep(0.01)
    reader.stop()
    at_stop = written
    assert written_once_blocked(lambda: written) - at_stop <= 4 * 65536  # the read under way, the pipe's 64 KB, a write
    os.close(read_fd)


@pytest.mark.parametrize(
    ("arguments", "reads_ahead"),
    [([], True), (["--config", "c.json"], True), (["--input", "m.jsonl"], False), (["--input=m.jsonl"], False)],
)
def test_stdin_is_read_ahead_only_when_the_loader_reads_it(monkeypatch, arguments, reads_ahead):
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "r") as pipe, os.fdopen(write_fd, "w"):
        monkeypatch.setattr(sys, "argv", ["target-intercom-postgres", *arguments])
        monkeypatch.setattr(sys, "stdin", pipe)
        reader = read_stdin_ahead()
        assert (reader is not None) is reads_ahead
        if reader is not None:
            reader.stop()
            sys.stdin.detach()  # the pipe stays the `with`'s to close


def test_a_tap_writes_its_output_while_the_loader_is_still_starting(pg_url, pg_schema, tmp_path):
    """4 MB of messages go into the loader's pipe before it has logged its first line (its imports take longer);
    without the read-ahead the writer would wait until the loader reads. Then every record is loaded."""
    records = [conversation_record(8000 + n, n, ts(n), "t", {"padding": "x" * 2000}) for n in range(2000)]
    lines = [{"type": "SCHEMA", "stream": STREAM_NAME, "schema": stream_schema(), "key_properties": ["intercom_id"]}]
    lines += [{"type": "RECORD", "stream": STREAM_NAME, "record": record} for record in records]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert len(data) > 4 << 20
    loader = start_loader(
        tmp_path,
        target_config(pg_url, pg_schema),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert loader.stdin is not None and loader.stderr is not None
    first_line: list[float] = []
    log: list[bytes] = []

    def read_log() -> None:
        assert loader.stderr is not None
        for line in loader.stderr:
            first_line.append(time.monotonic())
            log.append(line)

    log_reader = threading.Thread(target=read_log, daemon=True)
    log_reader.start()
    loader.stdin.write(data)
    loader.stdin.flush()
    written = time.monotonic()
    loader.stdin.close()
    loader.wait(timeout=120)
    log_reader.join(timeout=10)
    assert loader.returncode == 0, b"".join(log)[-3000:].decode()
    assert first_line and written < first_line[0], "the loader logged before the tap's output was all written"
    assert len(table_rows(pg_url, pg_schema)) == 2000
