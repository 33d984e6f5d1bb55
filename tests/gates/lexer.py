"""Just enough of a PowerShell lexer to tell code from strings, here-strings and comments.

Some things only show up in the raw text (PowerShell 7 operators such as ``??`` are ERROR
nodes in the syntax tree), so gates scan :func:`code_mask`, where strings and comments are
blanked out, instead of the text itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_DOUBLE_QUOTES = '"\u201c\u201d\u201e'
_HERE_OPENER = re.compile(f"@[{_SINGLE_QUOTES}{_DOUBLE_QUOTES}][ \t]*\r?\n")
_BEFORE_COMMENT = frozenset(" \t\r\n;|&(){}[],=" + _SINGLE_QUOTES + _DOUBLE_QUOTES)

SegmentKind = Literal["code", "comment", "verbatim", "expandable"]


@dataclass(frozen=True)
class _Segment:
    """A run of the source: code, a comment, or the literal text of a string.

    ``verbatim`` strings are single-quoted ones and ``@' '@`` here-strings; ``expandable``
    are double-quoted ones and ``@" "@``, without their ``$( )`` sub-expressions, which are
    segments of ``code`` of their own (``$(`` and ``)`` included).
    """

    kind: SegmentKind
    start: int
    end: int


class _Lexer:
    """Just enough of PowerShell's tokenizer to tell code from strings and comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[_Segment] = []

    def run(self) -> list[_Segment]:
        self._code(nested=False)
        return self.segments

    def _emit(self, kind: SegmentKind, start: int, end: int) -> None:
        end = min(end, len(self.text))  # a backtick at the very end steps past it
        if end > start:
            self.segments.append(_Segment(kind, start, end))

    def _code(self, *, nested: bool) -> None:
        """Code up to the end; when ``nested``, a sub-expression from ``$(`` to its ``)``."""
        text, depth, start = self.text, 0, self.pos
        if nested:
            self.pos += 2  # "$("
        while self.pos < len(text):
            i, char = self.pos, text[self.pos]
            if char == "`":
                self.pos += 2
                continue
            if char == "(":
                depth += 1
            elif char == ")" and nested:
                if depth == 0:
                    self.pos += 1
                    break
                depth -= 1
            elif text.startswith("<#", i) or (char == "#" and self._starts_token(i)):
                self._emit("code", start, i)
                self._comment()
                start = self.pos
                continue
            elif _HERE_OPENER.match(text, i):
                self._emit("code", start, i)
                self._here_string()
                start = self.pos
                continue
            elif char in _SINGLE_QUOTES or char in _DOUBLE_QUOTES:
                self._emit("code", start, i)
                self._string()
                start = self.pos
                continue
            elif text.startswith("${", i):
                self._braced_variable()
                continue
            self.pos += 1
        self._emit("code", start, self.pos)

    def _starts_token(self, i: int) -> bool:
        return i == 0 or self.text[i - 1] in _BEFORE_COMMENT

    def _comment(self) -> None:
        text, start = self.text, self.pos
        if text.startswith("<#", start):
            end = text.find("#>", start + 2)
            self.pos = len(text) if end < 0 else end + 2
        else:
            end = text.find("\n", start)
            self.pos = len(text) if end < 0 else end
        self._emit("comment", start, self.pos)

    def _braced_variable(self) -> None:
        text = self.text
        self.pos += 2
        while self.pos < len(text) and text[self.pos] != "}":
            self.pos += 2 if text[self.pos] == "`" else 1
        self.pos += 1

    def _string(self) -> None:
        """A quoted string; a doubled quote is an escaped quote."""
        text, start = self.text, self.pos
        quotes = _SINGLE_QUOTES if text[start] in _SINGLE_QUOTES else _DOUBLE_QUOTES
        expandable = quotes == _DOUBLE_QUOTES
        self.pos += 1
        while self.pos < len(text):
            char = text[self.pos]
            if char in quotes:
                if self.pos + 1 < len(text) and text[self.pos + 1] in quotes:
                    self.pos += 2
                    continue
                self.pos += 1
                break
            if expandable:
                start = self._expandable_step(start)
            else:
                self.pos += 1
        self._emit("expandable" if expandable else "verbatim", start, self.pos)

    def _here_string(self) -> None:
        """``@'...'@`` or ``@"..."@``: ends at a line that starts with the closing quote."""
        text, start = self.text, self.pos
        quotes = _SINGLE_QUOTES if text[start + 1] in _SINGLE_QUOTES else _DOUBLE_QUOTES
        expandable = quotes == _DOUBLE_QUOTES
        self.pos = text.index("\n", start) + 1
        while self.pos < len(text):
            if (
                text[self.pos] in quotes
                and text.startswith("@", self.pos + 1)
                and (self.pos == 0 or text[self.pos - 1] == "\n")
            ):
                self.pos += 2
                break
            if expandable:
                start = self._expandable_step(start)
            else:
                self.pos += 1
        self._emit("expandable" if expandable else "verbatim", start, self.pos)

    def _expandable_step(self, start: int) -> int:
        """One step inside an expandable string; returns where its current segment starts."""
        text = self.text
        if text[self.pos] == "`":
            self.pos += 2
        elif text.startswith("$(", self.pos):
            self._emit("expandable", start, self.pos)
            self._code(nested=True)
            return self.pos
        else:
            self.pos += 1
        return start


def _segments(text: str) -> list[_Segment]:
    return _Lexer(text).run()


def code_mask(text: str) -> str:
    """``text`` with every string replaced by ``_`` and every comment by spaces.

    Offsets and line breaks are kept, so positions in the mask are positions in ``text``.
    The code inside ``$( )`` in double-quoted strings is kept: it is code.
    """
    chars = list(text)
    for segment in _segments(text):
        if segment.kind == "code":
            continue
        fill = " " if segment.kind == "comment" else "_"
        for i in range(segment.start, segment.end):
            if chars[i] not in "\r\n":
                chars[i] = fill
    return "".join(chars)
