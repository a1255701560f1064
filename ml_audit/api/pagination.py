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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination, CursorPagination, PageNumberPagination
from rest_framework.request import Request

from ml_audit.conf import audit_settings
from ml_audit.paginators import EstimatedCountPaginator

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "AuditCursorPagination",
    "AuditPageNumberPagination",
    "EstimatedCountPaginator",
    "build_paginator",
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


class AuditCursorPagination(CursorPagination):
    """Keyset pagination; ``ordering`` is set per view (see :func:`build_paginator`)."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = PAGE_SIZE_PARAM
    ordering: tuple[str, ...] = ("-timestamp", "-id")

    def get_page_size(self, request: Request) -> int:
        return _page_size(request)


class AuditPageNumberPagination(PageNumberPagination):
    """Page numbers with a total count (:class:`EstimatedCountPaginator`: one query)."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = PAGE_SIZE_PARAM
    django_paginator_class = EstimatedCountPaginator

    def get_page_size(self, request: Request) -> int:
        return _page_size(request)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        if request.query_params.get(self.page_query_param) in self.last_page_strings:
            paginator.force_exact = True  # the last page needs the true count
        return super().get_page_number(request, paginator)


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
