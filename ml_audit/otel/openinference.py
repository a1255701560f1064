"""The OpenInference attributes of audit spans: what Arize Phoenix and Arize render.

``ML_AUDIT['SPAN_CONVENTIONS']`` (default ``("ml_audit", "openinference")``) adds these to the
``ml_audit.*`` attributes of prediction and explanation spans. They are a *view* for APMs: the
``ml_audit.*`` attributes stay the contract (the processor persists the record handed over with
the span, :func:`ml_audit.otel.conventions.decode` reads only ``ml_audit.*`` names and ignores
these), and every value here is one the span already carries, redacted, under an ``ml_audit.*``
name, or a constant. The names come from the ``openinference-semantic-conventions`` package.

Prediction spans (written by :func:`ml_audit.otel.conventions.encode`, inline there because it
runs on the caller's thread for every prediction):

- ``openinference.span.kind``: ``CHAIN`` (see :data:`PREDICTION_KIND` for why).
- ``input.value`` / ``input.mime_type`` (payload): the redacted features as JSON, the very
  string of ``ml_audit.features`` (cut alike by ``EXPORT_MAX_ATTRIBUTE_LENGTH``);
  ``application/json``.
- ``output.value`` / ``output.mime_type`` (payload): the redacted output JSON, the string of
  ``ml_audit.output``; left out when the prediction has no output (a failed one).
- ``metadata``: JSON ``{"model", "version", "prediction_id", "decision", "confidence"}``
  (``null`` for an unset decision or confidence).
- ``tag.tags``: ``["ml_audit.prediction", "model:<name>", "decision:<outcome>"]``, no
  decision tag when there is none, plus ``"status:<status>"`` when it is not ``success``.
- ``user.id`` / ``session.id`` (payload): the caller's ``metadata["user_id"]`` /
  ``metadata["session_id"]`` of the redacted metadata, when set (and not masked).

"payload" attributes are left out when ``EXPORT_PAYLOADS`` is off. ``user.id`` and
``session.id`` are never derived from the actor: the actor id is a raw identifier (the
redaction policy does not pseudonymise it), and APMs index these two attributes in views of
their own. A caller who wants Phoenix's user and session views passes values it chose (a
pseudonym, a session key) as ``metadata={"user_id": ..., "session_id": ...}``; they are
exported like the rest of the metadata (after its redaction when ``REDACT_PAYLOADS`` names
``"metadata"``: ``session_id`` is a sensitive key name, so its value is then masked and no
``session.id`` is written, or, in hash mode, pseudonymised and written), strings and integers
only.

Explanation spans (:func:`explanation_attributes`): kind ``TOOL``, ``tool.name`` the method,
``input.value`` the prediction it explains, ``output.value`` the redacted summary text
(``text/plain``; the top attributions as JSON when there is no summary), ``metadata`` and
``tag.tags``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from openinference.semconv.trace import (
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)
from opentelemetry.util.types import AttributeValue

from ml_audit.detectors import PSEUDONYM_PREFIX

__all__ = [
    "EXPLANATION_KIND",
    "JSON",
    "PREDICTION_KIND",
    "REVIEW_KIND",
    "TEXT",
    "TOP_ATTRIBUTIONS",
    "explanation_attributes",
    "prediction_metadata",
    "prediction_tags",
    "top_attributions",
]

# Span kinds. OpenInference's kinds describe the steps of an (LLM) application; none is "a
# classical model's prediction", so the closest in meaning that every OpenInference reader
# renders was chosen:
#: A prediction is CHAIN: OpenInference's general-purpose kind for an application step with an
#: input and an output (here features -> decision). Not LLM or EMBEDDING (no language model, no
#: token counts, no messages), not TOOL (a prediction is not a function an agent calls).
#: OpenInference 0.1.42 added DECISION for hosted "decision model" APIs (typed questions, typed
#: answers); it is recent and older Phoenix and Arize versions show it as UNKNOWN, so not here.
PREDICTION_KIND = OpenInferenceSpanKindValues.CHAIN.value
#: An explanation is TOOL: an explainer (SHAP, LIME, reason codes) run on a prediction is an
#: external function called with an input (the prediction) that returns a result (attributions
#: and a summary); it neither judges the prediction's quality (EVALUATOR) nor guards it.
EXPLANATION_KIND = OpenInferenceSpanKindValues.TOOL.value
#: A (future) human review of a prediction is EVALUATOR: it judges the model's output (agrees,
#: overrides), which is what OpenInference's evaluator spans and annotations carry.
REVIEW_KIND = OpenInferenceSpanKindValues.EVALUATOR.value

JSON = OpenInferenceMimeTypeValues.JSON.value
TEXT = OpenInferenceMimeTypeValues.TEXT.value

SPAN_KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
INPUT_VALUE = SpanAttributes.INPUT_VALUE
INPUT_MIME_TYPE = SpanAttributes.INPUT_MIME_TYPE
OUTPUT_VALUE = SpanAttributes.OUTPUT_VALUE
OUTPUT_MIME_TYPE = SpanAttributes.OUTPUT_MIME_TYPE
METADATA = SpanAttributes.METADATA
TAGS = SpanAttributes.TAG_TAGS
USER_ID = SpanAttributes.USER_ID
SESSION_ID = SpanAttributes.SESSION_ID
TOOL_NAME = SpanAttributes.TOOL_NAME

#: Every name this module writes (what "the OpenInference set is off" must leave out).
NAMES = frozenset(
    {
        SPAN_KIND,
        INPUT_VALUE,
        INPUT_MIME_TYPE,
        OUTPUT_VALUE,
        OUTPUT_MIME_TYPE,
        METADATA,
        TAGS,
        USER_ID,
        SESSION_ID,
        TOOL_NAME,
    }
)

#: How many attributions an explanation span carries (the largest by absolute value).
TOP_ATTRIBUTIONS = 10

#: Metadata keys a caller may set to fill ``user.id`` / ``session.id``.
USER_ID_KEY = "user_id"
SESSION_ID_KEY = "session_id"

_PSEUDONYM_LENGTH = len(PSEUDONYM_PREFIX) + 32  # redaction_policy: prefix + 32 hex digits

_TAG_CACHE_LIMIT = 4096
#: (model name, decision outcome, status) -> tags; encode() reads it directly.
TAG_CACHE: dict[tuple[str, str, str], tuple[str, ...]] = {}


def prediction_tags(model_name: str, decision_outcome: str, status: str) -> tuple[str, ...]:
    """``tag.tags`` of a prediction span (cached: a few distinct values in practice)."""
    key = (model_name, decision_outcome, status)
    tags = TAG_CACHE.get(key)
    if tags is None:
        built = ["ml_audit.prediction", f"model:{model_name}"]
        if decision_outcome:
            built.append(f"decision:{decision_outcome}")
        if status != "success":  # each element costs the SDK time: only the exceptions
            built.append(f"status:{status}")
        tags = tuple(built)
        if len(TAG_CACHE) >= _TAG_CACHE_LIMIT:  # bounded: decision outcomes are caller text
            TAG_CACHE.clear()
        TAG_CACHE[key] = tags
    return tags


def prediction_metadata(
    dumps: Callable[[Any], str],
    model_name: str,
    model_version: str,
    prediction_id: str,
    decision_outcome: str,
    confidence: float | None,
) -> str:
    """``metadata`` of a prediction span: identity and decision, as one JSON object.
    (:func:`ml_audit.otel.conventions.encode` builds the same inline; a test holds them
    equal.)"""
    return dumps(
        {
            "model": model_name,
            "version": model_version,
            "prediction_id": prediction_id,
            "decision": decision_outcome or None,
            "confidence": confidence,
        }
    )


def caller_id(
    metadata: Mapping[str, Any], key: str, max_length: int | None, redaction: Mapping[str, Any]
) -> str | None:
    """``metadata[key]`` of the redacted metadata as ``user.id`` / ``session.id``: a non-empty
    string or an integer, else None. A value the redaction changed is used only when it is a
    pseudonym as a whole (hash mode: stable, so it still groups); a masked one would put every
    prediction in one "user" or "session"."""
    value = metadata.get(key)
    if type(value) is int:
        value = str(value)
    elif type(value) is not str or not value:
        return None
    redacted = key in redaction.get("paths", {}).get("metadata", ())
    if redacted and not (value.startswith(PSEUDONYM_PREFIX) and len(value) == _PSEUDONYM_LENGTH):
        return None
    if max_length is not None and len(value) > max_length:
        return value[: max(0, max_length - 1)] + "…"
    return value


# --- explanations ---------------------------------------------------------------------------

#: Keys under which explanation payloads commonly keep their per-feature numbers.
_ATTRIBUTION_KEYS = (
    "attributions",
    "shap_values",
    "contributions",
    "weights",
    "feature_importances",
    "importances",
    "values",
)
#: Keys naming the feature, and keys holding its number, in a list of per-feature entries.
_NAME_KEYS = ("feature", "name", "feature_name", "key")
_VALUE_KEYS = ("attribution", "value", "weight", "contribution", "shap_value", "importance")


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _pairs(candidate: Any) -> list[tuple[str, int | float]]:
    """(feature, number) pairs of a mapping of numbers or a list of per-feature entries."""
    pairs: list[tuple[str, int | float]] = []
    if isinstance(candidate, Mapping):
        for name, value in candidate.items():
            number = _number(value)
            if number is not None:
                pairs.append((str(name), number))
    elif isinstance(candidate, list):
        for entry in candidate:
            if isinstance(entry, Mapping):
                name = next((entry[k] for k in _NAME_KEYS if k in entry), None)
                number = next(
                    (n for k in _VALUE_KEYS if (n := _number(entry.get(k))) is not None), None
                )
            elif isinstance(entry, list) and len(entry) == 2:
                name, number = entry[0], _number(entry[1])
            else:
                continue
            if isinstance(name, str) and number is not None:
                pairs.append((name, number))
    return pairs


def top_attributions(payload: Any, limit: int = TOP_ATTRIBUTIONS) -> dict[str, Any]:
    """The ``limit`` largest attributions (by absolute value, largest first) of a redacted
    explanation payload: ``{feature: value}``; ``{}`` when no per-feature numbers are found.

    Read from the first of :data:`_ATTRIBUTION_KEYS` the payload has (a mapping of numbers,
    or a list of ``{"feature": ..., "value": ...}`` entries or ``[feature, value]`` pairs),
    else from the payload itself (a mapping of features to numbers, or such a list).
    """
    pairs: list[tuple[str, int | float]] = []
    if isinstance(payload, Mapping):
        for key in _ATTRIBUTION_KEYS:
            if key in payload:
                pairs = _pairs(payload[key])
                if pairs:
                    break
    if not pairs:
        pairs = _pairs(payload)
    pairs.sort(key=lambda pair: abs(pair[1]), reverse=True)  # stable: ties keep their order
    return dict(pairs[:limit])


def explanation_attributes(
    *,
    dumps: Callable[[Any], str],
    cut: Callable[[str], str],
    export_payloads: bool,
    prediction_id: str,
    method: str,
    method_version: str,
    revision: int,
    status: str,
    summary: str | None,
    attributions_json: str | None,
) -> dict[str, AttributeValue]:
    """The OpenInference attributes of an explanation span.

    ``summary`` and ``attributions_json`` are the redacted content as the ``ml_audit.*``
    attributes carry it (already cut; the same strings are reused), ``None`` when there is
    none. Without ``export_payloads`` there is no ``input.value`` / ``output.value``.
    """
    attributes: dict[str, AttributeValue] = {SPAN_KIND: EXPLANATION_KIND, TOOL_NAME: method}
    if export_payloads:
        attributes[INPUT_VALUE] = cut(dumps({"prediction_id": prediction_id}))
        attributes[INPUT_MIME_TYPE] = JSON
        if summary:
            attributes[OUTPUT_VALUE] = summary
            attributes[OUTPUT_MIME_TYPE] = TEXT
        elif attributions_json is not None:
            attributes[OUTPUT_VALUE] = attributions_json
            attributes[OUTPUT_MIME_TYPE] = JSON
    attributes[METADATA] = cut(
        dumps(
            {
                "prediction_id": prediction_id,
                "method": method,
                "method_version": method_version or None,
                "revision": revision,
                "status": status,
            }
        )
    )
    attributes[TAGS] = tuple(
        cut(tag) for tag in ("ml_audit.explanation", f"method:{method}", f"status:{status}")
    )
    return attributes
