"""Redaction of ML prediction payloads before they reach the audit trail or telemetry.

:func:`redact` is a pure function of ``(payload, policy)``: it never mutates its input and
returns new containers together with the list of paths it redacted. Payloads are expected to be
JSON-normalised (``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``). The work is split by job: key classification in :mod:`ml_audit.sensitive_keys`, value
detectors in :mod:`ml_audit.detectors` (cards in :mod:`ml_audit.payment_cards`, phone numbers in
:mod:`ml_audit.phones`, the normalised copy they read in :mod:`ml_audit.detection_text`), the
policy and its settings in :mod:`ml_audit.redaction_policy`; this module walks payloads, and
every public name is importable from here.

Rules
-----

1. **Key tokenisation.** A key is folded (NFKC, invisible characters removed, Cyrillic and Greek
   look-alikes of Latin letters replaced by them, accents removed), then split on every
   character that is not a letter or a digit (``_``, ``-``, ``.``, spaces, ...), on camelCase
   boundaries including acronyms (``APIKey`` -> ``api key``, ``creditCard`` -> ``credit card``,
   ``SSN`` -> ``ssn``) and between letters and digits, then lowercased. Trailing all-digit tokens
   are dropped (``email2``, ``phone_1`` -> ``email``, ``phone``). See :func:`tokenize_key`.
2. **Sensitive keys.** A key is sensitive when its token sequence *ends with* one of the
   sensitive phrases (:data:`SENSITIVE_PHRASES` plus the policy's ``SENSITIVE_KEYS``), i.e. the
   sensitive word is the head noun: ``customer_phone_number`` is sensitive, ``phone_verified``
   is not. A phrase also matches when written as one word (``apikey``, ``creditcard``,
   ``dateofbirth``): the last *k* tokens are compared concatenated. A key whose *first* token is
   a flag or count prefix (:data:`FLAG_PREFIXES`: ``is``, ``has``, ``num``, ``n``, ...) is not
   sensitive through a phrase that leaves that prefix out: ``has_phone`` and ``num_emails``
   describe the data, they do not hold it. A key that does not match is tried again without
   trailing format words (:data:`QUALIFIER_SUFFIXES`: ``dob_iso``, ``email_raw``,
   ``password_plain``). Bare ``address``, ``name``, ``zip``, ``country``, ``age`` and ``income``
   are deliberately *not* sensitive phrases: they are ordinary model features. See
   :func:`is_sensitive_key`.
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
   list elements included (:data:`DETECTORS`): ``email``; ``payment_card`` (issuer prefix,
   length and Luhn, see :mod:`ml_audit.payment_cards`); ``iban``: country code, check digits,
   registry length, mod-97, compact or grouped with spaces or dashes; ``us_ssn``:
   ``AAA-GG-SSSS`` with dashes, dots or spaces (area 000, 666, 9xx, group 00 and serial 0000 are
   not SSNs); ``phone``: international and national forms validated with ``phonenumbers`` for
   the policy's ``PHONE_REGIONS`` (see :mod:`ml_audit.phones`); ``jwt``: three base64url
   segments, the first starting ``eyJ``; ``bearer_token``: the token after ``Bearer``
   (case-insensitive; 20+ characters, or 8+ with a digit or symbol, so that prose like "the
   bearer of" is left alone); ``basic_auth``: the token after ``Basic`` when it decodes to
   ``user:password``; ``api_key``: ``sk_live_``/``sk_test_``/``pk_*``/``rk_*``, OpenAI-style
   ``sk-`` (20+ characters with a digit), ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``,
   ``github_pat_``, ``AKIA``/``ASIA``, ``xox[abposr]-``, ``AIza``; ``aws_secret_key``: a
   40-character secret access key in a string that names AWS or holds an access key id;
   ``private_key``: a PEM or PGP ``-----BEGIN ... PRIVATE KEY-----`` block through its END line.
   Only the matched substrings are replaced.
5. **Modes.** ``mask`` replaces a redacted value (or matched substring) with ``MASK_VALUE``.
   ``hash`` replaces it with ``"hmac-sha256:" + HMAC-SHA-256(HASH_KEY, canonical JSON)[:32 hex]``
   where the canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
   ensure_ascii=False)``; a substring hit is hashed as the JSON string of the matched text (of
   the normalised copy, rule 11), so an e-mail address gets the same pseudonym under an
   ``email`` key and inside free text. ``drop`` removes the key from its mapping or the element
   from its list; a string with a detector hit is dropped whole. A payload root that must be
   dropped becomes ``None``.
6. **Paths** in :attr:`RedactionResult.paths` are sorted and unique: keys joined by ``.``, list
   indices as ``[i]`` (index in the input), a key that is empty or contains ``.``, ``[`` or
   ``]`` as ``["a.b"]`` (JSON-quoted); the payload root itself is ``""``. Paths never contain
   values: a key redacted by rule 9 is written as its replacement.
7. Non-string dict keys are classified and written in paths through ``str()``; the output keeps
   the original key objects. Tuples are treated like lists.
8. **Name/value pairs.** A mapping with a ``name``, ``key``, ``field``, ``field_name``,
   ``header``, ``param``, ``parameter``, ``attribute``, ``attr``, ``type``, ``kind`` or
   ``label`` entry whose string value is a denied or sensitive key name (``"password"``,
   ``"Authorization"``) has its ``value``, ``val``, ``values``, ``content`` and ``data`` entries
   redacted whole; a two-item list ``[name, value]`` whose first item is such a name has its
   second item redacted (unless it is a sensitive name too: ``["email", "phone"]`` is a list
   of names). Names are classified like keys (rules 1-3); ``None`` and booleans are left as
   they are (they hold nothing).
9. **Keys are scanned** by the value detectors too (they are data when a payload is keyed by
   e-mail address or phone number). A key with a hit is replaced whole, keeping keys unique:
   ``mask`` -> ``MASK_VALUE#1``, ``MASK_VALUE#2``, ... in the mapping's order (skipping names the
   mapping already has); ``hash`` -> the key's pseudonym (the pseudonym of the same text as a
   value), with ``#n`` only on a collision; ``drop`` -> the entry is removed. Its value is then
   redacted as any value under an ordinary key. Allowlisted keys are not scanned.
10. **Numbers and digit lists** are checked for payment card numbers: an ``int``, or a
    ``float`` with an integral value, of 13-19 digits, and a list of 13-19 single digits or of
    digit strings grouped like a card (``[4, 1, 1, 1, ...]``, ``["4111", "1111", "1111",
    "1111"]``) that spells one, are redacted whole. No other detector reads numbers (a phone
    number stored as a number looks like an amount).
11. **Obfuscation.** Detectors read a normalised copy of each string (percent escapes and HTML
    character references decoded, ``[at]``/``[dot]`` read as ``@``/``.``, NFKC, ideographic
    full stops as ``.``, invisible characters removed; see :mod:`ml_audit.detection_text`); a
    hit is mapped back onto the original and the smallest span of the original covering it is
    replaced.
12. **Bytes**, which the normaliser stores as ``"base64:<standard base64>"``, are decoded and
    scanned as the text they hold (UTF-8, UTF-16 with a byte order mark, else Latin-1); when
    anything is found the whole value is redacted.
13. **Idempotence.** Redacting a redacted payload with the same policy changes nothing: the
    mask and pseudonyms are never detector hits, a value that already is this policy's
    replacement is its own replacement (a pseudonym is not hashed again), and renamed keys
    are not renamed again.
14. :func:`redact_values` applies the value detectors only (rules 4, 9-13, no key names):
    for free text such as explanations. :func:`redact_error_type` keeps an error type only if
    it is a dotted Python class path with no detector hit.

The built-in rules are part of :attr:`RedactionPolicy.version`: bump :data:`POLICY_SCHEMA` when
they change meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ml_audit.detectors import _MIN_HIT_LEN, DETECTORS, find, rescan, rescan_needed
from ml_audit.normalise import MAX_INT_DIGITS
from ml_audit.payment_cards import card_digit_list, card_number
from ml_audit.phones import DEFAULT_PHONE_REGIONS
from ml_audit.redaction_policy import (
    _ALLOW,
    _DENY,
    _DROP,
    _GENERAL,
    _ID_KEY,
    _KEY_HIT,
    _NAME_KEY,
    _PSEUDONYM_RE,
    _REPLACE,
    _SCAN_ID,
    _SENSITIVE,
    _VALUE_KEY,
    DEFAULT_MASK_VALUE,
    MODES,
    POLICY_SCHEMA,
    RedactionPolicy,
    _Node,
    _Plan,
    _render_path,
)
from ml_audit.sensitive_keys import (
    FLAG_PREFIXES,
    QUALIFIER_SUFFIXES,
    SENSITIVE_PHRASES,
    is_sensitive_key,
    tokenize_key,
)

__all__ = [
    "DEFAULT_MASK_VALUE",
    "DEFAULT_PHONE_REGIONS",
    "DETECTORS",
    "FLAG_PREFIXES",
    "MODES",
    "POLICY_SCHEMA",
    "QUALIFIER_SUFFIXES",
    "SENSITIVE_PHRASES",
    "RedactionPolicy",
    "RedactionResult",
    "is_sensitive_key",
    "redact",
    "redact_error_type",
    "redact_flat",
    "redact_values",
    "tokenize_key",
]

_Path = tuple[str | int, ...]

#: Numbers below this are never card numbers (13 digits at least): one comparison skips them.
_CARD_MIN: Final = 10**12
#: A name of a name/value pair longer than this is text, not a key name (rule 8).
_MAX_NAME: Final = 64
#: Scans of a string with hits at most: each pass can only uncover what the previous one
#: replaced (random digit groups need three).
_MAX_PASSES: Final = 6


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
        self.hits: list[_Path] = []

    def scan(self, s: str, path: _Path, id_context: bool = False) -> Any:
        """Return the string with detector hits replaced (or _DROP); record the path on a hit.

        Callers skip strings shorter than _MIN_HIT_LEN and policies without detectors.
        """
        plan = self.plan
        found = find(plan.detectors, s, id_context)
        if not found:
            return s
        self.hits.append(path)
        if plan.mode == "drop":
            return _DROP
        # A hit's neighbour may only stand alone once the hit is replaced ("4111 1111 1111 1111
        # 07700 900123": the phone number continues the card's digit groups): scan again where
        # that can happen, so that redacting the result again changes nothing.
        for _ in range(_MAX_PASSES):
            parts: list[str] = []
            replaced: list[tuple[int, int]] = []  # where the replacements are in the result
            pos = 0
            size = 0
            for start, end, text in found:
                parts.append(s[pos:start])
                size += start - pos
                replacement = plan.text_replacement(text)
                parts.append(replacement)
                replaced.append((size, size + len(replacement)))
                size += len(replacement)
                pos = end
            parts.append(s[pos:])
            again = rescan_needed(s, found)
            s = "".join(parts)
            if not again:
                break
            found = rescan(plan.detectors, s, replaced, id_context, cards=again == 2)
            if not found:
                break
        return s

    def value(
        self,
        v: Any,
        path: _Path,
        allowed: bool,
        dnode: _Node | None,
        anode: _Node | None,
        id_context: bool = False,
    ) -> Any:
        if isinstance(v, str):
            if allowed or len(v) < _MIN_HIT_LEN or not self.plan.scanning:
                return v
            return self.scan(v, path, id_context)
        if isinstance(v, dict):
            return self.mapping(v, path, allowed, dnode, anode)
        if isinstance(v, (list, tuple)):
            return self.sequence(v, path, allowed, dnode, anode, id_context)
        kind = type(v)
        if (
            (kind is int or kind is float)
            and v >= _CARD_MIN
            and not allowed
            and self.plan.cards
            and card_number(v)
        ):
            self.hits.append(path)
            return self.plan.replacement(v)
        return v

    def sequence(
        self,
        v: list[Any] | tuple[Any, ...],
        path: _Path,
        allowed: bool,
        dnode: _Node | None,
        anode: _Node | None,
        id_context: bool,
    ) -> Any:
        plan = self.plan
        if not allowed:
            size = len(v)
            if plan.cards and 3 <= size <= 19 and card_digit_list(v):
                self.hits.append(path)
                return plan.replacement(v)
            if (
                size == 2
                and plan.key_rules
                and _holds_data(v[1])
                and _is_name(plan, v[0])
                and not _is_name(plan, v[1])
            ):
                # A [name, value] pair (rule 8).
                self.hits.append((*path, 1))
                new = plan.replacement(v[1])
                pair = [v[0]] if new is _DROP else [v[0], new]
                return pair if isinstance(v, list) else tuple(pair)
        out: list[Any] = []
        for i, item in enumerate(v):
            new = self.value(item, (*path, i), allowed, dnode, anode, id_context)
            if new is not _DROP:
                out.append(new)
        return out if isinstance(v, list) else tuple(out)

    def mapping(
        self,
        d: dict[Any, Any],
        path: _Path,
        allowed: bool,
        dnode: _Node | None,
        anode: _Node | None,
    ) -> dict[Any, Any]:
        plan = self.plan
        cached = plan.key_cache.get
        key_info = plan.key_info
        scanning = plan.scanning and not allowed
        out: dict[Any, Any] = {}
        paired = False  # a name entry names a sensitive key (rule 8)
        value_keys: list[Any] = []
        for k, v in d.items():
            ks = k if type(k) is str else str(k)
            action, deny_norm, allow_norm, flags = cached(ks) or key_info(ks)
            dchild = achild = None
            if dnode is not None:
                dchild = dnode.children.get(deny_norm)
                if dchild is not None and dchild.terminal:
                    action = _DENY
            if anode is not None and not allowed:
                achild = anode.children.get(allow_norm)
                if achild is not None and achild.terminal and action != _DENY:
                    action = _ALLOW
            id_context = False
            if flags and not allowed and action != _ALLOW:
                if flags & _KEY_HIT:  # the key itself holds something (rule 9)
                    k = ks = plan.key_replacement(ks, _taken(d, out))
                    self.hits.append((*path, ks))
                    if plan.mode == "drop":
                        continue
                if flags & _NAME_KEY:
                    paired = paired or _is_name(plan, v)
                elif flags & _VALUE_KEY:
                    value_keys.append(k)
                id_context = bool(flags & _ID_KEY)
            if action and (action == _DENY or (action == _SENSITIVE and not allowed)):
                self.hits.append((*path, ks))
                new = plan.replacement(v)
                if new is not _DROP:
                    out[k] = new
                continue
            kind = type(v)
            if kind is float or kind is int:
                if v >= _CARD_MIN and scanning and plan.cards and action != _ALLOW:
                    new = self.value(v, (*path, ks), False, None, None)
                    if new is not _DROP:
                        out[k] = new
                else:
                    out[k] = v
            elif kind is bool or v is None:
                out[k] = v
            elif isinstance(v, str):
                if not scanning or action == _ALLOW or len(v) < _MIN_HIT_LEN:
                    out[k] = v
                else:
                    new = self.scan(v, (*path, ks), id_context)
                    if new is not _DROP:
                        out[k] = new
            elif isinstance(v, (dict, list, tuple)):
                new = self.value(
                    v, (*path, ks), allowed or action == _ALLOW, dchild, achild, id_context
                )
                if new is not _DROP:  # a list that spells a card number, in drop mode
                    out[k] = new
            else:
                out[k] = v
        if paired:
            for k in value_keys:
                if k in out and _holds_data(d[k]):
                    self.hits.append((*path, k if type(k) is str else str(k)))
                    new = plan.replacement(d[k])
                    if new is _DROP:
                        del out[k]
                    else:
                        out[k] = new
        return out


def _taken(d: dict[Any, Any], out: dict[Any, Any]) -> Callable[[str], bool]:
    return lambda name: name in d or name in out


def _is_name(plan: _Plan, value: Any) -> bool:
    """Whether ``value`` is a string naming a denied or sensitive key (rule 8)."""
    return type(value) is str and len(value) <= _MAX_NAME and plan.names_sensitive(value)


def _holds_data(value: Any) -> bool:
    """Whether the value half of a name/value pair holds anything (None and booleans don't)."""
    return value is not None and type(value) is not bool


def _result(walker: _Walker, value: Any) -> RedactionResult:
    if value is _DROP:
        value = None
    paths = tuple(sorted({_render_path(p) for p in walker.hits}))
    return RedactionResult(value=value, paths=paths)


def redact(payload: Any, policy: RedactionPolicy) -> RedactionResult:
    """Redact ``payload`` according to ``policy`` (see the module docstring for the rules).

    Returns a :class:`RedactionResult` holding the redacted copy and the sorted, unique paths
    that were redacted. The input is never mutated. Nesting deeper than Python's recursion
    limit raises ``RecursionError`` rather than returning a partially redacted payload.
    """
    plan = policy._plan
    walker = _Walker(plan)
    return _result(walker, walker.value(payload, (), False, plan.deny_trie, plan.allow_trie))


def redact_values(payload: Any, policy: RedactionPolicy) -> RedactionResult:
    """Redact what the value detectors of ``policy`` find in ``payload`` (rule 14).

    Strings, keys, numbers, digit lists and bytes are scanned as :func:`redact` scans them and
    redacted in the policy's mode; key *names* are not classified (no sensitive keys, no
    ALLOWLIST, DENYLIST or name/value pairs). For free text and payloads keyed by feature
    name, such as an explanation's SHAP values, where ``{"email": 0.31}`` is a weight, not an
    address. On a string this is :func:`redact`.
    """
    plan = policy._values_plan
    walker = _Walker(plan)
    return _result(walker, walker.value(payload, (), False, None, None))


def _is_class_path(text: str) -> bool:
    return all(part.isidentifier() or part == "<locals>" for part in text.split("."))


def redact_error_type(error_type: str, policy: RedactionPolicy) -> RedactionResult:
    """The error type of a failed prediction as it may be stored (rule 14).

    An error type names a class (``ValueError``, ``myapp.errors.Rejected``) and can never hold
    a value: it is kept when it is a dotted Python class path (``<locals>`` allowed) in which no
    value detector finds anything (an ``AKIA...`` key is a valid identifier), and redacted whole
    otherwise (path ``""``): the mask, the pseudonym, or ``""`` in drop mode. The mask and
    pseudonyms are kept as they are (idempotent).
    """
    plan = policy._values_plan
    if (
        not error_type
        or error_type == plan.mask_value
        or _PSEUDONYM_RE.fullmatch(error_type)
        or (_is_class_path(error_type) and not (plan.scanning and find(plan.detectors, error_type)))
    ):
        return RedactionResult(value=error_type, paths=())
    new = plan.replacement(error_type)
    return RedactionResult(value="" if new is _DROP else new, paths=("",))


#: Floats of this magnitude or more are not in normal form (see ``ml_audit.records``). A float
#: (2**53 is one exactly): comparing a float with a float is cheaper than with an int.
_EXACT_FLOAT_INT: Final = float(2**53)
#: Integers are refused by the normaliser from this magnitude (ml_audit.normalise).
_INT_BOUND: Final = 10**MAX_INT_DIGITS
#: redact_flat's "check this number for a card" (rule 10).
_NUMBER: Final = 7


def redact_flat(
    payload: Any, policy: RedactionPolicy
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]] | None:
    """JSON-normalise and redact a flat payload in one walk; None when it is not one.

    A flat payload is a ``dict`` whose keys are ``str`` (not a subclass), ASCII and free of
    U+0000, and whose values are ``None``, ``bool``, ``int`` of at most ``MAX_INT_DIGITS``
    digits, ``float`` strictly between ``-2**53`` and ``2**53`` (so finite; ``-0.0`` becomes
    ``0.0``), or ``str`` that is ASCII and free of U+0000: exactly the dicts that
    ``ml_audit.records.to_json`` handles in its flat fast path. For one, the result is
    ``(copy, value, paths)``: ``copy == to_json(payload)`` and ``RedactionResult(value, paths)
    == redact(copy, policy)`` (tested, including by a property test). For anything else the
    caller takes the general path (``to_json`` then :func:`redact`), which also raises the
    errors; this function never raises for a payload it declines.

    Model features are usually such a dict and this runs on the request thread, so the walk
    does as little as it can per key: the decision for a key comes from
    ``_Plan.root_actions`` (one dict lookup once the key was seen), a float under an ordinary
    key is checked in one step, and only the keys to redact and the strings long enough for a
    detector are visited again. A key that must itself be redacted, or may start a name/value
    pair, sends the copy through :func:`redact`.
    """
    if type(payload) is not dict:
        return None
    plan = policy._plan
    get = plan.root_actions.get
    scanning = plan.scanning
    copy: dict[str, Any] = payload.copy()
    todo: list[tuple[str, int]] = []  # keys to replace, to scan, or numbers to check
    general = False
    low, high = -_EXACT_FLOAT_INT, float(_CARD_MIN)
    for key, item in copy.items():
        kind = type(item)
        # The usual feature: a non-zero float below 10**12 under an ordinary key seen before.
        if (
            kind is float
            and low < item < high
            and item
            and get(key, 9) <= _SCAN_ID
            and type(key) is str
        ):
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
            if action <= _SCAN_ID and (not scanning or len(item) < _MIN_HIT_LEN):
                continue
        elif kind is float:
            if not (-_EXACT_FLOAT_INT < item < _EXACT_FLOAT_INT):  # also false for NaN
                return None
            if not item:
                copy[key] = item = 0.0  # -0.0, as the normaliser stores it
            if action <= _SCAN_ID:
                if item < _CARD_MIN or not scanning:
                    continue
                action = _NUMBER
        elif kind is int:
            if not (-_INT_BOUND < item < _INT_BOUND):
                return None
            if action <= _SCAN_ID:
                if item < _CARD_MIN or not scanning:
                    continue
                action = _NUMBER
        elif kind is bool or item is None:
            if action <= _SCAN_ID:
                continue
        else:
            return None
        if action == _GENERAL:
            general = True
        elif action != _ALLOW:  # an allowed key keeps its value, unscanned
            todo.append((key, action))
    if general:
        result = redact(copy, policy)
        return copy, result.value, result.paths
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
        elif action == _NUMBER:
            new = walker.value(item, (key,), False, None, None)
            if new is item:  # not a card number
                continue
        else:  # a string to scan
            new = walker.scan(item, (key,), action == _SCAN_ID)
            if new is item:  # no detector hit
                continue
        if new is _DROP:
            del value[key]
        else:
            value[key] = new  # in place: keys keep the order the walker would give them
    if not hits:
        return copy, value, ()
    if len(hits) == 1:  # the usual case: one key redacted
        return copy, value, (_render_path(hits[0]),)
    return copy, value, tuple(sorted({_render_path(p) for p in hits}))
