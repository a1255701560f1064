"""``@audited_prediction``: every call of a Django REST framework view is a recorded prediction.

>>> class ScoreView(GenericAPIView):
...     serializer_class = ApplicationSerializer
...
...     @audited_prediction(
...         model_name="credit_risk",
...         model_version="2.1.0",
...         decision_field="decision",
...         confidence_field="confidence",
...         explanation_builder=explain,
...     )
...     def post(self, request):
...         application = request.ml_audit.features  # the serializer's validated data
...         return Response(model.score(application))

It works on ``APIView``/``ViewSet`` methods and on ``@api_view`` functions (put it *below*
``@api_view``), and is built on :class:`ml_audit.otel.spans.prediction_span`, so the prediction
is a span under the request's span and its row shares the request's trace id.

**Features** (what went in), first that applies:

1. ``features=``: a callable ``(request, *args, **kwargs) -> mapping``;
2. the view's serializer (``serializer_class=`` or the view's ``get_serializer()``): the request
   data is validated *before the model runs* (invalid input is DRF's usual 400, and no
   prediction is recorded because none was made); its ``validated_data`` are the features, and
   the bound serializer is ``request.ml_audit.serializer`` so the view need not validate twice;
3. the request data (``request.data`` when it is a mapping, else the query parameters).

They are redacted like every other prediction's before they reach a span or a row.

**Subject** (whom the prediction is about, see :mod:`ml_audit.subjects`): ``subject_field=``
names a field of the request data (the serializer's validated data when the decorator
validated the request) holding the subject's identifier, or ``subject=`` is a callable
``(request) -> identifier``; absent, ``None`` or ``""`` names no subject. Only the subject's
pseudonymous reference is recorded. When that reference needs the database and it cannot be
reached, the client gets ``503`` (:class:`AuditUnavailable`) under either failure policy,
before the model runs: the reference cannot be made up later, and a record without it would be
missing from the subject's report. The identifier is still in the features if it is one of
them: redact it there (``ML_AUDIT["REDACTION"]``) if it should not be stored.

**Output** is the ``Response``'s data, or the dict the view returned (wrapped in a
``Response``). ``decision_field`` names the output key holding the decision; its value is the
stored ``decision_outcome`` unless ``decision_outcome_field`` names another key;
``confidence_field`` names the key holding ``confidence``. The response gets the prediction's id
in the ``X-Prediction-Id`` header and, when its data is a mapping, under ``"prediction_id"``.

**Failures**: an exception raised by the view marks the prediction ``failed`` and is re-raised
(DRF turns it into its usual response; with :func:`exception_handler` that response also
carries the prediction's id). A response with a status of 400 or above also records
a failed prediction, with type :class:`PredictionNotServed`. The stored error keeps the
exception's type and, for DRF's own exceptions, the status code and error codes; never the
exception's text, which may quote the request body.

**Explanations**: ``explanation_builder(features, output, prediction)`` (0.2.0's convention)
runs once the prediction's record is written, with ``prediction`` the stored
:class:`~ml_audit.models.PredictionEvent` (``None`` when the record went to the spool, see
below). It returns ``None`` (no explanation) or a mapping: the keyword arguments of
:func:`ml_audit.services.attach_explanation` (``method``, ``payload``, optionally
``summary_text``, ``method_version``, ``status``...), where 0.2.0's ``{"payload": ...,
"summary": ...}`` also works (``summary`` is ``summary_text``; ``method`` defaults to
``"auto"``, 0.2.0's).

**When the audit record cannot be written** (database down, writer misconfigured), the setting
``ML_AUDIT['ON_AUDIT_FAILURE']`` decides, or the decorator's ``on_audit_failure=``:

``"fail"`` (default, for regulated use)
    The record is written synchronously before the response; if that fails, the client gets
    ``503`` (:class:`AuditUnavailable`) and not the prediction. The processor still spools the
    record and replays it, because the model did run.
``"serve"``
    The prediction is served; the record is written in ``ML_AUDIT['WRITE_MODE']`` (journal by
    default) and a record that cannot be written is spooled and replayed, and logged. With an
    ``explanation_builder`` the write is synchronous (the explanation needs the row).

Under either policy, an explanation that cannot be written (its prediction's record could not
be written, or its own write failed) is spooled too and replayed after its prediction; the
policy decides only the response.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from django.http import HttpRequest, QueryDict
from rest_framework import status as http_status
from rest_framework.exceptions import APIException
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from ml_audit.actors import actor_from_request
from ml_audit.conf import AUDIT_FAILURE_POLICIES, audit_settings
from ml_audit.exceptions import InvalidRecord, MLAuditError
from ml_audit.otel.setup import get_pipeline
from ml_audit.otel.spans import PredictionSpan, prediction_span
from ml_audit.subjects.errors import SubjectUnavailable

__all__ = [
    "PREDICTION_ID_HEADER",
    "AuditContext",
    "AuditUnavailable",
    "PredictionNotServed",
    "audited_prediction",
    "exception_handler",
]

logger = logging.getLogger("ml_audit.integrations.drf")

F = TypeVar("F", bound=Callable[..., Any])

PREDICTION_ID_HEADER = "X-Prediction-Id"


class AuditUnavailable(APIException):
    """503: the prediction was made but its audit record could not be written, so it is withheld."""

    status_code = http_status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "The prediction could not be recorded in the audit trail, so it is not served. "
        "Try again later."
    )
    default_code = "audit_unavailable"


class PredictionNotServed(MLAuditError):
    """Recorded as the error of a prediction whose view answered with an error status."""


@dataclass
class AuditContext:
    """``request.ml_audit`` while a decorated view runs."""

    #: What is recorded as the prediction's input (before redaction).
    features: Mapping[str, Any]
    #: The bound, validated serializer when the decorator validated the request, else None.
    serializer: BaseSerializer[Any] | None
    #: The prediction being recorded: ``prediction_id``, ``trace_id``, ``add_metadata(...)``.
    prediction: PredictionSpan


def _split_arguments(args: tuple[Any, ...]) -> tuple[Any, Request | HttpRequest]:
    """(view instance or None, request) from a view function's or method's arguments."""
    if args and isinstance(args[0], Request | HttpRequest):
        return None, args[0]
    if len(args) > 1 and isinstance(args[1], Request | HttpRequest):
        return args[0], args[1]
    raise TypeError(
        "@audited_prediction decorates a DRF view method (self, request, ...) or an "
        "@api_view function (request, ...); no request was found in its arguments."
    )


def _request_payload(request: Request | HttpRequest) -> Any:
    """What the client sent: the body (parsed by DRF), or the query parameters of a GET."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        data = getattr(request, "data", None)
        if data is not None:
            return data
    return getattr(request, "query_params", None) or request.GET


