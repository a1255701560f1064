"""``predictions/{uuid}/reviews/``: the reviews of one prediction, and the API's one write.

- ``GET``: ``{"prediction", "prediction_id", "decision_outcome", "effective_outcome", "count",
  "truncated", "reviews"}``, the reviews latest first, at most ``ML_AUDIT['API_MAX_PAGE_SIZE']``
  of them (``truncated`` says when there were more); ``effective_outcome`` is the latest
  override's ``final_outcome`` over all of them, else the model's ``decision_outcome``. Behind
  the API's read permissions (``ML_AUDIT['API_PERMISSION_CLASSES']``), like every read.
- ``POST`` ``{"action", "final_outcome", "reason", "comment"}`` appends a review by the
  authenticated user (stored as ``("user", username)``: who reviewed comes from the request,
  never from the body; the time is the server's) through
  :func:`~ml_audit.oversight.reviews.record_review`, and answers 201 with the stored review
  (reason and comment as redacted). Behind :class:`CanAddReviews`: an authenticated user
  holding ``ml_audit.add_review``. A session-authenticated request needs its CSRF token, as
  every DRF write.

Both are tenant-scoped like the other reads (:func:`ml_audit.api.access.visible_predictions`):
another tenant's prediction is a 404, exactly like a missing one, and a review is stored with
its prediction's tenant. A body that cannot be used is a 400 naming each offending field
(``{"final_outcome": ["is required for an override: ..."]}``), unknown fields included; the
prediction is looked up first, so an unknown one is a 404 whatever the body. Every request is
access-logged (endpoint ``predictions-reviews``, the prediction's UUID as the returned id of a
successful one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import Http404
from rest_framework import serializers
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ml_audit import store
from ml_audit.api import access, permissions
from ml_audit.api.serializers import ReviewSerializer as DetailReviewSerializer
from ml_audit.api.views import _AuditAPIView
from ml_audit.conf import audit_settings
from ml_audit.decision_models import Review
from ml_audit.exceptions import InvalidRecord
from ml_audit.oversight.reviews import (
    MAX_REVIEW_COMMENT,
    MAX_REVIEW_REASON,
    REVIEW_ACTIONS,
    check_review,
    record_review,
    with_effective_outcome,
)
from ml_audit.validation import MAX_DECISION_OUTCOME

__all__ = [
    "ADD_REVIEW_PERMISSION",
    "CanAddReviews",
    "PredictionReviewsView",
    "RecordedReviewSerializer",
    "ReviewInputSerializer",
    "document_reviews",
]

ADD_REVIEW_PERMISSION = "ml_audit.add_review"
ACCESS_LOG_ENDPOINT = "predictions-reviews"


class CanAddReviews(BasePermission):
    """An authenticated user holding ``ml_audit.add_review``."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and permissions.has_audit_permission(user, ADD_REVIEW_PERMISSION)
        )


class RecordedReviewSerializer(DetailReviewSerializer):
    """A stored review as the prediction detail shows it (reason and comment as redacted),
    with its prediction's UUID, what was redacted, and its span's ids."""

    prediction = serializers.UUIDField(source="prediction_id", read_only=True)

    class Meta(DetailReviewSerializer.Meta):
        fields = (
            *DetailReviewSerializer.Meta.fields,
            "prediction",
            "redaction",
            "trace_id",
            "span_id",
        )
        read_only_fields = fields


class ReviewInputSerializer(serializers.Serializer[Any]):
    """What a ``POST`` may send: an ``override`` needs ``final_outcome``, no other action takes
    one. Any other field is refused (who reviewed and when are not the client's to say)."""

    action = serializers.ChoiceField(choices=REVIEW_ACTIONS)
    final_outcome = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=MAX_DECISION_OUTCOME
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REVIEW_REASON)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REVIEW_COMMENT)

    #: Sent by the browsable API's HTML form, not by a client.
    _IGNORED = frozenset({"csrfmiddlewaretoken"})

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(
                str(k) for k in data if k not in self.fields and k not in self._IGNORED
            )
            if unknown:
                accepted = ", ".join(self.fields)
                message = f"Unknown field. A review accepts: {accepted}."
                raise ValidationError({name: [message] for name in unknown})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            fields = check_review(
                attrs.get("action"),
                attrs.get("final_outcome"),
                attrs.get("reason", ""),
                attrs.get("comment", ""),
            )
        except InvalidRecord as exc:
            raise _field_error(exc) from None
        return {
            "action": fields.action,
            "final_outcome": fields.final_outcome or None,
            "reason": fields.reason,
            "comment": fields.comment,
        }


