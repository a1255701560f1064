"""Forgetting a subject: the key goes, an erasure is recorded, every row and seal stays."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ml_audit import store
from ml_audit.exceptions import AppendOnlyError, ConfigurationError, InvalidRecord
from ml_audit.models import PredictionEvent, SubjectErasure, SubjectKey
from ml_audit.retention import place_hold, release_hold
from ml_audit.sealing.verifier import verify
from ml_audit.subjects import SubjectHeld, UnknownSubject, forget_subject, subject_ref
from tests.retention.helpers import seal_at_now
from tests.subjects.helpers import ALICE, BOB, predict

pytestmark = pytest.mark.django_db


def _rows() -> dict[str, tuple[Any, ...]]:
    """Every prediction row as stored (primary key -> every column)."""
    return {str(row["id"]): tuple(sorted(row.items())) for row in PredictionEvent.objects.values()}


def _trail() -> list[PredictionEvent]:
    events = [predict(i) for i in range(3)]  # Alice, in acme
    events.append(predict(3, BOB))
    events.append(predict(4, tenant="globex"))  # Alice in another tenant: another subject
    events.append(predict(5, None))
    return events


def test_forgetting_deletes_the_key_and_records_the_erasure(subjects: Any) -> None:
    events = _trail()
    ref = subject_ref(ALICE, tenant="acme")
    before = _rows()

    erasure = forget_subject(
        ALICE, tenant="acme", reason="GDPR Art. 17 request", erased_by="dpo", reference="T-7"
    )

    assert isinstance(erasure, SubjectErasure)
    assert (erasure.subject_ref, erasure.tenant_id, erasure.predictions) == (ref, "acme", 3)
    assert (erasure.erased_by, erasure.reason, erasure.reference) == (
        "dpo",
        "GDPR Art. 17 request",
        "T-7",
    )
    assert SubjectErasure.objects.get() == erasure
    # Only Alice-in-acme's key is gone; every prediction row is exactly as it was.
    assert subject_ref(ALICE, tenant="acme") is None
    assert subject_ref(ALICE, tenant="globex") == events[4].subject_ref
    assert subject_ref(BOB, tenant="acme") == events[3].subject_ref
    assert SubjectKey.objects.count() == 2
    assert _rows() == before
    stored = PredictionEvent.objects.select_related("model", "actor")
    assert all(store.verify_event(event) for event in stored)
    # The erasure names no identifier.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM ml_audit_subjecterasure")
        assert ALICE not in repr(cursor.fetchall())


def test_after_forgetting_the_same_identifier_gets_a_new_unlinked_ref(subjects: Any) -> None:
    old = predict(1).subject_ref
    forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    new = predict(2).subject_ref
    assert new
    assert new != old
    assert subject_ref(ALICE, tenant="acme") == new
    # The old rows are found by nothing the identifier leads to.
    assert not PredictionEvent.objects.filter(subject_ref=new, prediction_id="p-acme-1").exists()
    assert PredictionEvent.objects.filter(subject_ref=old).count() == 1


def test_verify_passes_after_a_forget(subjects: Any) -> None:
    _trail()
    # Cut at the real time: a cut ahead of it would vouch for the erasure appended below.
    seal_at_now()
    assert verify().ok
    forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    report = verify()
    assert report.findings == {}, report.lines()
    assert report.ok


def test_an_unknown_subject_is_refused_and_nothing_is_written(subjects: Any) -> None:
    predict(1)
    with pytest.raises(UnknownSubject, match="no key is stored") as info:
        forget_subject(BOB, tenant="acme", reason="request", erased_by="dpo")
    assert BOB not in str(info.value)
    with pytest.raises(UnknownSubject, match="in tenant 'globex'"):
        forget_subject(ALICE, tenant="globex", reason="request", erased_by="dpo")
    assert not SubjectErasure.objects.exists()
    assert SubjectKey.objects.count() == 1
    # Twice: the second finds nothing.
    forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    with pytest.raises(UnknownSubject):
        forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    assert SubjectErasure.objects.count() == 1


def test_a_legal_hold_over_the_subjects_predictions_refuses_the_forget(subjects: Any) -> None:
    events = _trail()
    hold = place_hold(
        reason="Litigation", created_by="counsel", prediction_ids=[events[1].prediction_id]
    )
    with pytest.raises(SubjectHeld, match=str(hold.pk)) as info:
        forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    assert info.value.holds == (str(hold.pk),)
    assert subject_ref(ALICE, tenant="acme") == events[0].subject_ref  # the key is still there
    assert not SubjectErasure.objects.exists()
    # A hold on other rows does not stand in the way of this subject.
    forget_subject(BOB, tenant="acme", reason="request", erased_by="dpo")
    # Released: the subject can be forgotten.
    release_hold(hold, reason="Case closed", created_by="counsel")
    assert forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo").predictions == 3


def test_a_hold_on_the_tenant_or_everything_covers_the_subject(subjects: Any) -> None:
    predict(1)
    place_hold(reason="Audit", created_by="counsel", tenant_id="acme")
    with pytest.raises(SubjectHeld):
        forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    # A subject with no predictions at all (its key was made, the write failed): no hold
    # covers it, and it can go.
    subject_ref(BOB, tenant="acme", create=True)
    assert forget_subject(BOB, tenant="acme", reason="request", erased_by="dpo").predictions == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reason": " "}, "reason"),
        ({"erased_by": ""}, "erased_by"),
        ({"erased_by": "x" * 256}, "erased_by"),
        ({"reference": "r" * 256}, "reference"),
        ({"reason": None}, "reason"),
    ],
)
def test_who_and_why_are_required(subjects: Any, kwargs: dict[str, Any], field: str) -> None:
    predict(1)
    arguments: dict[str, Any] = {"reason": "request", "erased_by": "dpo", **kwargs}
    with pytest.raises(InvalidRecord) as info:
        forget_subject(ALICE, tenant="acme", **arguments)
    assert info.value.field == field
    assert SubjectKey.objects.count() == 1


def test_erasure_records_are_append_only(subjects: Any) -> None:
    predict(1)
    erasure = forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")
    erasure.reason = "something else"
    with pytest.raises(AppendOnlyError):
        erasure.save()
    with pytest.raises(AppendOnlyError):
        erasure.delete()


def test_forgetting_needs_the_subject_key(subjects: Any, settings: Any) -> None:
    predict(1)
    settings.ML_AUDIT = {}
    with pytest.raises(ConfigurationError, match="SUBJECT_KEY"):
        forget_subject(ALICE, tenant="acme", reason="request", erased_by="dpo")


# ----------------------------------------------------------------------------- the command


def forget(*args: str, stdin: str | None = None, monkeypatch: Any = None) -> str:
    out = io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command("ml_audit_forget", *args, stdout=out)
    return out.getvalue()


def test_the_command_forgets_and_says_what_it_did(subjects: Any) -> None:
    ref = predict(1).subject_ref
    predict(2)
    out = forget(
        "--subject", ALICE, "--tenant", "acme", "--reason", "Art. 17", "--reference", "T-9",
        "--by", "alice-dpo",
    )  # fmt: skip
    erasure = SubjectErasure.objects.get()
    assert f"Forgot subject {ref[:16]}… in tenant 'acme'" in out
    assert "2 stored predictions named it" in out
    assert str(erasure.pk) in out
    assert ALICE not in out
    assert (erasure.erased_by, erasure.reference, erasure.predictions) == ("alice-dpo", "T-9", 2)


def test_the_command_reads_the_identifier_from_stdin(
    subjects: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    predict(1)
    out = forget(
        "--subject", "-", "--tenant", "acme", "--reason", "r", "--json",
        stdin=f"{ALICE}\n", monkeypatch=monkeypatch,
    )  # fmt: skip
    data = json.loads(out)
    assert data["predictions"] == 1
    assert data["tenant"] == "acme"
    assert subject_ref(ALICE, tenant="acme") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject", BOB, "--tenant", "acme"], "no key is stored"),
        (["--subject", ALICE], "no key is stored"),  # no tenant: another subject
        (["--subject", ""], "subject: must not be empty"),
    ],
)
def test_the_command_refuses_with_a_clear_error(
    subjects: Any, args: list[str], message: str
) -> None:
    predict(1)
    with pytest.raises(CommandError, match=f"nothing was forgotten: .*{message}"):
        forget(*args, "--reason", "r")
    assert not SubjectErasure.objects.exists()
    assert SubjectKey.objects.count() == 1


def test_the_command_refuses_under_a_hold(subjects: Any) -> None:
    event = predict(1)
    place_hold(reason="L", created_by="c", prediction_ids=[event.prediction_id])
    with pytest.raises(CommandError, match="legal hold"):
        forget("--subject", ALICE, "--tenant", "acme", "--reason", "r")
    assert not SubjectErasure.objects.exists()


def test_the_command_exits_non_zero_from_the_shell(subjects: Any, tmp_path: Any) -> None:
    """A CommandError is exit status 1 when run as ``manage.py``."""
    with pytest.raises(SystemExit) as info:
        from django.core.management import ManagementUtility

        ManagementUtility(
            ["manage.py", "ml_audit_forget", "--subject", BOB, "--reason", "r"]
        ).execute()
    assert info.value.code == 1