def _as_features(payload: Any) -> Mapping[str, Any]:
    """The payload as a features mapping: repeated form or query keys keep every value."""
    if isinstance(payload, QueryDict):
        return {key: values[0] if len(values) == 1 else values for key, values in payload.lists()}
    if isinstance(payload, Mapping):
        return payload
    return {"data": payload}  # e.g. a JSON array body


def _validated_serializer(
    view: Any, request: Request | HttpRequest, serializer_class: type[BaseSerializer[Any]] | None
) -> BaseSerializer[Any] | None:
    data = _request_payload(request)
    if serializer_class is not None:
        context = {"request": request, "view": view}
        serializer: BaseSerializer[Any] = serializer_class(data=data, context=context)
    else:
        get_serializer_class = getattr(view, "get_serializer_class", None)
        if get_serializer_class is None:
            return None
        try:
            get_serializer_class()
        except AssertionError:  # a GenericAPIView without a serializer_class
            return None
        serializer = view.get_serializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer


def _error_message(exc: BaseException) -> str:
    """What is stored of an exception: status and codes for DRF's, nothing for others."""
    if isinstance(exc, APIException):
        codes = exc.get_codes()
        if isinstance(codes, Mapping):
            described = ", ".join(sorted(map(str, codes)))
            return f"HTTP {exc.status_code}; fields: {described}"
        return f"HTTP {exc.status_code}; code: {codes}"
    if isinstance(exc, PredictionNotServed):
        return str(exc)
    return ""


def _field(output: Any, name: str | None) -> Any:
    if name is None or not isinstance(output, Mapping):
        return None
    return output.get(name)


