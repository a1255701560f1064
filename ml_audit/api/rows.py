"""The API's predictions as plain rows, turned into JSON-ready dicts by plain functions.

:class:`~ml_audit.api.serializers.PredictionEventSerializer` defines the JSON shape of a
prediction (and the OpenAPI schema is generated from it), but a nested ``ModelSerializer``
costs about 0.15 ms per row and builds its fields again on every request. The views therefore
read predictions as ``QuerySet.values()`` dicts (model and actor joined: no model instances),
fetch what hangs off the page's predictions with one query (:func:`related_of`), and build each
prediction's dict here, field by field, exactly as the serializer would: same keys in the same
order, same values (datetimes
formatted by DRF's ``DateTimeField`` rules, ``api_settings.DATETIME_FORMAT`` included, UUIDs as
strings, floats as floats, ``None`` kept). The JSON columns are read as text and decoded here
(orjson when installed, ``json`` for what orjson would read differently), giving what Django's
``JSONField`` gives. ``tests/api/test_fast_paths.py`` holds the two paths to equality.

A list page, a trace and a detail read their predictions (one query), then, in one more
query whatever the page size, everything that hangs off them (:func:`related_of`): every
explanation revision with the reason codes derived from it, every review and every outcome.
That second query is a ``UNION ALL`` of three index scans, one per table, each reading the rows
of the page's predictions only; a row's kind says which columns it fills. One query rather than
three keeps a page-number page (page, count, the rest) within three queries; the union costs
no more than the three scans it is made of.

What the rows give beyond the prediction's own columns:

* ``explanation``: the current (highest) revision, with ``reason_codes``, the codes
  :class:`~ml_audit.decision_models.ReasonCodes` holds for *that* revision (``None`` when none
  were derived from it: codes of an earlier revision do not describe the current one);
* ``reviews``: every review, latest first (``created_at``, then ``id``);
* ``effective_outcome``: the ``final_outcome`` of the latest ``override`` review, else the
  model's ``decision_outcome``;
* ``outcomes``: every observed outcome, latest first (``observed_at``, ``recorded_at``,
  ``id``: the order of ``Outcome``'s ``Meta.ordering``), and ``outcome``, the first of them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.db.models import BooleanField, F, QuerySet, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone
from rest_framework import ISO_8601
from rest_framework import serializers as drf_serializers
from rest_framework.settings import api_settings

from ml_audit.api.access import REQUEST_CONTEXT_FIELDS
from ml_audit.conf import audit_settings
from ml_audit.decision_models import Outcome, Review, ReviewAction
from ml_audit.models import Explanation, PredictionEvent

orjson: Any
try:  # optional accelerator: the ``fast`` extra
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    orjson = None

__all__ = [
    "PREDICTION_VALUES",
    "REQUEST_CONTEXT_VALUES",
    "Related",
    "prediction_values",
    "related_of",
    "row_from_instance",
    "serialize_predictions",
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
    "subject_ref",
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
    return _values_template(using, show_request_context).all()


@functools.lru_cache(maxsize=64)
def _values_template(
    using: str, show_request_context: bool
) -> QuerySet[PredictionEvent, dict[str, Any]]:
    # Resolving 30-odd names through their joins costs about 0.3 ms a request: done once per
    # (alias, shape), and every request works on a clone (the template is never evaluated).
    plain, texts = _value_arguments(show_request_context)
    values: QuerySet[PredictionEvent, dict[str, Any]] = PredictionEvent.objects.using(using).values(
        *plain, **texts
    )
    return values


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


# ----------------------------------------------------------------------------- related rows

_EXPLANATION, _REVIEW, _OUTCOME = 0, 1, 2

#: The columns of :func:`related_of`'s query after ``kind`` and ``prediction_id``, with their
#: type (the same in every branch of the union), and what each kind of row puts in them
#: (explanation revision, review, outcome; ``None``: ``NULL``).
_SLOTS: tuple[tuple[str, type[models.Field[Any, Any]], tuple[str | None, ...]], ...] = (
    ("when", models.DateTimeField, ("generated_at", "created_at", "observed_at")),
    ("then", models.DateTimeField, (None, None, "recorded_at")),
    ("row_id", models.UUIDField, (None, "id", "id")),
    ("number", models.IntegerField, ("revision", None, None)),
    ("a", models.TextField, ("method", "action", "source")),
    ("b", models.TextField, ("method_version", "final_outcome", None)),
    ("c", models.TextField, ("summary_text", "reviewer_type", None)),
    ("d", models.TextField, ("status", "reviewer_id", None)),
    ("e", models.TextField, (None, "reason", None)),
    ("f", models.TextField, (None, "comment", None)),
    # JSON, read as text and decoded by _decode (as the prediction's JSON columns).
    ("json", models.TextField, ("payload", None, "value")),
    # The codes of the revision's ReasonCodes (a LEFT OUTER JOIN: NULL when there are none).
    ("codes", models.TextField, ("reason_codes__codes", None, None)),
)
_JSON_SLOTS = frozenset({"json", "codes"})
_BRANCH_MODELS: tuple[type[models.Model], ...] = (Explanation, Review, Outcome)


class Related:
    """What hangs off one prediction, as :func:`related_of` read it.

    ``revisions`` counts the explanation revisions, ``explanation`` is the current one's row
    (``None`` without any), ``reviews`` and ``outcomes`` their rows, latest first. A row is the
    tuple of :func:`related_of`'s columns.
    """

    __slots__ = ("explanation", "outcomes", "reviews", "revisions")

    def __init__(self) -> None:
        self.revisions = 0
        self.explanation: tuple[Any, ...] | None = None
        self.reviews: list[tuple[Any, ...]] = []
        self.outcomes: list[tuple[Any, ...]] = []


@functools.lru_cache(maxsize=16)
def _related_templates(using: str) -> tuple[QuerySet[Any, Any], ...]:
    """One ``values_list()`` queryset per table, with the union's columns in order (built once
    per alias: every request filters clones)."""
    templates: list[QuerySet[Any, Any]] = []
    for kind, model in enumerate(_BRANCH_MODELS):
        columns: dict[str, Any] = {
            "r_kind": Value(kind, output_field=models.IntegerField()),
            "r_prediction": F("prediction_id"),
        }
        for slot, field_class, sources in _SLOTS:
            source = sources[kind]
            if source is None:
                # Typed, so that every branch of the union has the same column types.
                columns[f"r_{slot}"] = Cast(Value(None), field_class())
            elif slot in _JSON_SLOTS:
                columns[f"r_{slot}"] = Cast(source, TextField())
            else:
                columns[f"r_{slot}"] = F(source)
        queryset = model._default_manager.using(using).order_by().annotate(**columns)
        templates.append(queryset.values_list(*columns))
    return tuple(templates)


def related_of(alias: str, prediction_ids: Sequence[Any]) -> dict[Any, Related]:
    """The explanation revisions (with their reason codes), reviews and outcomes of these
    predictions, in one query (none for an empty page): prediction id -> :class:`Related`,
    for the predictions that have any."""
    if not prediction_ids:
        return {}
    templates = _related_templates(alias)
    if connections[alias].vendor == "postgresql":
        # One array parameter per branch rather than one parameter per id: psycopg parses a
        # long query's placeholders again on every call, which cost ~1.5 ms for 300 of them.
        ids = list(prediction_ids)
        branches = [
            template.filter(
                RawSQL(
                    f'"{model._meta.db_table}"."prediction_id" = ANY(%s)',
                    (ids,),
                    output_field=BooleanField(),
                )
            )
            for model, template in zip(_BRANCH_MODELS, templates, strict=True)
        ]
    else:
        branches = [template.filter(prediction_id__in=prediction_ids) for template in templates]
    union = branches[0].union(*branches[1:], all=True)
    found: dict[Any, Related] = {}
    for row in union:
        related = found.get(row[1])
        if related is None:
            related = found[row[1]] = Related()
        kind = row[0]
        if kind == _EXPLANATION:
            related.revisions += 1
            current = related.explanation
            if current is None or row[5] > current[5]:
                related.explanation = row
        elif kind == _REVIEW:
            related.reviews.append(row)
        else:
            related.outcomes.append(row)
    for related in found.values():
        if len(related.reviews) > 1:  # latest first: created_at, then id
            related.reviews.sort(key=_review_order, reverse=True)
        if len(related.outcomes) > 1:  # latest first: observed_at, recorded_at, id
            related.outcomes.sort(key=_outcome_order, reverse=True)
    return found


def _review_order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (row[2], row[4])


def _outcome_order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (row[2], row[3], row[4])


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


_OVERRIDE = ReviewAction.OVERRIDE.value


def serialize_predictions(
    rows: Iterable[dict[str, Any]],
    related: dict[Any, Related],
    *,
    show_request_context: bool,
) -> list[dict[str, Any]]:
    """What ``PredictionEventSerializer(many=True).data`` gives for these predictions
    (``related``: :func:`related_of` of them)."""
    when = datetime_formatter()
    template = audit_settings.TRACE_URL_TEMPLATE
    result: list[dict[str, Any]] = []
    append = result.append
    nothing = Related()
    for row in rows:
        trace_id = row["trace_id"]
        found = related.get(row["id"], nothing)
        current = found.explanation
        explanation = (
            None
            if current is None
            else {
                "method": current[6],
                "method_version": current[7],
                "payload": _decode(current[12]),
                "summary_text": current[8],
                "status": current[9],
                "generated_at": when(current[2]),
                "revision": int(current[5]),
                "reason_codes": _decode(current[13]),
            }
        )
        decision = row["decision_outcome"]
        effective = None
        reviews = []
        for review in found.reviews:
            if effective is None and review[6] == _OVERRIDE:
                effective = review[7]  # the latest override's (reviews are latest first)
            reviews.append(
                {
                    "id": str(review[4]),
                    "action": review[6],
                    "final_outcome": review[7],
                    "reviewer_type": review[8],
                    "reviewer_id": review[9],
                    "reason": review[10],
                    "comment": review[11],
                    "created_at": when(review[2]),
                }
            )
        outcomes = [
            {
                "value": _decode(outcome[12]),
                "observed_at": when(outcome[2]),
                "source": outcome[6],
                "recorded_at": when(outcome[3]),
            }
            for outcome in found.outcomes
        ]
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
            "subject_ref": row["subject_ref"],
            "features": _json(row, "features"),
            "redaction": _json(row, "redaction"),
            "output": _json(row, "output"),
            "confidence": _float(row["confidence"]),
            "decision_outcome": decision,
            "effective_outcome": decision if effective is None else effective,
            "status": row["status"],
            "error_type": row["error_type"],
            "error_message": row["error_message"],
            "latency_ms": _float(row["latency_ms"]),
            "metadata": _json(row, "metadata"),
            "content_hash": row["content_hash"],
            "input_fingerprint": row["input_fingerprint"],
            "explanation": explanation,
            "explanation_revisions": found.revisions,
            "reviews": reviews,
            "outcome": outcomes[0] if outcomes else None,
            "outcomes": outcomes,
        }
        if show_request_context:
            client_ip = row["client_ip"]
            item["client_ip"] = None if client_ip is None else str(client_ip)
            item["user_agent"] = row["user_agent"]
            item["auth_context"] = _json(row, "auth_context")
        append(item)
    return result
