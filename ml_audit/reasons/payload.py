"""The per-feature contributions of an explanation payload, as ``(feature, number)`` pairs.

Pure (no models, no Django). The shapes read are those the admin's chart
(:mod:`ml_audit.charts`) and the OpenInference span attributes read, so that a payload that
draws bars also gives reason codes:

* a mapping of numbers under the first of :data:`CONTRIBUTION_KEYS` the payload has
  (``{"shap_values": {"income": -0.4, ...}}``), or a list of per-feature entries there
  (``[{"feature": "income", "value": -0.4}, ["age", 0.2]]``, LIME's ``as_list()``);
* else, when it has none of those keys, the payload itself, as such a mapping or list
  (``{"income": -0.4, "age": 0.2}``): a payload with a ``shap_values`` key that holds no
  numbers (one mapping per class, say) has no contributions, rather than its other numbers
  (a ``base_value``) read as features.

Numbers are finite ints and floats; booleans, strings (a redacted value), ``null`` and nested
values are not contributions. A feature named twice in a list counts once, at its first entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["CONTRIBUTION_KEYS", "contributions"]

#: Keys of a payload that may hold the per-feature numbers, tried in order.
CONTRIBUTION_KEYS = (
    "feature_importances",
    "shap_values",
    "attributions",
    "contributions",
    "weights",
    "importances",
    "values",
)
#: In a list of per-feature entries: keys naming the feature, and keys holding its number.
_NAME_KEYS = ("feature", "name", "feature_name", "key")
_VALUE_KEYS = ("contribution", "attribution", "value", "weight", "shap_value", "importance")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _pairs(candidate: Any) -> list[tuple[str, float]]:
    pairs: list[tuple[str, float]] = []
    seen: set[str] = set()

    def add(name: Any, number: float | None) -> None:
        if isinstance(name, str) and number is not None and name not in seen:
            seen.add(name)
            pairs.append((name, number))

    if isinstance(candidate, Mapping):
        for name, value in candidate.items():
            add(str(name), _number(value))
    elif isinstance(candidate, list):
        for entry in candidate:
            if isinstance(entry, Mapping):
                name = next((entry[key] for key in _NAME_KEYS if key in entry), None)
                number = next(
                    (n for key in _VALUE_KEYS if (n := _number(entry.get(key))) is not None),
                    None,
                )
                add(name, number)
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                add(entry[0], _number(entry[1]))
    return pairs


def contributions(payload: Any) -> list[tuple[str, float]]:
    """Every contribution of ``payload``, largest magnitude first; ties keep the payload's
    order (so the result is the same for the same stored payload, every time)."""
    named = [key for key in CONTRIBUTION_KEYS if isinstance(payload, Mapping) and key in payload]
    pairs: list[tuple[str, float]] = []
    for key in named:
        pairs = _pairs(payload[key])
        if pairs:
            break
    if not named:
        pairs = _pairs(payload)
    pairs.sort(key=lambda pair: abs(pair[1]), reverse=True)  # stable
    return pairs
