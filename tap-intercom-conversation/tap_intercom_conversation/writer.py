"""How the tap's output reaches the target: the stdout writer and the pipe's size."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import typing as t

import msgspec

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import Message, RecordMessage, StateMessage
from typing_extensions import override

from intercom_conversation_shared.logs import EXTRACTOR_FAILED


class WholeLineWriter(MsgSpecWriter):
    """Singer messages on stdout, where a termination signal never lands inside a line.

    msgspec, not the SDK's default simplejson: encoding and writing records was a third of the tap's
    CPU in a search-only run, which shares the machine with the loader. Records are written in
    blocks of about 64 KB rather than one system call each (a third of what remained); every other
    message (STATE above all) is written at once, with the records before it, so a STATE never
    reaches the target ahead of a record it covers, and records never wait for more than a STATE.

    A signal that arrives while a message is being written (a blocked write to a full pipe runs the
    handler inside it) waits until that line is complete, so the STATE the handler writes is a line
    of its own.
    """

    BLOCK_BYTES = 64 * 1024  # a pipe's default buffer
    PIPE_BYTES = 1024 * 1024  # Linux's limit for an unprivileged process (/proc/sys/fs/pipe-max-size)
    writing = False
    pending: t.Callable[[], None] | None = None
    last_state_line: bytes | None = None  # the last STATE written, as written (the SDK's value is a live dict)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._block = bytearray()
        widen_pipe(sys.stdout, self.PIPE_BYTES)

    @override
    def write_message(self, message: Message) -> None:
        self.writing = True
        try:
            line = self.format_message(message)
            self._block += line
            if not isinstance(message, RecordMessage) or len(self._block) >= self.BLOCK_BYTES:
                self._write_block()
            if isinstance(message, StateMessage):
                self.last_state_line = bytes(line)
        finally:
            self.writing = False
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending()

    def _write_block(self) -> None:
        block, self._block = memoryview(self._block), bytearray()
        while block:  # a signal can cut a large write short (measured: 49,152 of 65,862 bytes)
            block = block[sys.stdout.buffer.write(block) :]
        sys.stdout.flush()

    def write_failure(self, cause: str) -> None:
        """The failure's line for the target: the last STATE written, repeated, with `cause` beside its value.

        Repeating the last STATE changes nothing for any target; with no STATE written yet the run
        resumed from none (the SDK writes a given state first), so the value is the empty state.
        """
        self._block += with_failure(self.last_state_line or state_line(b"{}"), cause)
        self._write_block()


def state_line(value: bytes) -> bytes:
    """A STATE message whose value is the JSON `value` (its numbers and strings as they are, on one line)."""
    return b'{"type":"STATE","value":' + msgspec.json.format(value, indent=-1) + b"}\n"


def with_failure(line: bytes, cause: str) -> bytes:
    """The STATE message `line` (one JSON object) with the line a failed run ends with beside its value."""
    cause_field = msgspec.json.encode(EXTRACTOR_FAILED) + b":" + msgspec.json.encode(cause)
    return line.rstrip()[:-1] + b"," + cause_field + b"}\n"


def widen_pipe(stream: t.IO, size: int) -> None:
    """Let the pipe `stream` writes to hold `size` bytes; a stream that is not a pipe, or cannot grow, is left as it is.

    With 64 KB (about 20 records), the tap can only run ahead of the target by those while the target
    commits a batch; with 1 MB it does its work then, rather than competing with the target for a CPU.
    """
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    with contextlib.suppress(OSError, ValueError):  # also a stream without a file descriptor
        fd = stream.fileno()
        if set_size is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, set_size, size)


def end_output() -> None:
    """The sync is over: its last message reaches the target, which then reads the end of its input at once.

    A pipe ends when no process holds it any more, and Python's own teardown after the sync took 0.3-0.5 s
    (issue 25): the target, and a scheduler waiting for it, would wait for that too.
    """
    sys.stdout.flush()
    detach_stdout()


def detach_stdout() -> None:
    """stdout's file descriptor on /dev/null: the pipe is released (its reader sees the end of its input), and
    nothing written after, nor Python's flush at exit, fails or complains on a reader that is gone."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor: nothing to release
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
