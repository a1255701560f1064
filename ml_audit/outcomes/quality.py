"""The quality of a model version, by ISO week: how often its decisions matched what was
observed, how far its numbers were off, how often humans overrode it and how often they were
right to.

One SQL query per report, aggregated in the database (never a row per prediction in Python):
the model version's predictions (through the ``(model, timestamp)`` index), each LEFT JOINed
to its *current* outcome (the latest observed: ``ROW_NUMBER()`` over the outcomes of the
version's predictions) and to its latest override (``ROW_NUMBER()`` over its ``override``
reviews), grouped by the ISO week (Monday, UTC) of the prediction's ``timestamp``.

How an outcome is compared (the outcome's JSON value decides):

- a **string** (or a boolean, read as the text ``true``/``false``) is a *label*: the model was
  right when its ``decision_outcome`` equals it. Predictions without a ``decision_outcome`` are
  not compared. Record outcomes in the model's vocabulary of decisions ("approve"/"deny"
  against "approve"/"deny") for the accuracy to mean something;
- a **number** is compared with the prediction's ``output`` when that is a number too: the
  absolute error, averaged (mean absolute error). An ``output`` that is an object
  (``{"score": 0.7}``) is not compared;
- anything else (an object, a list) counts as an outcome but is compared with nothing.

Per week: ``predictions`` (every prediction of the version that week), ``with_outcome``,
``compared``/``correct``/``accuracy`` (labels), ``numeric``/``mae`` (numbers),
``overridden``/``override_rate`` (predictions with an override review, of all predictions),
``overrides_compared``/``overrides_right``/``override_accuracy`` (overrides whose prediction
has a label outcome, and those whose ``final_outcome`` equals it), and
``effective_compared``/``effective_correct``/``effective_accuracy`` (the decision that stood,
the latest override's else the model's, against the label). Rates are ``None`` when their
denominator is 0.

Tenant scoping: ``tenants`` (``None``: every tenant) narrows the predictions, and through
them their outcomes and reviews. PostgreSQL and SQLite (JSON functions differ); another
database raises ``NotSupportedError``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from django.db import NotSupportedError, connections

from ml_audit import store
from ml_audit.models import ModelVersion

__all__ = ["QualityReport", "WeekQuality", "model_quality"]

#: The counts of a week, in the query's column order (after the week).
COUNTS = (
    "predictions",
    "with_outcome",
    "compared",
    "correct",
    "numeric",
    "overridden",
    "overrides_compared",
    "overrides_right",
    "effective_compared",
    "effective_correct",
)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class WeekQuality:
    """The counts of one ISO week (or of all weeks: ``week`` is ``""``); rates derived."""

    week: str  # "2026-W09"
    week_start: dt.date | None  # its Monday
    predictions: int = 0
    with_outcome: int = 0
    compared: int = 0
    correct: int = 0
    numeric: int = 0
    error_sum: float = 0.0
    overridden: int = 0
    overrides_compared: int = 0
    overrides_right: int = 0
    effective_compared: int = 0
    effective_correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return _rate(self.correct, self.compared)

    @property
    def mae(self) -> float | None:
        return self.error_sum / self.numeric if self.numeric else None

    @property
    def override_rate(self) -> float | None:
        return _rate(self.overridden, self.predictions)

    @property
    def override_accuracy(self) -> float | None:
        return _rate(self.overrides_right, self.overrides_compared)

    @property
    def effective_accuracy(self) -> float | None:
        return _rate(self.effective_correct, self.effective_compared)

    def add(self, other: WeekQuality) -> None:
        for name in (*COUNTS, "error_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("error_sum")
        data["week_start"] = self.week_start.isoformat() if self.week_start else None
        for name in ("accuracy", "mae", "override_rate", "override_accuracy"):
            data[name] = getattr(self, name)
        data["effective_accuracy"] = self.effective_accuracy
        return data


@dataclass
class QualityReport:
    """The quality of one model version: its weeks (oldest first) and their total."""

    model_id: str
    model_name: str
    version: str
    weeks: list[WeekQuality] = field(default_factory=list)
    total: WeekQuality = field(default_factory=lambda: WeekQuality("", None))

    def as_json(self) -> dict[str, Any]:
        return {
            "model": {"id": self.model_id, "model_name": self.model_name, "version": self.version},
            "total": self.total.as_json(),
            "weeks": [week.as_json() for week in self.weeks],
        }


def model_quality(
    model: ModelVersion,
    *,
    tenants: Collection[str] | None = None,
    using: str | None = None,
) -> QualityReport:
    """The :class:`QualityReport` of ``model`` (a :class:`~ml_audit.models.ModelVersion`),
    over the predictions of ``tenants`` (``None``: all); see the module docstring."""
    alias = store.resolve_alias(using)
    report = QualityReport(str(model.pk), model.model_name, model.version)
    if tenants is not None and not tenants:
        return report
    connection = connections[alias]
    sql, params = _query(connection.vendor, tenants)
    model_pk = ModelVersion._meta.pk.get_db_prep_value(model.pk, connection)
    tenant_params = sorted(tenants) if tenants is not None else []
    # The version and the tenants, once per place the predictions are read.
    all_params = [value for _ in range(params) for value in (model_pk, *tenant_params)]
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        rows = cursor.fetchall()
    for row in rows:
        start = _date(row[0])
        iso = start.isocalendar()
        week = WeekQuality(f"{iso.year}-W{iso.week:02d}", start)
        for name, value in zip(COUNTS, row[1:-1], strict=True):
            setattr(week, name, int(value or 0))
        week.error_sum = _float(row[-1])
        report.weeks.append(week)
        report.total.add(week)
    return report


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _float(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, Decimal):
        return float(value)
    return float(value)


# ------------------------------------------------------------------------------ the SQL

#: Per vendor: the Monday of a timestamp's ISO week (UTC); a JSON value's label (its text when
#: it is a string or a boolean, else NULL); its number (when it is a number, else NULL).
_POSTGRES = {
    "week": "(date_trunc('week', p.timestamp AT TIME ZONE 'UTC'))::date",
    "label": "CASE WHEN jsonb_typeof({0}) IN ('string', 'boolean') THEN {0} #>> '{{}}' END",
    "number": "CASE WHEN jsonb_typeof({0}) = 'number' THEN ({0} #>> '{{}}')::numeric END",
}
_SQLITE = {
    "week": "date(p.timestamp, 'weekday 0', '-6 days')",
    "label": (
        "CASE json_type({0}) WHEN 'text' THEN json_extract({0}, '$') "
        "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END"
    ),
    "number": "CASE WHEN json_type({0}) IN ('integer', 'real') THEN json_extract({0}, '$') END",
}


def _query(vendor: str, tenants: Collection[str] | None) -> tuple[str, int]:
    """The report's SQL, and how many times it reads the predictions (each reading takes the
    model version's id and then the tenants as parameters)."""
    if vendor == "postgresql":
        expressions = _POSTGRES
    elif vendor == "sqlite":
        expressions = _SQLITE
    else:
        raise NotSupportedError(
            f"the quality report runs on PostgreSQL and SQLite, not on {vendor}"
        )
    scope = ""
    if tenants is not None:
        scope = f" AND p.tenant_id IN ({', '.join(['%s'] * len(tenants))})"
    predictions = f"p.model_id = %s{scope}"
    label = expressions["label"].format("c.value")
    number = expressions["number"].format("c.value")
    output = expressions["number"].format("p.output")
    week = expressions["week"]
    sql = f"""
WITH current_outcome AS (
    SELECT o.prediction_id, o.value, ROW_NUMBER() OVER (
        PARTITION BY o.prediction_id ORDER BY o.observed_at DESC, o.recorded_at DESC, o.id DESC
    ) AS n
    FROM ml_audit_outcome o JOIN ml_audit_predictionevent p ON p.id = o.prediction_id
    WHERE {predictions}
), latest_override AS (
    SELECT r.prediction_id, r.final_outcome, ROW_NUMBER() OVER (
        PARTITION BY r.prediction_id ORDER BY r.created_at DESC, r.id DESC
    ) AS n
    FROM ml_audit_review r JOIN ml_audit_predictionevent p ON p.id = r.prediction_id
    WHERE r.action = 'override' AND {predictions}
), decided AS (
    SELECT {week} AS week,
        p.decision_outcome AS decision,
        c.prediction_id AS has_outcome,
        {label} AS label,
        {number} AS observed,
        {output} AS predicted,
        v.prediction_id AS has_override,
        v.final_outcome AS override
    FROM ml_audit_predictionevent p
    LEFT JOIN current_outcome c ON c.prediction_id = p.id AND c.n = 1
    LEFT JOIN latest_override v ON v.prediction_id = p.id AND v.n = 1
    WHERE {predictions}
)
SELECT week,
    COUNT(*),
    COUNT(has_outcome),
    SUM(CASE WHEN label IS NOT NULL AND decision <> '' THEN 1 ELSE 0 END),
    SUM(CASE WHEN label IS NOT NULL AND decision <> '' AND decision = label THEN 1 ELSE 0 END),
    SUM(CASE WHEN observed IS NOT NULL AND predicted IS NOT NULL THEN 1 ELSE 0 END),
    COUNT(has_override),
    SUM(CASE WHEN has_override IS NOT NULL AND label IS NOT NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN has_override IS NOT NULL AND override = label THEN 1 ELSE 0 END),
    SUM(CASE WHEN label IS NOT NULL AND COALESCE(override, decision) <> '' THEN 1 ELSE 0 END),
    SUM(CASE WHEN label IS NOT NULL AND COALESCE(override, decision) = label THEN 1 ELSE 0 END),
    SUM(CASE WHEN observed IS NOT NULL AND predicted IS NOT NULL
        THEN ABS(observed - predicted) END)
FROM decided
GROUP BY week
ORDER BY week
"""
    return sql, 3
