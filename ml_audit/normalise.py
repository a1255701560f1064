"""JSON normalisation: real-world values (Decimal, datetime, numpy, dataclasses...) as JSON.

(:func:`to_json`) turns real-world values into JSON without ``TypeError``:

=====================================  =========================================================
input                                  stored as
=====================================  =========================================================
``Decimal``                            string, exactly (``Decimal("0.10")`` -> ``"0.10"``)
``datetime`` / ``date`` / ``time``     ISO 8601 string (offset kept when aware)
``UUID``                               canonical string
``Enum``                               its ``.value``, normalised
``set`` / ``frozenset``                list, in a deterministic (canonical JSON) order
``tuple`` / ``list``                   list
``bytes`` / ``bytearray``              ``"base64:<standard base64>"``
numpy scalars / arrays                 Python scalars / nested lists (numpy is not required)
dataclasses, pydantic models           their fields (field by field / ``model_dump``)
``float('nan')``, ``±inf``             strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
whole floats of magnitude >= 2**53     the integer they exactly equal
``-0.0`` (also numpy's)                ``0.0`` (PostgreSQL's ``jsonb`` has no negative zero)
mapping keys int/float/bool/UUID/Enum  their string form (a collision is an error)
=====================================  =========================================================

Every value this returns is stored exactly: it reads back from PostgreSQL (``jsonb``) and
SQLite (JSON text) as the same JSON, so its canonical JSON, and every content hash over it, is
the same before and after the round trip (``tests/test_exact_storage.py``). That is why ``-0.0``
becomes ``0.0`` (its canonical JSON would change from ``-0.0`` to ``0.0`` on PostgreSQL) and why
whole floats beyond 2**53 become integers (``jsonb`` returns their digits). Other finite floats,
subnormal ones included, and integers beyond 64 bits read back unchanged from both databases.

Refused with :class:`~ml_audit.exceptions.InvalidRecord` naming the path:

- strings (values and keys) containing U+0000 or unpaired surrogates (PostgreSQL cannot store
  them, they are not UTF-8);
- integers (values and keys) of more than :data:`MAX_INT_DIGITS` decimal digits: Python may
  refuse to write or read them as JSON text (``sys.set_int_max_str_digits``; 640 is the lowest
  limit it can be set to), so they could be stored but neither hashed nor read back;
- numpy scalars without an exact Python equivalent (``longdouble``, ``clongdouble``);
- cycles, nesting deeper than :data:`MAX_DEPTH` and any other type.

Strings are stored as given: neither database normalises Unicode (NFC and NFD spellings stay
distinct) and neither does this function.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from collections.abc import Mapping
from typing import Any

from ml_audit.canonical import canonical_json
from ml_audit.exceptions import InvalidRecord

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "check_payload_size",
    "check_storable_text",
    "to_json",
]

MAX_DEPTH = 64
#: Integers of more decimal digits are refused: Python's lowest possible limit of int <-> str
#: conversion (``sys.int_info.str_digits_check_threshold``), so every accepted integer can be
#: written as JSON, hashed and read back whatever ``sys.set_int_max_str_digits`` says.
MAX_INT_DIGITS = 640
#: Accepted integers lie strictly between -_INT_BOUND and _INT_BOUND (MAX_INT_DIGITS digits).
_INT_BOUND = 10**MAX_INT_DIGITS

_EXACT_FLOAT_INT = 2**53
#: The same bound as a float (2**53 is one exactly), for comparisons with floats: cheaper.
_EXACT_FLOAT = float(_EXACT_FLOAT_INT)


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


# A path is built lazily as nested (parent, segment) pairs and rendered only for an error
# message, so normalising a large payload does not format a string per value.
_Path = tuple[Any, str] | str


def _render(path: _Path) -> str:
    segments: list[str] = []
    while isinstance(path, tuple):
        path, segment = path
        segments.append(segment)
    return str(path) + "".join(reversed(segments))


def _check_string(path: _Path, value: str) -> str:
    if "\x00" in value:
        raise InvalidRecord(
            _render(path),
            "contains a NUL character (U+0000), which PostgreSQL cannot store; remove it",
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRecord(
                _render(path), "contains an unpaired surrogate; it is not valid UTF-8"
            ) from exc
    return value


def _int(path: _Path, value: int) -> int:
    if -_INT_BOUND < value < _INT_BOUND:
        return value
    raise InvalidRecord(
        _render(path),
        f"is an integer of more than {MAX_INT_DIGITS} digits, which cannot be stored and read "
        "back exactly; store it as a string",
    )


def _key(path: _Path, key: Any) -> str:
    if type(key) is str:
        return _check_string((path, ".<key>"), key)
    if isinstance(key, str):
        return _check_string((path, ".<key>"), str(key))
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, int) and not isinstance(key, bool):
        _int((path, ".<key>"), key)  # str() of a longer one may raise ValueError
        return str(key)
    if key is None or isinstance(key, bool | float | uuid.UUID | decimal.Decimal):
        return str(key)
    raise InvalidRecord(
        _render((path, ".<key>")), f"mapping key of type {type(key).__name__} is not supported"
    )


def _sort_key(value: Any) -> str:
    return canonical_json(value)


def to_json(value: Any, path: str = "value") -> Any:
    """Return ``value`` as JSON-compatible Python data (see the module docstring for the rules).

    Raises :class:`~ml_audit.exceptions.InvalidRecord` naming ``path`` for unsupported input.
    """
    return _to_json(value, path, 0, set())


def _float(value: float) -> float | int | str:
    """A plain ``float`` as stored: see the module docstring."""
    if not math.isfinite(value):
        return _non_finite(value)
    if abs(value) >= _EXACT_FLOAT and value.is_integer():
        # PostgreSQL's jsonb returns such numbers as their exact integer digits; store that
        # integer (it is the float's exact value) so stored data and hashes round-trip.
        return int(value)
    if not value:
        # -0.0: jsonb (numeric) has no negative zero and returns 0.0, whose canonical JSON
        # differs ("0.0", not "-0.0").
        return 0.0
    return value


def _flat_dict(value: dict[Any, Any]) -> dict[str, Any] | None:
    """The common case in one loop: str keys, plain scalar values. None: take the full path."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str or "\x00" in key or not key.isascii():
            return None
        kind = type(item)
        if kind is str:
            if "\x00" in item or not item.isascii():
                return None
        elif kind is float:
            if not (-_EXACT_FLOAT < item < _EXACT_FLOAT):  # also false for NaN
                return None
            if not item:
                item = 0.0  # -0.0 (see _float)
        elif kind is int:
            if not (-_INT_BOUND < item < _INT_BOUND):
                return None
        elif not (kind is bool or item is None):
            return None
        out[key] = item
    return out


