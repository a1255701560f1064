"""Redaction of ML prediction payloads before they reach the audit trail or telemetry.

:func:`redact` is a pure function of ``(payload, policy)``: it never mutates its input and
returns new containers together with the list of paths it redacted. Payloads are expected to be
JSON-normalised (``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``).

Rules
-----

1. **Key tokenisation.** A key is split on every character that is not a letter or a digit
   (``_``, ``-``, ``.``, spaces, ...), on camelCase boundaries including acronyms (``APIKey`` ->
   ``api key``, ``creditCard`` -> ``credit card``, ``SSN`` -> ``ssn``) and between letters and
   digits, then lowercased. Trailing all-digit tokens are dropped (``email2``, ``phone_1`` ->
   ``email``, ``phone``). See :func:`tokenize_key`.
2. **Sensitive keys.** A key is sensitive when its token sequence *ends with* one of the
   sensitive phrases (:data:`SENSITIVE_PHRASES` plus the policy's ``SENSITIVE_KEYS``), i.e. the
   sensitive word is the head noun: ``customer_phone_number`` is sensitive, ``phone_verified``
   is not. A phrase also matches when written as one word (``apikey``, ``creditcard``,
   ``dateofbirth``): the last *k* tokens are compared concatenated. A key whose *first* token is
   a flag or count prefix (:data:`FLAG_PREFIXES`: ``is``, ``has``, ``num``, ``n``, ...) is not
   sensitive through a phrase that leaves that prefix out: ``has_phone`` and ``num_emails``
   describe the data, they do not hold it. Bare ``address``, ``name``, ``zip``, ``country``,
   ``age`` and ``income`` are deliberately *not* sensitive phrases: they are ordinary model
   features. See :func:`is_sensitive_key`.
3. **ALLOWLIST / DENYLIST.** An entry is either a bare key name, matching that key at any depth,
   or a dotted path from the payload root (``applicant.contact.email``; list indices are not
   written, so ``items.card_number`` matches ``items[3].card_number``; a key containing ``.``,
   ``[`` or ``]`` is written ``["a.b"]``). Names and path segments are compared after
   tokenisation (``Email`` == ``email``); for DENYLIST trailing digits are ignored like for
   sensitive keys (denying ``phone`` denies ``phone_2``), for ALLOWLIST they are significant
   (allowing ``phone_1`` does not allow ``phone_2``); a key with no letters (``"123"``) is
   compared literally. Precedence: DENYLIST > ALLOWLIST >
   sensitive keys > value detectors. An allowlisted key keeps its whole subtree as-is except that
   DENYLIST entries still apply inside it. A sensitive or denylisted key has its whole value
   redacted whatever its type, ``None``, dicts and lists included.
4. **Value detectors** run on every string value not under an allowlisted key, at any depth,
   list elements included. ``email``; ``payment_card``: 13-19 digits, contiguous or in groups of
   3+ digits separated by single spaces or dashes, Luhn-valid; ``iban``: country code, check
   digits, registry length, mod-97, with or without spaces; ``us_ssn``: ``AAA-GG-SSSS`` (area
   000, 666, 9xx, group 00 and serial 0000 are not SSNs); ``phone``: ``+`` and 8-15 digits,
   North American ``(555) 123-4567`` / ``555-123-4567``, trunk-prefix national forms such as
   ``020 7946 0958`` (never bare digit strings, dates or decimals); ``jwt``: three base64url
   segments, the first starting ``eyJ``; ``bearer_token``: the token after ``Bearer``
   (case-insensitive; 20+ characters, or 8+ with a digit or symbol, so that prose like "the
   bearer of" is left alone); ``api_key``: ``sk_live_``/``sk_test_``/``pk_*``/``rk_*``,
   OpenAI-style ``sk-`` (20+ characters with a digit), ``ghp_``/``gho_``/``ghu_``/``ghs_``/
   ``ghr_``, ``github_pat_``, ``AKIA``/``ASIA``, ``xox[abposr]-``, ``AIza``. Only the matched
   substrings are replaced. Numbers, booleans and dict keys are not scanned.
5. **Modes.** ``mask`` replaces a redacted value (or matched substring) with ``MASK_VALUE``.
   ``hash`` replaces it with ``"hmac-sha256:" + HMAC-SHA-256(HASH_KEY, canonical JSON)[:32 hex]``
   where the canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
   ensure_ascii=False)``; a substring hit is hashed as the JSON string of the matched text, so an
   e-mail address gets the same pseudonym under an ``email`` key and inside free text. ``drop``
   removes the key from its mapping or the element from its list; a string with a detector hit
   is dropped whole. A payload root that must be dropped becomes ``None``.
6. **Paths** in :attr:`RedactionResult.paths` are sorted and unique: keys joined by ``.``, list
   indices as ``[i]`` (index in the input), a key that is empty or contains ``.``, ``[`` or
   ``]`` as ``["a.b"]`` (JSON-quoted); the payload root itself is ``""``. Paths never contain
   values.
7. Non-string dict keys are classified and written in paths through ``str()``; the output keeps
   the original key objects. Tuples are treated like lists.

The built-in rules are part of :attr:`RedactionPolicy.version`: bump :data:`POLICY_SCHEMA` when
they change meaning.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ml_audit.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MASK_VALUE",
    "DETECTORS",
    "FLAG_PREFIXES",
    "MODES",
    "POLICY_SCHEMA",
    "SENSITIVE_PHRASES",
    "RedactionPolicy",
    "RedactionResult",
    "is_sensitive_key",
    "redact",
    "redact_flat",
    "tokenize_key",
]

DETECTORS: tuple[str, ...] = (
    "email",
    "payment_card",
    "iban",
    "us_ssn",
    "phone",
    "jwt",
    "bearer_token",
    "api_key",
)
MODES: tuple[str, ...] = ("mask", "hash", "drop")
DEFAULT_MASK_VALUE = "*****"  # 0.2.0's mask, kept so that old and new rows read alike
POLICY_SCHEMA = 1  # bump when the rules change meaning

#: Built-in sensitive phrases, space-separated tokens. A key is sensitive when its tokens end
#: with one of them. Several are implied by shorter ones (``client secret`` by ``secret``); they
#: are listed anyway so that this tuple reads as the documentation.
# fmt: off
SENSITIVE_PHRASES: tuple[str, ...] = (
    # contact
    "email", "emails", "e mail", "email address", "email addresses", "mail address",
    "phone", "phones", "phone number", "phone numbers", "phone no", "phone nr",
    "mobile", "mobile number", "mobile no", "cell number", "telephone", "telephone number",
    "tel", "msisdn", "fax", "fax number",
    # secrets and credentials
    "password", "passwords", "passwd", "pwd", "passphrase", "passcode",
    "secret", "secrets", "client secret",
    "token", "access token", "refresh token", "id token", "auth token",
    "api key", "api keys", "access key", "secret key", "private key",
    "authorization", "bearer", "cookie", "cookies", "session id", "credential", "credentials",
    # payment and banking
    "credit card", "debit card", "payment card", "card number", "card no", "cc number",
    "cvv", "cvc", "pin", "iban", "ibans", "account number", "account no", "bank account",
    "routing number", "sort code",
    # government identifiers
    "ssn", "ssns", "social security number", "national id", "national id number",
    "national insurance number", "tax id", "tax id number",
    "passport", "passport number", "passport no",
    "driver license", "drivers license", "driving license",
    "driver licence", "drivers licence", "driving licence", "license number", "licence number",
    # birth and names
    "dob", "date of birth", "birth date", "birthdate", "birthday",
    "first name", "last name", "full name", "middle name", "family name", "given name",
    "maiden name", "surname", "forename",
    # addresses and location
    "home address", "street address", "postal address", "mailing address", "billing address",
    "shipping address", "residential address", "address line",
    "ip", "ip address", "ip addresses", "geolocation",
)
# fmt: on

#: First tokens that make a key describe data rather than hold it (``has_phone``, ``num_emails``).
FLAG_PREFIXES: frozenset[str] = frozenset(
    {"is", "has", "have", "had", "was", "were", "did", "does", "can", "should", "uses",
     "num", "n", "count", "cnt"}
)  # fmt: skip

_PSEUDONYM_PREFIX: Final = "hmac-sha256:"
_MIN_HASH_KEY_BYTES: Final = 16
_KEY_CACHE_LIMIT: Final = 4096
_CONFIG_KEYS: Final = (
    "ALLOWLIST",
    "DENYLIST",
    "MASK_VALUE",
    "MODE",
    "HASH_KEY",
    "DETECTORS",
    "SENSITIVE_KEYS",
)

# --------------------------------------------------------------------------------------------
# Key tokenisation and sensitive keys
# --------------------------------------------------------------------------------------------

# Order matters: an upper-case run not followed by a lower-case letter is an acronym (``API`` in
# ``APIKey``); otherwise one capital starts a word. Non-ASCII letters are kept as whole words
# because ``re`` has no Unicode upper/lower classes.
_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_]+")


@functools.lru_cache(maxsize=8192)
def _split_key(key: str) -> tuple[str, ...]:
    return tuple(tok.lower() for tok in _TOKEN_RE.findall(key))


@functools.lru_cache(maxsize=8192)
def tokenize_key(key: str) -> tuple[str, ...]:
    """Split a key into lowercase word tokens (rule 1).

    Splits on non-alphanumeric characters, camelCase and acronym boundaries and between letters
    and digits; trailing all-digit tokens are dropped, so ``"customerPhone_2"`` gives
    ``("customer", "phone")`` and ``"APIKey"`` gives ``("api", "key")``.
    """
    tokens = _split_key(key)
    end = len(tokens)
    while end and tokens[end - 1].isdigit():
        end -= 1
    return tokens[:end]


def _phrase_tables(
    phrases: Iterable[tuple[str, ...]],
) -> tuple[frozenset[tuple[str, ...]], frozenset[str], int]:
    seqs = frozenset(p for p in phrases if p)
    concat = frozenset("".join(p) for p in seqs)
    longest = max((len(c) for c in concat), default=0)
    return seqs, concat, longest


_BUILTIN_SEQS, _BUILTIN_CONCAT, _BUILTIN_LONGEST = _phrase_tables(
    tokenize_key(p) for p in SENSITIVE_PHRASES
)


def _phrase_match_lengths(
    tokens: tuple[str, ...],
    seqs: frozenset[tuple[str, ...]],
    concat: frozenset[str],
    longest: int,
) -> Iterable[int]:
    """Yield every k such that the last k tokens spell a phrase (as tokens or glued)."""
    joined = ""
    for k in range(1, len(tokens) + 1):
        joined = tokens[-k] + joined
        if len(joined) > longest:
            return
        if joined in concat or tokens[-k:] in seqs:
            yield k


@functools.lru_cache(maxsize=8192)
def is_sensitive_key(key: str, extra: frozenset[tuple[str, ...]] = frozenset()) -> bool:
    """Return whether ``key`` names sensitive data (rule 2).

    ``extra`` holds additional phrases as token tuples (``tokenize_key`` of each entry of the
    policy's ``SENSITIVE_KEYS``). A key is sensitive when its tokens end with a phrase, unless
    its first token is one of :data:`FLAG_PREFIXES` and the phrase does not cover it.
    """
    tokens = tokenize_key(key)
    if not tokens:
        return False
    flagged = tokens[0] in FLAG_PREFIXES
    tables = [(_BUILTIN_SEQS, _BUILTIN_CONCAT, _BUILTIN_LONGEST)]
    if extra:
        tables.append(_phrase_tables(extra))
    for seqs, concat, longest in tables:
        for k in _phrase_match_lengths(tokens, seqs, concat, longest):
            if not flagged or k == len(tokens):
                return True
    return False


# --------------------------------------------------------------------------------------------
# Value detectors
# --------------------------------------------------------------------------------------------

_Span = tuple[int, int]

# Each detector appends (start, end) spans of validated hits. The regexes are written so that
# matching stays linear in the string length (anchored starts via look-behind, bounded or
# delimiter-separated repetitions): payloads may carry long free text such as LLM output.

_EMAIL_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
_EMAIL_RE = re.compile(
    rf"(?<!{_EMAIL_LOCAL}){_EMAIL_LOCAL}+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{{2,}}",
)


def _detect_email(s: str, spans: list[_Span]) -> None:
    spans.extend(m.span() for m in _EMAIL_RE.finditer(s))


# A run of digit groups separated by single spaces or dashes; which part of it is a card number
# is decided afterwards, because a regex cannot try every Luhn-valid window.
_DIGIT_RUN_RE = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_GROUP_RE = re.compile(r"[0-9]+")
_LUHN_DOUBLE: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if i % 2 else d
    return total % 10 == 0


def _detect_payment_card(s: str, spans: list[_Span]) -> None:
    for run in _DIGIT_RUN_RE.finditer(s):
        text = run.group()
        if len(text) < 13:
            continue
        base = run.start()
        groups = [m.span() for m in _GROUP_RE.finditer(text)]
        if len(groups) == 1:
            # A contiguous run longer than 19 digits is some other number, not a card inside it.
            if len(text) <= 19 and _luhn_ok(text):
                spans.append(run.span())
            continue
        # Separated groups: every window of whole groups holding 13-19 digits is a candidate, so
        # a card next to a date or another card is still found. Cards are written in groups of
        # 3+ digits (only a window's last group may be shorter); this also keeps the number of
        # windows linear for long lists of small numbers. Luhn sums come from prefix sums:
        # sums[p][k] adds the first k digits, doubling those at positions of parity p, and a
        # window ending before digit e doubles the digits whose position has the parity of e.
        digits = [ord(ch) - 48 for ch in text if ch != " " and ch != "-"]
        sums = ([0], [0])
        for pos, d in enumerate(digits):
            doubled = _LUHN_DOUBLE[d]
            sums[0].append(sums[0][-1] + (doubled if pos % 2 == 0 else d))
            sums[1].append(sums[1][-1] + (d if pos % 2 == 0 else doubled))
        first_digit = 0
        for i, (start, end) in enumerate(groups):
            count = 0
            for j in range(i, len(groups)):
                g_start, g_end = groups[j]
                if j > i and groups[j - 1][1] - groups[j - 1][0] < 3:
                    break
                count += g_end - g_start
                if count > 19:
                    break
                if count >= 13:
                    e = first_digit + count
                    table = sums[e % 2]
                    if (table[e] - table[first_digit]) % 10 == 0:
                        spans.append((base + start, base + g_end))
            first_digit += end - start


_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}")
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


def _detect_iban(s: str, spans: list[_Span]) -> None:
    for m in _IBAN_RE.finditer(s):
        text = m.group().upper()
        # End offsets (within the match) after each alphanumeric character, so a compact
        # length can be mapped back onto the spaced original.
        ends = [i + 1 for i, ch in enumerate(text) if ch != " "]
        lengths: list[int] = []
        expected = _IBAN_LENGTHS.get(text[:2])
        if expected is not None:
            lengths.append(expected)
        else:
            # Trailing words can be swallowed by the regex ("... 0130 00 FOR"): try the prefixes
            # that end at a group boundary, longest first.
            lengths.extend(
                n for n in range(len(ends), 14, -1) if n == len(ends) or text[ends[n - 1]] == " "
            )
        compact = text.replace(" ", "")
        for n in lengths:
            if 15 <= n <= len(compact) and n <= 34 and _iban_ok(compact[:n]):
                end = ends[n - 1]
                # A compact IBAN must not continue into more alphanumerics.
                if end == len(text) or text[end] == " ":
                    spans.append((m.start(), m.start() + end))
                break


_SSN_RE = re.compile(r"(?<![0-9])(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9])")


def _detect_us_ssn(s: str, spans: list[_Span]) -> None:
    spans.extend(m.span() for m in _SSN_RE.finditer(s))


_INTL_PHONE_RE = re.compile(r"(?<![\w+])\+[1-9][0-9]*(?:[ .\-]?(?:\([0-9]+\)|[0-9]+))*")
_NATIONAL_PHONE_RE = re.compile(
    # Neither form may continue a preceding digit group ("... 0044 0532 0130 00" inside an IBAN
    # or an account number is not a phone number).
    # North American: optional country code 1, area code with or without parentheses.
    r"(?<![\w+.\-])(?<![0-9][ .\-])(?:1[ .\-]?)?(?:\([0-9]{3}\)[ .\-]?|[0-9]{3}[ .\-])"
    r"[0-9]{3}[ .\-][0-9]{4}(?![0-9]|[.\-][0-9])"
    # Trunk prefix 0 then a non-zero digit ("00" is an international prefix, and "000-12-3456"
    # must stay an invalid SSN) with one consistent separator (020 7946 0958, 06 12 34 56 78);
    # a single separator kind keeps European dates followed by a time ("01.02.2024 10") out.
    r"|(?<![\w+.\-])(?<![0-9][ .\-])0[1-9][0-9]{0,3}([ .\-])[0-9]{2,4}(?:\1[0-9]{2,4}){1,3}"
    r"(?![0-9]|[.\-][0-9])"
)
_DECIMAL_RE = re.compile(r"\+[0-9]+\.[0-9]+")


def _detect_phone(s: str, spans: list[_Span]) -> None:
    if "+" in s:
        for m in _INTL_PHONE_RE.finditer(s):
            text = m.group()
            if _DECIMAL_RE.fullmatch(text):
                continue
            # Keep the longest prefix ending at a digit group with at most 15 digits, so digits
            # that happen to follow the number do not make the whole match invalid.
            count = 0
            cut = 0
            for g in _GROUP_RE.finditer(text):
                if count + len(g.group()) > 15:
                    break
                count += len(g.group())
                cut = g.end()
                if text[cut : cut + 1] == ")":
                    cut += 1
            if count >= 8:
                spans.append((m.start(), m.start() + cut))
    for m in _NATIONAL_PHONE_RE.finditer(s):
        digits = sum(ch.isdigit() for ch in m.group())
        if 9 <= digits <= 12:
            spans.append(m.span())


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


_DIGIT_BYTES: Final = b"0123456789"
# Shortest possible hit over all detectors ("a@b.cd"); shorter strings are never scanned.
_MIN_HIT_LEN: Final = 6


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


# --------------------------------------------------------------------------------------------
# Paths in ALLOWLIST / DENYLIST and in results
# --------------------------------------------------------------------------------------------

_QUOTED_SEGMENT_RE = re.compile(r'\[("(?:[^"\\]|\\.)*")\]')
_BARE_SEGMENT_RE = re.compile(r"[^.\[\]]+")


def _parse_entry(setting: str, entry: str) -> tuple[str, ...]:
    """Split an ALLOWLIST/DENYLIST entry into key segments (one segment = bare key name)."""
    segments: list[str] = []
    pos = 0
    while True:
        quoted = _QUOTED_SEGMENT_RE.match(entry, pos)
        bare = None if quoted else _BARE_SEGMENT_RE.match(entry, pos)
        if quoted is not None:
            try:
                segments.append(str(json.loads(quoted.group(1))))
            except ValueError:
                break
            pos = quoted.end()
        elif bare is not None:
            segments.append(bare.group())
            pos = bare.end()
        else:
            break
        if pos == len(entry):
            return tuple(segments)
        if entry.startswith(".", pos) and pos + 1 < len(entry):
            pos += 1
        elif not entry.startswith("[", pos):
            break
    if re.search(r"\[[0-9*]*\]", entry):
        hint = "list indices are not written: use 'items.card_number' to match every element"
    else:
        hint = (
            "use a key name ('email'), a dotted path from the root ('applicant.contact.email') "
            'and ["a.b"] for a key containing a dot'
        )
    raise ConfigurationError(f"{setting}: cannot parse entry {entry!r}; {hint}")


def _render_path(path: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            parts.append(f"[{seg}]")
        elif not seg or "." in seg or "[" in seg or "]" in seg:
            parts.append(f"[{json.dumps(seg, ensure_ascii=False)}]")
        else:
            parts.append(f".{seg}" if parts else seg)
    return "".join(parts)


def _deny_norm(key: str) -> tuple[str, ...]:
    # Keys without letters tokenise to () and would all compare equal: fall back to the raw key.
    return tokenize_key(key) or ("\0" + key,)


def _allow_norm(key: str) -> tuple[str, ...]:
    return _split_key(key) or ("\0" + key,)


class _Node:
    """Trie of dotted ALLOWLIST/DENYLIST paths, one level per key segment."""

    __slots__ = ("children", "terminal")

    def __init__(self) -> None:
        self.children: dict[tuple[str, ...], _Node] = {}
        self.terminal = False


def _build_trie(
    paths: Iterable[tuple[str, ...]], norm: Callable[[str], tuple[str, ...]]
) -> _Node | None:
    root: _Node | None = None
    for path in paths:
        root = root or _Node()
        node = root
        for seg in path:
            node = node.children.setdefault(norm(seg), _Node())
        node.terminal = True
    return root


# --------------------------------------------------------------------------------------------
# Canonical JSON and pseudonyms
# --------------------------------------------------------------------------------------------


def _stringify_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stringify_keys(v) for v in value]
    return value


def _canonical_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError:
        # Non-string keys cannot be sorted together; unknown objects fall back to str().
        return json.dumps(
            _stringify_keys(value),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------

_DROP: Final = object()  # sentinel: remove this element from its container

_DENY: Final = 1
_ALLOW: Final = 2
_SENSITIVE: Final = 3
#: Root-level action of :func:`redact_flat`: the key is denied or sensitive, replace its value.
_REPLACE: Final = 4


class _Plan:
    """Everything :func:`redact` needs, precomputed once per policy."""

    __slots__ = (
        "allow_names",
        "allow_trie",
        "api_key",
        "bearer_token",
        "deny_names",
        "deny_trie",
        "email",
        "extra",
        "hash_key",
        "iban",
        "jwt",
        "key_cache",
        "mask_value",
        "mode",
        "payment_card",
        "phone",
        "root_actions",
        "scanning",
        "us_ssn",
    )

    def __init__(self, policy: RedactionPolicy) -> None:
        deny = [_parse_entry("DENYLIST", e) for e in sorted(policy.denylist)]
        allow = [_parse_entry("ALLOWLIST", e) for e in sorted(policy.allowlist)]
        self.deny_names = frozenset(_deny_norm(p[0]) for p in deny if len(p) == 1)
        self.allow_names = frozenset(_allow_norm(p[0]) for p in allow if len(p) == 1)
        self.deny_trie = _build_trie((p for p in deny if len(p) > 1), _deny_norm)
        self.allow_trie = _build_trie((p for p in allow if len(p) > 1), _allow_norm)
        self.extra = frozenset(tokenize_key(k) for k in policy.sensitive_keys)
        self.mode = policy.mode
        self.mask_value = policy.mask_value
        self.hash_key = policy.hash_key
        on = policy.detectors
        self.scanning = bool(on)
        self.email = "email" in on
        self.payment_card = "payment_card" in on
        self.iban = "iban" in on
        self.us_ssn = "us_ssn" in on
        self.phone = "phone" in on
        self.jwt = "jwt" in on
        self.bearer_token = "bearer_token" in on
        self.api_key = "api_key" in on
        # Bounded by clearing: keys may be unbounded (ids used as keys) and a plain dict lookup
        # is several times cheaper than an lru_cache call on this hot path.
        self.key_cache: dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = {}
        #: key -> what happens to a scalar under that key at the payload root (0: scan it,
        #: _ALLOW: keep it, _REPLACE: replace it), for :func:`redact_flat`. A pure function of
        #: the key and this plan, so it lives (and dies) with the policy: a new policy (e.g.
        #: after ``override_settings``) starts with an empty cache.
        self.root_actions: dict[str, int] = {}

    def key_info(self, key: str) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
        info = self.key_cache.get(key)
        if info is None:
            deny_norm = _deny_norm(key)
            allow_norm = _allow_norm(key)
            if deny_norm in self.deny_names:
                action = _DENY
            elif allow_norm in self.allow_names:
                action = _ALLOW
            elif is_sensitive_key(key, self.extra):
                action = _SENSITIVE
            else:
                action = 0
            info = (action, deny_norm, allow_norm)
            if len(self.key_cache) >= _KEY_CACHE_LIMIT:
                self.key_cache.clear()
            self.key_cache[key] = info
        return info

    def root_action(self, key: str) -> int:
        """What :meth:`_Walker.mapping` does with a scalar under ``key`` at the payload root."""
        action, deny_norm, allow_norm = self.key_info(key)
        if self.deny_trie is not None:
            child = self.deny_trie.children.get(deny_norm)
            if child is not None and child.terminal:
                action = _DENY
        if self.allow_trie is not None:
            child = self.allow_trie.children.get(allow_norm)
            if child is not None and child.terminal and action != _DENY:
                action = _ALLOW
        result = _REPLACE if action in (_DENY, _SENSITIVE) else action
        if len(self.root_actions) >= _KEY_CACHE_LIMIT:
            self.root_actions.clear()
        self.root_actions[key] = result
        return result

    def pseudonym(self, canonical: str) -> str:
        assert self.hash_key is not None  # guaranteed by RedactionPolicy validation
        # surrogatepass: JSON-decoded strings may hold lone surrogates; they must hash, not crash.
        digest = hmac.new(self.hash_key, canonical.encode("utf-8", "surrogatepass"), "sha256")
        return _PSEUDONYM_PREFIX + digest.hexdigest()[:32]

    def replacement(self, value: Any) -> Any:
        if self.mode == "mask":
            return self.mask_value
        if self.mode == "hash":
            return self.pseudonym(_canonical_json(value))
        return _DROP


def _fail(setting: str, problem: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{setting}: {problem}; {fix}")


_EXAMPLES: Final[Mapping[str, str]] = {
    "ALLOWLIST": '["age", "applicant.income"]',
    "DENYLIST": '["national_id", "applicant.contact"]',
    "SENSITIVE_KEYS": '["customer_ref"]',
    "DETECTORS": '["email", "iban"] or {"phone": False}',
}


def _string_set(setting: str, value: Any) -> frozenset[str]:
    problem = f"expected a list of strings, got {type(value).__name__}"
    fix = f"write e.g. {setting}: {_EXAMPLES[setting]}"
    if isinstance(value, (str, bytes, Mapping)):
        raise _fail(setting, problem, fix)
    try:
        items = list(value)
    except TypeError:
        raise _fail(setting, problem, fix) from None
    for item in items:
        if not isinstance(item, str):
            raise _fail(
                setting,
                f"entry {item!r} is a {type(item).__name__}, not a string",
                "write every entry as a string",
            )
        if not item.strip():
            raise _fail(setting, "contains an empty entry", "remove it")
    return frozenset(items)


@dataclass(frozen=True)
class RedactionPolicy:
    """What :func:`redact` removes and how; immutable, validated on construction.

    Invalid settings raise :class:`~ml_audit.exceptions.ConfigurationError` naming the setting
    (``ALLOWLIST``, ``DENYLIST``, ``MASK_VALUE``, ``MODE``, ``HASH_KEY``, ``DETECTORS``,
    ``SENSITIVE_KEYS``) and saying how to fix it. Iterables of strings are accepted for the set
    fields and stored as frozensets. ``hash_key`` is excluded from ``repr``.
    """

    allowlist: frozenset[str] = frozenset()
    denylist: frozenset[str] = frozenset()
    mask_value: str = DEFAULT_MASK_VALUE
    mode: str = "mask"
    hash_key: bytes | None = field(default=None, repr=False)
    detectors: frozenset[str] = frozenset(DETECTORS)
    sensitive_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name, setting in (
            ("allowlist", "ALLOWLIST"),
            ("denylist", "DENYLIST"),
            ("sensitive_keys", "SENSITIVE_KEYS"),
            ("detectors", "DETECTORS"),
        ):
            object.__setattr__(self, name, _string_set(setting, getattr(self, name)))
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise _fail(
                "MODE",
                f"unknown mode {self.mode!r}",
                "use one of " + ", ".join(repr(m) for m in MODES),
            )
        if not isinstance(self.mask_value, str) or not self.mask_value:
            raise _fail(
                "MASK_VALUE",
                f"expected a non-empty string, got {self.mask_value!r}",
                f"use a visible marker such as {DEFAULT_MASK_VALUE!r}",
            )
        if isinstance(self.hash_key, (str, bytearray)):
            raw_key = self.hash_key
            key_bytes = raw_key.encode("utf-8") if isinstance(raw_key, str) else bytes(raw_key)
            object.__setattr__(self, "hash_key", key_bytes)
        if self.hash_key is not None:
            if not isinstance(self.hash_key, bytes):
                raise _fail(
                    "HASH_KEY",
                    f"expected bytes or a string, got {type(self.hash_key).__name__}",
                    "set it to a secret of at least 16 bytes",
                )
            if len(self.hash_key) < _MIN_HASH_KEY_BYTES:
                raise _fail(
                    "HASH_KEY",
                    f"is {len(self.hash_key)} bytes long, at least {_MIN_HASH_KEY_BYTES} needed",
                    "use a random secret, e.g. secrets.token_hex(32), kept out of source control",
                )
        elif self.mode == "hash":
            raise _fail(
                "HASH_KEY",
                'is required when MODE is "hash"',
                "set HASH_KEY to a secret of at least 16 bytes, or use MODE 'mask'",
            )
        unknown = sorted(self.detectors - set(DETECTORS))
        if unknown:
            raise _fail(
                "DETECTORS",
                "unknown detector(s) " + ", ".join(repr(u) for u in unknown),
                "use names from " + ", ".join(DETECTORS),
            )
        for key in self.sensitive_keys:
            if not tokenize_key(key):
                raise _fail(
                    "SENSITIVE_KEYS",
                    f"entry {key!r} contains no word",
                    "list key names such as 'customer_ref'",
                )
        # Build the plan now rather than at first use: it parses the ALLOWLIST/DENYLIST paths,
        # and a bad entry must fail at configuration time, not in the middle of a request.
        _ = self._plan

    @functools.cached_property
    def _plan(self) -> _Plan:
        # cached_property stores in the instance __dict__, so it works on a frozen dataclass
        # without becoming a field (fields(), asdict(), replace() and == stay about settings).
        return _Plan(self)

    @functools.cached_property
    def _version(self) -> str:
        key_id = None
        if self.hash_key is not None:
            # Domain-separated so the fingerprint is useless as a general hash of the key.
            key_id = hashlib.sha256(b"ml_audit.redaction.hash_key\0" + self.hash_key).hexdigest()
        description = {
            "schema": POLICY_SCHEMA,
            "allowlist": sorted(self.allowlist),
            "denylist": sorted(self.denylist),
            "mask_value": self.mask_value,
            "mode": self.mode,
            "hash_key": key_id[:8] if key_id else None,
            "detectors": sorted(self.detectors),
            "sensitive_keys": sorted(self.sensitive_keys),
            # Built-in vocabulary is part of the meaning: a release that edits it changes every
            # version even if POLICY_SCHEMA was not bumped.
            "builtin_phrases": sorted(SENSITIVE_PHRASES),
            "flag_prefixes": sorted(FLAG_PREFIXES),
        }
        digest = hashlib.sha256(_canonical_json(description).encode("utf-8", "surrogatepass"))
        return f"{POLICY_SCHEMA}:{digest.hexdigest()[:12]}"

    @property
    def version(self) -> str:
        """Stable short id of what this policy does, e.g. ``"1:3f9a0c2b7d1e"``.

        ``POLICY_SCHEMA`` and 12 hex digits of a SHA-256 over every setting and the built-in
        phrase list. The hash key enters only as a fingerprint, so rotating it changes the
        version without revealing it.
        """
        return self._version

    @property
    def default_sensitive_names(self) -> frozenset[str]:
        """The built-in sensitive key phrases (:data:`SENSITIVE_PHRASES`; 0.2.0's name)."""
        return frozenset(SENSITIVE_PHRASES)

    def is_sensitive(self, field_name: str) -> bool:
        """Whether a top-level feature named ``field_name`` is replaced whatever its value
        (denied, or a sensitive name that is not allowed): 0.2.0's
        ``RedactionConfig.is_sensitive``. Values under other names are still scanned."""
        return self._plan.root_action(str(field_name)) == _REPLACE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RedactionPolicy:
        """Build a policy from a settings mapping (all keys optional).

        ``ALLOWLIST``, ``DENYLIST``, ``SENSITIVE_KEYS``: iterables of strings. ``MASK_VALUE``:
        string. ``MODE``: one of :data:`MODES`. ``HASH_KEY``: string (UTF-8 encoded) or bytes.
        ``DETECTORS``: a mapping ``name -> bool`` merged over "all enabled", or an iterable of
        the enabled names. Unknown keys and wrong types raise ``ConfigurationError``.
        """
        if not isinstance(config, Mapping):
            raise _fail(
                "redaction settings",
                f"expected a mapping, got {type(config).__name__}",
                'write e.g. {"DENYLIST": ["national_id"]}',
            )
        unknown = [k for k in config if k not in _CONFIG_KEYS]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key).upper(), _CONFIG_KEYS, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigurationError(
                f"unknown redaction setting(s) {', '.join(hints)}; "
                f"allowed keys are {', '.join(_CONFIG_KEYS)}"
            )
        kwargs: dict[str, Any] = {}
        for setting, name in (
            ("ALLOWLIST", "allowlist"),
            ("DENYLIST", "denylist"),
            ("SENSITIVE_KEYS", "sensitive_keys"),
        ):
            if setting in config:
                kwargs[name] = _string_set(setting, config[setting])
        if "MASK_VALUE" in config:
            if not isinstance(config["MASK_VALUE"], str):
                raise _fail(
                    "MASK_VALUE",
                    f"expected a string, got {type(config['MASK_VALUE']).__name__}",
                    f"write e.g. MASK_VALUE: {DEFAULT_MASK_VALUE!r}",
                )
            kwargs["mask_value"] = config["MASK_VALUE"]
        if "MODE" in config:
            if not isinstance(config["MODE"], str):
                raise _fail(
                    "MODE",
                    f"expected a string, got {type(config['MODE']).__name__}",
                    "use one of " + ", ".join(repr(m) for m in MODES),
                )
            kwargs["mode"] = config["MODE"]
        if config.get("HASH_KEY") is not None:
            raw = config["HASH_KEY"]
            if isinstance(raw, str):
                kwargs["hash_key"] = raw.encode("utf-8")
            elif isinstance(raw, (bytes, bytearray)):
                kwargs["hash_key"] = bytes(raw)
            else:
                raise _fail(
                    "HASH_KEY",
                    f"expected a string or bytes, got {type(raw).__name__}",
                    "set it to a secret of at least 16 bytes, e.g. from an environment variable",
                )
        if "DETECTORS" in config:
            kwargs["detectors"] = _detectors_from_config(config["DETECTORS"])
        return cls(**kwargs)


def _detectors_from_config(value: Any) -> frozenset[str]:
    if isinstance(value, Mapping):
        enabled = set(DETECTORS)
        for name, on in value.items():
            if not isinstance(on, bool):
                raise _fail(
                    "DETECTORS",
                    f"value for {name!r} is {on!r}, not True or False",
                    'write e.g. DETECTORS: {"phone": False}',
                )
            if name not in DETECTORS:
                raise _fail(
                    "DETECTORS",
                    f"unknown detector {name!r}",
                    "use names from " + ", ".join(DETECTORS),
                )
            if on:
                enabled.add(name)
            else:
                enabled.discard(name)
        return frozenset(enabled)
    return _string_set("DETECTORS", value)


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedactionResult:
    """Outcome of :func:`redact`.

    ``value`` is the redacted payload (new containers; untouched leaves may be shared with the
    input). ``paths`` lists, sorted and unique, where something was redacted (rule 6).
    """

    value: Any
    paths: tuple[str, ...]


class _Walker:
    __slots__ = ("hits", "plan")

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.hits: list[tuple[str | int, ...]] = []

    def scan(self, s: str, path: tuple[str | int, ...]) -> Any:
        """Return the string with detector hits replaced (or _DROP); record the path on a hit.

        Callers skip strings shorter than _MIN_HIT_LEN and policies without detectors.
        """
        plan = self.plan
        spans: list[_Span] = []
        # Cheap gates first (C-level membership tests and a digit count): typical feature values
        # are words, codes and dates that no regex needs to see.
        if s.isalpha():
            # Only AKIA/ASIA/AIza keys can be made of letters alone.
            if plan.api_key and len(s) >= 20 and ("IA" in s or "AI" in s):
                _detect_api_key(s, spans)
        else:
            ascii_bytes = s.encode("ascii", "ignore")
            digits = len(ascii_bytes) - len(ascii_bytes.translate(None, _DIGIT_BYTES))
            if digits >= 2:
                if plan.iban and len(s) >= 15:
                    _detect_iban(s, spans)
                if plan.payment_card and digits >= 13:
                    _detect_payment_card(s, spans)
                if plan.us_ssn and digits >= 9 and "-" in s:
                    _detect_us_ssn(s, spans)
                # National formats need 9+ digits, international ones a "+" and 8+.
                if plan.phone and (digits >= 9 or (digits == 8 and "+" in s)):
                    _detect_phone(s, spans)
            if plan.email and "@" in s:
                _detect_email(s, spans)
            if plan.jwt and "eyJ" in s:
                _detect_jwt(s, spans)
            if len(s) >= 15:
                if plan.bearer_token and "earer" in s.lower():
                    _detect_bearer_token(s, spans)
                if plan.api_key and (
                    "k_" in s or "sk-" in s or "gh" in s or "IA" in s or "AI" in s or "xox" in s
                ):
                    _detect_api_key(s, spans)
        if not spans:
            return s
        self.hits.append(path)
        if plan.mode == "drop":
            return _DROP
        parts: list[str] = []
        pos = 0
        for start, end in _merge(spans):
            parts.append(s[pos:start])
            if plan.mode == "mask":
                parts.append(plan.mask_value)
            else:
                parts.append(plan.pseudonym(_canonical_json(s[start:end])))
            pos = end
        parts.append(s[pos:])
        return "".join(parts)

    def value(
        self,
        v: Any,
        path: tuple[str | int, ...],
        allowed: bool,
        dnode: _Node | None,
        anode: _Node | None,
    ) -> Any:
        if isinstance(v, str):
            if allowed or len(v) < _MIN_HIT_LEN or not self.plan.scanning:
                return v
            return self.scan(v, path)
        if isinstance(v, dict):
            return self.mapping(v, path, allowed, dnode, anode)
        if isinstance(v, (list, tuple)):
            out: list[Any] = []
            for i, item in enumerate(v):
                new = self.value(item, (*path, i), allowed, dnode, anode)
                if new is not _DROP:
                    out.append(new)
            return out if isinstance(v, list) else tuple(out)
        return v

    def mapping(
        self,
        d: dict[Any, Any],
        path: tuple[str | int, ...],
        allowed: bool,
        dnode: _Node | None,
        anode: _Node | None,
    ) -> dict[Any, Any]:
        plan = self.plan
        cached = plan.key_cache.get
        key_info = plan.key_info
        scanning = plan.scanning and not allowed
        out: dict[Any, Any] = {}
        for k, v in d.items():
            ks = k if type(k) is str else str(k)
            info = cached(ks) or key_info(ks)
            action = info[0]
            dchild = achild = None
            if dnode is not None:
                dchild = dnode.children.get(info[1])
                if dchild is not None and dchild.terminal:
                    action = _DENY
            if anode is not None and not allowed:
                achild = anode.children.get(info[2])
                if achild is not None and achild.terminal and action != _DENY:
                    action = _ALLOW
            if action and (action == _DENY or (action == _SENSITIVE and not allowed)):
                self.hits.append((*path, ks))
                new = plan.replacement(v)
                if new is not _DROP:
                    out[k] = new
                continue
            kind = type(v)
            if kind is int or kind is float or kind is bool or v is None:
                out[k] = v
            elif isinstance(v, str):
                if not scanning or action == _ALLOW or len(v) < _MIN_HIT_LEN:
                    out[k] = v
                else:
                    new = self.scan(v, (*path, ks))
                    if new is not _DROP:
                        out[k] = new
            elif isinstance(v, (dict, list, tuple)):
                out[k] = self.value(v, (*path, ks), allowed or action == _ALLOW, dchild, achild)
            else:
                out[k] = v
        return out


def redact(payload: Any, policy: RedactionPolicy) -> RedactionResult:
    """Redact ``payload`` according to ``policy`` (see the module docstring for the rules).

    Returns a :class:`RedactionResult` holding the redacted copy and the sorted, unique paths
    that were redacted. The input is never mutated. Nesting deeper than Python's recursion
    limit raises ``RecursionError`` rather than returning a partially redacted payload.
    """
    plan = policy._plan
    walker = _Walker(plan)
    value = walker.value(payload, (), False, plan.deny_trie, plan.allow_trie)
    if value is _DROP:
        value = None
    paths = tuple(sorted({_render_path(p) for p in walker.hits}))
    return RedactionResult(value=value, paths=paths)


#: Floats of this magnitude or more are not in normal form (see ``ml_audit.records``). A float
#: (2**53 is one exactly): comparing a float with a float is cheaper than with an int.
_EXACT_FLOAT_INT: Final = float(2**53)


def redact_flat(
    payload: Any, policy: RedactionPolicy
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]] | None:
    """JSON-normalise and redact a flat payload in one walk; None when it is not one.

    A flat payload is a ``dict`` whose keys are ``str`` (not a subclass), ASCII and free of
    U+0000, and whose values are ``None``, ``bool``, ``int``, ``float`` strictly between
    ``-2**53`` and ``2**53`` (so finite), or ``str`` that is ASCII and free of U+0000: exactly
    the dicts that ``ml_audit.records.to_json`` copies unchanged (its flat fast path). For one,
    the result is ``(copy, value, paths)``: ``copy == to_json(payload)`` and
    ``RedactionResult(value, paths) == redact(copy, policy)`` (tested, including by a property
    test). For anything else the caller takes the general path (``to_json`` then
    :func:`redact`), which also raises the errors; this function never raises for a payload
    it declines.

    Model features are usually such a dict and this runs on the request thread, so the walk
    does as little as it can per key: the decision for a key comes from
    ``_Plan.root_actions`` (one dict lookup once the key was seen), a float under an ordinary
    key is checked in one step, and only the keys to redact and the strings long enough for a
    detector are visited again.
    """
    if type(payload) is not dict:
        return None
    plan = policy._plan
    get = plan.root_actions.get
    scanning = plan.scanning
    copy: dict[str, Any] = payload.copy()
    todo: list[tuple[str, int]] = []  # keys to replace (_REPLACE) or to scan (0)
    low, high = -_EXACT_FLOAT_INT, _EXACT_FLOAT_INT
    for key, item in copy.items():
        kind = type(item)
        # The usual feature: a float (finite, below 2**53) under an ordinary key seen before.
        if kind is float and low < item < high and get(key) == 0 and type(key) is str:
            continue
        if type(key) is not str:
            return None
        action = get(key)
        if action is None:
            if "\x00" in key or not key.isascii():
                return None
            action = plan.root_action(key)
        if kind is str:
            if "\x00" in item or not item.isascii():
                return None
            if action == 0 and (not scanning or len(item) < _MIN_HIT_LEN):
                continue
        elif kind is float:
            if not (low < item < high):  # also false for NaN
                return None
            if action == 0:
                continue
        elif kind is int or kind is bool or item is None:
            if action == 0:
                continue
        else:
            return None
        if action != _ALLOW:  # an allowed key keeps its value, unscanned
            todo.append((key, action))
    value = copy.copy()
    if not todo:
        return copy, value, ()
    walker = _Walker(plan)
    hits = walker.hits
    for key, action in todo:
        item = copy[key]
        if action == _REPLACE:  # a denied or sensitive key
            hits.append((key,))
            new = plan.replacement(item)
        else:  # a string to scan
            new = walker.scan(item, (key,))
            if new is item:  # no detector hit
                continue
        if new is _DROP:
            del value[key]
        else:
            value[key] = new  # in place: keys keep the order the walker would give them
    if len(hits) == 1:  # the usual case: one key redacted
        return copy, value, (_render_path(hits[0]),)
    return copy, value, tuple(sorted({_render_path(p) for p in hits}))