def _field_error(exc: InvalidRecord) -> ValidationError:
    """``exc`` as a 400 body naming its field."""
    return ValidationError({exc.field: [str(exc).split(": ", 1)[-1]]})


class PredictionReviewsView(_AuditAPIView):
    """The reviews of one prediction, latest first (``GET predictions/{uuid}/reviews/``), with
    the model's decision and the effective outcome (the latest override's, else the model's);
    ``POST`` appends a review by the authenticated user.

    A review's ``action`` is one of ``confirm``, ``override``, ``escalate``,
    ``contest_received`` and ``contest_resolved``. An ``override`` carries the
    ``final_outcome`` that replaces the model's decision (at most 128 characters); no other
    action takes one. ``reason`` (at most 255 characters) and ``comment`` (at most 10,000) are
    stored as redacted by the value detectors. Reading needs the API's read permission;
    posting, ``ml_audit.add_review``. Another tenant's prediction is a 404.
    """

    access_log_predictions = True

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [CanAddReviews()]
        return super().get_permissions()

    def access_log_endpoint(self) -> str:
        return ACCESS_LOG_ENDPOINT

    def record_access(self, request: Request, response: Response) -> None:
        """One ``AccessLog`` row: the prediction's UUID as what a successful request returned
        (its reviews, or the review appended to it)."""
        try:
            user = request.user
        except APIException:  # authentication failed before or while resolving the user
            user = None
        shown = getattr(self, "_shown", None)
        ok = 200 <= response.status_code < 300 and shown is not None
        access.record_access(
            request,
            user=user,
            endpoint=ACCESS_LOG_ENDPOINT,
            status_code=response.status_code,
            returned_ids=[str(shown[0])] if ok and shown is not None else [],
            result_count=shown[1] if ok and shown is not None else 0,
        )

    def _predictions(self, request: Request, pk: str) -> Any:
        return access.visible_predictions(request).filter(pk=pk)

    def get(self, request: Request, pk: str) -> Response:
        found = list(
            with_effective_outcome(self._predictions(request, pk)).values_list(
                "id",
                "prediction_id",
                "decision_outcome",
                "effective_outcome",  # type: ignore[misc]  # an annotation
            )
        )
        if not found:
            raise Http404("No prediction matches the given query.")
        event_id, prediction_id, decision, effective = found[0]
        limit = audit_settings.API_MAX_PAGE_SIZE
        reviews = list(
            Review.objects.using(store.resolve_alias())
            .filter(prediction_id=event_id)
            .order_by("-created_at", "-id")[: limit + 1]
        )
        shown = reviews[:limit]
        self._shown = (event_id, len(shown))
        return Response(
            {
                "prediction": str(event_id),
                "prediction_id": prediction_id,
                "decision_outcome": decision,
                "effective_outcome": effective,
                "count": len(shown),
                "truncated": len(reviews) > limit,
                "reviews": RecordedReviewSerializer(shown, many=True).data,
            }
        )

    def post(self, request: Request, pk: str) -> Response:
        event = (
            self._predictions(request, pk)
            .only("id", "prediction_id", "tenant_id", "trace_id", "span_id", "timestamp")
            .first()
        )
        if event is None:
            raise Http404("No prediction matches the given query.")
        body = ReviewInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            review = record_review(
                event, reviewer=request.user, using=store.resolve_alias(), **body.validated_data
            )
        except InvalidRecord as exc:
            raise _field_error(exc) from None
        self._shown = (event.pk, 1)
        return Response(RecordedReviewSerializer(review).data, status=201)


# --- the OpenAPI document (a drf-spectacular postprocessing hook of ml_audit.api.schema) ----

