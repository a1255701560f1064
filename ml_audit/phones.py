"""Phone numbers in strings (the ``phone`` detector), validated with ``phonenumbers``.

Candidates are found by one regular expression that never backtracks: a run of digit groups
separated by single spaces, dots, dashes or slashes, with an optional leading ``+`` and
parenthesised groups (``(555)``, ``(0)``), not glued to a word, a number, an amount or a path
(not preceded by a letter, digit, ``_ + . , / # $ % @ £ € ¥ -`` and not followed by a letter,
digit, ``_`` or ``%``), and not continuing another group. A candidate is a phone number when:

- **international** (``+`` or ``00`` then 8-15 digits): the country code exists and the length
  is possible for it (phonenumbers). Written without any separator, a ``00`` number must also
  be a valid number. A ``+`` number followed by other digit groups is tried without them.
- **national**, written with one kind of separator (dates such as ``01.02.2024`` and IPv4
  addresses are excluded), for a region of ``PHONE_REGIONS``:

  - North American Numbering Plan regions (``US``, ``CA``, ...): 10 digits with an area code
    that does not start with 0 or 1, written ``5551234567``, ``(555)1234567``,
    ``(555) 123-4567``, ``555-123-4567`` or ``555.123.4567``, optionally after ``1`` and a
    separator (``1-555-123-4567``; ``15551234567`` is too often an identifier);
  - regions with the trunk prefix 0 (``GB``, ``DE``, ``FR``, ...): starts with ``0`` and a
    non-zero digit; valid for the region, or written with separators and of a possible length
    (``07700 900123``, ``030 1234567``, ``06 12 34 56 78``);
  - other regions: written with separators and valid for the region.

A candidate written without any separator (``5551234567``, ``0612345678``) is not a phone number
when the value's key or one of the three words just before it say it is an identifier, an amount
or a time (``order_id``, ``amount``, ``ts``; "order 4839201746", "invoice no 4839201746"),
unless one of those words says phone ("call", "tel", ...).

Only strings are scanned: phone numbers stored as numbers are indistinguishable from amounts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

import phonenumbers

from ml_audit.sensitive_keys import QUALIFIER_SUFFIXES, tokenize_key

__all__ = [
    "DEFAULT_PHONE_REGIONS",
    "ID_KEY_TOKENS",
    "PhoneRegion",
    "detect_phone",
    "is_id_key",
    "phone_regions",
]

_Span = tuple[int, int]

DEFAULT_PHONE_REGIONS: Final = ("US", "GB", "DE", "FR")

#: Last words of a key whose values are identifiers, amounts or times, not phone numbers
#: (``order_id``, ``invoice_no``, ``amount``, ``created_ts``; trailing digits and
#: qualifiers such as ``_str`` are ignored).
ID_KEY_TOKENS: Final = frozenset(
    {"id", "ids", "no", "nr", "num", "number", "ref", "reference", "code", "uuid", "key",
     "amount", "total", "price", "cost", "sum", "balance", "qty", "quantity", "cents", "count",
     "ts", "timestamp", "time", "epoch", "date", "datetime", "seq", "sequence", "serial",
     "sku", "ean", "upc", "isbn", "hash", "checksum", "version", "offset", "size", "bytes",
     "ms", "order", "invoice"}
)  # fmt: skip


@functools.lru_cache(maxsize=8192)
def is_id_key(key: str) -> bool:
    """Whether ``key`` names an identifier, an amount or a time (:data:`ID_KEY_TOKENS`)."""
    tokens = tokenize_key(key)
    end = len(tokens)
    while end > 1 and tokens[end - 1] in QUALIFIER_SUFFIXES:
        end -= 1
    return end > 0 and tokens[end - 1] in ID_KEY_TOKENS


@dataclass(frozen=True)
class PhoneRegion:
    code: str
    #: "nanp" (country code 1), "trunk" (national prefix 0) or "other".
    kind: str


def phone_regions(codes: frozenset[str]) -> tuple[PhoneRegion, ...]:
    """The regions (ISO 3166 codes that phonenumbers knows), sorted; raises ValueError naming
    the unknown ones."""
    unknown = sorted(code for code in codes if code not in phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise ValueError(", ".join(repr(u) for u in unknown))
    regions = []
    for code in sorted(codes):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(code)
        assert metadata is not None  # every supported region has metadata
        if metadata.country_code == 1:
            kind = "nanp"
        elif metadata.national_prefix == "0":
            kind = "trunk"
        else:
            kind = "other"
        regions.append(PhoneRegion(code, kind))
    return tuple(regions)


_CANDIDATE_RE: Final = re.compile(
    # Not glued to a word, a number, an amount, a path or an id; not inside a run of groups.
    r"(?<![\w+.,/#$%@\u00a3\u20ac\u00a5-])(?<![0-9][ ./-])(?<!\)[ .-])"
    r"\+?"
    r"(?:\([0-9]{1,5}\)[ .-]?)?"
    r"[0-9]++"
    r"(?:(?:[ ./-]|[ .-]?\([0-9]{1,5}\)[ .-]?)[0-9]++)*+",
    re.ASCII,
)
_PART_RE: Final = re.compile(r"\(([0-9]+)\)|([0-9]+)|([ ./-])")
_DATE_OR_IP_RE: Final = re.compile(
    r"[0-9]{1,2}([./-])[0-9]{1,2}\1[0-9]{2,4}|[0-9]{4}([./-])[0-9]{1,2}\2[0-9]{1,2}"
    r"|[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
)
_GLUED_AFTER: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_%")
#: Words that say the number after them is an identifier or an amount ("order 4839201746",
#: "invoice no 4839201746"), and words that say it is a phone number.
_ID_WORDS: Final = frozenset(
    {"order", "orders", "invoice", "inv", "id", "no", "nr", "num", "ref", "reference",
     "account", "acct", "ticket", "case", "tracking", "serial", "sku", "transaction", "txn",
     "receipt", "policy", "member", "customer", "batch", "lot", "po", "amount", "total",
     "balance", "price", "usd", "eur", "gbp", "ts", "timestamp", "epoch", "time"}
)  # fmt: skip
_PHONE_WORDS: Final = frozenset(
    {"phone", "tel", "telephone", "call", "called", "calling", "mobile", "cell", "fax", "sms",
     "text", "whatsapp", "contact", "reach", "dial", "ring"}
)  # fmt: skip
_MAX_CANDIDATE: Final = 32  # "+44 (0) 20 7946 0958" has 20 characters


def detect_phone(
    s: str, spans: list[_Span], regions: tuple[PhoneRegion, ...], id_context: bool
) -> None:
    """Append the spans of phone numbers in ``s`` (see the module docstring)."""
    for m in _CANDIDATE_RE.finditer(s):
        text = m.group()
        if len(text) > _MAX_CANDIDATE or len(text) < 7:
            continue
        end = m.end()
        if end < len(s) and (
            s[end] in _GLUED_AFTER
            or (s[end] in ".,/:-" and end + 1 < len(s) and s[end + 1].isdigit())
        ):
            continue
        length = _phone_length(text, regions)
        if length == 0:
            continue
        if length < 0:  # written without separators: is it an identifier?
            if id_context or _looks_like_an_id(s, m.start()):
                continue
            length = len(text)
        spans.append((m.start(), m.start() + length))


def _looks_like_an_id(s: str, start: int) -> bool:
    """Whether one of the three words before ``start`` says "identifier" and none "phone".

    Whole words only (``order@shop.com`` is no word "order"), so that replacing another hit
    next to the number never turns an identifier into a phone number."""
    words = [w.strip(":#.,;-=()").lower() for w in s[max(0, start - 40) : start].split()[-3:]]
    return any(w in _ID_WORDS for w in words) and not any(w in _PHONE_WORDS for w in words)


def _phone_length(text: str, regions: tuple[PhoneRegion, ...]) -> int:
    """The length of the phone number ``text`` starts with: 0 when it is none, ``-1`` when all
    of ``text`` is one written without separators (the caller checks the context)."""
    groups: list[str] = []
    ends: list[int] = []  # end offset of each group in text
    separators: set[str] = set()
    parens = False
    for part in _PART_RE.finditer(text):
        inner, digits, separator = part.groups()
        if separator is not None:
            # Separators next to a parenthesised group do not count: "(555) 123-4567".
            if (
                text[part.start() - 1 : part.start()] != ")"
                and text[part.end() : part.end() + 1] != "("
            ):
                separators.add(separator)
        elif inner is not None:
            parens = True
            if inner != "0" or not text.startswith("+"):  # "+44 (0)20": the trunk 0 goes
                groups.append(inner)
                ends.append(part.end())
        else:
            groups.append(digits)
            ends.append(part.end())
    digits = "".join(groups)
    formatted = len(groups) > 1 or parens
    if text.startswith("+"):
        # Digits that follow the number ("+44 20 7946 0958 1234") are tried without.
        for drop in range(min(3, len(groups))):
            kept = groups[: len(groups) - drop]
            if drop and text[ends[len(kept) - 1]] != " ":
                break
            if _international_ok("".join(kept), need_valid=False):
                return ends[len(kept) - 1]
        return 0
    if digits.startswith("00"):
        return len(text) if _international_ok(digits[2:], need_valid=not formatted) else 0
    if len(separators) > 1 or _DATE_OR_IP_RE.fullmatch(text):
        return 0
    if not 8 <= len(digits) <= 13:
        return 0
    for region in regions:
        if region.kind == "nanp":
            ok = _nanp_ok(groups, digits)
        elif region.kind == "trunk":
            ok = digits[1] != "0" and digits[0] == "0" and _national_ok(digits, region, formatted)
        else:
            ok = formatted and _valid(digits, region.code)
        if ok:
            return len(text) if formatted else -1
    return 0


def _nanp_ok(groups: list[str], digits: str) -> bool:
    if len(groups) > 1 and groups[0] == "1":
        groups = groups[1:]
        digits = digits[1:]
    if len(digits) != 10 or digits[0] in "01":
        return False
    return tuple(len(g) for g in groups) in ((10,), (3, 7), (3, 3, 4))


def _national_ok(digits: str, region: PhoneRegion, formatted: bool) -> bool:
    if _valid(digits, region.code):
        return True
    return formatted and _possible(digits, region.code)


@functools.lru_cache(maxsize=4096)
def _parse(number: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None


def _valid(digits: str, region: str) -> bool:
    number = _parse(digits, region)
    return number is not None and phonenumbers.is_valid_number(number)


def _possible(digits: str, region: str) -> bool:
    number = _parse(digits, region)
    return (
        number is not None
        and phonenumbers.is_possible_number_with_reason(number)
        == phonenumbers.ValidationResult.IS_POSSIBLE
    )


def _international_ok(digits: str, need_valid: bool) -> bool:
    if not 8 <= len(digits) <= 15 or digits[0] == "0":
        return False
    number = _parse("+" + digits, None)
    if (
        number is None
        or number.country_code is None
        or phonenumbers.region_code_for_country_code(number.country_code) == "ZZ"
    ):
        return False
    if phonenumbers.is_valid_number(number):
        return True
    return not need_valid and (
        phonenumbers.is_possible_number_with_reason(number)
        == phonenumbers.ValidationResult.IS_POSSIBLE
    )
