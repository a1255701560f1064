"""Forgetting a data subject: crypto-shredding its key, and recording that it happened.

:func:`forget_subject` deletes the subject's :class:`~ml_audit.models.SubjectKey` row and
appends a :class:`~ml_audit.models.SubjectErasure`, in one transaction. The predictions that
named the subject stay as they are (their content hashes and seals too: ``ml_audit_verify``
still passes); their reference just no longer links to anyone.

It is refused while a legal hold in force covers any of the subject's predictions (the link to
the person is part of what the hold preserves; the holds are those of
:mod:`ml_audit.retention.holds`, as for a purge). On PostgreSQL it runs as the purge role
(``ML_AUDIT["PURGE_ROLE"]``, ``SET LOCAL ROLE`` as ``ml_audit_purge`` does) when the connected
role is a member of it: the application role may not delete subject keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.subjects.errors import SubjectHeld, UnknownSubject
from ml_audit.subjects.keys import Subject, forget_cached

if TYPE_CHECKING:
    from ml_audit.models import SubjectErasure

__all__ = ["forget_subject"]

MAX_ERASED_BY = 255
MAX_REFERENCE = 255


def forget_subject(
    identifier: Any,
    *,
    reason: str,
    erased_by: str,
    tenant: Any = "",
    reference: str = "",
    using: str | None = None,
) -> SubjectErasure:
    """Forget the subject ``identifier`` (in ``tenant``): delete its key, record the erasure.

    Returns the appended :class:`~ml_audit.models.SubjectErasure`: the (now unlinkable)
    reference, how many stored predictions named the subject, who, when and why.

    ``reason`` (why: "GDPR Art. 17 request") and ``erased_by`` (who) are required;
    ``reference`` is a request, case or ticket number. Raises
    :class:`~ml_audit.subjects.UnknownSubject` when no key is stored (nothing is written then),
    :class:`~ml_audit.subjects.SubjectHeld` while a legal hold covers any of the subject's
    predictions (nothing is written), ``InvalidRecord`` for bad arguments.
    """
    reason, erased_by, reference = _who_why(reason, erased_by, reference)
    subject = Subject(identifier, tenant)
    alias = resolve_alias(using)
    from ml_audit.models import PredictionEvent, SubjectErasure, SubjectKey
    from ml_audit.retention.holds import active_holds, held_q
    from ml_audit.retention.purge import _as_purge_role

    with transaction.atomic(using=alias), _as_purge_role(alias):
        keys = SubjectKey.objects.using(alias)
        found = list(keys.filter(lookup=subject.lookup).values_list("pk", "secret")[:1])
        # Deleted first: the row is locked until this transaction ends, so a second forget of
        # the subject waits, then deletes nothing and is told so. A refusal below rolls it back.
        if not found or not keys.filter(pk=found[0][0]).delete()[0]:
            raise UnknownSubject(
                "no key is stored for this subject"
                + (f" in tenant {subject.tenant!r}" if subject.tenant else "")
                + ": no prediction named it, or it was forgotten already (a subject is named "
                "per tenant: check --tenant)"
            )
        ref = subject.reference(found[0][1])
        predictions = PredictionEvent.objects.using(alias).filter(subject_ref=ref)
        holds = active_holds(alias)
        held = held_q(holds)
        if held is not None and predictions.filter(held).exists():
            covering = tuple(
                str(hold.pk) for hold in holds if predictions.filter(held_q([hold])).exists()
            )
            raise SubjectHeld(
                f"a legal hold in force covers predictions of this subject (hold "
                f"{', '.join(covering)}); release it before forgetting the subject",
                covering,
            )
        count = predictions.count()
        erasure = SubjectErasure(
            subject_ref=ref,
            tenant_id=subject.tenant,
            predictions=count,
            erased_at=timezone.now(),
            erased_by=erased_by,
            reference=reference,
            reason=reason,
        )
        erasure.save(using=alias)
    forget_cached(alias, subject.lookup)
    return erasure


def _who_why(reason: Any, erased_by: Any, reference: Any) -> tuple[str, str, str]:
    texts = []
    for field, value in (("reason", reason), ("erased_by", erased_by), ("reference", reference)):
        if not isinstance(value, str):
            raise InvalidRecord(field, f"must be a string, not {type(value).__name__}")
        texts.append(value.strip())
    reason, erased_by, reference = texts
    if not reason:
        raise InvalidRecord("reason", "forgetting a subject needs a reason (why)")
    if not erased_by:
        raise InvalidRecord("erased_by", "forgetting a subject needs erased_by (who)")
    for field, value, limit in (
        ("erased_by", erased_by, MAX_ERASED_BY),
        ("reference", reference, MAX_REFERENCE),
    ):
        if len(value) > limit:
            raise InvalidRecord(field, f"is {len(value)} characters long; the limit is {limit}")
    return reason, erased_by, reference
