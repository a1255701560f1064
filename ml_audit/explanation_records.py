"""The explanation of a prediction, as a record: validated, normalised, redacted, hashed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from ml_audit.canonical import RECORD_SCHEMA
from ml_audit.exceptions import InvalidRecord
from ml_audit.normalise import check_payload_size, to_json
from ml_audit.redaction import RedactionPolicy, redact, redact_values
from ml_audit.validation import (
    EXPLANATION_STATUSES,
    MAX_EXPLANATION_METHOD,
    _check_text,
    _check_timestamp,
)

__all__ = ["ExplanationRecord"]


@dataclasses.dataclass(frozen=True)
class ExplanationRecord:
    """One explanation of a prediction (SHAP values, LIME weights, reason codes...).

    ``payload`` is any JSON-normalisable value (usually a mapping). Build it with :meth:`create`.
    """

    method: str
    method_version: str
    payload: Any
    summary_text: str
    status: str
    generated_at: dt.datetime

    @classmethod
    def create(
        cls,
        *,
        method: Any,
        payload: Any,
        summary_text: Any = "",
        method_version: Any = "",
        status: Any = "success",
        generated_at: Any = None,
        naive_datetime_policy: str = "reject",
        max_payload_bytes: int | None = None,
    ) -> ExplanationRecord:
        """Validate and normalise the arguments of ``attach_explanation``."""
        if max_payload_bytes is not None:
            check_payload_size("payload", payload, max_payload_bytes)
            check_payload_size("summary_text", summary_text, max_payload_bytes)
        if status not in EXPLANATION_STATUSES:
            raise InvalidRecord(
                "status", f"must be one of {', '.join(EXPLANATION_STATUSES)}, not {status!r}"
            )
        try:
            when = _check_timestamp(generated_at, naive_datetime_policy)
        except InvalidRecord as exc:
            raise InvalidRecord("generated_at", str(exc).split(": ", 1)[1]) from None
        return cls(
            method=_check_text("method", method, MAX_EXPLANATION_METHOD),
            method_version=_check_text(
                "method_version", method_version or "", 64, allow_empty=True
            ),
            payload=to_json(payload, "payload"),
            summary_text=_check_text(
                "summary_text", summary_text or "", 100_000, allow_empty=True, strip=False
            ),
            status=status,
            generated_at=when,
        )

    def redact(self, policy: RedactionPolicy, *, keys: bool = True) -> ExplanationRecord:
        """A copy whose payload and summary text went through ``policy``: all of it, or with
        ``keys=False`` only its value detectors (an explanation is keyed by feature names, so
        ``{"email": 0.31}`` is a weight, not an address; see ``redact_values``)."""
        scrub = redact if keys else redact_values
        summary = scrub(self.summary_text, policy).value
        return dataclasses.replace(
            self,
            payload=scrub(self.payload, policy).value,
            summary_text=summary if isinstance(summary, str) else "",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the spool's form); :meth:`from_dict` reads them back."""
        return {**self.identity(), "generated_at": self.generated_at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplanationRecord:
        """The record :meth:`to_dict` wrote, validated again as :meth:`create` validates."""
        fields = dict(data)
        generated_at = fields.pop("generated_at")
        if not isinstance(generated_at, str):
            raise InvalidRecord("generated_at", "must be an ISO 8601 string")
        try:
            when = dt.datetime.fromisoformat(generated_at)
        except ValueError:
            raise InvalidRecord("generated_at", f"is not ISO 8601: {generated_at!r}") from None
        return cls.create(**fields, generated_at=when)

    def identity(self) -> dict[str, Any]:
        """What makes two attachments "the same" (``generated_at`` is not part of it)."""
        return {
            "method": self.method,
            "method_version": self.method_version,
            "payload": self.payload,
            "summary_text": self.summary_text,
            "status": self.status,
        }

    def stored_fields(
        self,
        *,
        explanation_id: uuid.UUID,
        prediction_pk: uuid.UUID,
        revision: int,
        created_at: dt.datetime,
    ) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "id": str(explanation_id),
            "prediction": str(prediction_pk),
            "revision": revision,
            **self.identity(),
            "generated_at": self.generated_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "created_at": created_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        }
