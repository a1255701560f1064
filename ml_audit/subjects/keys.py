"""Subject references: the keyed hashes that stand for a data subject in the audit trail.

Two HMAC-SHA-256s over the same unambiguous encoding of ``(tenant, identifier)``
(:func:`message`: a label, then each part as its UTF-8 length in four bytes and its bytes):

``lookup``
    keyed by the deployment's ``ML_AUDIT["SUBJECT_KEY"]`` (a setting, never in the database):
    finds the subject's :class:`~ml_audit.models.SubjectKey` row without storing the identifier.
``subject_ref``
    keyed by the subject's own random 32-byte ``secret`` (that row's): what a prediction stores.

Deleting the row (:mod:`ml_audit.subjects.forget`) deletes the only thing that ties the
identifier to the reference. Nothing derives the secret from anything else, so neither the
subject key nor the identifier can bring it back: naming the subject again creates a new
secret, hence a new reference that links to none of the old rows.

The row is read, or created, on the calling thread, when the prediction is made: race-free
under the unique ``lookup`` (``INSERT ... ON CONFLICT DO NOTHING``, then read back), and cached
per process for ``ML_AUDIT["SUBJECT_KEY_CACHE_SECONDS"]`` (keyed by the lookup hash, so no
identifier is kept in memory either). A reference is cached only once the transaction that read
or created its row has committed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from ml_audit.conf import audit_settings, resolve_alias
from ml_audit.exceptions import ConfigurationError
from ml_audit.lru import LruCache
from ml_audit.subjects.errors import SubjectUnavailable
from ml_audit.validation import MAX_TENANT_ID, _check_identifier

__all__ = [
    "MAX_SUBJECT_ID",
    "Subject",
    "clear_cache",
    "lookup_of",
    "message",
    "reference_of",
    "subject_key",
    "subject_ref",
]

#: The longest identifier accepted, in characters (it is never stored: only a sanity bound).
MAX_SUBJECT_ID = 1024
#: Bytes of a subject's secret (stored as 64 hex digits).
SECRET_BYTES = 32

LOOKUP_LABEL = b"ml_audit.subject.lookup/1"
REF_LABEL = b"ml_audit.subject.ref/1"
#: Most references one process keeps (least recently used go first).
CACHE_SIZE = 100_000


def message(label: bytes, tenant: str, identifier: str) -> bytes:
    """``label``, tenant and identifier, each as a 4-byte big-endian length and its UTF-8 bytes:
    no two ``(tenant, identifier)`` pairs share an encoding (``("a", "bc")`` is not
    ``("ab", "c")``)."""
    out = bytearray()
    for part in (label, tenant.encode("utf-8"), identifier.encode("utf-8")):
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def lookup_of(key: bytes, tenant: str, identifier: str) -> str:
    """The ``SubjectKey.lookup`` of a subject: HMAC-SHA-256 under the subject key, in hex."""
    return hmac.new(key, message(LOOKUP_LABEL, tenant, identifier), hashlib.sha256).hexdigest()


def reference_of(secret: str, tenant: str, identifier: str) -> str:
    """The subject reference: HMAC-SHA-256 under the subject's secret (hex), in hex."""
    return hmac.new(
        bytes.fromhex(secret), message(REF_LABEL, tenant, identifier), hashlib.sha256
    ).hexdigest()


def subject_key() -> bytes:
    """``ML_AUDIT["SUBJECT_KEY"]``; :class:`ConfigurationError` when it is not set."""
    key = audit_settings.SUBJECT_KEY
    if key is None:
        raise ConfigurationError(
            "ML_AUDIT['SUBJECT_KEY'] is not set: a prediction cannot name its subject, and no "
            "subject can be looked up or forgotten. Set it to a secret of at least 32 bytes "
            "kept outside the audit database, and never change it (docs/subjects.md)."
        )
    return key


