"""A Django ``Paginator`` that never counts a large PostgreSQL table or a large filtered list.

Shared by the admin's change lists and the REST API's page-number pagination. Django only: no
REST framework import, so the admin works without the ``drf`` extra.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.db import connections
from django.db.models import QuerySet

if TYPE_CHECKING:
    _Paginator = Paginator[Any]
    _Page = Page[Any]
else:
    _Paginator = Paginator
    _Page = Page

__all__ = ["EstimatedCountPaginator"]

#: The planner's estimate of the table's rows (``reltuples`` scaled to the table's current
#: size, as the planner scales it; NULL when never analysed) and, only when that is NULL or
#: below the threshold, the exact ``COUNT(*)``: one query either way.
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
    """Django's ``Paginator``, counting large PostgreSQL lists by estimate.

    On PostgreSQL, :attr:`count` is an estimate (and :attr:`exact` False) for an unfiltered
    queryset whose table the planner estimates at :attr:`estimate_threshold` rows or more, and
    for a filtered queryset of more than :attr:`filtered_count_limit` rows: those are counted
    up to the limit (``COUNT(*)`` over ``LIMIT limit + 1``), then the planner's estimate of the
    list's rows is shown (at least ``limit + 1``). Every other count is exact. Pages do not
    trust an estimated count: a page reads one row more than it shows to know whether another
    follows, and an empty page other than the first is an ``EmptyPage`` (a 404).
    """

    estimate_threshold = 10_000
    filtered_count_limit = 1_000

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
        if query.distinct or query.is_sliced or query.combinator:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        if query.has_filters():
            return self._count_up_to_limit(queryset)
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                _ESTIMATE_OR_COUNT_SQL.format(table=table), [self.estimate_threshold, table]
            )
            row = cursor.fetchone()
        assert row is not None
        return row[0], row[1]

    def _count_up_to_limit(self, queryset: QuerySet[Any]) -> tuple[int | None, int | None]:
        limit = self.filtered_count_limit
        counted = queryset.order_by()[: limit + 1].count()
        if counted <= limit:
            return None, counted
        plan = json.loads(queryset.order_by().explain(format="json"))
        return max(int(plan[0]["Plan"]["Plan Rows"]), limit + 1), None

    def _estimate(self) -> int | None:
        """The planner's estimate of the list's rows, or None when it is not estimated (a
        filtered list within the limit, another database, a table never analysed)."""
        counted = self._estimate_or_count()
        return None if counted is None else counted[0]

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
