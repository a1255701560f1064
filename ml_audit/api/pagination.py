"""Pagination of the API's lists: cursor (keyset) by default, page numbers by setting.

``ML_AUDIT['API_PAGINATION'] = "cursor"`` (default) pages by ``(-timestamp, -id)`` for
predictions: each page is one indexed range scan, stable while rows are appended, and no
``COUNT(*)``. ``"page"`` gives ``?page=N`` with a total ``count``. A page ``N`` deep still
costs an ``OFFSET`` over the ``(N - 1) * page_size`` rows before it, so deep pages get slow on
large tables whatever the count costs; prefer the cursor for anything but the first pages.

The count of ``"page"`` mode (:class:`EstimatedCountPaginator`) never scans a large table:
for a list that is neither filtered nor tenant-scoped, on PostgreSQL, it is the planner's
estimate of the table's rows (``pg_class.reltuples`` scaled to the table's current size, as the
planner scales it) once that estimate reaches
:attr:`EstimatedCountPaginator.estimate_threshold` (10,000) rows, and exact below that, in one
query either way. A filtered or tenant-scoped list is counted up to
:attr:`~ml_audit.paginators.EstimatedCountPaginator.filtered_count_limit` (1,000) rows
(``COUNT(*)`` over ``LIMIT 1001``); beyond, the count is the planner's estimate of the list's
rows. Other databases are counted exactly. With an estimated count, ``next`` is still exact (the
page reads one row more than it shows), a page past the last row is still a 404, and
``?page=last`` counts exactly.

Both take ``?page_size=`` (a positive integer; larger values are cut to
``ML_AUDIT['API_MAX_PAGE_SIZE']``; anything else is a 400). The other mode's parameter
(``page`` in cursor mode, ``cursor`` in page mode) is an unknown parameter: a 400.

Malformed positions are a 400 naming the parameter, never a 500 and never a 404 (which would
claim that something is not there). A ``cursor`` is read strictly (:func:`decode_cursor`):
base64 (its own alphabet only) of ASCII ``key=value`` pairs, only DRF's keys ``o`` (offset:
decimal digits), ``r`` (reverse: ``0`` or ``1``) and ``p`` (position), each at most once,
percent-escapes that decode as UTF-8, and a position the first ordering field can hold (a
timestamp with a UTC value, a UUID, text without NUL, ...): a position is compared with that
column in SQL, where a value of the wrong type would fail inside the query. An empty
``cursor`` is the first page. A ``page`` is a positive integer in ASCII digits or ``last``; a
well-formed page past the end is a 404.
"""

from __future__ import annotations

import binascii
import datetime as dt
import math
import re
import uuid
from base64 import b64decode
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qsl

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import (
    BasePagination,
    Cursor,
    CursorPagination,
    PageNumberPagination,
)
from rest_framework.request import Request

from ml_audit.conf import audit_settings
from ml_audit.paginators import EstimatedCountPaginator

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "AuditCursorPagination",
    "AuditPageNumberPagination",
    "EstimatedCountPaginator",
    "build_paginator",
    "decode_cursor",
    "query_parameters",
]

DEFAULT_PAGE_SIZE = 100
PAGE_SIZE_PARAM = "page_size"


def _page_size(request: Request) -> int:
    maximum = audit_settings.API_MAX_PAGE_SIZE
    raw = request.query_params.get(PAGE_SIZE_PARAM)
    if raw is None or raw == "":
        return min(DEFAULT_PAGE_SIZE, maximum)
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValidationError({PAGE_SIZE_PARAM: ["Enter a positive integer."]})
    return min(size, maximum)


_DIGITS = re.compile(r"[0-9]+")
#: Longer digit strings are no offset or page a database could reach (and Python refuses to
#: read more than 4,300 digits as an int).
_MAX_DIGITS = 30
_CURSOR_KEYS = frozenset({"o", "r", "p"})


class InvalidPosition(ValueError):
    """A cursor or page that cannot be read (the message says why)."""


def _field_of(model: type[models.Model], path: str) -> models.Field[Any, Any]:
    """The model field that ``path`` (``a__b`` through relations) names; a foreign key's
    position is a value of the field it points to."""
    parts = path.split("__")
    for part in parts[:-1]:
        related = model._meta.get_field(part).related_model
        if not isinstance(related, type):
            raise FieldDoesNotExist(path)
        model = related
    field: Any = model._meta.get_field(parts[-1])
    if field.is_relation and isinstance(field, models.ForeignKey):
        field = field.target_field
    if not isinstance(field, models.Field):  # a reverse relation
        raise FieldDoesNotExist(path)
    return field


