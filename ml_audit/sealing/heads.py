"""Seal heads: their canonical form, hash and HMAC, the keys, and the exported document.

The head of a seal is every column of its row but ``mac``, as canonical JSON
(:func:`ml_audit.canonical.canonical_json`). Its SHA-256 is the *head hash*, which the next
seal stores as ``previous_hash``; its HMAC-SHA-256 under the key named ``key_id`` is ``mac``.
The key is read from settings (``ML_AUDIT['SEAL_KEY']`` and ``SEAL_PREVIOUS_KEYS``), never
from the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_audit.canonical import canonical_json
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from ml_audit.seal_models import Seal

__all__ = [
    "ALGORITHM",
    "EXPORT_FORMAT",
    "GENESIS",
    "current_key",
    "export_document",
    "head_hash",
    "head_of",
    "key_for",
    "mac_of",
    "read_export",
]

#: The only seal authentication so far; a public-key scheme (Ed25519) would be another value.
ALGORITHM = "hmac-sha256"
#: ``previous_hash`` of seal 1.
GENESIS = "0" * 64
HEAD_FORMAT = "ml_audit.seal/1"
EXPORT_FORMAT = "ml_audit.seal-export/1"


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def head_of(seal: Seal) -> dict[str, Any]:
    """The authenticated fields of ``seal`` (everything but ``mac``), JSON-ready."""
    return {
        "format": HEAD_FORMAT,
        "seal": seal.id,
        "created_at": _iso(seal.created_at),
        "previous_hash": seal.previous_hash,
        "root": seal.root,
        "leaves": seal.leaves,
        "members": [seal.members_from, seal.members_to],
        "counts": dict(sorted(seal.counts.items())),
        "horizon": _iso(seal.horizon),
        "covered": [_iso(seal.covered_from), _iso(seal.covered_to)],
        "algorithm": seal.algorithm,
        "key_id": seal.key_id,
    }


def _head_bytes(head: dict[str, Any]) -> bytes:
    return canonical_json(head).encode("utf-8")


def head_hash(head: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical head: what the next seal chains to."""
    return hashlib.sha256(_head_bytes(head)).hexdigest()


def mac_of(head: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA-256 (hex) of the canonical head under ``key``."""
    return hmac.new(key, _head_bytes(head), hashlib.sha256).hexdigest()


def current_key() -> tuple[str, bytes]:
    """``(key id, key)`` that new seals are authenticated with; refuses a missing key."""
    key = audit_settings.SEAL_KEY
    if key is None:
        raise ConfigurationError(
            "ML_AUDIT['SEAL_KEY'] is not set: seals cannot be authenticated. Set it to a secret "
            "of at least 32 bytes kept outside the audit database."
        )
    return audit_settings.SEAL_KEY_ID, key


def key_for(key_id: str) -> bytes | None:
    """The key named ``key_id`` (current or previous), or ``None`` when it is not configured."""
    if audit_settings.SEAL_KEY is not None and key_id == audit_settings.SEAL_KEY_ID:
        return audit_settings.SEAL_KEY
    return audit_settings.SEAL_PREVIOUS_KEYS.get(key_id)


def export_document(seal: Seal) -> dict[str, Any]:
    """The small JSON document ``ml_audit_seal --export`` writes: the head, its hash, its MAC."""
    head = head_of(seal)
    return {"format": EXPORT_FORMAT, "head": head, "head_hash": head_hash(head), "mac": seal.mac}


def read_export(path: str | Path) -> dict[str, Any]:
    """An exported document read back; :class:`ValueError` when it is not one."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the exported seal head {path}: {exc}") from exc
    if (
        not isinstance(document, dict)
        or document.get("format") != EXPORT_FORMAT
        or not isinstance(document.get("head"), dict)
        or not isinstance(document["head"].get("seal"), int)
    ):
        raise ValueError(f"{path} is not an exported seal head ({EXPORT_FORMAT})")
    return document
