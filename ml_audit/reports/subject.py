"""A data subject's report: every automated decision about one subject, and why.

What GDPR Art. 15(1)(h) and 22(3) and EU AI Act Art. 86 let a person ask for, gathered from
the audit trail by the subject's pseudonymous reference (``PredictionEvent.subject_ref``):
each decision with its model and version, when it was taken, the inputs as stored (redacted),
the model's decision and the effective one (the latest override's, else the model's), the
observed outcome (the latest), the current explanation with its reason codes in words, and
the reviews and overrides.

:func:`subject_report` builds it as JSON-ready data; :func:`render_html` turns that into a
printable page (template ``ml_audit/report/subject.html``). Both ``manage.py
ml_audit_subject_report`` and the API's ``subjects/{ref}/report/`` use them. Decisions are in
the order they were taken (``timestamp``, then ``id``); reviews and outcomes too. The queries
are bounded: one for a forgotten subject, then per chunk of :data:`CHUNK_SIZE` decisions one
for the decisions and one each for their current explanations (with reason codes), reviews and
outcomes.

Not in the report: who asked for the prediction (the actor, client IP, user agent, auth
context) and its metadata, which are about the requester and the system, not the subject.
See ``docs/subject-report.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.template.loader import render_to_string

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import MLAuditError
from ml_audit.models import (
    Explanation,
    Outcome,
    PredictionEvent,
    Review,
    ReviewAction,
    SubjectErasure,
)

__all__ = [
    "CHUNK_SIZE",
    "REPORT_TEMPLATE",
    "SUBJECT_REF_PATTERN",
    "SubjectForgotten",
    "SubjectNotFound",
    "is_subject_ref",
    "reason_in_words",
    "render_html",
    "subject_report",
]

#: A subject reference: 64 lowercase hex digits (a keyed SHA-256).
SUBJECT_REF_PATTERN = "[0-9a-f]{64}"
_SUBJECT_REF = re.compile(SUBJECT_REF_PATTERN).fullmatch
#: Decisions read (and their explanations, reviews, outcomes prefetched) per round of queries.
CHUNK_SIZE = 500
REPORT_TEMPLATE = "ml_audit/report/subject.html"

#: The fields of a prediction the report shows (never its request context or metadata).
_PREDICTION_FIELDS = (
    "id",
    "prediction_id",
    "timestamp",
    "tenant_id",
    "environment",
    "features",
    "output",
    "confidence",
    "decision_outcome",
    "status",
    "subject_ref",
    "model__model_name",
    "model__version",
)


class SubjectNotFound(MLAuditError, LookupError):
    """No decision about this subject is stored (or visible to the reader)."""


class SubjectForgotten(MLAuditError, LookupError):
    """The subject was forgotten (``ml_audit_forget``): no report is made any more."""

    def __init__(self, message: str, erased_at: dt.datetime) -> None:
        super().__init__(message)
        self.erased_at = erased_at


def is_subject_ref(value: object) -> bool:
    """Whether ``value`` is a well-formed subject reference (64 lowercase hex digits)."""
    return isinstance(value, str) and _SUBJECT_REF(value) is not None


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(dt.UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _current_explanations(alias: str) -> QuerySet[Explanation]:
    """The highest revision of each prediction's explanation, with its reason codes."""
    latest = (
        Explanation.objects.using(alias)
        .filter(prediction_id=OuterRef("prediction_id"))
        .order_by("-revision")
        .values("revision")[:1]
    )
    return (
        Explanation.objects.using(alias)
        .filter(revision=Subquery(latest))
        .select_related("reason_codes")
        .order_by("prediction_id")
    )


def reason_in_words(code: dict[str, Any]) -> str:
    """The sentence a person reads for one stored reason code."""
    text = code.get("text") or ""
    if text:
        return str(text)
    return f"A factor without a reason text configured: the input {code.get('feature', '')!r}"


def _explanation(explanations: list[Explanation]) -> dict[str, Any] | None:
    if not explanations:
        return None
    current = explanations[0]
    try:
        stored = current.reason_codes
    except Explanation.reason_codes.RelatedObjectDoesNotExist:
        stored = None
    reasons = None
    if stored is not None:
        reasons = [
            {
                "code": entry.get("code", ""),
                "text": entry.get("text", ""),
                "feature": entry.get("feature", ""),
                "direction": entry.get("direction", ""),
                "contribution": entry.get("contribution"),
                "in_words": reason_in_words(entry),
            }
            for entry in stored.codes
            if isinstance(entry, dict)
        ]
    return {
        "id": str(current.pk),
        "revision": current.revision,
        "method": current.method,
        "method_version": current.method_version,
        "status": current.status,
        "summary": current.summary_text,
        "generated_at": _iso(current.generated_at),
        "payload": current.payload,
        # None: no reason codes were stored for this revision; []: none counted against.
        "reasons": reasons,
    }


def _review(review: Review) -> dict[str, Any]:
    return {
        "id": str(review.pk),
        "action": review.action,
        "final_outcome": review.final_outcome,
        "reviewer_type": review.reviewer_type,
        "reviewer_id": review.reviewer_id,
        "reason": review.reason,
        "comment": review.comment,
        "created_at": _iso(review.created_at),
    }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "id": str(outcome.pk),
        "value": outcome.value,
        "observed_at": _iso(outcome.observed_at),
        "source": outcome.source,
        "recorded_at": _iso(outcome.recorded_at),
    }


