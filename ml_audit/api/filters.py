"""Query parameters of ``GET predictions/`` and ``GET models/`` (django-filter FilterSets).

Every parameter is validated: a value that cannot be read (``min_confidence=abc``,
``time_from=garbage``, ``has_explanation=maybe``, ``status=bogus``, ``min_confidence=2``: a
confidence is between 0 and 1) is a 400 whose body names the parameter, never a silently
ignored filter; so is a parameter the endpoint does not know (``model=`` for ``model_name=``,
see :mod:`ml_audit.api.views`).

``time_from`` / ``time_to`` take an ISO 8601 datetime, with or without a UTC offset
(``2026-03-03T10:00:00Z``, ``2026-03-03T10:00:00+02:00``, ``2026-03-03T10:00``), or a date
(``2026-03-03``). A value without an offset is read in UTC, whatever ``TIME_ZONE`` says, so a
query means the same thing on every server. ``time_from`` is inclusive; ``time_to`` is
inclusive for a datetime and covers the whole day for a date. In a query string an unencoded
``+`` arrives as a space; ``10:00:00 02:00`` is therefore read as ``10:00:00+02:00``.

``trace_id`` accepts what ``record_prediction_event(trace_id=...)`` accepts: a W3C trace id
(32 hex digits) matches the stored trace id, anything else (an ``X-Request-ID``) the stored
correlation id.

``subject`` takes a subject reference (64 hex digits, as the API shows it in ``subject_ref``;
upper case is read as lower case), never a subject's identifier: anything else is a 400, so that
an identifier sent by mistake is refused rather than quietly matching nothing.
``review_action`` (a :class:`~ml_audit.decision_models.ReviewAction` value), ``has_override``
and ``has_outcome`` keep the predictions that have at least one such review, an override, or
an observed outcome (``false``: none). An override counts whatever came after it: it is in the
history, and ``effective_outcome`` is the latest override's.

Each of those is one indexed probe per candidate prediction (migration 0010's indexes): the
subject's partial ``(subject_ref, timestamp)`` index, an ``EXISTS`` on the review's
``(action, prediction)`` index, or on the outcome's ``(prediction, observed_at)`` index.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

import django_filters  # type: ignore[import-untyped]
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet

from ml_audit.decision_models import Outcome, Review, ReviewAction
from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor
from ml_audit.records import split_trace_reference

__all__ = [
    "ModelVersionFilterSet",
    "PredictionEventFilterSet",
    "names_no_filter",
    "parameter_names",
]

_SPACE_FOR_PLUS = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)$")


class TimeBoundField(forms.Field):
    """An ISO 8601 datetime (naive values read in UTC) or a date, kept as given."""

    default_error_messages = {
        "invalid": "Enter an ISO 8601 datetime (e.g. 2026-03-03T10:00:00Z) or a date (2026-03-03)."
    }

    def to_python(self, value: Any) -> dt.datetime | dt.date | None:
        if value in self.empty_values:
            return None
        text = _SPACE_FOR_PLUS.sub(r"\1+\2", str(value).strip())
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            # Databases compare in UTC; a bound that has no UTC value (year 1 at +01:00)
            # would fail inside the query, after validation.
            parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        return parsed


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


class TimeFromFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = TimeBoundField

    def filter(self, qs: QuerySet[Any], value: dt.datetime | dt.date | None) -> QuerySet[Any]:
        if value is None:
            return qs
        if not isinstance(value, dt.datetime):
            value = _day_start(value)
        return qs.filter(timestamp__gte=value)


class TimeToFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = TimeBoundField

    def filter(self, qs: QuerySet[Any], value: dt.datetime | dt.date | None) -> QuerySet[Any]:
        if value is None:
            return qs
        if isinstance(value, dt.datetime):
            return qs.filter(timestamp__lte=value)
        if value == dt.date.max:
            return qs  # the whole of 9999-12-31: every representable timestamp
        return qs.filter(timestamp__lt=_day_start(value) + dt.timedelta(days=1))


class StrictBooleanField(forms.Field):
    """``true``/``false`` (or ``1``/``0``); anything else is invalid, not "no filter"."""

    widget = forms.TextInput
    default_error_messages = {"invalid": "Enter true or false."}
    _VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: Any) -> bool | None:
        if value in self.empty_values:
            return None
        try:
            return self._VALUES[str(value).strip().lower()]
        except KeyError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class FiniteNumberFilter(django_filters.NumberFilter):  # type: ignore[misc]
    """A float; ``NaN``, ``inf`` and values beyond the float range are invalid."""

    field_class = forms.FloatField


class ConfidenceBoundFilter(FiniteNumberFilter):
    """A bound on ``confidence``: a float between 0 and 1 inclusive, the only confidences
    ``record_prediction_event`` stores (``min_confidence=2`` is a 400, not an empty list)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0.0)
        kwargs.setdefault("max_value", 1.0)
        super().__init__(*args, **kwargs)


class HasExplanationFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = StrictBooleanField

    def filter(self, qs: QuerySet[Any], value: bool | None) -> QuerySet[Any]:
        if value is None:
            return qs
        exists = Exists(Explanation.objects.filter(prediction=OuterRef("pk")))
        return qs.filter(exists if value else ~exists)


class _ExistsFilter(django_filters.Filter):  # type: ignore[misc]
    """``true``: the predictions with at least one row of :meth:`related` (``false``: none)."""

    field_class = StrictBooleanField

    def related(self) -> QuerySet[Any]:
        raise NotImplementedError

    def filter(self, qs: QuerySet[Any], value: bool | None) -> QuerySet[Any]:
        if value is None:
            return qs
        exists = Exists(self.related().filter(prediction=OuterRef("pk")))
        return qs.filter(exists if value else ~exists)


class HasOverrideFilter(_ExistsFilter):
    def related(self) -> QuerySet[Any]:
        return Review.objects.filter(action=ReviewAction.OVERRIDE)


class HasOutcomeFilter(_ExistsFilter):
    def related(self) -> QuerySet[Any]:
        return Outcome.objects.all()


class ReviewActionFilter(django_filters.ChoiceFilter):  # type: ignore[misc]
    """The predictions with at least one review of this action."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("choices", ReviewAction.choices)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet[Any], value: str | None) -> QuerySet[Any]:
        if not value:
            return qs
        reviews = Review.objects.filter(action=value, prediction=OuterRef("pk"))
        return qs.filter(Exists(reviews))


_SUBJECT_REF = re.compile(r"[0-9a-fA-F]{64}")


class SubjectReferenceField(forms.CharField):
    """A subject reference: 64 hex digits (read in lower case, as they are stored)."""

    default_error_messages = {
        "invalid": "Enter a subject reference (64 hex digits), not a subject's identifier."
    }

    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        if not text:
            return None
        if _SUBJECT_REF.fullmatch(text) is None:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return text.lower()


class SubjectFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = SubjectReferenceField

    def filter(self, qs: QuerySet[Any], value: str | None) -> QuerySet[Any]:
        if value is None:
            return qs
        return qs.filter(subject_ref=value)


class TraceReferenceField(forms.CharField):
    """A trace reference, split like ``record_prediction_event`` splits it."""

    def to_python(self, value: Any) -> tuple[str, str] | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        try:
            return split_trace_reference(text)
        except ValueError as exc:  # InvalidRecord: too long, control characters...
            raise ValidationError(str(exc), code="invalid") from None


class TraceReferenceFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = TraceReferenceField

    def filter(self, qs: QuerySet[Any], value: tuple[str, str] | None) -> QuerySet[Any]:
        if value is None:
            return qs
        trace_id, correlation_id = value
        if trace_id:
            return qs.filter(trace_id=trace_id)
        return qs.filter(correlation_id=correlation_id)


class _CachedFormFilterSet(django_filters.FilterSet):  # type: ignore[misc]
    """A FilterSet whose form class is built once per class rather than on every request.

    django-filter builds a new form class from the filters of each FilterSet instance. Every
    filter here is declared on the class, and none takes its choices or its queryset from the
    request, so the form class is the same every time; Django deep-copies a form's fields for
    each form instance, so sharing the class shares nothing mutable.
    """

    _form_classes: dict[type[Any], type[forms.Form]] = {}

    def get_form_class(self) -> type[forms.Form]:
        cls = type(self)
        form_class = _CachedFormFilterSet._form_classes.get(cls)
        if form_class is None:
            form_class = super().get_form_class()
            _CachedFormFilterSet._form_classes[cls] = form_class
        return form_class


def names_no_filter(filterset_class: type[Any], query: Any) -> bool:
    """Whether the query parameters ``query`` name none of ``filterset_class``'s filters (so
    that the FilterSet would leave the queryset unchanged).

    Only for FilterSets whose filters each read the one parameter of their own name: a filter
    with a multi-part widget (``RangeFilter``'s ``_min``/``_max``) makes this ``False``.
    """
    names = _single_parameter_names(filterset_class)
    return names is not None and not any(name in query for name in names)


def parameter_names(filterset_class: type[Any]) -> frozenset[str]:
    """Every query parameter ``filterset_class`` reads: each filter's name, or for a filter
    with a multi-part widget the names of its parts (``RangeFilter`` ``price``:
    ``price_min``, ``price_max``)."""
    return _filter_parameters(filterset_class)[0]


_parameter_names: dict[type[Any], tuple[frozenset[str], bool]] = {}


def _filter_parameters(filterset_class: type[Any]) -> tuple[frozenset[str], bool]:
    """(every parameter name, whether each filter reads exactly its own name)."""
    found = _parameter_names.get(filterset_class)
    if found is None:
        names: set[str] = set()
        single = True
        for name, filter_ in filterset_class.base_filters.items():
            # The field of a throw-away copy: a filter caches its field, and the class's
            # filters are deep-copied for every FilterSet instance.
            widget = copy.deepcopy(filter_).field.widget
            if isinstance(widget, forms.MultiWidget):
                single = False
                names.update(_widget_parameters(name, widget))
            else:
                names.add(name)
        found = _parameter_names[filterset_class] = (frozenset(names), single)
    return found


def _widget_parameters(name: str, widget: forms.MultiWidget) -> list[str]:
    suffixes = getattr(widget, "suffixes", None)
    if suffixes is not None and hasattr(widget, "suffixed"):  # django-filter's widgets
        return [str(widget.suffixed(name, suffix)) for suffix in suffixes]
    return [f"{name}{suffix}" for suffix in getattr(widget, "widgets_names", ())]


def _single_parameter_names(filterset_class: type[Any]) -> frozenset[str] | None:
    names, single = _filter_parameters(filterset_class)
    return names if single else None


class PredictionEventFilterSet(_CachedFormFilterSet):
    """The filters of ``GET predictions/``; every one is an exact match unless noted."""

    model_name = django_filters.CharFilter(field_name="model__model_name")
    model_version = django_filters.CharFilter(field_name="model__version")
    actor_type = django_filters.ChoiceFilter(
        field_name="actor__actor_type", choices=RequestingActor.ActorType.choices
    )
    actor_id = django_filters.CharFilter(field_name="actor__actor_id")
    tenant_id = django_filters.CharFilter(field_name="tenant_id")
    time_from = TimeFromFilter()
    time_to = TimeToFilter()
    decision_outcome = django_filters.CharFilter(field_name="decision_outcome")
    environment = django_filters.CharFilter(field_name="environment")
    has_explanation = HasExplanationFilter()
    status = django_filters.ChoiceFilter(
        field_name="status", choices=PredictionEvent.Status.choices
    )
    min_confidence = ConfidenceBoundFilter(field_name="confidence", lookup_expr="gte")
    max_confidence = ConfidenceBoundFilter(field_name="confidence", lookup_expr="lte")
    trace_id = TraceReferenceFilter()
    prediction_id = django_filters.CharFilter(field_name="prediction_id")
    subject = SubjectFilter()
    review_action = ReviewActionFilter()
    has_override = HasOverrideFilter()
    has_outcome = HasOutcomeFilter()

    class Meta:
        model = PredictionEvent
        fields: list[str] = []


class ModelVersionFilterSet(_CachedFormFilterSet):
    """The filters of ``GET models/``: ``model_name``, ``version``, ``framework`` (exact)."""

    model_name = django_filters.CharFilter(field_name="model_name")
    version = django_filters.CharFilter(field_name="version")
    framework = django_filters.CharFilter(field_name="framework")

    class Meta:
        model = ModelVersion
        fields: list[str] = []