_STRING = {"type": "string"}
_REVIEW_ACTION = {"type": "string", "enum": list(REVIEW_ACTIONS)}

#: The components of the endpoint's bodies, added to the document's schemas.
REVIEW_COMPONENTS: dict[str, dict[str, Any]] = {
    "ReviewInput": {
        "type": "object",
        "description": "A review to append. An override needs final_outcome; no other action "
        "takes one (null or empty). Any other field is refused.",
        "properties": {
            "action": _REVIEW_ACTION,
            "final_outcome": {
                "type": "string",
                "maxLength": MAX_DECISION_OUTCOME,
                "nullable": True,
            },
            "reason": {"type": "string", "maxLength": MAX_REVIEW_REASON},
            "comment": {"type": "string", "maxLength": MAX_REVIEW_COMMENT},
        },
        "required": ["action"],
        "additionalProperties": False,
    },
    "RecordedReview": {
        "type": "object",
        "description": "A stored review: reason and comment as redacted, redaction saying "
        "which were; trace_id and span_id are its span's.",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "action": _REVIEW_ACTION,
            "final_outcome": {**_STRING, "description": "Empty unless the action is override."},
            "reviewer_type": {
                **_STRING,
                "description": "user (a Django user, by username) or an actor type.",
            },
            "reviewer_id": _STRING,
            "reason": _STRING,
            "comment": _STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "prediction": {"type": "string", "format": "uuid"},
            "redaction": {
                "type": "object",
                "properties": {
                    "policy": _STRING,
                    "paths": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": _STRING},
                    },
                },
            },
            "trace_id": _STRING,
            "span_id": _STRING,
        },
        "required": list(RecordedReviewSerializer.Meta.fields),
    },
    "PredictionReviews": {
        "type": "object",
        "properties": {
            "prediction": {"type": "string", "format": "uuid"},
            "prediction_id": _STRING,
            "decision_outcome": {**_STRING, "description": "The model's decision."},
            "effective_outcome": {
                **_STRING,
                "description": "The latest override's final_outcome, else decision_outcome.",
            },
            "count": {"type": "integer"},
            "truncated": {"type": "boolean"},
            "reviews": {"type": "array", "items": {"$ref": "#/components/schemas/RecordedReview"}},
        },
        "required": [
            "prediction",
            "prediction_id",
            "decision_outcome",
            "effective_outcome",
            "count",
            "truncated",
            "reviews",
        ],
    },
    "ReviewErrors": {
        "type": "object",
        "description": "Each field of the body that cannot be used (unknown ones included), or "
        "each unknown query parameter, with what is wrong with it; a body that is no JSON "
        'object is {"detail": ...} or {"non_field_errors": [...]}.',
        "additionalProperties": {
            "oneOf": [{"type": "array", "items": _STRING}, _STRING],
        },
    },
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def document_reviews(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The bodies of ``GET`` and ``POST predictions/{uuid}/reviews/``, which no serializer
    of the view describes (the view builds them itself)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for path, path_item in result.get("paths", {}).items():
        if not path.endswith("/predictions/{id}/reviews/"):
            continue
        for name, schema in REVIEW_COMPONENTS.items():
            schemas.setdefault(name, schema)
        get = path_item.get("get")
        if get is not None:
            get.setdefault("responses", {})["200"] = {
                "description": "The prediction's reviews, latest first, with the model's "
                "decision and the effective outcome.",
                "content": _json("PredictionReviews"),
            }
        post = path_item.get("post")
        if post is not None:
            post["requestBody"] = {"required": True, "content": _json("ReviewInput")}
            responses = post.setdefault("responses", {})
            responses.pop("200", None)
            responses["201"] = {
                "description": "The review, as stored.",
                "content": _json("RecordedReview"),
            }
            responses["400"] = {
                "description": "A body that cannot be used, or an unknown query parameter.",
                "content": _json("ReviewErrors"),
            }
            responses["403"] = {
                "description": "Not authenticated, not holding ml_audit.add_review, or (with "
                "session authentication) no CSRF token.",
                "content": _json("ApiError"),
            }
    return result
