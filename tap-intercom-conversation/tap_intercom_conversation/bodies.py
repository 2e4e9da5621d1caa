"""Answer bodies as the decoders can read them, with what PostgreSQL cannot store replaced by U+FFFD.

PostgreSQL refuses U+0000 in `text` and `jsonb`, and lone UTF-16 surrogates in `jsonb`; JSON allows both
(as `\\u0000` and `\\ud83d`), Intercom sends them as it received them, and msgspec refuses a lone
surrogate that Python's `json` accepts. Each is replaced by U+FFFD, everything else is kept as sent:

- The fast path (almost every body): no suspicious escape, valid UTF-8, one line. The body is decoded as
  it is; finding that out is one regex search, one UTF-8 check and two memchr per body.
- Escapes: each `\\u0000` and each lone surrogate escape becomes `\\ufffd` in the bytes themselves (the same
  length), and line breaks between tokens become spaces (a record is one line); nothing else changes.
  A valid surrogate pair is kept, and `\\\\u0000` (an escaped backslash, then text) is text.
- Anything else Python's `json` accepts and msgspec does not (NaN or Infinity, surrogates encoded as
  UTF-8 bytes, a byte order mark, UTF-16): the body is parsed by `json`, its strings and keys cleaned the
  same way, and written again; numbers keep their digits (1e400 stays 1e400), NaN and Infinity, which
  JSON text cannot hold, become the strings "NaN", "Infinity" and "-Infinity".

Each replacement is reported with its offset in the body, so it can be told to the conversation it is in.
"""

from __future__ import annotations

import json
import re
import typing as t
from collections import Counter

import msgspec

from intercom_conversation_shared.escapes import (
    LONE_SURROGATE,
    NUL,
    Readable,
    Replacement,
    readable,
)

NOT_A_NUMBER = "NaN/Infinity"

_ASCII = bytes(range(128))
_BAD_CHARACTER = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\x00\ud800-\udfff]")

T = t.TypeVar("T")


def is_utf8(content: bytes) -> bool:
    """Whether the bytes are UTF-8, checked on their non-ASCII bytes alone (a fifth of the time of all).

    Only a sequence cut short by ASCII whose missing bytes follow, orphaned, after more ASCII could pass
    unseen; no JSON encoder writes that, and such a body is not one Python's json would read either.
    """
    if content.isascii():
        return True
    try:
        content.translate(None, _ASCII).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decoded(content: bytes, decode: t.Callable[[bytes], T]) -> tuple[T, Readable]:
    """decode() of the body made readable; of the body written again by `json` when msgspec refuses that.

    msgspec.ValidationError (the JSON is fine, its shape is not) is the caller's; a body that `json`
    refuses too raises ValueError.
    """
    body = readable(content)
    if is_utf8(body.content):  # msgspec checks UTF-8 only in what it decodes, not in what it keeps raw
        try:
            return decode(body.content), body
        except msgspec.ValidationError:
            raise
        except ValueError:
            pass
    body = rewritten(content)
    return decode(body.content), body


def rewritten(content: bytes) -> Readable:
    """What `json` reads in the body, written again as UTF-8 JSON PostgreSQL can store (see the module)."""
    value = json.loads(content, parse_int=_Number, parse_float=_Number, parse_constant=_NotANumber)
    writer = _Writer()
    writer.write(value)
    return Readable(bytes(writer.out), tuple(writer.replaced))


def decoded_json(content: bytes) -> t.Any:
    """Any other answer (the deleted list): its Python values, what PostgreSQL cannot store replaced."""
    try:
        return decoded(content, msgspec.json.decode)[0]
    except ValueError:  # 1e400, which msgspec will not make a float; or not JSON at all (raised again here)
        return plain(rewritten(content).content)


def plain(content: bytes | msgspec.Raw) -> t.Any:
    """Python values of a readable body, for checks and error lines only (1e400 becomes inf)."""
    return json.loads(bytes(content))


def kinds(replaced: t.Iterable[Replacement], start: int = 0, end: int | None = None) -> dict[str, int]:
    """What was replaced between two offsets of the body, and how many times."""
    return dict(Counter(what for offset, what in replaced if offset >= start and (end is None or offset < end)))


def describe(counts: dict[str, int]) -> str:
    """e.g. `2 x U+0000, 1 x lone surrogate`: what, never the text around it."""
    return ", ".join(f"{count} x {what}" for what, count in sorted(counts.items()))


class _Number(str):
    """A number as written in the body: its digits are written back, never rounded to a float."""


class _NotANumber(str):
    """NaN, Infinity or -Infinity: Python's json reads them, JSON text cannot hold them."""


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        self.replaced: list[Replacement] = []

    def write(self, value: t.Any) -> None:
        out = self.out
        if isinstance(value, _Number):
            out += value.encode()
        elif isinstance(value, _NotANumber):
            self.replaced.append((len(out), NOT_A_NUMBER))
            out += json.dumps(str(value)).encode()
        elif isinstance(value, str):
            self._string(value)
        elif isinstance(value, dict):
            out += b"{"
            for index, (key, item) in enumerate(value.items()):
                if index:
                    out += b","
                self._string(key)
                out += b":"
                self.write(item)
            out += b"}"
        elif isinstance(value, list):
            out += b"["
            for index, item in enumerate(value):
                if index:
                    out += b","
                self.write(item)
            out += b"]"
        else:  # True, False, None
            out += json.dumps(value).encode()

    def _string(self, text: str) -> None:
        offset = len(self.out)

        def replace(match: re.Match[str]) -> str:
            found = match.group()
            if len(found) == 2:  # a pair, as Python's json leaves two UTF-8-encoded halves: one character
                return found.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
            self.replaced.append((offset, NUL if found == "\x00" else LONE_SURROGATE))
            return "\ufffd"

        text = _BAD_CHARACTER.sub(replace, text)
        self.out += json.dumps(text, ensure_ascii=False).encode()
