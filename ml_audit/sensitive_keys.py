"""Key classification for redaction: tokenisation and sensitive key names (rules 1-2 and 8 of
:mod:`ml_audit.redaction`).

Pure functions of the key (and the policy's extra phrases), cached: a payload's keys repeat.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Final

__all__ = [
    "FLAG_PREFIXES",
    "QUALIFIER_SUFFIXES",
    "SENSITIVE_PHRASES",
    "fold_key",
    "is_sensitive_key",
    "tokenize_key",
]

#: Built-in sensitive phrases, space-separated tokens. A key is sensitive when its tokens end
#: with one of them. Several are implied by shorter ones (``client secret`` by ``secret``); they
#: are listed anyway so that this tuple reads as the documentation.
# fmt: off
SENSITIVE_PHRASES: tuple[str, ...] = (
    # contact
    "email", "emails", "e mail", "email address", "email addresses", "mail address",
    "phone", "phones", "phone number", "phone numbers", "phone no", "phone nr",
    "mobile", "mobile number", "mobile no", "mobile phone", "cell number", "cell phone",
    "cellphone", "telephone", "telephone number", "landline", "contact number", "contact no",
    "tel", "msisdn", "fax", "fax number", "whatsapp",
    # secrets and credentials
    "password", "passwords", "passwd", "pwd", "pw", "pass", "passphrase", "passcode",
    "secret", "secrets", "client secret",
    "otp", "otp code", "totp", "one time password", "one time code", "mfa code", "2fa code",
    "verification code", "security code", "auth code", "recovery code", "backup code",
    "security answer",
    "token", "access token", "refresh token", "id token", "auth token",
    "api key", "api keys", "access key", "secret key", "private key", "aws key",
    "authorization", "bearer", "cookie", "cookies", "session id", "credential", "credentials",
    # payment and banking
    "credit card", "debit card", "payment card", "card number", "card no", "cc number",
    "cvv", "cvc", "pin", "pin code", "pin number", "iban", "ibans", "account number",
    "account no", "bank account", "routing number", "sort code",
    # government identifiers
    "ssn", "ssns", "social security", "social security number", "national id",
    "national id number", "national insurance number", "tax id", "tax id number",
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

#: Last tokens that say how a value is written, not what it is: ``dob_iso``, ``email_raw``,
#: ``password_plain``, ``ssn_str`` hold what ``dob``, ``email``, ``password``, ``ssn`` hold.
#: A key that is not sensitive as written is tried again without them (and trailing digits).
QUALIFIER_SUFFIXES: frozenset[str] = frozenset(
    {"iso", "iso8601", "utc", "local", "str", "string", "text", "txt", "raw", "plain",
     "plaintext", "clear", "cleartext", "value", "val", "b64", "base64", "hex", "input",
     "orig", "original", "full", "formatted", "fmt", "norm", "normalized", "normalised",
     "lower", "upper", "field", "data", "confirm", "confirmation", "repeat", "again", "new",
     "old", "current", "prev", "previous", "tmp", "temp"}
)  # fmt: skip

#: Keys (as tokens) of a name/value pair: ``{"name": "password", "value": "..."}`` (rule 8).
NAME_KEYS: Final = frozenset(
    {("name",), ("key",), ("field",), ("field", "name"), ("header",), ("param",),
     ("parameter",), ("attribute",), ("attr",), ("type",), ("kind",), ("label",)}
)  # fmt: skip
VALUE_KEYS: Final = frozenset({("value",), ("val",), ("values",), ("content",), ("data",)})

# Order matters: an upper-case run not followed by a lower-case letter is an acronym (``API`` in
# ``APIKey``); otherwise one capital starts a word. Non-ASCII letters are kept as whole words
# because ``re`` has no Unicode upper/lower classes.
_TOKEN_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_]+")

# Cyrillic and Greek letters that look like Latin ones (Unicode's confusables, the letters that
# matter for key names), and invisible characters, which are removed.
_INVISIBLE: Final = "\u00ad\u034f\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
#: Look-alike -> Latin letter, as pairs of equally long strings.
_LOOK_ALIKES: Final = (
    # Cyrillic lower case: abbeekmhopctyxijsdqwl
    (
        "\u0430\u0432\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443"
        "\u0445\u0456\u0458\u0455\u0501\u051b\u051d\u04cf",
        "abbeekmhopctyxijsdqwl",
    ),
    # Cyrillic upper case: ABEEKMHOPCTXYIJS
    (
        "\u0410\u0412\u0415\u0401\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423"
        "\u0406\u0408\u0405",
        "ABEEKMHOPCTXYIJS",
    ),
    # Greek lower case: abeiknoptuxc
    (
        "\u03b1\u03b2\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03f2",
        "abeiknoptuxc",
    ),
    # Greek upper case: ABEZHIKMNOPTYX
    (
        "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
        "ABEZHIKMNOPTYX",
    ),
    # dotless i, Armenian o, u, h
    ("\u0131\u0585\u057d\u0570", "iouh"),
)
_CONFUSABLES: Final = str.maketrans(
    {
        **{a: b for chars, latin in _LOOK_ALIKES for a, b in zip(chars, latin, strict=True)},
        **dict.fromkeys(_INVISIBLE),
    }
)


@functools.lru_cache(maxsize=8192)
def fold_key(key: str) -> str:
    """``key`` as it is classified: NFKC (full-width letters become ASCII), invisible
    characters removed, Cyrillic and Greek look-alikes of Latin letters replaced by those
    letters, accents removed: ``p\\u0430ssw\\u043erd`` (with a Cyrillic ``\\u0430`` and
    ``\\u043e``) -> ``password``. ASCII keys are returned as they are."""
    if key.isascii():
        return key
    text = unicodedata.normalize("NFKC", key).translate(_CONFUSABLES)
    text = "".join(
        ch
        for ch in unicodedata.normalize("NFD", text)
        if not unicodedata.combining(ch) and unicodedata.category(ch) != "Cf"
    )
    return unicodedata.normalize("NFC", text)


@functools.lru_cache(maxsize=8192)
def _split_key(key: str) -> tuple[str, ...]:
    return tuple(tok.lower() for tok in _TOKEN_RE.findall(fold_key(key)))


@functools.lru_cache(maxsize=8192)
def tokenize_key(key: str) -> tuple[str, ...]:
    """Split a key into lowercase word tokens (rule 1).

    The key is folded first (:func:`fold_key`), then split on non-alphanumeric characters,
    camelCase and acronym boundaries and between letters and digits; trailing all-digit tokens
    are dropped, so ``"customerPhone_2"`` gives ``("customer", "phone")`` and ``"APIKey"``
    gives ``("api", "key")``.
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


