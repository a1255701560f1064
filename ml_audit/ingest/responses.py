"""Response bodies of the ingest endpoint, in the encoding of the request.

Success (200): an ``ExportTraceServiceResponse``; its ``partial_success`` says how many spans
were rejected and why, or (``rejected_spans`` 0) warns of spans that were ignored, as the
OTLP specification allows. Errors (4xx, 5xx): a ``google.rpc.Status`` with the message, as
the specification requires; JSON when the request's content type was not usable.
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ml_audit.ingest.decode import JSON, PROTOBUF

__all__ = ["error_response", "export_response"]

#: gRPC status codes of the HTTP statuses answered (google.rpc.Code).
_GRPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    405: 12,  # UNIMPLEMENTED
    411: 3,
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,
    429: 8,
    503: 14,  # UNAVAILABLE
}


def _body(message: ExportTraceServiceResponse | Status, media: str) -> bytes:
    if media == PROTOBUF:
        return bytes(message.SerializeToString())
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def export_response(media: str, *, rejected: int, message: str) -> HttpResponse:
    """200 with an ``ExportTraceServiceResponse`` (``partial_success`` when there is news)."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return HttpResponse(_body(response, media), content_type=media, status=200)


def error_response(
    status: int,
    message: str,
    *,
    media: str | None,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """``status`` with a ``google.rpc.Status`` body saying ``message``."""
    media = media if media in (PROTOBUF, JSON) else JSON
    body = _body(Status(code=_GRPC_CODES.get(status, 2), message=message), media)
    response = HttpResponse(body, content_type=media, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
