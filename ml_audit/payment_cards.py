"""Payment card numbers in strings, numbers and lists of digits (the ``payment_card`` detector).

A card number is 13-19 digits whose issuer prefix (IIN) is a known card scheme's, with a length
that scheme issues, and whose Luhn checksum holds (:func:`card_digits_ok`). Together the three
keep random numbers out: about 1 in 30 random 13-19 digit numbers passes, and none of the common
harmless shapes (Unix times in s/ms/us/ns, which start with 1; snowflake ids; amounts with
decimals) does by construction.

- In a string: a run of digit groups separated by single spaces, dashes, dots or slashes, not
  glued to a letter or digit. Every window of whole groups holding 13-19 digits is a candidate,
  so a card next to a date or another card is found. In a window, groups other than the last
  have 3+ digits, one separator is used throughout, and a window written with dots or slashes
  has 3+ groups (so ``4123456.789012`` is a decimal, not a card).
- A number: an ``int`` (or a ``float`` with an integral value) of 13-19 digits.
- A list (or tuple) of 13-19 single digits (ints 0-9 or one-character strings), or of digit
  strings grouped as cards are printed (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3), that spells a card
  number (``[4, 1, 1, 1, ...]``, ``["4111", "1111", "1111", "1111"]``). Lists of larger ints
  are not read (an int drops leading zeros, and four 4-digit ints are too often years or
  codes).

Work is linear in the text: the run regex never backtracks, and each group starts at most a
few windows (found by bisection on the running digit count).
"""

from __future__ import annotations

import bisect
import itertools
import re
import string
from typing import Any, Final

__all__ = ["card_digit_list", "card_digits_ok", "card_number", "detect_payment_card"]

_Span = tuple[int, int]

_R13_19: Final = frozenset(range(13, 20))
_R14_19: Final = frozenset(range(14, 20))
_R16_19: Final = frozenset(range(16, 20))
_VISA: Final = frozenset({13, 16, 19})
_ONLY_15: Final = frozenset({15})
_ONLY_16: Final = frozenset({16})


def _issuer_lengths(d: str) -> frozenset[int] | None:
    """The lengths the card scheme of this IIN issues, or None (no known scheme).

    Visa 4; Mastercard 51-55, 2221-2720; American Express 34, 37; Diners 300-305, 3095, 36,
    38-39; JCB 3528-3589; Discover 6011, 644-649, 65; UnionPay 62; Maestro 50, 56-58, 63, 67;
    RuPay 60, 81-82; Mir 2200-2204; Troy 9792. UATP (1...) is left out: too many ordinary
    numbers (Unix times) start with 1.
    """
    first = d[0]
    if first == "4":
        return _VISA
    p2 = int(d[:2])
    if first == "5":
        if 51 <= p2 <= 55:
            return _ONLY_16
        return _R13_19 if p2 in (50, 56, 57, 58) else None
    if first == "3":
        if p2 in (34, 37):
            return _ONLY_15
        if p2 == 36:
            return _R14_19
        if p2 in (38, 39):
            return _R16_19
        if p2 == 30:
            return _R14_19 if int(d[:3]) <= 305 or d.startswith("3095") else None
        if p2 == 35:
            return _R16_19 if 3528 <= int(d[:4]) <= 3589 else None
        return None
    if first == "6":
        if p2 in (60, 62, 65):
            return _R16_19
        if p2 == 64:
            return _R16_19 if int(d[:3]) >= 644 else None
        return _R13_19 if p2 in (63, 67) else None
    if first == "2":
        p4 = int(d[:4])
        if 2221 <= p4 <= 2720:
            return _ONLY_16
        return _R16_19 if 2200 <= p4 <= 2204 else None
    if first == "8":
        return _ONLY_16 if p2 in (81, 82) else None
    if first == "9":
        return _ONLY_16 if d.startswith("9792") else None
    return None


