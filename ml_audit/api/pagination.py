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
query either way. Filtered or tenant-scoped lists, and other databases, are counted exactly
(``COUNT(*)`` of the matching rows only). With an estimated count, ``next`` is still exact (the
page reads one row more than it shows), a page past the last row is still a 404, and
``?page=last`` counts exactly.

Both take ``?page_size=`` (a positive integer; larger values are cut to
``ML_AUDIT['API_MAX_PAGE_SIZE']``; anything else is a 400).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.db import connections
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination, CursorPagination, PageNumberPagination
from rest_framework.request import Request

from ml_audit.conf import audit_settings

if TYPE_CHECKING:
    _Paginator = Paginator[Any]
    _Page = Page[Any]
else:
    _Paginator = Paginator
    _Page = Page

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "AuditCursorPagination",
    "AuditPageNumberPagination",
    "EstimatedCountPaginator",
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


# One query: the planner's row estimate of the table (NULL when never analysed), and, only
# when that is NULL or below the threshold, the exact count (an uncorrelated scalar subquery is
# an InitPlan, run only if the CASE reaches it).
_ESTIMATE_OR_COUNT_SQL = """
SELECT estimate, CASE WHEN estimate IS NULL OR estimate < %s THEN (SELECT COUNT(*) FROM {table}) END
FROM (
    SELECT (
        SELECT CASE
            WHEN c.reltuples < 0 THEN NULL
            WHEN c.relpages > 0 THEN
                c.reltuples / c.relpages
                * (pg_relation_size(c.oid) / current_setting('block_size')::int)
            ELSE c.reltuples
        END
        FROM pg_class AS c WHERE c.oid = to_regclass(%s)
    )::bigint AS estimate
) AS planner
"""


_MAX_OFFSET = 2**63 - 1


class _EstimatedPage(_Page):
    """A page that knows whether another one follows (it read one row more than it holds)."""

    def __init__(self, object_list: Any, number: int, paginator: Any, has_next: bool) -> None:
        super().__init__(object_list, number, paginator)
        self._has_next = has_next

    def has_next(self) -> bool:
        return self._has_next


class EstimatedCountPaginator(_Paginator):
    """Django's ``Paginator``, counting a large unfiltered PostgreSQL table by estimate.

    :attr:`count` is exact unless the list is an unfiltered queryset on PostgreSQL whose table
    the planner estimates at :attr:`estimate_threshold` rows or more (then :attr:`exact` is
    False and the count is that estimate). Pages do not trust an estimated count: a page reads
    one row more than it shows to know whether another follows, and an empty page other than
    the first is an ``EmptyPage`` (a 404).
    """

    estimate_threshold = 10_000

    #: Set before :attr:`count` is read to demand an exact count (``?page=last``).
    force_exact = False

    exact = True

    @cached_property
    def count(self) -> int:
        counted = self._estimate_or_count()
        if counted is None:
            self.exact = True
            return super().count
        estimate, exact = counted
        self.exact = exact is not None
        return int(exact) if exact is not None else int(estimate or 0)

    def _estimate_or_count(self) -> tuple[int | None, int | None] | None:
        queryset = self.object_list
        if self.force_exact or not isinstance(queryset, QuerySet):
            return None
        query = queryset.query
        if query.has_filters() or query.distinct or query.is_sliced or query.combinator:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                _ESTIMATE_OR_COUNT_SQL.format(table=table), [self.estimate_threshold, table]
            )
            row = cursor.fetchone()
        assert row is not None
        return row[0], row[1]

    def counted_exactly(self) -> bool:
        """Whether :attr:`count` is exact (reading it if it was not read yet)."""
        return self.count >= 0 and self.exact

    def validate_number(self, number: Any) -> int:
        if self.counted_exactly():
            return super().validate_number(number)
        try:  # an estimated count: only the lower bound is known
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            valid = int(number)
        except (TypeError, ValueError):
            return int(super().validate_number(number))  # raises PageNotAnInteger
        if valid < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return valid

    def page(self, number: Any) -> _Page:
        number = self.validate_number(number)
        if self.counted_exactly():
            return super().page(number)
        bottom = (number - 1) * self.per_page
        if bottom + self.per_page + 1 > _MAX_OFFSET:  # SQL's OFFSET is a 64-bit integer
            raise EmptyPage(self.error_messages["no_results"])
        found = list(self.object_list[bottom : bottom + self.per_page + 1])
        if not found and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        return _EstimatedPage(found[: self.per_page], number, self, len(found) > self.per_page)


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
