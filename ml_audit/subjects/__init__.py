"""Data subjects: whom a prediction is about, named only by a pseudonymous reference.

>>> record_prediction_event("credit", "3", features, subject="customer-1841", actor=actor)
>>> subject_ref("customer-1841", tenant="acme")          # its reference, or None
>>> forget_subject("customer-1841", tenant="acme", reason="Art. 17 request", erased_by="dpo")

:mod:`ml_audit.subjects.keys` computes references (HMAC-SHA-256 under a per-subject secret,
looked up under ``ML_AUDIT["SUBJECT_KEY"]``) and keeps the secrets' table;
:mod:`ml_audit.subjects.forget` crypto-shreds a subject (``manage.py ml_audit_forget``). The
identifier itself is never stored, exported or logged. See ``docs/subjects.md``.

Importing this package loads no Django models; the functions load them when called.
"""

from __future__ import annotations

from ml_audit.subjects.errors import SubjectHeld, SubjectUnavailable, UnknownSubject
from ml_audit.subjects.forget import forget_subject
from ml_audit.subjects.keys import subject_ref

__all__ = [
    "SubjectHeld",
    "SubjectUnavailable",
    "UnknownSubject",
    "forget_subject",
    "subject_ref",
]
