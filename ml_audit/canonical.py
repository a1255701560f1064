"""Canonical JSON (sorted keys, no spaces, UTF-8) and the SHA-256 hashes computed over it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["RECORD_SCHEMA", "canonical_json", "canonical_json_of_mapping", "sha256_hex"]

#: Version of the stored-record layout covered by ``content_hash``.
RECORD_SCHEMA = 1

_canonical_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False
).encode


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces, UTF-8) used for every hash."""
    return _canonical_encode(value)


def canonical_json_of_mapping(value: Mapping[str, Any], known: Mapping[str, str]) -> str:
    """``canonical_json(value)`` for a flat-keyed mapping, reusing texts already computed.

    ``known`` maps some top-level keys to their value's canonical JSON, so a large payload that
    was serialised once (e.g. for the input fingerprint) is not serialised again. The result
    is byte-for-byte ``canonical_json(value)`` (tested).
    """
    parts = []
    for key in sorted(value):
        text = known.get(key)
        if text is None:
            text = _canonical_encode(value[key])
        parts.append(f"{_canonical_encode(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def sha256_hex(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``, as 64 hex digits."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
