"""Read-only API views over the audit trail.

=================================  ==============================================================
``GET predictions/``               predictions, newest first, filtered (:mod:`.filters`), paged
``GET predictions/{uuid}/``        one prediction by its UUID primary key
``GET models/``                    known model versions (``name``, ``version``, ``framework``)
``GET traces/{trace_id}/``         every prediction of one W3C trace, oldest first
=================================  ==============================================================

Every query reads ``store.resolve_alias()`` (``ML_AUDIT['DATABASE_ALIAS']``) and is scoped to
the tenants ``ML_AUDIT['API_TENANT_RESOLVER']`` allows: another tenant's prediction is a 404,
exactly like a missing one. Model versions are listed to a tenant-scoped user only when one of
their predictions is visible to it. Predictions without a tenant are visible only to unscoped
users, unless the resolver allows ``""``.

A list or detail request costs at most three queries for its data, whatever the page size: the
page (model and actor joined), the explanations of the page's predictions (one prefetch), and in
``"page"`` pagination mode a ``COUNT(*)``. Authentication and permission look-ups are the auth
backend's and come on top.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend  # type: ignore[import-untyped]
from rest_framework import viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response

from ml_audit import store
from ml_audit.api import filters, pagination, permissions, serializers
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.models import Explanation, ModelVersion, PredictionEvent

__all__ = ["ModelVersionViewSet", "PredictionEventViewSet", "TraceViewSet", "allowed_tenants"]

UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
PREDICTION_ORDERING = ("-timestamp", "-id")


def allowed_tenants(request: Request) -> frozenset[str] | None:
    """The tenant ids this request may read, or ``None`` for all (no resolver, or it said so)."""
    resolver = audit_settings.API_TENANT_RESOLVER
    if resolver is None:
        return None
    tenants: str | Iterable[Any] | None = resolver(request)
    if tenants is None:
        return None
    if isinstance(tenants, str):
        return frozenset({tenants})
    if not isinstance(tenants, Iterable):
        raise ConfigurationError(
            "ML_AUDIT['API_TENANT_RESOLVER'] must return an iterable of tenant ids, a single "
            f"tenant id or None, not {tenants!r}."
        )
    return frozenset(str(tenant) for tenant in tenants)


def predictions_for(request: Request) -> QuerySet[PredictionEvent]:
    """Predictions visible to ``request``, with everything the serializer reads loaded."""
    alias = store.resolve_alias()
    queryset = (
        PredictionEvent.objects.using(alias)
        .select_related("model", "actor")
        .prefetch_related(
            Prefetch(
                "explanations",
                queryset=Explanation.objects.using(alias).order_by("revision"),
            )
        )
    )
    tenants = allowed_tenants(request)
    if tenants is not None:
        queryset = queryset.filter(tenant_id__in=tenants)
    return queryset


class _AuditAPIMixin(GenericAPIView[Any]):
    """Permissions from ``ML_AUDIT['API_PERMISSION_CLASSES']`` and the configured paginator."""

    pagination_ordering: tuple[str, ...] = PREDICTION_ORDERING

    def get_permissions(self) -> list[Any]:
        return [permission() for permission in permissions.configured_permission_classes()]

    @property
    def paginator(self) -> BasePagination | None:
        if not hasattr(self, "_paginator"):
            self._paginator = pagination.build_paginator(self.pagination_ordering)
        return self._paginator

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        context["show_request_context"] = permissions.can_view_request_context(self.request)
        return context


class PredictionEventViewSet(_AuditAPIMixin, viewsets.ReadOnlyModelViewSet[PredictionEvent]):
    """``GET predictions/`` and ``GET predictions/{uuid}/``."""

    serializer_class = serializers.PredictionEventSerializer
    filter_backends = (DjangoFilterBackend,)
    filterset_class = filters.PredictionEventFilterSet
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self) -> QuerySet[PredictionEvent]:
        return predictions_for(self.request).order_by(*PREDICTION_ORDERING)


class ModelVersionViewSet(_AuditAPIMixin, viewsets.ReadOnlyModelViewSet[ModelVersion]):
    """``GET models/`` and ``GET models/{id}/``."""

    serializer_class = serializers.ModelVersionSerializer
    filter_backends = (DjangoFilterBackend,)
    filterset_class = filters.ModelVersionFilterSet
    pagination_ordering = ("name", "version", "id")
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[ModelVersion]:
        alias = store.resolve_alias()
        queryset = ModelVersion.objects.using(alias).order_by(*self.pagination_ordering)
        tenants = allowed_tenants(self.request)
        if tenants is not None:
            visible = PredictionEvent.objects.using(alias).filter(
                model=OuterRef("pk"), tenant_id__in=tenants
            )
            queryset = queryset.filter(Exists(visible))
        return queryset


class TraceViewSet(_AuditAPIMixin, viewsets.GenericViewSet[PredictionEvent]):
    """``GET traces/{trace_id}/``: the predictions of one trace, oldest first.

    Returns ``{"trace_id", "trace_url", "count", "truncated", "predictions"}``; at most
    ``ML_AUDIT['API_MAX_PAGE_SIZE']`` predictions (``truncated`` says when there were more: page
    through them with ``GET predictions/?trace_id=...``). A trace with no visible prediction is a
    404.
    """

    serializer_class = serializers.PredictionEventSerializer
    lookup_field = "trace_id"
    lookup_value_regex = "[0-9a-fA-F]{32}"

    def get_queryset(self) -> QuerySet[PredictionEvent]:
        return predictions_for(self.request).order_by("timestamp", "id")

    def retrieve(self, request: Request, trace_id: str) -> Response:
        limit = audit_settings.API_MAX_PAGE_SIZE
        trace_id = trace_id.lower()
        rows = list(self.get_queryset().filter(trace_id=trace_id)[: limit + 1])
        if not rows:
            raise Http404("No prediction of this trace is visible to you.")
        shown = rows[:limit]
        return Response(
            {
                "trace_id": trace_id,
                "trace_url": serializers.trace_url(trace_id),
                "count": len(shown),
                "truncated": len(rows) > limit,
                "predictions": self.get_serializer(shown, many=True).data,
            }
        )
