"""The redaction policy: settings, their validation, and the plan :func:`ml_audit.redaction.redact`
follows (precomputed once per policy)."""

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

import phonenumbers

from ml_audit.detectors import _MIN_HIT_LEN, DETECTORS, PSEUDONYM_PREFIX, Detectors, find
from ml_audit.exceptions import ConfigurationError
from ml_audit.phones import DEFAULT_PHONE_REGIONS, is_id_key, phone_regions
from ml_audit.sensitive_keys import (
    FLAG_PREFIXES,
    NAME_KEYS,
    QUALIFIER_SUFFIXES,
    SENSITIVE_PHRASES,
    VALUE_KEYS,
    _split_key,
    is_sensitive_key,
    tokenize_key,
)

__all__ = ["DEFAULT_MASK_VALUE", "MODES", "POLICY_SCHEMA", "RedactionPolicy"]

MODES: tuple[str, ...] = ("mask", "hash", "drop")
DEFAULT_MASK_VALUE = "*****"  # 0.2.0's mask, kept so that old and new rows read alike
POLICY_SCHEMA = 2  # bump when the rules change meaning

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
    "PHONE_REGIONS",
)

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

# Actions of a key (first item of _Plan.key_info).
_DENY: Final = 1
_ALLOW: Final = 2
_SENSITIVE: Final = 3
# Flags of a key (last item of _Plan.key_info).
_KEY_HIT: Final = 1  # a value detector finds something in the key itself (rule 9)
_NAME_KEY: Final = 2  # "name", "key", "field"... of a name/value pair (rule 8)
_VALUE_KEY: Final = 4  # "value", "val"... of a name/value pair
_ID_KEY: Final = 8  # the key names an identifier, amount or time (see ml_audit.phones)
# Root-level actions of :func:`redact_flat` (_Plan.root_action): scan the value (0, or _SCAN_ID
# with the key's identifier context), keep it (_ALLOW), replace it (_REPLACE: the key is denied
# or sensitive), or take the general walk (_GENERAL: the key itself must be redacted, or it
# may name the other half of a name/value pair).
_SCAN_ID: Final = 1
_REPLACE: Final = 4
_GENERAL: Final = 5

_KeyInfo = tuple[int, tuple[str, ...], tuple[str, ...], int]