def audited_prediction(
    model_name: str,
    model_version: str,
    environment: str | None = None,
    decision_field: str | None = None,
    confidence_field: str | None = None,
    explanation_builder: Callable[..., Mapping[str, Any] | None] | None = None,
    decision_outcome_field: str | None = None,
    *,
    features: Callable[..., Mapping[str, Any]] | None = None,
    serializer_class: type[BaseSerializer[Any]] | None = None,
    actor: Callable[[Any], Any] | None = None,
    on_audit_failure: str | None = None,
    subject_field: str | None = None,
    subject: Callable[[Any], Any] | None = None,
) -> Callable[[F], F]:
    """Record every call of the decorated DRF view as a prediction (see the module docstring).

    The first seven parameters are 0.2.0's, in its order. ``actor`` is a callable
    ``(request) -> ActorPayload | None`` (default: :func:`ml_audit.actors.actor_from_request`);
    ``environment`` defaults to ``ML_AUDIT['ENVIRONMENT']``; ``on_audit_failure`` overrides
    ``ML_AUDIT['ON_AUDIT_FAILURE']``. ``subject_field`` (a request data field) or ``subject``
    (a callable ``(request) -> identifier``) names the prediction's data subject.
    """
    if on_audit_failure is not None and on_audit_failure not in AUDIT_FAILURE_POLICIES:
        raise ValueError(
            f"on_audit_failure must be one of {', '.join(AUDIT_FAILURE_POLICIES)}, "
            f"not {on_audit_failure!r}"
        )
    for name, value in (
        ("decision_field", decision_field),
        ("confidence_field", confidence_field),
        ("decision_outcome_field", decision_outcome_field),
    ):
        if value is not None and not (isinstance(value, str) and value):
            raise TypeError(f"{name} must be the name of a key of the view's output")
    if subject_field is not None and not (isinstance(subject_field, str) and subject_field):
        raise TypeError("subject_field must be the name of a field of the request data")
    if subject_field is not None and subject is not None:
        raise TypeError("give subject_field or subject, not both")
    if subject is not None and not callable(subject):
        raise TypeError("subject must be a callable (request) -> identifier")
    outcome_field = decision_outcome_field or decision_field

    def decorate(view_func: F) -> F:
        if inspect.iscoroutinefunction(view_func):
            raise TypeError(
                "@audited_prediction decorates synchronous DRF views; for async code use "
                "ml_audit.otel.spans.prediction_span with 'async with'."
            )

        @functools.wraps(view_func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            view, request = _split_arguments(args)
            policy = on_audit_failure or audit_settings.ON_AUDIT_FAILURE
            sync = policy == "fail" or explanation_builder is not None
            serializer = None
            if features is not None:
                inputs = features(request, *args[2 if view is not None else 1 :], **kwargs)
            else:
                serializer = _validated_serializer(view, request, serializer_class)
                inputs = (
                    serializer.validated_data
                    if serializer is not None
                    else _as_features(_request_payload(request))
                )
            named = _subject(request, inputs, serializer, subject_field, subject)
            try:
                span = prediction_span(
                    model_name=model_name,
                    model_version=model_version,
                    features=inputs,
                    actor=(actor or actor_from_request)(request),
                    subject=named,
                    environment=environment,
                    mode="sync" if sync else None,
                    describe_error=_error_message,
                )
            except InvalidRecord as invalid:
                # Input that cannot be audited is not scored: no prediction without a record.
                raise DRFValidationError({invalid.field or "features": [str(invalid)]}) from None
            except SubjectUnavailable as exc:
                # The model has not run: nothing is lost, and nothing is served unrecorded.
                logger.error("ml_audit: the prediction's subject cannot be recorded: %s", exc)
                raise AuditUnavailable() from exc
            handle = span.__enter__()
            request.ml_audit = AuditContext(  # type: ignore[union-attr]
                features=inputs, serializer=serializer, prediction=handle
            )
            try:
                result = view_func(*args, **kwargs)
            except Exception as exc:
                _end(span, exc, policy, handle)
                raise
            response = result if isinstance(result, Response) else Response(result)
            if response.status_code >= 400:
                served = PredictionNotServed(f"the view answered HTTP {response.status_code}")
                _end(span, served, policy, handle)
                return _stamp(response, handle)
            output = response.data
            handle.set_output(
                output,
                confidence=_field(output, confidence_field),
                decision_outcome=_text(_field(output, outcome_field)),
            )
            explain = _Explainer(explanation_builder, inputs, output)
            try:
                written = _end(span, None, policy, handle)
            except AuditUnavailable:
                explain.spool(handle, "its prediction could not be written")
                raise
            if not written:
                explain.spool(handle, "its prediction could not be written")
                return _stamp(response, handle)
            if handle.event is not None:
                explain.attach(handle, policy)
            return _stamp(response, handle)

        return cast(F, wrapper)

    return decorate


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _subject(
    request: Request | HttpRequest,
    inputs: Mapping[str, Any],
    serializer: BaseSerializer[Any] | None,
    field: str | None,
    named_by: Callable[[Any], Any] | None,
) -> Any:
    """The identifier of the prediction's subject, or None (no subject named)."""
    if named_by is not None:
        value = named_by(request)
    elif field is not None:
        source: Any = (
            serializer.validated_data if serializer is not None else _request_payload(request)
        )
        value = source.get(field) if isinstance(source, Mapping) else None
        if value is None and source is not inputs and isinstance(inputs, Mapping):
            value = inputs.get(field)
    else:
        return None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _end(
    span: prediction_span, failure: BaseException | None, policy: str, handle: PredictionSpan
) -> bool:
    """End the prediction's span (persisting it); False when its record could not be written.

    Raises :class:`AuditUnavailable` under the ``"fail"`` policy when a successful prediction
    cannot be recorded; an ``InvalidRecord`` (an output that cannot be stored as given: a bug
    in the view) always propagates, after the failure has been recorded.
    """
    try:
        span.__exit__(type(failure) if failure else None, failure, None)
        return True
    except InvalidRecord:
        raise
    except Exception as exc:
        logger.error(
            "ml_audit: the audit record of prediction %s could not be written (%s: %s); it is "
            "spooled for replay",
            handle.prediction_id,
            type(exc).__name__,
            exc,
        )
        if failure is None and policy == "fail":
            raise AuditUnavailable() from exc
        return False


@dataclass
class _Explainer:
    """The view's ``explanation_builder``, called at most once, and where its explanation goes."""

    builder: Callable[..., Mapping[str, Any] | None] | None
    inputs: Any
    output: Any

    def build(self, prediction: Any) -> Mapping[str, Any] | None:
        if self.builder is None:
            return None
        built = self.builder(self.inputs, self.output, prediction)
        if built is None:
            return None
        if not isinstance(built, Mapping):
            raise TypeError(
                "explanation_builder must return None or a mapping of attach_explanation's "
                f"arguments, not {type(built).__name__}"
            )
        explanation = dict(built)
        if "summary" in explanation and "summary_text" not in explanation:
            explanation["summary_text"] = explanation.pop("summary")  # 0.2.0's key
        explanation.setdefault("method", "auto")
        return explanation

    def spool(self, handle: PredictionSpan, reason: str) -> None:
        """The prediction's record went to the spool: its explanation follows it there."""
        explanation = self.build(None)
        if explanation is not None:
            _spool_explanation(handle, explanation, None, reason)

    def attach(self, handle: PredictionSpan, policy: str) -> None:
        from ml_audit.services import attach_explanation

        explanation = self.build(handle.event)
        if explanation is None:
            return
        try:
            attach_explanation(prediction=handle.event, **explanation)
        except (InvalidRecord, TypeError):
            raise  # the builder returned something attach_explanation refuses: a bug
        except Exception as exc:
            logger.error(
                "ml_audit: the explanation of prediction %s could not be written (%s: %s); it "
                "is spooled for replay",
                handle.prediction_id,
                type(exc).__name__,
                exc,
            )
            _spool_explanation(handle, explanation, handle.event._state.db, exc)
            if policy == "fail":
                raise AuditUnavailable() from exc


def _spool_explanation(
    handle: PredictionSpan, explanation: Mapping[str, Any], using: str | None, reason: object
) -> None:
    from ml_audit.services import explanation_record

    get_pipeline().processor.spool_explanation(
        handle.prediction_id, explanation_record(**explanation), using=using, reason=reason
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, plus the id of the failed prediction the error belongs to.

    Set ``REST_FRAMEWORK["EXCEPTION_HANDLER"] = "ml_audit.integrations.drf.exception_handler"``
    so that a client whose request failed inside an audited view (a 422 from the model, say)
    still learns which audit record to quote.
    """
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    request = context.get("request")
    audit = getattr(request, "ml_audit", None) if request is not None else None
    if response is not None and isinstance(audit, AuditContext):
        _stamp(response, audit.prediction)
    return response


def _stamp(response: Response, handle: PredictionSpan) -> Response:
    """Tell the client which prediction this was."""
    response[PREDICTION_ID_HEADER] = handle.prediction_id
    if isinstance(response.data, Mapping):
        response.data = {**response.data, "prediction_id": handle.prediction_id}
    return response
