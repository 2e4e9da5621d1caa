"""PostgreSQL cannot store what JSON allows: U+0000 anywhere, lone UTF-16 surrogates in `jsonb`.

The one rule for both programs that meet such text: the tap's decoders (bodies.py) and the loader's
COPY path (copy_load.py). Each `\\u0000` and each lone surrogate escape becomes `\\ufffd` in the bytes
themselves (the same length), line breaks between tokens become spaces (a record is one line); a valid
surrogate pair and `\\\\u0000` (an escaped backslash, then text) are kept.
"""

from __future__ import annotations

import re
import typing as t

NUL = "U+0000"
LONE_SURROGATE = "lone surrogate"

_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")  # may also match inside `\\u0000`: then no change
_ESCAPE = re.compile(
    rb"\\\\"  # an escaped backslash: what follows it is text
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a surrogate pair: one character, kept
    rb"|\\u(0000)|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"  # U+0000, or a surrogate on its own
)
_REPLACEMENT = rb"\ufffd"

Replacement = tuple[int, str]  # (offset in the body read, what was replaced)


class Readable(t.NamedTuple):
    content: bytes
    replaced: tuple[Replacement, ...] = ()


def readable(content: bytes) -> Readable:
    """The body with bad escapes and line breaks replaced in place (the same object when there are none)."""
    suspect = _SUSPECT.search(content) is not None
    if not suspect and b"\n" not in content and b"\r" not in content:
        return Readable(content)
    replaced: list[Replacement] = []

    def replace(match: re.Match[bytes]) -> bytes:
        text = match.group()
        if len(text) in (2, 12):  # an escaped backslash, or a pair
            return text
        replaced.append((match.start(), NUL if match.group(1) else LONE_SURROGATE))
        return _REPLACEMENT

    fixed = _ESCAPE.sub(replace, content) if suspect else content
    if b"\n" in fixed or b"\r" in fixed:  # only between tokens: JSON strings hold them escaped
        fixed = fixed.replace(b"\n", b" ").replace(b"\r", b" ")
    return Readable(fixed, tuple(replaced))
