"""Request bodies → ``ExportTraceServiceRequest``, as the OTLP/HTTP specification says.

- ``Content-Type``: ``application/x-protobuf`` (the binary protobuf encoding) or
  ``application/json`` (the OTLP JSON mapping: lowerCamelCase field names, trace and span ids
  as hex strings, enums as integers, 64-bit integers as strings or numbers); anything else
  is 415.
- ``Content-Encoding``: none (``identity``) or ``gzip``; anything else is 415.
- Size: the body is at most ``limit`` bytes as sent (``Content-Length`` is checked before
  anything is read, and no more than ``limit + 1`` bytes are ever read) and at most ``limit``
  bytes after decompression, which stops as soon as it would exceed that, so that a gzip bomb
  costs at most ``limit`` bytes of memory: 413.
- A body that is not gzip, protobuf or JSON of an ``ExportTraceServiceRequest`` as it claims:
  400, with what was wrong. Unknown fields are ignored, as the specification requires of
  receivers.

Protobuf messages come from ``opentelemetry-proto``; JSON goes through
``google.protobuf.json_format`` after the hex ids are turned into the base64 that the standard
proto3 JSON mapping expects.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "JSON",
    "PROTOBUF",
    "BodyError",
    "decode_request",
    "decompress",
    "media_type",
    "parse",
    "read_body",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MEDIA_TYPES = (PROTOBUF, JSON)


class BodyError(Exception):
    """The request cannot be decoded; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(request: HttpRequest) -> str:
    """``PROTOBUF`` or ``JSON`` from the request's ``Content-Type``; 415 otherwise."""
    value = str(request.META.get("CONTENT_TYPE", ""))
    media = value.split(";", 1)[0].strip().lower()
    if media not in _MEDIA_TYPES:
        shown = media or "none"
        raise BodyError(
            415,
            f"unsupported Content-Type {shown!r}: send {PROTOBUF} or {JSON} "
            "(OTLP/HTTP protobuf or JSON encoding)",
        )
    return media


def content_encoding(request: HttpRequest) -> str:
    """``""`` or ``"gzip"`` from ``Content-Encoding``; 415 otherwise."""
    value = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if value in ("", "identity"):
        return ""
    if value in ("gzip", "x-gzip"):
        return "gzip"
    raise BodyError(415, f"unsupported Content-Encoding {value!r}: send gzip or no encoding")


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The body as sent, at most ``limit`` bytes (413 past it, without reading on)."""
    length_header = request.META.get("CONTENT_LENGTH", "")
    if not length_header:
        if "chunked" in str(request.META.get("HTTP_TRANSFER_ENCODING", "")).lower():
            return _read_chunked(request, limit)
        return b""
    try:
        length = int(length_header)
    except ValueError:
        raise BodyError(400, f"Content-Length {length_header!r} is not a number") from None
    if length < 0:
        raise BodyError(400, f"Content-Length {length_header!r} is not a number")
    if length > limit:
        raise BodyError(413, f"the body is {length} bytes; this endpoint accepts {limit}")
    body = request.read(limit + 1)
    if len(body) > limit:  # pragma: no cover - the stream is limited to Content-Length
        raise BodyError(413, f"the body is over {limit} bytes")
    if len(body) != length:
        raise BodyError(400, f"the body ended after {len(body)} of {length} bytes")
    return body


def _read_chunked(request: HttpRequest, limit: int) -> bytes:
    """A chunked body (no ``Content-Length``: e.g. the Node.js exporter's gzip stream).

    Django reads no body without a length, so it is read where the server decoded it: the
    WSGI input of a server that says it ends the stream itself (``wsgi.input_terminated``:
    gunicorn, Werkzeug...), or the body an ASGI server handed over. Other servers (Django's
    ``runserver``) cannot: 411, so that the sender learns it, rather than a 200 for spans
    never read.
    """
    stream: Any
    if isinstance(request, WSGIRequest):
        if not request.environ.get("wsgi.input_terminated"):
            raise BodyError(
                411,
                "this server cannot read a chunked body: send a Content-Length (or serve "
                "the endpoint with gunicorn or an ASGI server)",
            )
        stream = request.environ["wsgi.input"]
    else:
        stream = request  # ASGI: the whole body, spooled by Django's handler
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = stream.read(limit + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise BodyError(413, f"the body is over {limit} bytes")
    return b"".join(parts)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded per ``Content-Encoding``, never more than ``limit`` bytes of output."""
    if not encoding:
        return body
    output = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only
        try:
            # max_length bounds what one call may produce: a bomb stops here.
            chunk = inflater.decompress(data, limit + 1 - len(output))
        except zlib.error as exc:
            raise BodyError(400, f"the body is not valid gzip: {exc}") from None
        output += chunk
        if len(output) > limit:
            raise BodyError(413, f"the body is over {limit} bytes once decompressed")
        if not inflater.eof:
            if inflater.unconsumed_tail:  # output was cut at the limit with input left
                raise BodyError(413, f"the body is over {limit} bytes once decompressed")
            raise BodyError(400, "the gzip body is truncated")
        data = inflater.unused_data
        if not data:  # one member (the usual case), or the last of several
            return bytes(output)


def parse(body: bytes, media: str) -> ExportTraceServiceRequest:
    """The ``ExportTraceServiceRequest`` a (decompressed) body encodes; 400 when it is not one."""
    message = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise BodyError(
                400, f"the body is not an OTLP ExportTraceServiceRequest: {exc}"
            ) from None
        return message
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BodyError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BodyError(400, "the JSON body must be an object (an ExportTraceServiceRequest)")
    try:
        _hex_ids_to_base64(data)
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise BodyError(
            400, f"the JSON body is not an OTLP ExportTraceServiceRequest: {exc}"
        ) from None
    return message


def decode_request(request: HttpRequest, limit: int) -> ExportTraceServiceRequest:
    """Content type, encoding, size and message of an ingest request (``BodyError``)."""
    media = media_type(request)
    encoding = content_encoding(request)
    body = read_body(request, limit)
    return parse(decompress(body, encoding, limit), media)


# ---------------------------------------------------------------------------- OTLP JSON ids

_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _items(value: Any, *keys: str) -> list[Any]:
    """The list under the first of ``keys`` in ``value`` ([] when absent; ParseDict reports
    a value of the wrong type)."""
    if not isinstance(value, dict):
        return []
    for key in keys:
        if key in value:
            found = value[key]
            return found if isinstance(found, list) else []
    return []


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """Rewrite the OTLP JSON hex ids of spans and their links as base64, in place."""
    for resource_spans in _items(data, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                if not isinstance(span, dict):
                    continue
                _convert_ids(span)
                for link in _items(span, "links"):
                    if isinstance(link, dict):
                        _convert_ids(link)


def _convert_ids(holder: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        value = holder.get(key)
        if isinstance(value, str) and value:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"{key} {value[:40]!r} is not hex") from None
            holder[key] = base64.b64encode(raw).decode("ascii")
