"""Records of one ingest request → rows, through the writers every other record goes through.

Predictions: one :func:`ml_audit.store.write_many` call for the request (one transaction,
content hashes computed there), so that a request is written whole or not at all. The
writer's per-record outcomes say what happened to each span: stored, an identical duplicate
(a retry: success), or a conflict (same ``prediction_id``, other content: refused).

Explanations: :func:`ml_audit.store.append_explanation` each, after the predictions (an
explanation may explain a prediction of the same request); the prediction must be stored and
of a tenant the service may write.

Database errors: one the connection caused (``OperationalError``, ``InterfaceError``: the
database is down, restarting, locked) raises :class:`Unavailable`, which the view answers
503 with ``Retry-After`` so that the sender retries the whole request (what was written is
found again as duplicates). Any other database error refuses records, not the request: the
batch is written again one record at a time, and a record the database refuses on its own is
reported as rejected, with the database's message.
"""

from __future__ import annotations

import dataclasses
import logging

from django.db import DatabaseError

from ml_audit import store
from ml_audit.conf import resolve_alias
from ml_audit.ingest.auth import Sender
from ml_audit.ingest.records import Explained
from ml_audit.models import PredictionEvent
from ml_audit.otel.writes import is_connection_error, run_untraced
from ml_audit.records import PredictionRecord

__all__ = ["Tally", "Unavailable", "write_explanations", "write_predictions"]

logger = logging.getLogger("ml_audit.ingest")


class Unavailable(Exception):
    """The database cannot take the request now (the view answers 503 + Retry-After)."""


@dataclasses.dataclass
class Tally:
    """What became of a request's audit spans."""

    stored: int = 0
    duplicates: int = 0
    #: One message per refused span.
    rejected: list[str] = dataclasses.field(default_factory=list)


def write_predictions(records: list[PredictionRecord], tally: Tally, *, using: str | None) -> None:
    """Write ``records`` and count their outcomes into ``tally``."""
    if not records:
        return
    try:
        outcomes = run_untraced(store.write_many, records, using=using).outcomes
    except DatabaseError as exc:
        if is_connection_error(exc):
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
        logger.warning(
            "ml_audit: the database refused a batch of %d ingested predictions (%s: %s); "
            "writing them one by one",
            len(records),
            type(exc).__name__,
            exc,
        )
        outcomes = []
        for record in records:
            try:
                outcomes.extend(run_untraced(store.write_many, [record], using=using).outcomes)
            except DatabaseError as one:
                if is_connection_error(one):
                    raise Unavailable(f"{type(one).__name__}: {one}") from one
                logger.error(
                    "ml_audit: ingested prediction %s refused by the database (%s: %s)",
                    record.prediction_id,
                    type(one).__name__,
                    one,
                )
                tally.rejected.append(
                    f"prediction {record.prediction_id!r}: the database refused it "
                    f"({type(one).__name__})"
                )
    for outcome in outcomes:
        if outcome.conflict is not None:
            fields = ", ".join(outcome.conflict.fields) or "unknown fields"
            tally.rejected.append(
                f"prediction {outcome.record.prediction_id!r}: already stored with different "
                f"content (differs in: {fields}); a new prediction needs a new prediction_id"
            )
        elif outcome.created:
            tally.stored += 1
        else:
            tally.duplicates += 1


def write_explanations(
    items: list[Explained], sender: Sender, tally: Tally, *, using: str | None
) -> None:
    """Append each explanation to its stored prediction's; count the outcomes."""
    if not items:
        return
    alias = resolve_alias(using)
    try:
        predictions = {
            row.prediction_id: row
            for row in PredictionEvent.objects.using(alias)
            .filter(prediction_id__in={item.prediction_id for item in items})
            .only("id", "prediction_id", "tenant_id")
        }
    except DatabaseError as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
    for item in items:
        prediction = predictions.get(item.prediction_id)
        if prediction is None:
            tally.rejected.append(
                f"explanation of {item.prediction_id!r}: no such prediction is stored (send "
                "its prediction span first, or in the same request)"
            )
            continue
        if not sender.may_write(prediction.tenant_id):
            tally.rejected.append(
                f"explanation of {item.prediction_id!r}: service {sender.service!r} may not "
                "write the prediction's tenant"
            )
            continue
        try:
            _, written = run_untraced(
                store.append_explanation, prediction, item.record, using=alias
            )
        except DatabaseError as exc:
            if is_connection_error(exc):
                raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
            logger.error(
                "ml_audit: ingested explanation of %s refused by the database (%s: %s)",
                item.prediction_id,
                type(exc).__name__,
                exc,
            )
            tally.rejected.append(
                f"explanation of {item.prediction_id!r}: the database refused it "
                f"({type(exc).__name__})"
            )
            continue
        if written:
            tally.stored += 1
        else:
            tally.duplicates += 1
