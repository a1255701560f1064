"""Who may read the audit trail through the API.

Secure by default: every endpoint requires an authenticated user holding
``ml_audit.view_predictionevent`` (:class:`CanViewPredictions`). ``ML_AUDIT
['API_PERMISSION_CLASSES']`` replaces that list (DRF's own ``DEFAULT_PERMISSION_CLASSES`` is
not used by these views, so a project-wide ``AllowAny`` cannot open the audit trail by accident).

The per-request context of a prediction (client IP, user agent, auth context) is personal data
beyond the prediction itself, so it is shown only to users who also hold
:data:`REQUEST_CONTEXT_PERMISSION`. That is the model permission ``ml_audit.view_requestingactor``
(who asked, and from where) rather than a custom permission, because a custom permission would
need a migration; grant it to auditors who may see where requests came from.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import backends, get_backends
from django.contrib.auth.models import Group, Permission, PermissionsMixin
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router
from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError

__all__ = [
    "READ_PERMISSION",
    "REQUEST_CONTEXT_PERMISSION",
    "CanViewHolds",
    "CanViewPredictions",
    "CanViewSeals",
    "can_view_request_context",
    "checks_objects",
    "configured_permission_classes",
    "has_audit_permission",
]

READ_PERMISSION = "ml_audit.view_predictionevent"
REQUEST_CONTEXT_PERMISSION = "ml_audit.view_requestingactor"


class CanViewPredictions(BasePermission):
    """Read-only access for authenticated users holding ``ml_audit.view_predictionevent``."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and request.method in ("GET", "HEAD", "OPTIONS")
            and has_audit_permission(user, READ_PERMISSION)
        )


class _HoldsModelPermission(BasePermission):
    """An authenticated user holding :attr:`permission` (checked after the configured classes:
    the seal and hold endpoints need both)."""

    permission = ""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and has_audit_permission(user, self.permission))


class CanViewSeals(_HoldsModelPermission):
    """``ml_audit.view_seal``: the seal heads, and a prediction's seal and inclusion proof."""

    permission = "ml_audit.view_seal"


class CanViewHolds(_HoldsModelPermission):
    """``ml_audit.view_legalhold``: the legal holds (tenant-scoped)."""

    permission = "ml_audit.view_legalhold"


def checks_objects(permission_objects: list[Any]) -> bool:
    """Whether any of these permission objects may refuse a single object, i.e. defines its
    own ``has_object_permission`` (composed permissions count as doing so).

    :class:`CanViewPredictions`, like DRF's ``BasePermission``, allows every object it was
    asked about; a view may then skip building the model instance DRF would hand it.
    """
    return any(
        type(permission).has_object_permission is not BasePermission.has_object_permission
        for permission in permission_objects
    )


def can_view_request_context(request: Request) -> bool:
    """Whether ``client_ip``, ``user_agent`` and ``auth_context`` are shown to this request."""
    user = request.user
    return bool(
        user and user.is_authenticated and has_audit_permission(user, REQUEST_CONTEXT_PERMISSION)
    )


_APP_LABEL = "ml_audit"
_APP_PREFIX = _APP_LABEL + "."
#: Where :func:`has_audit_permission` keeps a user's ``ml_audit`` permissions (per user object,
#: i.e. per request, as Django keeps ``_perm_cache``).
_CACHE_ATTR = "_ml_audit_perm_cache"
#: Backends whose ``has_perm`` is exactly ``ModelBackend``'s.
_MODEL_BACKENDS = (backends.ModelBackend, backends.AllowAllUsersModelBackend)


@functools.lru_cache(maxsize=8)
def _model_backends_only(configured: tuple[str, ...]) -> bool:
    return all(type(backend) in _MODEL_BACKENDS for backend in get_backends())


