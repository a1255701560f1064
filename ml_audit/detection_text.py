"""The copy of a string the value detectors read, and the way back to the original.

Obfuscation hides a value from a detector without hiding it from a reader. Before detection a
copy of the string is normalised, in one left-to-right pass (nothing is decoded twice):

- percent escapes are decoded as UTF-8 (``jane%40example.com``);
- HTML character references are decoded (``&#64;``, ``&#x40;``, ``&commat;``, ``&amp;``);
- ``[at]``, ``(at)``, ``{at}``, ``<at>`` and ``[dot]``... (any case, spaces around them
  included) become ``@`` and ``.``; the bare words "at" and "dot" are left alone;
- every other non-ASCII character is NFKC-normalised (full-width ``\\uff20`` and digits,
  ``\\ufe6b``), ideographic full stops (``\\u3002``, ``\\uff61``) become ``.``, and invisible
  characters (zero-width spaces and joiners, word joiner, BOM, soft hyphen) are removed.

:func:`detection_text` returns the copy and a :class:`OffsetMap` that maps a span of the copy
back to the smallest span of the original covering it, so that only the matching part of the
original is replaced (``"mail jane [at] example [dot] com now"`` -> ``"mail ***** now"``).
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata
import urllib.parse
from typing import Final

__all__ = ["OffsetMap", "detection_text"]

_Span = tuple[int, int]

_SPECIAL_RE: Final = re.compile(
    r"(?P<pct>(?:%[0-9A-Fa-f]{2})+)"
    r"|(?P<ent>&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|(?P<word>[\[({<][ \t]*(?:(?P<at>[aA][tT])|[dD][oO][tT])[ \t]*[\])}>][ \t]*)"
    r"|(?P<uni>[^\x00-\x7f]+)"
)
_WORD_RE: Final = re.compile(r"[\[({<][ \t]*(?:[aA][tT]|[dD][oO][tT])[ \t]*[\])}>]")
_INVISIBLE: Final = frozenset(
    "\u00ad\u034f\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
)
_FULL_STOPS: Final = frozenset("\u3002\uff61\ufe52")
_CHAR_CACHE: dict[str, str] = {}


def _char(ch: str) -> str:
    """The normal form of one non-ASCII character (cached)."""
    out = _CHAR_CACHE.get(ch)
    if out is None:
        if ch in _INVISIBLE:
            out = ""
        elif ch in _FULL_STOPS:
            out = "."
        else:
            out = unicodedata.normalize("NFKC", ch)
        if len(_CHAR_CACHE) < 65536:
            _CHAR_CACHE[ch] = out
    return out


def _normal_text(text: str) -> str:
    """Non-ASCII characters of ``text`` normalised (for decoded escapes)."""
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else _char(ch) for ch in text)


class OffsetMap:
    """Maps spans of a normalised copy back to the original (see :func:`detection_text`).

    Holds the replaced regions only: ``(copy_start, copy_end, original_start, original_end)``
    in order; outside them the copy and the original are equal up to a shift.
    """

    __slots__ = ("_copy_starts", "_regions")

    def __init__(self, regions: list[tuple[int, int, int, int]]) -> None:
        self._regions = regions
        self._copy_starts = [r[0] for r in regions]

    def _char(self, i: int) -> _Span:
        """The original span of character ``i`` of the copy."""
        k = bisect.bisect_right(self._copy_starts, i) - 1  # the last region starting at or before i
        if k >= 0:
            c_start, c_end, o_start, o_end = self._regions[k]
            if c_start <= i < c_end:
                return o_start, o_end
            o = o_end + (i - c_end)
            return o, o + 1
        return i, i + 1

    def original(self, start: int, end: int) -> _Span:
        """The smallest span of the original covering the copy's ``[start, end)``."""
        return self._char(start)[0], self._char(end - 1)[1]


def detection_text(s: str) -> tuple[str, OffsetMap | None]:
    """The copy of ``s`` detectors read, and its offset map (None: the copy is ``s``)."""
    if (
        s.isascii()
        and "%" not in s
        and "&" not in s
        and (not ("[" in s or "(" in s or "{" in s or "<" in s) or _WORD_RE.search(s) is None)
    ):
        return s, None
    pieces: list[str] = []
    regions: list[tuple[int, int, int, int]] = []
    pos = 0  # next original offset not yet copied
    out = 0  # length of the copy so far
    for m in _SPECIAL_RE.finditer(s):
        start, end = m.span()
        kind = m.lastgroup
        if kind == "uni":
            if pos < start:
                pieces.append(s[pos:start])
                out += start - pos
            run = m.group()
            base = start
            for offset, ch in enumerate(run):
                new = _char(ch)
                if new != ch:
                    regions.append((out, out + len(new), base + offset, base + offset + 1))
                pieces.append(new)
                out += len(new)
            pos = end
            continue
        if kind == "pct":
            raw = m.group()
            try:
                new = urllib.parse.unquote(raw, errors="strict")
            except UnicodeDecodeError:
                new = urllib.parse.unquote(raw, encoding="latin-1")
            new = _normal_text(new)
        elif kind == "ent":
            new = _normal_text(html.unescape(m.group()))
            if new == m.group():
                continue  # not a known reference: copied as it is
        else:
            new = "@" if m.group("at") else "."
            # Spaces before the bracket belong to the obfuscation too ("jane [at] example").
            while start > pos and s[start - 1] in " \t":
                start -= 1
        if pos < start:
            pieces.append(s[pos:start])
            out += start - pos
        regions.append((out, out + len(new), start, end))
        pieces.append(new)
        out += len(new)
        pos = end
    if not regions:
        return s, None
    pieces.append(s[pos:])
    return "".join(pieces), OffsetMap(regions)