class _Plan:
    """Everything :func:`redact` needs, precomputed once per policy.

    ``key_rules`` False is the plan of :func:`ml_audit.redaction.redact_values`: no key is
    classified by its name (no sensitive keys, ALLOWLIST, DENYLIST or name/value pairs), only
    the value detectors run (on values and keys).
    """

    __slots__ = (
        "allow_names",
        "allow_trie",
        "cards",
        "deny_names",
        "deny_trie",
        "detectors",
        "extra",
        "hash_key",
        "key_cache",
        "key_rules",
        "mask_value",
        "mode",
        "root_actions",
        "scanning",
    )

    def __init__(self, policy: RedactionPolicy, key_rules: bool = True) -> None:
        self.key_rules = key_rules
        deny = [_parse_entry("DENYLIST", e) for e in sorted(policy.denylist)] if key_rules else []
        allow = (
            [_parse_entry("ALLOWLIST", e) for e in sorted(policy.allowlist)] if key_rules else []
        )
        self.deny_names = frozenset(_deny_norm(p[0]) for p in deny if len(p) == 1)
        self.allow_names = frozenset(_allow_norm(p[0]) for p in allow if len(p) == 1)
        self.deny_trie = _build_trie((p for p in deny if len(p) > 1), _deny_norm)
        self.allow_trie = _build_trie((p for p in allow if len(p) > 1), _allow_norm)
        self.extra = frozenset(tokenize_key(k) for k in policy.sensitive_keys)
        self.mode = policy.mode
        self.mask_value = policy.mask_value
        self.hash_key = policy.hash_key
        self.detectors = Detectors(
            policy.detectors, phone_regions(policy.phone_regions), policy.mask_value
        )
        self.scanning = self.detectors.any
        self.cards = self.detectors.payment_card
        # Bounded by clearing: keys may be unbounded (ids used as keys) and a plain dict lookup
        # is several times cheaper than an lru_cache call on this hot path.
        self.key_cache: dict[str, _KeyInfo] = {}
        #: key -> what happens to a scalar under that key at the payload root, for
        #: :func:`redact_flat`. A pure function of the key and this plan, so it lives (and
        #: dies) with the policy: a new policy (e.g. after ``override_settings``) starts with
        #: an empty cache.
        self.root_actions: dict[str, int] = {}

    def key_info(self, key: str) -> _KeyInfo:
        """``(action, denylist form, allowlist form, flags)`` of ``key`` (cached)."""
        info = self.key_cache.get(key)
        if info is None:
            deny_norm = _deny_norm(key)
            allow_norm = _allow_norm(key)
            action = 0
            flags = 0
            if self.key_rules:
                if deny_norm in self.deny_names:
                    action = _DENY
                elif allow_norm in self.allow_names:
                    action = _ALLOW
                elif is_sensitive_key(key, self.extra):
                    action = _SENSITIVE
                tokens = tokenize_key(key)
                if tokens in NAME_KEYS:
                    flags |= _NAME_KEY
                elif tokens in VALUE_KEYS:
                    flags |= _VALUE_KEY
            if is_id_key(key):
                flags |= _ID_KEY
            if (
                action != _ALLOW
                and self.scanning
                and len(key) >= _MIN_HIT_LEN
                and find(self.detectors, key)
            ):
                flags |= _KEY_HIT
            info = (action, deny_norm, allow_norm, flags)
            if len(self.key_cache) >= _KEY_CACHE_LIMIT:
                self.key_cache.clear()
            self.key_cache[key] = info
        return info

    def names_sensitive(self, name: str) -> bool:
        """Whether the name half of a name/value pair names a denied or sensitive key."""
        return self.key_rules and self.key_info(name)[0] in (_DENY, _SENSITIVE)

    def root_action(self, key: str) -> int:
        """What :func:`redact_flat` does with a scalar under ``key`` at the payload root."""
        action, deny_norm, allow_norm, flags = self.key_info(key)
        if self.deny_trie is not None:
            child = self.deny_trie.children.get(deny_norm)
            if child is not None and child.terminal:
                action = _DENY
        if self.allow_trie is not None:
            child = self.allow_trie.children.get(allow_norm)
            if child is not None and child.terminal and action != _DENY:
                action = _ALLOW
        if action != _ALLOW and flags & (_KEY_HIT | _NAME_KEY):
            result = _GENERAL
        elif action in (_DENY, _SENSITIVE):
            result = _REPLACE
        elif action == _ALLOW:
            result = _ALLOW
        else:
            result = _SCAN_ID if flags & _ID_KEY else 0
        if len(self.root_actions) >= _KEY_CACHE_LIMIT:
            self.root_actions.clear()
        self.root_actions[key] = result
        return result

    def pseudonym(self, canonical: str) -> str:
        assert self.hash_key is not None  # guaranteed by RedactionPolicy validation
        # surrogatepass: JSON-decoded strings may hold lone surrogates; they must hash, not crash.
        digest = hmac.new(self.hash_key, canonical.encode("utf-8", "surrogatepass"), "sha256")
        return PSEUDONYM_PREFIX + digest.hexdigest()[:32]

    def replacement(self, value: Any) -> Any:
        """What replaces a redacted value. A value that already is this policy's replacement
        (the mask, a pseudonym) is its own replacement: redacting twice changes nothing."""
        if self.mode == "mask":
            return self.mask_value
        if self.mode == "hash":
            if type(value) is str and _PSEUDONYM_RE.fullmatch(value):
                return value
            return self.pseudonym(_canonical_json(value))
        return _DROP

    def text_replacement(self, text: str) -> str:
        """What replaces a detector hit inside a string (mask and hash modes)."""
        if self.mode == "mask":
            return self.mask_value
        return self.pseudonym(_canonical_json(text))

    def key_replacement(self, key: str, taken: Callable[[str], bool]) -> str:
        """The new name of a key a detector found something in (rule 9): ``<mask>#<n>`` in
        mask and drop modes (drop mode only writes it in paths), the pseudonym of the key in
        hash mode, made unique with ``#<n>`` against the keys ``taken`` says exist."""
        if self.mode == "hash":
            base = self.pseudonym(_canonical_json(key))
            if not taken(base):
                return base
        else:
            base = self.mask_value
        n = 1
        while taken(f"{base}#{n}"):
            n += 1
        return f"{base}#{n}"


