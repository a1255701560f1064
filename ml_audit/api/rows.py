"""The API's predictions as plain rows, turned into JSON-ready dicts by plain functions.

:class:`~ml_audit.api.serializers.PredictionEventSerializer` defines the JSON shape of a
prediction (and the OpenAPI schema is generated from it), but a nested ``ModelSerializer``
costs about 0.15 ms per row and builds its fields again on every request. The views therefore
read predictions as ``QuerySet.values()`` dicts (model and actor joined: no model instances),
fetch the page's explanations with one query, and build each prediction's dict here, field by
field, exactly as the serializer would: same keys in the same order, same values (datetimes
formatted by DRF's ``DateTimeField`` rules, ``api_settings.DATETIME_FORMAT`` included, UUIDs as
strings, floats as floats, ``None`` kept). The JSON columns are read as text and decoded here
(orjson when installed, ``json`` for what orjson would read differently), giving what Django's
``JSONField`` gives. ``tests/api/test_fast_paths.py`` holds the two paths to equality.

The detail reads its prediction and every explanation revision in one query
(:func:`prediction_with_explanations`); a list page reads its predictions, then the page's
explanations (:func:`explanations_of`): two queries whatever the page size.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from rest_framework import ISO_8601
from rest_framework import serializers as drf_serializers
from rest_framework.settings import api_settings

from ml_audit.api.access import REQUEST_CONTEXT_FIELDS
from ml_audit.conf import audit_settings
from ml_audit.models import Explanation, PredictionEvent

orjson: Any
try:  # optional accelerator: the ``fast`` extra
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    orjson = None

__all__ = [
    "PREDICTION_VALUES",
    "REQUEST_CONTEXT_VALUES",
    "explanations_of",
    "prediction_values",
    "prediction_with_explanations",
    "row_from_instance",
    "serialize_predictions",
    "split_explanations",
]

#: What ``values()`` reads for one prediction (``actor_id`` is the foreign key, ``None`` when
#: the prediction has no actor; ``actor__actor_id`` is the actor's own id).
PREDICTION_VALUES = (
    "id",
    "prediction_id",
    "timestamp",
    "trace_id",
    "span_id",
    "correlation_id",
    "environment",
    "model__model_name",
    "model__version",
    "model__framework",
    "actor_id",
    "actor__actor_type",
    "actor__actor_id",
    "actor__tenant_id",
    "tenant_id",
    "features",
    "redaction",
    "output",
    "confidence",
    "decision_outcome",
    "status",
    "error_type",
    "error_message",
    "latency_ms",
    "metadata",
    "content_hash",
    "input_fingerprint",
)
#: Read only when the request may see them (``show_request_context``).
REQUEST_CONTEXT_VALUES = REQUEST_CONTEXT_FIELDS  # values() names: the same fields

_EXPLANATION_VALUES = (
    "prediction_id",
    "method",
    "method_version",
    "payload",
    "summary_text",
    "status",
    "generated_at",
    "revision",
)

#: prediction id -> (number of revisions, the current revision's values as in
#: ``_EXPLANATION_VALUES``).
Explanations = dict[Any, tuple[int, tuple[Any, ...]]]


#: JSON columns, read as their text (``<name>_text``) and decoded by :func:`_decode`, with
#: orjson when installed: several times faster than the ``json.loads`` of Django's JSONField.
_JSON_VALUES = frozenset({"features", "redaction", "output", "metadata", "auth_context"})
_TEXT = "_text"


def _value_arguments(show_request_context: bool) -> tuple[list[str], dict[str, Any]]:
    names = PREDICTION_VALUES + (REQUEST_CONTEXT_VALUES if show_request_context else ())
    plain = [name for name in names if name not in _JSON_VALUES]
    texts = {name + _TEXT: Cast(name, TextField()) for name in names if name in _JSON_VALUES}
    return plain, texts


def prediction_values(
    using: str, *, show_request_context: bool
) -> QuerySet[PredictionEvent, dict[str, Any]]:
    """Every prediction on database ``using`` as the dicts :func:`serialize_predictions` reads
    (one query, joined); narrow it with ``filter()``."""
    return _values_template(using, show_request_context, False).all()


def prediction_with_explanations(
    using: str, *, show_request_context: bool
) -> QuerySet[PredictionEvent, dict[str, Any]]:
    """:func:`prediction_values` with every explanation revision joined (``LEFT OUTER JOIN``):
    one row per revision, in revision order, or one row without explanation. For one
    prediction, read with :func:`split_explanations`: its row and explanations in one query."""
    return _values_template(using, show_request_context, True).all()


@functools.lru_cache(maxsize=64)
def _values_template(
    using: str, show_request_context: bool, with_explanations: bool
) -> QuerySet[PredictionEvent, dict[str, Any]]:
    # Resolving 30-odd names through their joins costs about 0.3 ms a request: done once per
    # (alias, shape), and every request works on a clone (the template is never evaluated).
    plain, texts = _value_arguments(show_request_context)
    queryset = PredictionEvent.objects.using(using)
    if not with_explanations:
        values: QuerySet[PredictionEvent, dict[str, Any]] = queryset.values(*plain, **texts)
        return values
    joined = tuple(f"explanations__{name}" for name in _EXPLANATION_VALUES[1:])
    joined_values: QuerySet[PredictionEvent, dict[str, Any]] = queryset.values(
        *plain, *joined, **texts
    )
    return joined_values.order_by("explanations__revision")


def _decode(text: str | None) -> Any:
    """What Django's ``JSONField.from_db_value`` gives for this text (no custom decoder)."""
    if text is None:
        return None
    # orjson reads an integer beyond 64 bits as a float; json keeps it exact.
    if orjson is not None and not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # NaN, integers beyond 64 bits...: json's verdict
            pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # as JSONField.from_db_value does