class Subject:
    """A validated ``(tenant, identifier)`` and its lookup hash (the identifier is not kept
    anywhere else)."""

    __slots__ = ("identifier", "lookup", "tenant")

    def __init__(self, identifier: Any, tenant: Any = "") -> None:
        self.identifier = _check_identifier("subject", identifier, MAX_SUBJECT_ID, optional=False)
        self.tenant = _check_identifier("tenant", tenant, MAX_TENANT_ID, optional=True)
        self.lookup = lookup_of(subject_key(), self.tenant, self.identifier)

    def reference(self, secret: str) -> str:
        return reference_of(secret, self.tenant, self.identifier)

    def __repr__(self) -> str:  # never the identifier, not even in a traceback's locals
        return f"<Subject lookup {self.lookup[:12]}…>"


# ------------------------------------------------------------------------------ the cache


class _RefCache(LruCache):
    """(alias, lookup) -> (reference, expiry on the monotonic clock)."""

    def get_ref(self, key: tuple[str, str]) -> str | None:
        entry = self.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            self.discard(key)
            return None
        return str(entry[0])

    def put_ref(self, key: tuple[str, str], reference: str, seconds: int) -> None:
        if seconds > 0:
            self.put(key, (reference, time.monotonic() + seconds))


_cache = _RefCache(CACHE_SIZE)
os.register_at_fork(after_in_child=_cache.reset_after_fork)


def clear_cache() -> None:
    """Forget every cached reference of this process (tests; after restoring a database)."""
    _cache.clear()


def forget_cached(alias: str, lookup: str) -> None:
    """Drop one subject's cached reference (the forgetting process does, at once)."""
    _cache.discard((alias, lookup))


# ------------------------------------------------------------------------------ finding refs


def subject_ref(
    identifier: Any, *, tenant: Any = "", create: bool = False, using: str | None = None
) -> str | None:
    """The reference under which predictions about ``identifier`` (in ``tenant``) are stored.

    ``create=False`` (for reports and filters) never writes: ``None`` when no key is stored,
    because no prediction named the subject or it was forgotten. ``create=True`` (what
    ``subject=`` on the recording calls does) creates the key on first use.

    Raises :class:`~ml_audit.exceptions.InvalidRecord` for an identifier that is not a
    non-empty string (or int) of at most :data:`MAX_SUBJECT_ID` characters,
    :class:`~ml_audit.exceptions.ConfigurationError` without ``ML_AUDIT["SUBJECT_KEY"]``, and
    :class:`~ml_audit.subjects.SubjectUnavailable` when the database cannot be reached.
    """
    return reference(Subject(identifier, tenant), create=create, using=using)


def reference(subject: Subject, *, create: bool, using: str | None = None) -> str | None:
    """:func:`subject_ref` of an already validated subject."""
    alias = resolve_alias(using)
    key = (alias, subject.lookup)
    cached = _cache.get_ref(key)
    if cached is not None:
        return cached
    try:
        secret = _read_or_create(alias, subject, create)
    except DatabaseError as exc:
        raise SubjectUnavailable(
            f"the subject key table of database {alias!r} cannot be reached "
            f"({type(exc).__name__}); a prediction naming a subject is not recorded without "
            "it"
        ) from exc
    if secret is None:
        return None
    ref = subject.reference(secret)
    seconds = audit_settings.SUBJECT_KEY_CACHE_SECONDS
    # Cached once committed: a key created in a transaction that rolls back never was.
    transaction.on_commit(lambda: _cache.put_ref(key, ref, seconds), using=alias)
    return ref


def _read_or_create(alias: str, subject: Subject, create: bool) -> str | None:
    from ml_audit.models import SubjectKey

    rows = SubjectKey.objects.using(alias)
    for _ in range(3):
        found = list(rows.filter(lookup=subject.lookup).values_list("secret", flat=True)[:1])
        if found or not create:
            return found[0] if found else None
        # Two processes naming a new subject at once: one row wins, both read it back.
        rows.bulk_create(
            [
                SubjectKey(
                    lookup=subject.lookup,
                    secret=secrets.token_hex(SECRET_BYTES),
                    tenant_id=subject.tenant,
                    created_at=timezone.now(),
                )
            ],
            ignore_conflicts=True,
        )
    # Created three times and deleted (forgotten) each time before it could be read back.
    raise SubjectUnavailable("the subject's key was deleted as fast as it was created")