def _to_json(value: Any, path: _Path, depth: int, seen: set[int]) -> Any:
    # Exact-type fast paths first: the common payload is a dict of str/int/float/bool.
    kind = type(value)
    if kind is str:
        return _check_string(path, value)
    if kind is int:
        return value if -_INT_BOUND < value < _INT_BOUND else _int(path, value)
    if kind is bool or value is None:
        return value
    if kind is float:
        return _float(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return _check_string(path, str(value))
    if isinstance(value, int):
        return _int(path, int(value))
    if isinstance(value, float):
        return _float(float(value))
    if depth >= MAX_DEPTH:
        raise InvalidRecord(_render(path), f"is nested deeper than {MAX_DEPTH} levels")
    if kind is dict:
        fast = _flat_dict(value)
        if fast is not None:
            return fast
    if isinstance(value, Mapping):
        marker = id(value)
        if marker in seen:
            raise InvalidRecord(_render(path), "contains a reference cycle")
        seen.add(marker)
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = _key(path, raw_key)
            if key in out:
                raise InvalidRecord(_render(path), f"has two keys that both read as {key!r}")
            out[key] = _to_json(item, (path, "." + key), depth + 1, seen)
        seen.discard(marker)
        return out
    if isinstance(value, list | tuple):
        marker = id(value)
        if marker in seen:
            raise InvalidRecord(_render(path), "contains a reference cycle")
        seen.add(marker)
        items = [_to_json(item, (path, f"[{i}]"), depth + 1, seen) for i, item in enumerate(value)]
        seen.discard(marker)
        return items
    if isinstance(value, set | frozenset):
        items = [_to_json(item, (path, "[]"), depth + 1, seen) for item in value]
        return sorted(items, key=_sort_key)
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return "NaN"
        if value.is_infinite():
            return "Infinity" if value > 0 else "-Infinity"
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return _to_json(value.value, path, depth + 1, seen)
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    module = type(value).__module__
    # numpy scalars and arrays both have .tolist(), which gives plain Python values.
    if (module == "numpy" or module.startswith("numpy.")) and hasattr(value, "tolist"):
        converted = value.tolist()
        if type(converted) is kind:  # longdouble, clongdouble: no exact Python equivalent
            raise InvalidRecord(
                _render(path),
                f"numpy {kind.__name__} has no exact JSON form; convert it to float first",
            )
        return _to_json(converted, path, depth + 1, seen)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field by field through this walk (not dataclasses.asdict, which recurses without a
        # bound and follows cycles until RecursionError): depth and cycles are checked here.
        marker = id(value)
        if marker in seen:
            raise InvalidRecord(_render(path), "contains a reference cycle")
        seen.add(marker)
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        result = _to_json(fields, path, depth + 1, seen)
        seen.discard(marker)
        return result
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        try:
            dumped = model_dump(mode="json")
        except RecursionError:
            raise InvalidRecord(_render(path), "is nested too deeply (or is cyclic)") from None
        return _to_json(dumped, path, depth + 1, seen)
    raise InvalidRecord(
        _render(path),
        f"value of type {type(value).__module__}.{type(value).__qualname__} cannot be stored as "
        "JSON; convert it to a str, number, list or dict first",
    )


def check_storable_text(field: str, value: str) -> str:
    """``value`` if a database can store it as text; ``InvalidRecord`` naming ``field`` when it
    holds a NUL character or an unpaired surrogate."""
    return _check_string(field, value)


def check_payload_size(field: str, value: Any, limit: int | None) -> None:
    """``InvalidRecord`` naming ``field`` when ``value`` is larger than ``limit`` (None: no
    limit), measured before any other work, with an early exit.

    The size counts the characters of every string and key, the bytes of ``bytes`` values and
    of numpy arrays (``nbytes``), and 8 for any other value; it is close to the size of the
    payload's JSON and cheap to compute (a flat dict of 20 features: about a microsecond).
    """
    if limit is None or value is None:
        return
    if type(value) is dict:
        # The common payload, in one loop: str keys, scalar values.
        total = 0
        for key, item in value.items():
            kind = type(item)
            if kind is str:
                total += len(item)
            elif not (kind is float or kind is int or kind is bool or item is None):
                break  # something nested: the full walk below counts it
            total += len(key) + 8 if type(key) is str else 16
        else:
            if total <= limit:
                return
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes or kind is bytearray:
            total += len(item)
        elif kind is dict or isinstance(item, Mapping):
            if depth < MAX_DEPTH:
                for key, child in item.items():
                    total += len(key) if type(key) is str else 8
                    stack.append((child, depth + 1))
        elif kind is list or kind is tuple or isinstance(item, list | tuple | set | frozenset):
            if depth < MAX_DEPTH:
                total += len(item)
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            total += len(item)
        else:
            total += getattr(item, "nbytes", 8) if hasattr(item, "nbytes") else 8
        if total > limit:
            raise InvalidRecord(
                field,
                f"is larger than ML_AUDIT['MAX_PAYLOAD_BYTES'] ({limit:,} characters); store a "
                "smaller payload or raise the limit",
            )
