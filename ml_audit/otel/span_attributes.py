"""Setting a prediction span's attributes without cleaning them a second time.

``Span.set_attributes`` of the OpenTelemetry SDK cleans every value it is given: type checks,
an ``isinstance(value, Sequence)`` through the ABC machinery for tuples, truncation to the
attribute length limit. For the two dozen attributes of a prediction span that is about
10 µs on the caller's thread, more than the rest of the span. Our values need none of it:
:func:`ml_audit.otel.conventions.encode` builds them from a validated, redacted record, and
they are only ``str``, ``int``, ``float``, ``bool`` or tuples of ``str`` (tested).

:func:`set_span_attributes` therefore puts them into the SDK span's attribute mapping in one
``dict.update`` under the span's and the mapping's locks, but only where that is exactly
what ``set_attributes`` would do:

- the span is the SDK's ``Span`` (or a subclass that keeps its ``set_attributes``), its
  attributes are the SDK's ``BoundedAttributes`` holding a plain ``dict`` (the layout of
  opentelemetry-sdk 1.x); the mapping is mutable and the span has not ended;
- no attribute length limit is configured (``max_value_len`` is None: nothing to truncate);
- the count limit, if any, leaves room for all of them, so nothing is evicted;
- none of the keys is set yet (``set_attributes`` would move such a key to the end).

Anything else (another SDK, a different SDK version's layout, limits in force, a no-op span)
takes the public ``span.set_attributes``. ``tests/otel/test_span_attributes.py`` holds the two
paths equal: same attributes in the same order, same dropped count, for spans with and
without limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from opentelemetry.trace import Span

__all__ = ["set_span_attributes"]

try:  # the SDK is a dependency; its internals are checked at run time below
    from opentelemetry.attributes import BoundedAttributes as _BoundedAttributes
    from opentelemetry.sdk.trace import Span as _SdkSpan
except ImportError:  # pragma: no cover
    _BoundedAttributes = _SdkSpan = None  # type: ignore[assignment,misc]


#: Span classes whose ``set_attributes`` is the SDK ``Span``'s own (its ``_Span`` included).
_SDK_SPAN_TYPES: set[type] = set()


def _is_sdk_span_type(kind: type) -> bool:
    if (
        _SdkSpan is not None
        and issubclass(kind, _SdkSpan)
        and kind.set_attributes is _SdkSpan.set_attributes
    ):
        _SDK_SPAN_TYPES.add(kind)
        return True
    return False


def set_span_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    """``span.set_attributes(attributes)`` for already clean values (see the module)."""
    kind = type(span)
    if kind in _SDK_SPAN_TYPES or _is_sdk_span_type(kind):
        sdk_span = cast("_SdkSpan", span)
        bounded = getattr(sdk_span, "_attributes", None)
        if (
            type(bounded) is _BoundedAttributes
            and bounded.max_value_len is None
            and not bounded._immutable
        ):
            values = getattr(bounded, "_dict", None)
            if type(values) is dict:
                room = bounded.maxlen
                with sdk_span._lock, bounded._lock:
                    if (
                        sdk_span._end_time is None
                        and (room is None or len(values) + len(attributes) <= room)
                        and (not values or values.keys().isdisjoint(attributes))
                    ):
                        values.update(attributes)
                        return
    span.set_attributes(attributes)
