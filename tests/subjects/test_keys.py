"""Subject references: the scheme, the key table, the cache, settings and checks."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import OperationalError, connection, connections, transaction

from ml_audit.exceptions import ConfigurationError, InvalidRecord
from ml_audit.models import SubjectKey
from ml_audit.subjects import SubjectUnavailable, subject_ref
from ml_audit.subjects import keys as subject_keys
from ml_audit.subjects.keys import (
    LOOKUP_LABEL,
    MAX_SUBJECT_ID,
    REF_LABEL,
    lookup_of,
    message,
    reference_of,
)
from tests.subjects.helpers import ALICE, BOB, SUBJECT_KEY

pytestmark = pytest.mark.django_db


# ----------------------------------------------------------------------------- the scheme


def test_the_encoding_is_unambiguous() -> None:
    assert message(REF_LABEL, "a", "bc") != message(REF_LABEL, "ab", "c")
    assert message(REF_LABEL, "", "ab") != message(REF_LABEL, "a", "b")
    assert message(LOOKUP_LABEL, "t", "x") != message(REF_LABEL, "t", "x")
    assert message(b"L", "é", "1") == b"\x00\x00\x00\x01L\x00\x00\x00\x02\xc3\xa9\x00\x00\x00\x011"


def test_lookup_and_reference_are_hmac_sha256_of_the_encoding() -> None:
    key, secret = SUBJECT_KEY.encode(), "ab" * 32
    assert (
        lookup_of(key, "acme", ALICE)
        == hmac.new(key, message(LOOKUP_LABEL, "acme", ALICE), hashlib.sha256).hexdigest()
    )
    assert (
        reference_of(secret, "acme", ALICE)
        == hmac.new(
            bytes.fromhex(secret), message(REF_LABEL, "acme", ALICE), hashlib.sha256
        ).hexdigest()
    )
    # Tenant and identifier both count.
    assert reference_of(secret, "acme", ALICE) != reference_of(secret, "globex", ALICE)
    assert reference_of(secret, "acme", ALICE) != reference_of(secret, "acme", BOB)


def test_subject_ref_creates_one_key_per_subject_and_tenant(subjects: Any) -> None:
    assert subject_ref(ALICE, tenant="acme") is None  # create=False writes nothing
    assert SubjectKey.objects.count() == 0
    ref = subject_ref(ALICE, tenant="acme", create=True)
    assert ref is not None
    assert len(ref) == 64
    assert int(ref, 16) >= 0
    assert subject_ref(ALICE, tenant="acme", create=True) == ref
    assert subject_ref(ALICE, tenant="acme") == ref
    # Surrounding whitespace is not part of an identifier; ints are their decimal text.
    assert subject_ref(f"  {ALICE}\n", tenant="acme") == ref
    assert subject_ref(42, create=True) == subject_ref("42")
    other_tenant = subject_ref(ALICE, tenant="globex", create=True)
    assert other_tenant not in (None, ref)
    assert SubjectKey.objects.count() == 3
    row = SubjectKey.objects.get(tenant_id="acme")
    assert row.lookup == lookup_of(SUBJECT_KEY.encode(), "acme", ALICE)
    assert ref == reference_of(row.secret, "acme", ALICE)
    assert len(row.secret) == 64
    # The identifier is in no column of the key table.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM ml_audit_subjectkey")
        assert ALICE not in repr(cursor.fetchall())


def test_secrets_are_random_not_derived(subjects: Any) -> None:
    subject_ref(ALICE, create=True)
    subject_ref(BOB, create=True)
    first, second = SubjectKey.objects.values_list("secret", flat=True)
    assert first != second
    for secret in (first, second):
        assert secret not in (
            hmac.new(SUBJECT_KEY.encode(), ALICE.encode(), hashlib.sha256).hexdigest(),
            hashlib.sha256(ALICE.encode()).hexdigest(),
        )


@pytest.mark.parametrize(
    ("identifier", "tenant", "field", "words"),
    [
        ("", "", "subject", "must not be empty"),
        ("   ", "", "subject", "must not be empty"),
        (None, "", "subject", "must be a string"),
        (True, "", "subject", "must be a string"),
        ({"id": 1}, "", "subject", "must be a string"),
        ("x" * (MAX_SUBJECT_ID + 1), "", "subject", "the limit is 1024"),
        ("a\x00b", "", "subject", "NUL"),
        (ALICE, "t" * 300, "tenant", "the limit is 255"),
    ],
)
def test_bad_identifiers_are_refused_without_quoting_them(
    subjects: Any, identifier: Any, tenant: str, field: str, words: str
) -> None:
    with pytest.raises(InvalidRecord) as info:
        subject_ref(identifier, tenant=tenant, create=True)
    assert info.value.field == field
    assert words in str(info.value)
    assert SubjectKey.objects.count() == 0
    if isinstance(identifier, str) and identifier.strip():
        assert identifier not in str(info.value)


# ----------------------------------------------------------------------------- settings, checks


def test_without_a_subject_key_naming_a_subject_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"SUBJECT_KEY'\] is not set"):
        subject_ref(ALICE, create=True)
    assert SubjectKey.objects.count() == 0


@pytest.mark.parametrize(("value", "words"), [("short", "needs at least 32"), (42, "str or bytes")])
def test_a_bad_subject_key_is_refused_and_reported_by_check_e007(
    settings: Any, value: Any, words: str
) -> None:
    settings.ML_AUDIT = {"SUBJECT_KEY": value}
    with pytest.raises(ConfigurationError, match=words):
        subject_ref(ALICE, create=True)
    messages = [m for m in run_checks() if m.id and m.id.startswith("ml_audit.")]
    assert [m.id for m in messages] == ["ml_audit.E007"]
    assert words in messages[0].msg


def test_a_good_subject_key_passes_the_checks(subjects: Any) -> None:
    assert not [m for m in run_checks(databases=["default"]) if m.id == "ml_audit.E007"]
    settings_key = bytes(range(32))  # bytes keys work too
    subjects["SUBJECT_KEY"] = settings_key
    assert subject_ref(ALICE, create=True) is not None


def test_database_check_reports_stored_keys_without_a_subject_key(
    subjects: Any, settings: Any
) -> None:
    subject_ref(ALICE, create=True)
    settings.ML_AUDIT = {}
    assert not [m for m in run_checks() if m.id == "ml_audit.E007"]  # no --database: no query
    found = [m for m in run_checks(databases=["default"]) if m.id == "ml_audit.E007"]
    assert len(found) == 1
    assert "SUBJECT_KEY" in found[0].msg


def test_cache_seconds_must_be_a_non_negative_integer(settings: Any) -> None:
    settings.ML_AUDIT = {"SUBJECT_KEY": SUBJECT_KEY, "SUBJECT_KEY_CACHE_SECONDS": -1}
    assert [m.id for m in run_checks() if m.id and m.id.startswith("ml_audit.")] == [
        "ml_audit.E001"
    ]


# ----------------------------------------------------------------------------- the cache


def _count_queries(call: Any) -> tuple[Any, int]:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connections["default"]) as queries:
        value = call()
    return value, len(queries)


def test_a_reference_is_cached_once_committed_and_for_the_ttl_only(
    subjects: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        ref, first = _count_queries(lambda: subject_ref(ALICE, create=True))
    assert first == 3  # read (miss), insert, read back
    again, cached = _count_queries(lambda: subject_ref(ALICE, create=True))
    assert (again, cached) == (ref, 0)
    # Past the TTL the table is read again.
    clock = [time.monotonic()]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    clock[0] += subjects.get("SUBJECT_KEY_CACHE_SECONDS", 60) + 1
    again, read = _count_queries(lambda: subject_ref(ALICE, create=True))
    assert (again, read) == (ref, 1)


def test_no_cache_with_zero_seconds(subjects: Any, django_capture_on_commit_callbacks: Any) -> None:
    subjects["SUBJECT_KEY_CACHE_SECONDS"] = 0
    with django_capture_on_commit_callbacks(execute=True):
        subject_ref(ALICE, create=True)
    assert _count_queries(lambda: subject_ref(ALICE, create=True))[1] == 1


def test_a_key_created_in_a_rolled_back_transaction_is_not_cached(subjects: Any) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        doomed = subject_ref(ALICE, create=True)
        raise Rollback
    assert SubjectKey.objects.count() == 0
    assert len(subject_keys._cache) == 0
    assert subject_ref(ALICE) is None
    fresh = subject_ref(ALICE, create=True)
    assert fresh != doomed  # a new secret: the rolled-back reference was never anyone's


def test_a_database_outage_is_subject_unavailable_and_caches_nothing(
    subjects: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(subject_keys, "_read_or_create", down)
    with pytest.raises(SubjectUnavailable, match="cannot be reached") as info:
        subject_ref(ALICE, create=True)
    assert ALICE not in str(info.value)
    assert len(subject_keys._cache) == 0


def test_a_cached_reference_needs_no_database(
    subjects: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        ref = subject_ref(ALICE, create=True)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("down")

    monkeypatch.setattr(subject_keys, "_read_or_create", down)
    assert subject_ref(ALICE, create=True) == ref
    with pytest.raises(SubjectUnavailable):
        subject_ref(BOB, create=True)


def test_the_cache_holds_lookups_not_identifiers(
    subjects: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        subject_ref(ALICE, create=True)
    assert ALICE not in repr(subject_keys._cache._data)
    assert ALICE not in repr(subject_keys.Subject(ALICE))


def test_concurrent_first_use_creates_one_key_on_sqlite(
    subjects: Any, sqlite_file_alias: str
) -> None:
    _name_at_once(sqlite_file_alias)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed: the other connections see the key
def test_concurrent_first_use_creates_one_key_on_postgresql(subjects: Any) -> None:
    _name_at_once("default")


def _name_at_once(alias: str) -> None:
    """Threads naming a new subject at once (own connections): one row, one reference."""
    refs: list[str | None] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def name() -> None:
        try:
            barrier.wait()
            refs.append(subject_ref(ALICE, tenant="acme", create=True, using=alias))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=name) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(refs)) == 1
    assert refs[0] is not None
    assert SubjectKey.objects.using(alias).count() == 1
