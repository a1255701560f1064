"""Reports built from the audit trail: a data subject's report (:mod:`.subject`)."""

from __future__ import annotations

from ml_audit.reports.subject import (
    SubjectForgotten,
    SubjectNotFound,
    is_subject_ref,
    render_html,
    subject_report,
)

__all__ = [
    "SubjectForgotten",
    "SubjectNotFound",
    "is_subject_ref",
    "render_html",
    "subject_report",
]
