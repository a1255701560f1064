"""Who may read which audit rows, and the record of every read: one rule for the REST API and
the admin.

Django only (no REST framework import), so that the admin (:mod:`ml_audit.admin`) applies it
without the ``drf`` extra. Every function takes a Django ``HttpRequest`` or a DRF ``Request``.

- **Tenant scope** (:func:`allowed_tenants`): ``ML_AUDIT['API_TENANT_RESOLVER']`` (``request ->
  tenant ids``, one id, or ``None`` for all) is asked once per request. A tenant-scoped request
  sees the predictions of its tenants (a prediction without a tenant only if ``""`` is allowed),
  the explanations of those predictions, the model versions and actors that have one of those
  predictions, and the access-log rows of requests that were scoped within its tenants
  (:func:`visible_access_log`): never an unscoped request's row, which may name any tenant's
  predictions. Legal holds and purge records are scoped by their tenant
  (:func:`visible_holds`, :func:`visible_purges`): one without a tenant only unscoped.
- **Request context** (:data:`REQUEST_CONTEXT_FIELDS`: a prediction's client IP, user agent
  and auth context) is personal data beyond the prediction: shown, filtered and searched only
  for users holding :data:`REQUEST_CONTEXT_PERMISSION` (:func:`can_view_request_context`).
- **Access log** (:func:`record_access`): one append-only :class:`~ml_audit.models.AccessLog`
  row per read, on the audit alias.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.db import connections
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ml_audit import actors, store
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.models import AccessLog, Explanation, ModelVersion, PredictionEvent, RequestingActor

__all__ = [
    "EVERY_ALIAS",
    "REQUEST_CONTEXT_FIELDS",
    "REQUEST_CONTEXT_PERMISSION",
    "allowed_tenants",
    "can_view_request_context",
    "clean_text",
    "record_access",
    "visible_access_log",
    "visible_actors",
    "visible_explanations",
    "visible_holds",
    "visible_model_versions",
    "visible_predictions",
    "visible_purges",
]

#: Who may see where a request came from (a model permission: no migration needed).
REQUEST_CONTEXT_PERMISSION = "ml_audit.view_requestingactor"
#: The fields of a :class:`~ml_audit.models.PredictionEvent` behind that permission.
REQUEST_CONTEXT_FIELDS = ("client_ip", "user_agent", "auth_context")


class _EveryAlias(frozenset[str]):
    """``view._non_atomic_requests`` of a view that no ``ATOMIC_REQUESTS`` transaction wraps,
    whatever the database aliases are called (Django asks ``alias in ...``). The API's views
    and the admin's access-logged views use it: they only read, and a refused request's
    access-log row must not be rolled back with the request's transaction."""

    def __contains__(self, alias: object) -> bool:
        return True


EVERY_ALIAS: frozenset[str] = _EveryAlias()

# allowed_tenants() remembers its answer on the request (the access log reads it too).
TENANTS_ATTR = "_ml_audit_allowed_tenants"
_UNRESOLVED = object()


def allowed_tenants(request: Any) -> frozenset[str] | None:
    """The tenant ids ``request`` may read, or ``None`` for all (no resolver, or it said so)."""
    cached: Any = getattr(request, TENANTS_ATTR, _UNRESOLVED)
    if cached is not _UNRESOLVED:
        return cast("frozenset[str] | None", cached)
    tenants = _resolve_tenants(request)
    setattr(request, TENANTS_ATTR, tenants)
    return tenants


def resolved_tenants(request: Any) -> frozenset[str] | None:
    """What :func:`allowed_tenants` answered for ``request``, without asking (``None`` when it
    was not asked)."""
    tenants = getattr(request, TENANTS_ATTR, None)
    return tenants if isinstance(tenants, frozenset) else None


def _resolve_tenants(request: Any) -> frozenset[str] | None:
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


def can_view_request_context(user: Any) -> bool:
    """Whether ``user`` may see (and filter by) :data:`REQUEST_CONTEXT_FIELDS`."""
    return bool(
        user is not None and user.is_authenticated and user.has_perm(REQUEST_CONTEXT_PERMISSION)
    )


def visible_predictions(
    request: Any, queryset: QuerySet[PredictionEvent, Any] | None = None
) -> QuerySet[PredictionEvent, Any]:
    """Predictions ``request`` may read (tenant scoping); nothing loaded.

    ``queryset``: the predictions to narrow; default all of them, on the audit alias.
    """
    if queryset is None:
        queryset = PredictionEvent.objects.using(store.resolve_alias())
    tenants = allowed_tenants(request)
    if tenants is not None:
        queryset = queryset.filter(tenant_id__in=tenants)
    return queryset


def visible_tenant_rows(request: Any, queryset: QuerySet[Any, Any]) -> QuerySet[Any, Any]:
    """The rows of a model with its own ``tenant_id`` (outcomes, subject erasures) that
    ``request`` may read, on the audit alias."""
    queryset = queryset.using(store.resolve_alias())
    tenants = allowed_tenants(request)
    return queryset if tenants is None else queryset.filter(tenant_id__in=tenants)