def has_audit_permission(user: Any, perm: str) -> bool:
    """``user.has_perm(perm)``, answered with one query instead of two.

    ``ModelBackend`` loads every permission of the user, directly granted then through groups,
    in two queries, on every request. When it is the only backend (the default) and the user
    model does not override ``has_perm``, this reads only this app's permissions, both ways,
    in one query, and keeps them on the user object for the rest of the request. The answer
    is Django's: active superusers have every permission, inactive users none. Anything else
    (another backend, a user model that overrides ``has_perm``, a permission of another app,
    or Django's own cache already filled) is left to ``user.has_perm``.
    """
    if (
        not perm.startswith(_APP_PREFIX)
        or not isinstance(user, PermissionsMixin)
        or user.__class__.has_perm is not PermissionsMixin.has_perm  # a lazy user proxies it
        or hasattr(user, "_perm_cache")
        or not _model_backends_only(tuple(settings.AUTHENTICATION_BACKENDS))
    ):
        return bool(user.has_perm(perm))
    user = cast(Any, user)  # a PermissionsMixin that is also a (lazy) user model instance
    if not user.is_active or user.is_anonymous:  # as ModelBackend
        return False
    if user.is_superuser:
        return True
    granted: frozenset[str] | None = getattr(user, _CACHE_ATTR, None)
    if granted is None:
        granted = _load_app_permissions(user)
        setattr(user, _CACHE_ATTR, granted)
    return perm in granted


def _load_app_permissions(user: Any) -> frozenset[str]:
    """This app's permissions of ``user``: its own and its groups' (``ModelBackend``'s two
    querysets, narrowed to the app), in one query compiled once per user model."""
    using = router.db_for_read(Permission)
    with connections[using].cursor() as cursor:
        cursor.execute(
            _permissions_sql(user._meta.concrete_model, using), [_APP_LABEL, user.pk, user.pk]
        )
        return frozenset(_APP_PREFIX + codename for (codename,) in cursor.fetchall())


@functools.lru_cache(maxsize=8)
def _permissions_sql(user_model: type[Any], using: str) -> str:
    quote = connections[using].ops.quote_name
    own = user_model._meta.get_field("user_permissions")
    groups = user_model._meta.get_field("groups")
    group_permissions = Group._meta.get_field("permissions")

    def through(field: Any) -> tuple[str, str, str]:
        """(table, column of this side, column of the other side) of a many-to-many field."""
        return (
            quote(field.remote_field.through._meta.db_table),
            quote(field.m2m_column_name()),
            quote(field.m2m_reverse_name()),
        )

    own_table, own_user, own_permission = through(own)
    groups_table, groups_user, groups_group = through(groups)
    gp_table, gp_group, gp_permission = through(group_permissions)

    def column(model: Any, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    permission = quote(Permission._meta.db_table)
    content_type = quote(ContentType._meta.db_table)
    permission_id = column(Permission, "id")
    return (
        f"SELECT p.{column(Permission, 'codename')} FROM {permission} p"
        f" INNER JOIN {content_type} ct"
        f" ON ct.{column(ContentType, 'id')} = p.{column(Permission, 'content_type')}"
        f" WHERE ct.{column(ContentType, 'app_label')} = %s AND ("
        f"p.{permission_id} IN (SELECT o.{own_permission} FROM {own_table} o"
        f" WHERE o.{own_user} = %s)"
        f" OR p.{permission_id} IN (SELECT gp.{gp_permission} FROM {gp_table} gp"
        f" INNER JOIN {groups_table} ug ON ug.{groups_group} = gp.{gp_group}"
        f" WHERE ug.{groups_user} = %s))"
    )


def configured_permission_classes() -> list[Any]:
    """The classes named by ``ML_AUDIT['API_PERMISSION_CLASSES']``, imported.

    Entries are permission classes or composed permissions (``IsAuthenticated & MyCheck``).
    """
    classes: list[Any] = []
    for entry in audit_settings.API_PERMISSION_CLASSES:
        cls: Any = entry
        if isinstance(entry, str):
            try:
                cls = import_string(entry)
            except ImportError as exc:
                raise ConfigurationError(
                    f"ML_AUDIT['API_PERMISSION_CLASSES'] entry {entry!r} cannot be imported: {exc}"
                ) from exc
        if not callable(cls):
            raise ConfigurationError(
                f"ML_AUDIT['API_PERMISSION_CLASSES'] entry {entry!r} is not a DRF permission class."
            )
        classes.append(cls)
    return classes