def _decision(event: PredictionEvent) -> dict[str, Any]:
    reviews: list[Review] = getattr(event, "report_reviews", [])
    outcomes: list[Outcome] = getattr(event, "report_outcomes", [])
    overrides = [review for review in reviews if review.action == ReviewAction.OVERRIDE]
    effective = overrides[-1].final_outcome if overrides else event.decision_outcome
    return {
        "id": str(event.pk),
        "prediction_id": event.prediction_id,
        "timestamp": _iso(event.timestamp),
        "model": {"name": event.model.model_name, "version": event.model.version},
        "tenant_id": event.tenant_id,
        "environment": event.environment,
        "status": event.status,
        "inputs": event.features,
        "output": event.output,
        "confidence": event.confidence,
        "model_decision": event.decision_outcome,
        "effective_decision": effective,
        "overridden": bool(overrides),
        "observed_outcome": _outcome(outcomes[-1]) if outcomes else None,
        "outcomes": [_outcome(outcome) for outcome in outcomes],
        "explanation": _explanation(getattr(event, "report_explanations", [])),
        "reviews": [_review(review) for review in reviews],
    }


def _decisions(queryset: QuerySet[PredictionEvent], alias: str) -> Iterable[PredictionEvent]:
    prefetches = (
        Prefetch("explanations", _current_explanations(alias), to_attr="report_explanations"),
        Prefetch(
            "reviews",
            Review.objects.using(alias).order_by("created_at", "id"),
            to_attr="report_reviews",
        ),
        Prefetch(
            "outcomes",
            Outcome.objects.using(alias).order_by("observed_at", "recorded_at", "id"),
            to_attr="report_outcomes",
        ),
    )
    return queryset.prefetch_related(*prefetches).iterator(chunk_size=CHUNK_SIZE)


def subject_report(
    subject_ref: str,
    *,
    predictions: QuerySet[PredictionEvent] | None = None,
    tenants: Iterable[str] | None = None,
    using: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Everything stored about the subject ``subject_ref``, as JSON-ready data.

    ``predictions``: the predictions the reader may see (the API passes its tenant-scoped
    queryset), default every prediction on the audit alias (``using``), narrowed to
    ``tenants`` when given. ``limit``: at most that many decisions, the oldest first, with
    ``truncated`` saying whether there were more.

    Raises :class:`SubjectForgotten` when the subject was forgotten (an erasure of this
    reference in one of ``tenants``, or in any tenant when unscoped), :class:`SubjectNotFound`
    when no decision about it is visible, ``ValueError`` for a malformed reference.
    """
    if not is_subject_ref(subject_ref):
        raise ValueError("a subject reference is 64 lowercase hexadecimal digits")
    if predictions is None:
        predictions = PredictionEvent.objects.using(resolve_alias(using))
    if tenants is not None:
        tenants = frozenset(tenants)
        predictions = predictions.filter(tenant_id__in=tenants)
    alias = predictions.db
    erasures = SubjectErasure.objects.using(alias).filter(subject_ref=subject_ref)
    if tenants is not None:
        erasures = erasures.filter(tenant_id__in=tenants)
    erasure = erasures.order_by("erased_at", "id").first()
    if erasure is not None:
        raise SubjectForgotten(
            f"This subject was forgotten on {erasure.erased_at:%Y-%m-%d}: its decisions can no "
            "longer be linked to a person, and no report is made.",
            erasure.erased_at,
        )
    queryset = (
        predictions.filter(subject_ref=subject_ref)
        .select_related("model")
        .only(*_PREDICTION_FIELDS)
        .order_by("timestamp", "id")
    )
    if limit is not None:
        queryset = queryset[: limit + 1]
    decisions = [_decision(event) for event in _decisions(queryset, alias)]
    if not decisions:
        raise SubjectNotFound("No decision about this subject is stored, or visible to you.")
    truncated = limit is not None and len(decisions) > limit
    if truncated:
        decisions = decisions[:limit]
    return {
        "subject_ref": subject_ref,
        "generated_at": _iso(dt.datetime.now(dt.UTC)),
        "decision_count": len(decisions),
        "truncated": truncated,
        "decisions": decisions,
    }


# --- the printable page ---------------------------------------------------------------------


def _display(value: Any) -> str:
    """A stored value as a person reads it: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(none)"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _when(text: str | None) -> str:
    if not text:
        return ""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(dt.UTC).strftime("%d %B %Y, %H:%M UTC").lstrip("0")


_ACTIONS = {
    ReviewAction.CONFIRM: "Confirmed by a person",
    ReviewAction.OVERRIDE: "Changed by a person",
    ReviewAction.ESCALATE: "Passed on for further review",
    ReviewAction.CONTEST_RECEIVED: "Contested",
    ReviewAction.CONTEST_RESOLVED: "Contest resolved",
}


def _page_decision(decision: dict[str, Any]) -> dict[str, Any]:
    inputs = decision["inputs"]
    pairs = inputs.items() if isinstance(inputs, dict) else [("inputs", inputs)]
    explanation = decision["explanation"]
    observed = decision["observed_outcome"]
    return {
        **decision,
        "when": _when(decision["timestamp"]),
        "input_rows": [(str(name), _display(value)) for name, value in pairs],
        "output_text": _display(decision["output"]),
        "observed_text": _display(observed["value"]) if observed else "",
        "observed_when": _when(observed["observed_at"]) if observed else "",
        "explanation_when": _when(explanation["generated_at"]) if explanation else "",
        "review_rows": [
            {
                **review,
                "what": _ACTIONS.get(review["action"], review["action"]),
                "when": _when(review["created_at"]),
            }
            for review in decision["reviews"]
        ],
    }


def render_html(report: dict[str, Any]) -> str:
    """The report as a printable HTML page: plain-language headings, a print stylesheet, no
    external asset (nothing is fetched when it is opened or printed), every value escaped."""
    context = {
        "report": report,
        "generated_when": _when(report["generated_at"]),
        "decisions": [_page_decision(decision) for decision in report["decisions"]],
    }
    return render_to_string(REPORT_TEMPLATE, context)