def visible_explanations(
    request: Any, queryset: QuerySet[Explanation, Any]
) -> QuerySet[Explanation, Any]:
    """The explanations of the predictions ``request`` may read."""
    tenants = allowed_tenants(request)
    if tenants is not None:
        queryset = queryset.filter(prediction__tenant_id__in=tenants)
    return queryset


def _having_visible_predictions(
    request: Any, queryset: QuerySet[Any, Any], field: str
) -> QuerySet[Any, Any]:
    tenants = allowed_tenants(request)
    if tenants is None:
        return queryset
    visible = PredictionEvent.objects.filter(**{field: OuterRef("pk"), "tenant_id__in": tenants})
    return queryset.filter(Exists(visible))


def visible_model_versions(
    request: Any, queryset: QuerySet[ModelVersion, Any]
) -> QuerySet[ModelVersion, Any]:
    """The model versions that have a prediction ``request`` may read (all when unscoped)."""
    return _having_visible_predictions(request, queryset, "model")


def visible_actors(
    request: Any, queryset: QuerySet[RequestingActor, Any]
) -> QuerySet[RequestingActor, Any]:
    """The actors that have a prediction ``request`` may read (all when unscoped)."""
    return _having_visible_predictions(request, queryset, "actor")


def visible_access_log(
    request: Any, queryset: QuerySet[AccessLog, Any]
) -> QuerySet[AccessLog, Any]:
    """The access-log rows ``request`` may read: all when it is unscoped, else the rows of
    requests whose tenant scope lies within its tenants (an unscoped request's row is never
    shown to a scoped one: its query and returned ids may name any tenant's predictions)."""
    tenants = allowed_tenants(request)
    if tenants is None:
        return queryset
    vendor = connections[queryset.db].vendor
    if vendor == "sqlite":  # no JSON containment lookups: ask json_each()
        table = connections[queryset.db].ops.quote_name(AccessLog._meta.db_table)
        column = f"{table}.{connections[queryset.db].ops.quote_name('tenant_scope')}"
        allowed: Sequence[str] = sorted(tenants)
        outside = f"AND value NOT IN ({', '.join(['%s'] * len(allowed))})" if allowed else ""
        sql = (
            f"(json_type({column}) = 'array' AND NOT EXISTS "
            f"(SELECT 1 FROM json_each({column}) WHERE 1 = 1 {outside}))"
        )
        return queryset.filter(RawSQL(sql, tuple(allowed), output_field=BooleanField()))
    if vendor == "oracle":  # pragma: no cover - no containment lookup there: nothing shown
        return queryset.none()
    return queryset.filter(tenant_scope__isnull=False, tenant_scope__contained_by=sorted(tenants))


def clean_text(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text and JSON values cannot hold."""
    return text.replace("\x00", "\ufffd")


def record_access(
    request: Any,
    *,
    user: Any,
    endpoint: str,
    status_code: int,
    returned_ids: Sequence[str] = (),
    result_count: int = 0,
) -> AccessLog:
    """Write the :class:`~ml_audit.models.AccessLog` row of one request (one ``INSERT`` on the
    audit alias): ``user`` (``None`` or anonymous for an unauthenticated request), the path and
    query of ``request``, the prediction ids it returned and how many rows it returned."""
    authenticated = bool(user is not None and user.is_authenticated)
    query = request.GET
    tenants = resolved_tenants(request)
    row = AccessLog(
        accessed_at=timezone.now(),
        user_id=str(user.pk) if authenticated else "",
        username=clean_text(user.get_username())[:150] if authenticated else "",
        endpoint=endpoint[:64],
        method=str(request.method)[:16],
        path=clean_text(request.path),
        query={
            clean_text(name): [clean_text(value) for value in query.getlist(name)] for name in query
        },
        status_code=status_code,
        returned_ids=list(returned_ids),
        result_count=result_count,
        client_ip=actors.client_ip(request),
        tenant_scope=None if tenants is None else sorted(tenants),
    )
    row.save(using=store.resolve_alias())
    return row


def _named_tenants(request: Any) -> frozenset[str] | None:
    """The tenants ``request`` may read, without ``""``; ``None`` when it is unscoped."""
    tenants = allowed_tenants(request)
    return None if tenants is None else tenants - {""}


def visible_holds(request: Any, queryset: QuerySet[Any, Any]) -> QuerySet[Any, Any]:
    """The legal holds ``request`` may read: all when it is unscoped, else the placements scoped
    to one of its tenants and their releases. A placement without a tenant (on every tenant, or
    scoped by actor, model, prediction ids or time) may name any tenant's rows: only unscoped
    requests see it, even when ``""`` is an allowed tenant."""
    from ml_audit.retention_models import HoldAction

    tenants = _named_tenants(request)
    if tenants is None:
        return queryset
    return queryset.filter(
        Q(action=HoldAction.PLACE, tenant_id__in=tenants)
        | Q(action=HoldAction.RELEASE, releases__tenant_id__in=tenants)
    )


def visible_purges(request: Any, queryset: QuerySet[Any, Any]) -> QuerySet[Any, Any]:
    """The purge records ``request`` may read: all when it is unscoped, else the batches of
    predictions of its tenants (never an access-log purge, which has no tenant)."""
    tenants = _named_tenants(request)
    if tenants is None:
        return queryset
    return queryset.filter(tenant_id__in=tenants)