def _position(field: models.Field[Any, Any], text: str) -> str:
    """``text`` as a position of ``field`` (what SQL can compare with the column), or
    :class:`InvalidPosition`. Timestamps come back in UTC, as DRF writes them from rows."""
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; no stored value has one
        raise InvalidPosition("The position holds a NUL character.")
    try:
        value = field.to_python(text)
    except (DjangoValidationError, ValueError, TypeError, OverflowError):
        raise InvalidPosition("The position is not a value of the ordering field.") from None
    if value is None:
        raise InvalidPosition("The position is empty.")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        try:
            return str(value.astimezone(dt.UTC))
        except OverflowError:  # year 1 at +01:00, 9999-12-31T23:00-05:00
            raise InvalidPosition("The position is a time without a UTC value.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidPosition("The position is not a finite number.")
    if isinstance(value, uuid.UUID):
        return str(value)
    return text


def decode_cursor(encoded: str, model: type[models.Model], ordering: Sequence[str]) -> Cursor:
    """The :class:`~rest_framework.pagination.Cursor` that ``encoded`` (a ``cursor`` query
    value) names for a list of ``model`` ordered by ``ordering``, or :class:`InvalidPosition`.

    What DRF's ``CursorPagination.encode_cursor`` writes is read back unchanged; anything it
    would not write is refused (see the module docstring), except an offset beyond DRF's cut-off,
    which is cut as DRF cuts it.
    """
    if not encoded:
        return Cursor(offset=0, reverse=False, position=None)
    try:
        querystring = b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
        pairs = parse_qsl(querystring, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidPosition("The cursor is not one this API wrote.") from None
    tokens: dict[str, str] = {}
    for key, value in pairs:
        if key not in _CURSOR_KEYS or key in tokens:
            raise InvalidPosition("The cursor is not one this API wrote.")
        tokens[key] = value
    offset_text = tokens.get("o", "0")
    if not _DIGITS.fullmatch(offset_text):
        raise InvalidPosition("The cursor's offset is not a non-negative integer.")
    offset = min(int(offset_text[:_MAX_DIGITS]), CursorPagination.offset_cutoff)
    reverse_text = tokens.get("r", "0")
    if reverse_text not in ("0", "1"):
        raise InvalidPosition("The cursor's direction is not 0 or 1.")
    position = tokens.get("p")
    if position is not None:
        try:
            field = _field_of(model, ordering[0].lstrip("-"))
        except FieldDoesNotExist:  # an ordering by an annotation: left to the database
            pass
        else:
            position = _position(field, position)
    return Cursor(offset=offset, reverse=reverse_text == "1", position=cast(Any, position))


class AuditCursorPagination(CursorPagination):
    """Keyset pagination; ``ordering`` is set per view (see :func:`build_paginator`). A
    malformed ``cursor`` is a 400 naming it (:func:`decode_cursor`)."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = PAGE_SIZE_PARAM
    ordering: tuple[str, ...] = ("-timestamp", "-id")
    invalid_cursor_message = "Invalid cursor: {reason} Use the next or previous link of a page."

    _model: type[models.Model] | None = None

    def get_page_size(self, request: Request) -> int:
        return _page_size(request)

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        self._model = queryset.model  # what the cursor's position is checked against
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        if self._model is None:  # pragma: no cover - paginate_queryset sets it first
            raise TypeError("decode_cursor() is called by paginate_queryset()")
        try:
            return decode_cursor(encoded, self._model, self.ordering)
        except InvalidPosition as exc:
            message = self.invalid_cursor_message.format(reason=exc)
            raise ValidationError({self.cursor_query_param: [message]}) from None


class AuditPageNumberPagination(PageNumberPagination):
    """Page numbers with a total count (:class:`EstimatedCountPaginator`: one query)."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = PAGE_SIZE_PARAM
    django_paginator_class = EstimatedCountPaginator

    def get_page_size(self, request: Request) -> int:
        return _page_size(request)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw in self.last_page_strings:
            paginator.force_exact = True  # the last page needs the true count
            return super().get_page_number(request, paginator)
        if not raw:
            return 1
        if not _DIGITS.fullmatch(raw) or int(raw[:_MAX_DIGITS]) < 1:
            message = f"Enter a positive integer or {' or '.join(self.last_page_strings)}."
            raise ValidationError({self.page_query_param: [message]})
        # A number beyond any page is still a number: past the end, a 404.
        return int(raw[:_MAX_DIGITS])


def build_paginator(ordering: Sequence[str]) -> BasePagination:
    """The paginator ``ML_AUDIT['API_PAGINATION']`` asks for, ordering rows by ``ordering``.

    ``ordering`` must end with a unique field, so that pages never overlap.
    """
    if audit_settings.API_PAGINATION == "page":
        return AuditPageNumberPagination()
    paginator = AuditCursorPagination()
    paginator.ordering = tuple(ordering)
    return paginator


_PARAMETER_ATTRIBUTES = (
    "cursor_query_param",
    "page_query_param",
    "page_size_query_param",
    "limit_query_param",
    "offset_query_param",
)


def query_parameters(paginator: BasePagination | None) -> frozenset[str]:
    """The query parameters ``paginator`` reads (``cursor`` or ``page``, and ``page_size``)."""
    names = (getattr(paginator, attribute, None) for attribute in _PARAMETER_ATTRIBUTES)
    return frozenset(name for name in names if isinstance(name, str) and name)
