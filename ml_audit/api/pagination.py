"""Pagination of the API's lists: cursor (keyset) by default, page numbers by setting.

``ML_AUDIT['API_PAGINATION'] = "cursor"`` (default) pages by ``(-timestamp, -id)`` for
predictions: each page is one indexed range scan, stable while rows are appended, and no
``COUNT(*)``. ``"page"`` gives ``?page=N`` with a total ``count``, at the price of a
``COUNT(*)`` over the filtered rows on every request, which gets slow on large tables.

Both take ``?page_size=`` (a positive integer; larger values are cut to
``ML_AUDIT['API_MAX_PAGE_SIZE']``; anything else is a 400).
"""

from __future__ import annotations

from collections.abc import Sequence

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination, CursorPagination, PageNumberPagination
from rest_framework.request import Request

from ml_audit.conf import audit_settings

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "AuditCursorPagination",
    "AuditPageNumberPagination",
    "build_paginator",
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
    """Page numbers with a total count (one ``COUNT(*)`` per request)."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = PAGE_SIZE_PARAM

    def get_page_size(self, request: Request) -> int:
        return _page_size(request)


def build_paginator(ordering: Sequence[str]) -> BasePagination:
    """The paginator ``ML_AUDIT['API_PAGINATION']`` asks for, ordering rows by ``ordering``.

    ``ordering`` must end with a unique field, so that pages never overlap.
    """
    if audit_settings.API_PAGINATION == "page":
        return AuditPageNumberPagination()
    paginator = AuditCursorPagination()
    paginator.ordering = tuple(ordering)
    return paginator