def _json(row: dict[str, Any], name: str) -> Any:
    text = row.get(name + _TEXT, _ABSENT)
    return row[name] if text is _ABSENT else _decode(text)


_ABSENT = object()
_LONG_DIGITS = re.compile(r"\d{19}")


def split_explanations(found: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], Explanations]:
    """The prediction row and the :func:`explanations_of` answer for the rows of one
    prediction read by :func:`prediction_with_explanations`."""
    row = found[0]
    revisions = [r for r in found if r["explanations__revision"] is not None]
    if not revisions:
        return row, {}
    current = revisions[-1]
    values = (row["id"], *(current[f"explanations__{name}"] for name in _EXPLANATION_VALUES[1:]))
    return row, {row["id"]: (len(revisions), values)}


def row_from_instance(event: PredictionEvent, *, show_request_context: bool) -> dict[str, Any]:
    """The :func:`prediction_values` dict of a loaded prediction (``model``/``actor`` loaded)."""
    row = {
        name: getattr(event, name)
        for name in PREDICTION_VALUES + (REQUEST_CONTEXT_VALUES if show_request_context else ())
        if "__" not in name
    }
    model = event.model
    row["model__model_name"], row["model__version"] = model.model_name, model.version
    row["model__framework"] = model.framework
    actor = event.actor
    if actor is not None:
        row["actor__actor_type"], row["actor__actor_id"] = actor.actor_type, actor.actor_id
        row["actor__tenant_id"] = actor.tenant_id
    return row


def explanations_of(alias: str, prediction_ids: Sequence[Any]) -> Explanations:
    """Revision count and current revision of each prediction that has one (one query; none
    for an empty page)."""
    if not prediction_ids:
        return {}
    found: Explanations = {}
    rows = (
        Explanation.objects.using(alias)
        .filter(prediction_id__in=prediction_ids)
        .order_by("prediction_id", "revision")
        .values_list(*_EXPLANATION_VALUES)
    )
    for row in rows:
        previous = found.get(row[0])
        # Ordered by revision: the last one seen is the current one.
        found[row[0]] = (1 if previous is None else previous[0] + 1, row)
    return found


def datetime_formatter() -> Callable[[Any], Any]:
    """DRF's ``DateTimeField().to_representation`` for this request's settings and time zone,
    with a short path for the usual case (ISO 8601, an aware datetime)."""
    field = drf_serializers.DateTimeField()
    output_format = api_settings.DATETIME_FORMAT
    if not (
        settings.USE_TZ and isinstance(output_format, str) and output_format.lower() == ISO_8601
    ):
        return field.to_representation
    zone = timezone.get_current_timezone()

    def iso(value: Any) -> Any:
        if type(value) is not dt.datetime or value.tzinfo is None:
            return field.to_representation(value)
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return iso


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def serialize_predictions(
    rows: Iterable[dict[str, Any]],
    explanations: Explanations,
    *,
    show_request_context: bool,
) -> list[dict[str, Any]]:
    """What ``PredictionEventSerializer(many=True).data`` gives for these predictions."""
    when = datetime_formatter()
    template = audit_settings.TRACE_URL_TEMPLATE
    result: list[dict[str, Any]] = []
    append = result.append
    for row in rows:
        trace_id = row["trace_id"]
        found = explanations.get(row["id"])
        if found is None:
            revisions, explanation = 0, None
        else:
            revisions, current = found
            explanation = {
                "method": current[1],
                "method_version": current[2],
                "payload": current[3],
                "summary_text": current[4],
                "status": current[5],
                "generated_at": when(current[6]),
                "revision": int(current[7]),
            }
        item = {
            "id": str(row["id"]),
            "prediction_id": row["prediction_id"],
            "timestamp": when(row["timestamp"]),
            "trace_id": trace_id,
            "span_id": row["span_id"],
            "correlation_id": row["correlation_id"],
            # ml_audit.conf.trace_url, with the template read once per page.
            "trace_url": template.format(trace_id=trace_id) if template and trace_id else None,
            "environment": row["environment"],
            "model": {
                "model_name": row["model__model_name"],
                "version": row["model__version"],
                "framework": row["model__framework"],
            },
            "actor": None
            if row["actor_id"] is None
            else {
                "type": row["actor__actor_type"],
                "id": row["actor__actor_id"],
                "tenant": row["actor__tenant_id"],
            },
            "tenant_id": row["tenant_id"],
            "features": _json(row, "features"),
            "redaction": _json(row, "redaction"),
            "output": _json(row, "output"),
            "confidence": _float(row["confidence"]),
            "decision_outcome": row["decision_outcome"],
            "status": row["status"],
            "error_type": row["error_type"],
            "error_message": row["error_message"],
            "latency_ms": _float(row["latency_ms"]),
            "metadata": _json(row, "metadata"),
            "content_hash": row["content_hash"],
            "input_fingerprint": row["input_fingerprint"],
            "explanation": explanation,
            "explanation_revisions": revisions,
        }
        if show_request_context:
            client_ip = row["client_ip"]
            item["client_ip"] = None if client_ip is None else str(client_ip)
            item["user_agent"] = row["user_agent"]
            item["auth_context"] = _json(row, "auth_context")
        append(item)
    return result