#: Digit values, and the digit sum of twice each digit (Luhn), as byte translation tables.
_VALUES: Final = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED: Final = bytes.maketrans(bytes(range(10)), bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


def _luhn_ok(values: bytes, doubled: bytes, start: int, end: int) -> bool:
    """Luhn over ``values[start:end]``: every second digit from the right is doubled."""
    odd = start + ((end - start) % 2 == 1)  # the first doubled position
    even = start + (odd == start)
    return (sum(doubled[odd:end:2]) + sum(values[even:end:2])) % 10 == 0


def card_digits_ok(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only) is a card number: length, IIN and Luhn."""
    if not 13 <= len(digits) <= 19:
        return False
    lengths = _issuer_lengths(digits)
    if lengths is None or len(digits) not in lengths:
        return False
    values = digits.encode("ascii").translate(_VALUES)
    return _luhn_ok(values, values.translate(_DOUBLED), 0, len(values))


# A maximal run of digit groups separated by single separators, not preceded by a letter or a
# digit. Unambiguous (a group is all the digits up to the next non-digit), so it never
# backtracks; whether the run is glued to a letter at its end is checked afterwards.
_RUN_RE: Final = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?:[ ./-][0-9]+)*")
_SEPARATOR_RE: Final = re.compile(r"[ ./-]")
_ASCII_LETTER_OR_DIGIT: Final = frozenset(string.ascii_letters + string.digits)
#: Two-digit prefixes that can start a card (see _issuer_lengths): windows start nowhere else.
_PLAUSIBLE_PREFIXES: Final = frozenset(
    [f"4{i}" for i in range(10)]
    + ["22", "23", "24", "25", "26", "27", "30", "34", "35", "36", "37", "38", "39"]
    + ["50", "51", "52", "53", "54", "55", "56", "57", "58"]
    + ["60", "62", "63", "64", "65", "67", "81", "82", "97"]
)


def detect_payment_card(s: str, spans: list[_Span]) -> None:
    """Append the spans of card numbers written in ``s`` (see the module docstring)."""
    for run in _RUN_RE.finditer(s):
        text = run.group()
        if len(text) < 13:
            continue
        end = run.end()
        if end < len(s) and s[end] in _ASCII_LETTER_OR_DIGIT:
            # The last group is glued to a word ("4111...1111abc"): it is not a number.
            cut = max(text.rfind(" "), text.rfind("-"), text.rfind("."), text.rfind("/"))
            if cut < 0:
                continue
            text = text[:cut]
            if len(text) < 13:
                continue
        if text.isdigit():
            if card_digits_ok(text):
                spans.append((run.start(), run.start() + len(text)))
            continue
        _windows(text, run.start(), spans)


#: A run is read in chunks of about this many characters (memory stays bounded whatever its
#: length); a window spans at most 19 digits and 18 separators, so chunks overlap by that.
_CHUNK: Final = 65536
_WINDOW_SPAN: Final = 37


def _windows(text: str, base: int, spans: list[_Span]) -> None:
    size = len(text)
    chunk_start = 0
    while chunk_start < size:
        if size - chunk_start <= _CHUNK:
            limit = stop = size
        else:
            # Windows start in [chunk_start, limit), at group starts; the chunk runs on to the
            # end of the group holding limit + _WINDOW_SPAN so that no window is cut.
            found = _SEPARATOR_RE.search(text, chunk_start + _CHUNK)
            limit = size if found is None else found.end()
            found = _SEPARATOR_RE.search(text, limit + _WINDOW_SPAN)
            stop = size if found is None else found.start()
        _chunk_windows(text[chunk_start:stop], base + chunk_start, limit - chunk_start, spans)
        chunk_start = limit


def _chunk_windows(text: str, base: int, limit: int, spans: list[_Span]) -> None:
    """The card windows of ``text`` (digit groups and single separators) that start before
    ``limit``."""
    groups = _SEPARATOR_RE.split(text)
    lengths = list(map(len, groups))
    ends = list(itertools.accumulate(lengths))  # digits up to the end of each group
    digits = "".join(groups)
    values = digits.encode("ascii").translate(_VALUES)
    doubled = values.translate(_DOUBLED)
    # Luhn sums from prefix sums: sums[p][k] adds the first k digits, doubling those at
    # positions of parity p; a window ending before digit e doubles the digits whose position
    # has the parity of e (the last digit is not doubled, the one before it is, ...).
    even = bytearray(values)
    even[0::2] = doubled[0::2]
    odd = bytearray(values)
    odd[1::2] = doubled[1::2]
    sums = (
        list(itertools.accumulate(even, initial=0)),
        list(itertools.accumulate(odd, initial=0)),
    )
    separators: list[str] | None = None
    left, right = bisect.bisect_left, bisect.bisect_right
    # A window's first group has 3+ digits (unless it is the whole window, which a run with
    # separators never is) and starts like a card.
    for i in [i for i, g in enumerate(groups) if len(g) >= 3 and g[:2] in _PLAUSIBLE_PREFIXES]:
        start = ends[i] - lengths[i]  # digits before group i (and i separators)
        if start + i >= limit:
            break
        # Windows i..j with 13-19 digits: ends[j] - start in [13, 19].
        lo = left(ends, start + 13, i)
        for j in range(lo, right(ends, start + 19, lo)):
            stop = ends[j]
            table = sums[stop & 1]
            if (table[stop] - table[start]) % 10:
                continue
            if separators is None:
                separators = _SEPARATOR_RE.findall(text)
            if not _window_ok(i, j, groups, separators):
                continue
            issued = _issuer_lengths(digits[start : start + 6])
            if issued is None or stop - start not in issued:
                continue
            # Text offsets: one separator character between groups.
            spans.append((base + start + i, base + stop + j))


def _window_ok(i: int, j: int, groups: list[str], separators: list[str]) -> bool:
    if i == j:
        return True
    if min(len(g) for g in groups[i:j]) < 3:
        return False
    used = separators[i:j]
    first = used[0]
    if used.count(first) != len(used):
        return False
    return first in " -" or j - i >= 2


_MIN_CARD_NUMBER: Final = 10**12
_MAX_CARD_NUMBER: Final = 10**19


def card_number(value: int | float) -> bool:
    """Whether a number (not a bool) is a card number: an integral value of 13-19 digits."""
    if not _MIN_CARD_NUMBER <= value < _MAX_CARD_NUMBER:
        return False
    if type(value) is float:
        if not value.is_integer():
            return False
        value = int(value)
    return card_digits_ok(str(value))


#: How card numbers are grouped when written as a list of digit strings: 4-4-4-4 (most
#: schemes), 4-6-5 (American Express), 4-6-4 (Diners), 4-4-4-4-3 (19-digit cards).
_LIST_GROUPINGS: Final = frozenset({(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3)})


def card_digit_list(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether a list spells a card number: 13-19 single digits (ints 0-9 or one-character
    strings), or digit strings grouped as cards are printed (:data:`_LIST_GROUPINGS`). Lists of
    larger ints are not read: an int drops leading zeros, and four 4-digit ints are too often
    something else (years, codes)."""
    size = len(items)
    if size < 3 or size > 19:
        return False
    first = type(items[0])
    if size >= 13:
        if first is int:
            if not all(type(i) is int and 0 <= i <= 9 for i in items):
                return False
            return card_digits_ok("".join(map(str, items)))
        if first is str and all(type(i) is str and len(i) == 1 for i in items):
            digits = "".join(items)
            return digits.isascii() and digits.isdigit() and card_digits_ok(digits)
        return False
    if size > 5 or first is not str:
        return False
    if not all(type(i) is str for i in items):
        return False
    if tuple(len(i) for i in items) not in _LIST_GROUPINGS:
        return False
    digits = "".join(items)
    return digits.isascii() and digits.isdigit() and card_digits_ok(digits)