_PSEUDONYM_RE: Final = re.compile(r"hmac-sha256:[0-9a-f]{32}")


def _fail(setting: str, problem: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{setting}: {problem}; {fix}")


_EXAMPLES: Final[Mapping[str, str]] = {
    "ALLOWLIST": '["age", "applicant.income"]',
    "DENYLIST": '["national_id", "applicant.contact"]',
    "SENSITIVE_KEYS": '["customer_ref"]',
    "DETECTORS": '["email", "iban"] or {"phone": False}',
    "PHONE_REGIONS": '["US", "GB", "DE", "FR"]',
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
    ``SENSITIVE_KEYS``, ``PHONE_REGIONS``) and saying how to fix it. Iterables of strings are
    accepted for the set fields and stored as frozensets (``phone_regions`` upper-cased).
    ``hash_key`` is excluded from ``repr``.
    """

    allowlist: frozenset[str] = frozenset()
    denylist: frozenset[str] = frozenset()
    mask_value: str = DEFAULT_MASK_VALUE
    mode: str = "mask"
    hash_key: bytes | None = field(default=None, repr=False)
    detectors: frozenset[str] = frozenset(DETECTORS)
    sensitive_keys: frozenset[str] = frozenset()
    #: Regions (ISO 3166 alpha-2) whose national phone number formats the ``phone`` detector
    #: knows; international numbers (``+44 ...``, ``0044 ...``) are found whatever this says.
    phone_regions: frozenset[str] = frozenset(DEFAULT_PHONE_REGIONS)

    def __post_init__(self) -> None:
        for name, setting in (
            ("allowlist", "ALLOWLIST"),
            ("denylist", "DENYLIST"),
            ("sensitive_keys", "SENSITIVE_KEYS"),
            ("detectors", "DETECTORS"),
            ("phone_regions", "PHONE_REGIONS"),
        ):
            object.__setattr__(self, name, _string_set(setting, getattr(self, name)))
        object.__setattr__(self, "phone_regions", frozenset(r.upper() for r in self.phone_regions))
        try:
            phone_regions(self.phone_regions)
        except ValueError as error:
            raise _fail(
                "PHONE_REGIONS",
                f"unknown region(s) {error}",
                "use ISO 3166 alpha-2 codes such as 'US', 'GB', 'DE', 'FR'",
            ) from None
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
    def _values_plan(self) -> _Plan:
        """The plan of :func:`ml_audit.redaction.redact_values` (value detectors only)."""
        return _Plan(self, key_rules=False)

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
            "phone_regions": sorted(self.phone_regions),
            # Built-in vocabulary is part of the meaning: a release that edits it changes every
            # version even if POLICY_SCHEMA was not bumped. So is the numbering plan metadata
            # the phone detector validates with.
            "builtin_phrases": sorted(SENSITIVE_PHRASES),
            "flag_prefixes": sorted(FLAG_PREFIXES),
            "qualifier_suffixes": sorted(QUALIFIER_SUFFIXES),
            "phonenumbers": phonenumbers.__version__,
        }
        digest = hashlib.sha256(_canonical_json(description).encode("utf-8", "surrogatepass"))
        return f"{POLICY_SCHEMA}:{digest.hexdigest()[:12]}"

    @property
    def version(self) -> str:
        """Stable short id of what this policy does, e.g. ``"2:3f9a0c2b7d1e"``.

        ``POLICY_SCHEMA`` and 12 hex digits of a SHA-256 over every setting, the built-in
        vocabularies and the version of ``phonenumbers``. The hash key enters only as a
        fingerprint, so rotating it changes the version without revealing it.
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

        ``ALLOWLIST``, ``DENYLIST``, ``SENSITIVE_KEYS``, ``PHONE_REGIONS``: iterables of
        strings. ``MASK_VALUE``: string. ``MODE``: one of :data:`MODES`. ``HASH_KEY``: string
        (UTF-8 encoded) or bytes.
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
            ("PHONE_REGIONS", "phone_regions"),
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
