"""Value detectors of redaction (rule 4 of :mod:`ml_audit.redaction`).

:class:`Detectors` holds the enabled detectors of a policy; :func:`find` returns the hits in a
string: it reads the normalised copy of :mod:`ml_audit.detection_text`, maps hits back onto the
original, never reports a pseudonym of an earlier redaction (so redacting twice changes
nothing), and reads a ``"base64:..."`` value (bytes, as :mod:`ml_audit.normalise` stores them)
as the text it encodes. Payment cards are in :mod:`ml_audit.payment_cards`, phone numbers in
:mod:`ml_audit.phones`.

Every regular expression here matches in time linear in the string (no nested or overlapping
repetitions, anchored starts via look-behind): payloads may carry long free text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Final

from ml_audit.detection_text import detection_text
from ml_audit.payment_cards import detect_payment_card
from ml_audit.phones import PhoneRegion, detect_phone

__all__ = [
    "DETECTORS",
    "PSEUDONYM_PREFIX",
    "Detectors",
    "Hit",
    "find",
    "rescan",
    "rescan_needed",
]

DETECTORS: tuple[str, ...] = (
    "email",
    "payment_card",
    "iban",
    "us_ssn",
    "phone",
    "jwt",
    "bearer_token",
    "basic_auth",
    "api_key",
    "aws_secret_key",
    "private_key",
)

_Span = tuple[int, int]
#: A hit: where it is in the original string, and the matched text of the normalised copy
#: (what hash mode hashes, so that obfuscated spellings get the pseudonym of the plain one).
Hit = tuple[int, int, str]

PSEUDONYM_PREFIX: Final = "hmac-sha256:"
_PSEUDONYM_RE: Final = re.compile(r"hmac-sha256:[0-9a-f]{32}")

_EMAIL_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
_EMAIL_RE = re.compile(
    rf"(?<!{_EMAIL_LOCAL}){_EMAIL_LOCAL}+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{{2,}}",
)


def _detect_email(s: str, spans: list[_Span]) -> None:
    spans.extend(m.span() for m in _EMAIL_RE.finditer(s))


# ISO 13616 registry lengths; a known country must have exactly this length. Unknown countries
# fall back to group boundaries so that a registry addition is not silently missed.
_IBAN_LENGTHS: Final[Mapping[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){11,30}")


def _detect_iban(s: str, spans: list[_Span]) -> None:
    # The regex is greedy (an IBAN is followed by words or other IBANs), so the scan resumes
    # where an accepted IBAN ends, or just after the start of a rejected match: an IBAN may
    # start inside it ("XX12 DE89 3704 ..."). A match is at most 64 characters and starts only
    # after a character that is not a letter or digit, so this stays linear.
    pos = 0
    while True:
        m = _IBAN_RE.search(s, pos)
        if m is None:
            return
        end = _iban_end(m.group().upper())
        if end:
            spans.append((m.start(), m.start() + end))
            pos = m.start() + end
        else:
            pos = m.start() + 1


def _iban_end(text: str) -> int:
    """The length of the IBAN ``text`` starts with (spaced or dashed), or 0."""
    # End offsets (within the match) after each alphanumeric character, so a compact length
    # can be mapped back onto the spaced (or dashed) original.
    ends = [i + 1 for i, ch in enumerate(text) if ch != " " and ch != "-"]
    lengths: list[int] = []
    expected = _IBAN_LENGTHS.get(text[:2])
    if expected is not None:
        lengths.append(expected)
    else:
        # Trailing words can be swallowed by the regex ("... 0130 00 FOR"): try the prefixes
        # that end at a group boundary, longest first.
        lengths.extend(
            n for n in range(len(ends), 14, -1) if n == len(ends) or text[ends[n - 1]] in " -"
        )
    compact = text.replace(" ", "").replace("-", "")
    for n in lengths:
        if 15 <= n <= len(compact) and n <= 34 and _iban_ok(compact[:n]):
            end = ends[n - 1]
            # A compact IBAN must not continue into more alphanumerics.
            if end == len(text) or text[end] in " -":
                return end
            return 0
    return 0


# AAA-GG-SSSS with one separator: dash, dot or space (area 000, 666, 9xx, group 00 and serial
# 0000 are not issued). Not inside a longer dotted or dashed number ("10.123.45.6789").
_SSN_RE = re.compile(
    r"(?<![0-9A-Za-z])(?<![0-9][-.])(?!000|666|9)[0-9]{3}([-. ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}"
    r"(?![0-9A-Za-z])(?![-.][0-9])"
)


def _detect_us_ssn(s: str, spans: list[_Span]) -> None:
    spans.extend(m.span() for m in _SSN_RE.finditer(s))


_JWT_RE = re.compile(r"(?<![\w-])eyJ[\w-]+\.[\w-]+\.[\w-]*", re.ASCII)


def _detect_jwt(s: str, spans: list[_Span]) -> None:
    spans.extend(m.span() for m in _JWT_RE.finditer(s))


_BEARER_RE = re.compile(r"\bbearer[ \t]+([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_TOKEN_SYMBOLS_RE = re.compile(r"[0-9\-._~+/=]")


def _detect_bearer_token(s: str, spans: list[_Span]) -> None:
    for m in _BEARER_RE.finditer(s):
        token = m.group(1)
        # Prose ("the bearer of this card") must not lose its next word: a token is long, or
        # has a digit or a symbol, as every real opaque or structured token does.
        if len(token) >= 20 or (len(token) >= 8 and _TOKEN_SYMBOLS_RE.search(token)):
            spans.append(m.span(1))


_API_KEY_RE = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"[spr]k_(?:live|test)_[0-9A-Za-z]{10,}"
    r"|sk-[A-Za-z0-9_-]{17,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|A[KS]IA[0-9A-Z]{16}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r")"
)


def _detect_api_key(s: str, spans: list[_Span]) -> None:
    for m in _API_KEY_RE.finditer(s):
        text = m.group()
        # OpenAI-style keys are random and contain digits; kebab-case words starting "sk-" don't.
        if text.startswith("sk-") and not any(ch.isdigit() for ch in text):
            continue
        spans.append(m.span())


_BASIC_RE = re.compile(
    r"\bbasic[ \t]+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])", re.IGNORECASE | re.ASCII
)


def _detect_basic_auth(s: str, spans: list[_Span]) -> None:
    """HTTP Basic credentials: ``Basic <base64 of user:password>``. The token must decode to
    UTF-8 text holding a ``:``, which keeps prose ("basic understanding") out."""
    for m in _BASIC_RE.finditer(s):
        token = m.group(1)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            text = decoded.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if ":" in text and text.isprintable():
            spans.append(m.span(1))


_AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def _detect_aws_secret_key(s: str, spans: list[_Span]) -> None:
    """40-character AWS secret access keys in a string that names AWS or holds an access key id
    (``AKIA``/``ASIA``): base64 characters with upper and lower case letters and a digit or
    ``/``/``+`` (so hex digests and words are left alone)."""
    for m in _AWS_SECRET_RE.finditer(s):
        token = m.group()
        if (
            (not token.isalnum() or any(ch.isdigit() for ch in token))
            and not token.islower()
            and not token.isupper()
        ):
            spans.append(m.span())


_PEM_BEGIN_RE = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----")


def _detect_private_key(s: str, spans: list[_Span]) -> None:
    """PEM (and PGP) private key blocks, from ``-----BEGIN ... PRIVATE KEY-----`` through the
    matching ``-----END ...-----`` line, or to the end of the string when it is cut off."""
    last_end = 0
    for m in _PEM_BEGIN_RE.finditer(s):
        if m.start() < last_end:
            continue
        end_marker = s.find("-----END ", m.end())
        if end_marker < 0:
            end = len(s)
        else:
            close = s.find("-----", end_marker + 9)
            end = len(s) if close < 0 else close + 5
        spans.append((m.start(), end))
        last_end = end


_DIGIT_BYTES: Final = b"0123456789"
# Shortest possible hit over all detectors ("a@b.cd"); shorter strings are never scanned.
_MIN_HIT_LEN: Final = 6


class Detectors:
    """The detectors a policy enables (and its phone regions), with the cheap gates that keep
    typical feature values (words, codes, dates) away from every regular expression."""

    __slots__ = (
        "any",
        "api_key",
        "aws_secret_key",
        "basic_auth",
        "bearer_token",
        "email",
        "iban",
        "jwt",
        "marker",
        "payment_card",
        "phone",
        "private_key",
        "regions",
        "us_ssn",
    )

    def __init__(
        self,
        enabled: frozenset[str],
        regions: tuple[PhoneRegion, ...],
        mask_value: str | None = None,
    ) -> None:
        self.any = bool(enabled)
        #: The policy's mask, read as a redaction marker when it is long enough not to be
        #: ordinary punctuation (see :func:`find`).
        self.marker = mask_value if mask_value is not None and len(mask_value) >= 3 else None
        self.email = "email" in enabled
        self.payment_card = "payment_card" in enabled
        self.iban = "iban" in enabled
        self.us_ssn = "us_ssn" in enabled
        self.phone = "phone" in enabled and bool(regions)
        self.jwt = "jwt" in enabled
        self.bearer_token = "bearer_token" in enabled
        self.basic_auth = "basic_auth" in enabled
        self.api_key = "api_key" in enabled
        self.aws_secret_key = "aws_secret_key" in enabled
        self.private_key = "private_key" in enabled
        self.regions = regions

    def spans(self, s: str, id_context: bool = False, cards: bool = True) -> list[_Span]:
        """Spans of hits in ``s`` as it is (unsorted, may overlap); ``cards`` False skips the
        payment card detector (see :func:`rescan_needed`)."""
        spans: list[_Span] = []
        if s.isalpha():
            # Only AKIA/ASIA/AIza keys can be made of letters alone.
            if self.api_key and len(s) >= 20 and ("IA" in s or "AI" in s):
                _detect_api_key(s, spans)
            return spans
        ascii_bytes = s.encode("ascii", "ignore")
        digits = len(ascii_bytes) - len(ascii_bytes.translate(None, _DIGIT_BYTES))
        if digits >= 2:
            if self.iban and len(s) >= 15:
                _detect_iban(s, spans)
            if cards and self.payment_card and digits >= 13:
                detect_payment_card(s, spans)
            if self.us_ssn and digits >= 9:
                _detect_us_ssn(s, spans)
            # National numbers need 8+ digits ("030 12345"), international ones a "+" and 8+.
            if self.phone and digits >= 8:
                detect_phone(s, spans, self.regions, id_context)
        if self.email and "@" in s:
            _detect_email(s, spans)
        if self.jwt and "eyJ" in s:
            _detect_jwt(s, spans)
        if len(s) >= 10:
            lower = s.lower()
            if self.bearer_token and "earer" in lower:
                _detect_bearer_token(s, spans)
            if self.basic_auth and "basic" in lower:
                _detect_basic_auth(s, spans)
            if self.api_key and (
                "k_" in s or "sk-" in s or "gh" in s or "IA" in s or "AI" in s or "xox" in s
            ):
                _detect_api_key(s, spans)
            if (
                self.aws_secret_key
                and len(s) >= 40
                and ("aws" in lower or "AKIA" in s or "ASIA" in s)
            ):
                _detect_aws_secret_key(s, spans)
            if self.private_key and "-----BEGIN " in s:
                _detect_private_key(s, spans)
        return spans


def _merge(spans: list[_Span]) -> list[_Span]:
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            if end > last_end:
                merged[-1] = (last_start, end)
        else:
            merged.append((start, end))
    return merged


def _bytes_text(s: str) -> str | None:
    """The text a ``"base64:..."`` value encodes (UTF-8, else UTF-16 when it has a byte order
    mark, else Latin-1), or None when it is not valid base64."""
    try:
        data = base64.b64decode(s[7:], validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def find(
    detectors: Detectors,
    s: str,
    id_context: bool = False,
    cards: bool = True,
    whole: bool = True,
) -> list[Hit]:
    """The hits in ``s``: sorted, disjoint spans of the original string with the normalised
    text each one matched. ``id_context``: the key says the value is an identifier, an amount
    or a time (see :mod:`ml_audit.phones`); ``cards`` False: skip the card detector;
    ``whole`` False: ``s`` is a window of a longer string (never read as bytes).

    A ``"base64:<...>"`` value that decodes is one hit covering all of it when anything is
    found in the text it encodes. The marks of an earlier redaction (pseudonyms, and the mask
    when it has 3+ characters) read as U+0000 characters, which no detector matches and no
    stored string holds: a neutral boundary, neither a hit nor part of one nor context that
    joins it to a neighbour, whatever characters the mark is made of."""
    if whole and s.startswith("base64:"):
        text = _bytes_text(s)
        if text is not None:
            return [(0, len(s), s)] if find(detectors, text, id_context) else []
    copy, offsets = detection_text(s)
    # Same length: offsets stay valid.
    if PSEUDONYM_PREFIX in copy:
        copy = _PSEUDONYM_RE.sub(_stand_in, copy)
    marker = detectors.marker
    if marker is not None and marker in copy:
        copy = copy.replace(marker, "\x00" * len(marker))
    spans = detectors.spans(copy, id_context, cards)
    if not spans:
        return []
    merged = _merge(spans)
    if offsets is None:
        return [(a, b, copy[a:b]) for a, b in merged]
    hits: list[Hit] = []
    first = 0  # copy offset where the last hit started
    for a, b in merged:
        start, end = offsets.original(a, b)
        if hits and start < hits[-1][1]:  # two hits in one decoded escape: one replacement
            start = hits[-1][0]
            a = first
            hits.pop()
        else:
            first = a
        hits.append((start, end, copy[a:b]))
    return hits


def _stand_in(match: re.Match[str]) -> str:
    return "\x00" * (match.end() - match.start())


_DIGITS: Final = frozenset("0123456789")
_JOIN_ACROSS_SPACE_AFTER: Final = frozenset("0123456789+(")
_JOIN_ACROSS_SPACE_BEFORE: Final = frozenset("0123456789)")


def rescan_needed(s: str, hits: list[Hit]) -> int:
    """Whether replacing ``hits`` in ``s`` may uncover something next to them: 0 no, 1 yes,
    2 yes and card numbers too (a hit was glued to a digit).

    A hit can be the context that kept its neighbour from being a hit ("4111 1111 1111 1111
    07700 900123": the phone number continues the card's digit groups; "5551234567,4111...":
    a comma followed by a digit continues a number). Every detector reads at most two
    characters of context on either side: a neighbour touching the hit, or one starting with
    a digit, ``+`` or ``(`` one space away (digit groups join across spaces). A card's digit
    groups only change when a hit was glued to one of its digits."""
    result = 0
    for start, end, _ in hits:
        after = s[end : end + 1]
        before = s[start - 1 : start] if start else ""
        if after in _DIGITS or before in _DIGITS:
            return 2
        if (
            (after and not after.isspace())
            or (before and not before.isspace())
            or (after.isspace() and s[end + 1 : end + 2] in _JOIN_ACROSS_SPACE_AFTER)
            or (before.isspace() and s[start - 2 : start - 1] in _JOIN_ACROSS_SPACE_BEFORE)
        ):
            result = 1
    return result


#: Strings up to this long are scanned again whole; longer ones around the replacements only.
_FULL_RESCAN: Final = 4096
#: How far around a replacement a new hit can reach: it starts or ends within two characters
#: of it and is at most this long, unless it has no whitespace (then the window runs on to
#: the next safe boundary).
_REACH: Final = 80
#: How far a window edge may move to a safe boundary before the whole string is scanned.
_SLACK: Final = 256
# A safe boundary is a whitespace character that no digit group, look-behind or look-ahead
# crosses: not followed by a digit, "+" or "(" (right edge), not preceded by a digit or ")"
# (left edge).
_SAFE_RIGHT: Final = re.compile(r"\s(?![0-9+(])")
_SAFE_LEFT: Final = re.compile(r"(?<![0-9)])\s")


def rescan(
    detectors: Detectors, s: str, replaced: list[_Span], id_context: bool, cards: bool
) -> list[Hit]:
    """:func:`find` on ``s`` after the spans ``replaced`` were written into it, limited to
    what those replacements can have uncovered (see :func:`rescan_needed`): short strings are
    scanned whole, long ones in windows around the replacements, cut at safe boundaries, so
    that a few hits in a long text do not cost a second pass over all of it."""
    size = len(s)
    if size <= _FULL_RESCAN:
        return find(detectors, s, id_context, cards)
    windows: list[_Span] = []
    for start, end in replaced:
        lo = max(0, start - _REACH)
        if lo > 0:
            edges = [m.end() for m in _SAFE_LEFT.finditer(s, max(0, lo - _SLACK), lo)]
            if not edges:
                return find(detectors, s, id_context, cards)
            lo = edges[-1]
        hi = min(size, end + _REACH)
        if hi < size:
            # One character more than the slack, so that the look-ahead reads a real one.
            edge = _SAFE_RIGHT.search(s, hi, hi + _SLACK + 1)
            if edge is None or edge.start() >= hi + _SLACK:
                return find(detectors, s, id_context, cards)
            hi = edge.start()
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    if sum(hi - lo for lo, hi in windows) * 2 > size:
        return find(detectors, s, id_context, cards)
    hits: list[Hit] = []
    for lo, hi in windows:
        window = find(detectors, s[lo:hi], id_context, cards, whole=False)
        hits.extend((lo + a, lo + b, text) for a, b, text in window)
    return hits
