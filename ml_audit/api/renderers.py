"""JSON rendering of the API: DRF's ``JSONRenderer`` output, produced by orjson when installed.

:class:`AuditJSONRenderer` is a drop-in subclass of DRF's ``JSONRenderer`` (same media type,
format and settings). With the ``fast`` extra (``pip install "django-ml-audit[fast]"``,
orjson) it encodes with ``orjson.dumps``, about ten times faster than ``json.dumps`` on a page
of predictions; without orjson it *is* DRF's renderer. The bytes are the same as DRF's for
what the API returns (compact separators, UTF-8 rather than ``\\u`` escapes, ``\\u2028`` and
``\\u2029`` escaped, datetimes, dates, times and everything else orjson does not know encoded by
DRF's own ``JSONEncoder.default``); DRF's renderer takes over whenever the request or the
settings ask for something else (``indent``, ``UNICODE_JSON=False``, ``COMPACT_JSON=False``) or
orjson refuses a value (integers beyond 64 bits, non-string dict keys). Two differences remain:
a float below 1e-4 may be written in another notation than Python's (``0.00001`` for
``1e-05``, ``2.5e-7`` for ``2.5e-07``: the same number, parsed back to the same float), and a
NaN or infinite float, which the library's writer never stores (it writes the strings ``"NaN"``
and ``"Infinity"``), would be ``null`` instead of DRF's error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

orjson: Any
try:  # optional accelerator: the ``fast`` extra
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    orjson = None

__all__ = ["AuditJSONRenderer", "orjson_available"]

_DRF_DEFAULT = JSONEncoder().default
_LINE_SEPARATORS = ("\u2028".encode(), "\u2029".encode())


def orjson_available() -> bool:
    return orjson is not None


class AuditJSONRenderer(JSONRenderer):
    """DRF's ``JSONRenderer``, encoding with orjson when it is installed (same output)."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if (
            orjson is None
            or data is None
            or self.ensure_ascii
            or not self.compact
            or self.get_indent(accepted_media_type or "", renderer_context or {}) is not None
        ):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered: bytes = orjson.dumps(
                data,
                default=_DRF_DEFAULT,
                option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS,
            )
        except (TypeError, orjson.JSONEncodeError):
            # What orjson refuses (64-bit overflow, non-string keys...): DRF's way, which
            # either encodes it or raises DRF's own error.
            return super().render(data, accepted_media_type, renderer_context)
        if _LINE_SEPARATORS[0] in rendered or _LINE_SEPARATORS[1] in rendered:
            # DRF escapes these so that the JSON is also valid JavaScript.
            rendered = rendered.replace(_LINE_SEPARATORS[0], b"\\u2028").replace(
                _LINE_SEPARATORS[1], b"\\u2029"
            )
        return rendered