def _ends_with_phrase(tokens: tuple[str, ...], extra: frozenset[tuple[str, ...]]) -> bool:
    flagged = tokens[0] in FLAG_PREFIXES
    tables = [(_BUILTIN_SEQS, _BUILTIN_CONCAT, _BUILTIN_LONGEST)]
    if extra:
        tables.append(_phrase_tables(extra))
    for seqs, concat, longest in tables:
        for k in _phrase_match_lengths(tokens, seqs, concat, longest):
            if not flagged or k == len(tokens):
                return True
    return False


@functools.lru_cache(maxsize=8192)
def is_sensitive_key(key: str, extra: frozenset[tuple[str, ...]] = frozenset()) -> bool:
    """Return whether ``key`` names sensitive data (rule 2).

    ``extra`` holds additional phrases as token tuples (``tokenize_key`` of each entry of the
    policy's ``SENSITIVE_KEYS``). A key is sensitive when its tokens end with a phrase, unless
    its first token is one of :data:`FLAG_PREFIXES` and the phrase does not cover it; a key that
    is not is tried again without its trailing :data:`QUALIFIER_SUFFIXES` (``dob_iso``).
    """
    tokens = tokenize_key(key)
    if not tokens:
        return False
    if _ends_with_phrase(tokens, extra):
        return True
    end = len(tokens)
    while end and (tokens[end - 1] in QUALIFIER_SUFFIXES or tokens[end - 1].isdigit()):
        end -= 1
    return 0 < end < len(tokens) and _ends_with_phrase(tokens[:end], extra)
