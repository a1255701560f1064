"""``GET subjects/{subject_ref}/report/``: a data subject's report, as JSON or as a printable
HTML page (:mod:`ml_audit.reports.subject`).

Like every endpoint of the API it answers a write with 405, takes
``ML_AUDIT['API_PERMISSION_CLASSES']`` (by default an authenticated user holding
``ml_audit.view_predictionevent``), refuses unknown query parameters with 400, is scoped to the
request's tenants and is access-logged (``AccessLog.endpoint`` ``subjects-report``, the ids of
the predictions in the report as ``returned_ids``). On top of that it requires
:data:`REPORT_PERMISSIONS`: the report puts a person's decisions, the reviews of them and their
observed outcomes side by side, so a user must be allowed to view each of those kinds of row.

The reference is 64 hex digits (a path that is not one names no endpoint: a JSON 404);
uppercase digits are read as lowercase. A subject without a visible decision is a 404, a
forgotten one (``ml_audit_forget``) a 410. A report holds at most
``ML_AUDIT['API_MAX_PAGE_SIZE']`` decisions, the oldest first (``truncated`` says when there
were more; ``manage.py ml_audit_subject_report`` has no such bound).

JSON is the default; ``?format=html`` or ``Accept: text/html`` (a browser) gives the page,
errors included (a short page saying what went wrong).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import escape
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ml_audit.api.access import allowed_tenants, visible_predictions
from ml_audit.api.permissions import has_audit_permission
from ml_audit.api.views import _AuditAPIView
from ml_audit.conf import audit_settings
from ml_audit.reports.subject import (
    SubjectForgotten,
    SubjectNotFound,
    render_html,
    subject_report,
)

__all__ = [
    "REPORT_PERMISSIONS",
    "SUBJECT_REF_REGEX",
    "CanViewSubjectReports",
    "SubjectGone",
    "SubjectReportHTMLRenderer",
    "SubjectReportView",
]

#: What a subject report needs beyond the API's own permission classes: the view permission
#: of every kind of row it shows (model permissions: no migration).
REPORT_PERMISSIONS = (
    "ml_audit.view_predictionevent",
    "ml_audit.view_review",
    "ml_audit.view_outcome",
)
#: The reference in the URL: 64 hex digits, either case.
SUBJECT_REF_REGEX = "[0-9a-fA-F]{64}"


class CanViewSubjectReports(BasePermission):
    """An authenticated user holding every one of :data:`REPORT_PERMISSIONS`."""

    message = (
        "A subject report needs the permissions ml_audit.view_predictionevent, "
        "ml_audit.view_review and ml_audit.view_outcome."
    )

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and all(has_audit_permission(user, perm) for perm in REPORT_PERMISSIONS)
        )


class SubjectGone(APIException):
    status_code = 410
    default_detail = "This subject was forgotten."
    default_code = "gone"


_ERROR_PAGE = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
    "<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
    "padding:0 1rem;line-height:1.5}}</style></head>"
    "<body><h1>{title}</h1><p>{detail}</p></body></html>\n"
)
_TITLES = {
    400: "The request could not be read",
    401: "Please sign in",
    403: "You may not see this report",
    404: "No report for this person",
    410: "This person was forgotten",
}


class SubjectReportHTMLRenderer(BaseRenderer):
    """The report as the printable page of :func:`ml_audit.reports.subject.render_html`; an
    error as a short page with its message (escaped)."""

    media_type = "text/html"
    format = "html"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        status = getattr(response, "status_code", 200)
        if status < 400 and isinstance(data, dict) and "decisions" in data:
            return render_html(data).encode("utf-8")
        if isinstance(data, dict) and isinstance(data.get("detail"), str):
            detail = data["detail"]
        elif isinstance(data, dict):  # a 400: each parameter with its messages
            detail = "; ".join(
                f"{name}: {' '.join(map(str, _as_list(messages)))}"
                for name, messages in data.items()
            )
        else:
            detail = str(data or "")
        title = _TITLES.get(status, "The report could not be made")
        return _ERROR_PAGE.format(title=escape(title), detail=escape(detail)).encode("utf-8")


class SubjectReportView(_AuditAPIView):
    """Every decision about one data subject, by the subject's pseudonymous reference
    (``GET subjects/{subject_ref}/report/``): each with its model and version, when it was
    made, the inputs as stored (redacted), the model's decision and the effective one (the
    latest override's, else the model's), the observed outcome, the current explanation with
    its reason codes in words, and the reviews and overrides. The oldest decision first.

    JSON by default; ``?format=html`` or ``Accept: text/html`` gives a printable page. Needs,
    beyond the API's permission, ``ml_audit.view_review`` and ``ml_audit.view_outcome``. Only
    the decisions of the tenants the request may read are shown; none visible is a 404, a
    forgotten subject a 410. At most ``ML_AUDIT['API_MAX_PAGE_SIZE']`` decisions
    (``truncated`` says when there were more).
    """

    renderer_classes = (JSONRenderer, SubjectReportHTMLRenderer)
    access_log_resource = "subjects"

    def get_permissions(self) -> list[Any]:
        return [*super().get_permissions(), CanViewSubjectReports()]

    def access_log_endpoint(self) -> str:
        return "subjects-report"

    def access_log_rows(self, data: Any) -> list[Any]:
        return list(data["decisions"])

    def get(self, request: Request, subject_ref: str) -> Response:
        try:
            report = subject_report(
                subject_ref.lower(),
                predictions=visible_predictions(request),
                tenants=allowed_tenants(request),
                limit=audit_settings.API_MAX_PAGE_SIZE,
            )
        except SubjectForgotten as exc:
            raise SubjectGone(str(exc)) from None
        except SubjectNotFound as exc:
            raise NotFound(str(exc)) from None
        return Response(report)


# --- the OpenAPI document (a drf-spectacular postprocessing hook of ml_audit.api.schema) ----

_DATETIME = {"type": "string", "format": "date-time"}
_ANY: dict[str, Any] = {"description": "Any JSON value, as stored."}
_NULLABLE_DATETIME = {**_DATETIME, "nullable": True}

#: The components of the report's JSON body, added to the document's schemas.
REPORT_COMPONENTS: dict[str, dict[str, Any]] = {
    "SubjectReason": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "Empty for a feature without a code."},
            "text": {"type": "string"},
            "feature": {"type": "string"},
            "direction": {"type": "string", "enum": ["+", "-"]},
            "contribution": {"type": "number", "nullable": True},
            "in_words": {"type": "string"},
        },
        "required": ["code", "text", "feature", "direction", "contribution", "in_words"],
    },
    "SubjectExplanation": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "revision": {"type": "integer"},
            "method": {"type": "string"},
            "method_version": {"type": "string"},
            "status": {"type": "string"},
            "summary": {"type": "string"},
            "generated_at": _DATETIME,
            "payload": _ANY,
            "reasons": {
                "type": "array",
                "nullable": True,
                "description": "null: no reason codes were stored for this revision.",
                "items": {"$ref": "#/components/schemas/SubjectReason"},
            },
        },
        "required": ["id", "revision", "method", "status", "generated_at", "reasons"],
    },
    "SubjectReview": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "action": {"type": "string"},
            "final_outcome": {"type": "string"},
            "reviewer_type": {"type": "string"},
            "reviewer_id": {"type": "string"},
            "reason": {"type": "string"},
            "comment": {"type": "string"},
            "created_at": _DATETIME,
        },
        "required": ["id", "action", "final_outcome", "created_at"],
    },
    "SubjectOutcome": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "value": _ANY,
            "observed_at": _DATETIME,
            "source": {"type": "string"},
            "recorded_at": _DATETIME,
        },
        "required": ["id", "value", "observed_at"],
    },
    "SubjectDecision": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "prediction_id": {"type": "string"},
            "timestamp": _DATETIME,
            "model": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                "required": ["name", "version"],
            },
            "tenant_id": {"type": "string"},
            "environment": {"type": "string"},
            "status": {"type": "string"},
            "inputs": _ANY,
            "output": _ANY,
            "confidence": {"type": "number", "nullable": True},
            "model_decision": {"type": "string"},
            "effective_decision": {"type": "string"},
            "overridden": {"type": "boolean"},
            "observed_outcome": {
                "allOf": [{"$ref": "#/components/schemas/SubjectOutcome"}],
                "nullable": True,
            },
            "outcomes": {"type": "array", "items": {"$ref": "#/components/schemas/SubjectOutcome"}},
            "explanation": {
                "allOf": [{"$ref": "#/components/schemas/SubjectExplanation"}],
                "nullable": True,
            },
            "reviews": {"type": "array", "items": {"$ref": "#/components/schemas/SubjectReview"}},
        },
        "required": [
            "id",
            "prediction_id",
            "timestamp",
            "model",
            "model_decision",
            "effective_decision",
            "overridden",
            "observed_outcome",
            "outcomes",
            "explanation",
            "reviews",
        ],
    },
    "SubjectReport": {
        "type": "object",
        "properties": {
            "subject_ref": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "generated_at": _DATETIME,
            "decision_count": {"type": "integer"},
            "truncated": {"type": "boolean"},
            "decisions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/SubjectDecision"},
            },
        },
        "required": ["subject_ref", "generated_at", "decision_count", "truncated", "decisions"],
    },
}


def document_subject_report(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The body of ``GET subjects/{subject_ref}/report/`` (JSON, or the HTML page) and its
    410, which no serializer describes."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for path_item in result.get("paths", {}).values():
        operation = path_item.get("get", {})
        if operation.get("operationId") != "subjects_report_retrieve":
            continue
        for name, schema in REPORT_COMPONENTS.items():
            schemas.setdefault(name, schema)
        responses = operation.setdefault("responses", {})
        responses["200"] = {
            "description": "The report: JSON, or with ?format=html or Accept: text/html a "
            "printable page.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SubjectReport"}},
                "text/html": {"schema": {"type": "string"}},
            },
        }
        error = {"schema": {"$ref": "#/components/schemas/ApiError"}}
        responses["404"] = {
            "description": "No decision about this subject is visible to you.",
            "content": {"application/json": error},
        }
        responses["410"] = {
            "description": "The subject was forgotten (ml_audit_forget): no report is made.",
            "content": {"application/json": error},
        }
    return result


def _as_list(messages: Any) -> list[Any]:
    """A serializer error's messages for one parameter, as a list."""
    return messages if isinstance(messages, list) else [messages]
