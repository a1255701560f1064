"""``has_audit_permission``: Django's ``user.has_perm`` answer for this app's permissions, in one
query instead of ModelBackend's two, and Django's own path wherever the shortcut would not be
exactly Django's."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils.functional import SimpleLazyObject

from ml_audit.api.permissions import (
    READ_PERMISSION,
    REQUEST_CONTEXT_PERMISSION,
    has_audit_permission,
)

pytestmark = pytest.mark.django_db

PERMS = (READ_PERMISSION, REQUEST_CONTEXT_PERMISSION)


def permission(perm: str) -> Permission:
    app_label, codename = perm.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def make_user(name: str, *, active: bool, superuser: bool, direct: str, grouped: str) -> User:
    user = User.objects.create_user(name, is_active=active, is_superuser=superuser)
    if direct:
        user.user_permissions.add(permission(direct))
    if grouped:
        group = Group.objects.create(name=f"{name}-group")
        group.permissions.add(permission(grouped))
        user.groups.add(group)
    return user


def fresh(user: User) -> User:
    """The user as a new request loads it: no permission cache of any kind."""
    return User.objects.get(pk=user.pk)


CASES = list(
    itertools.product(
        [True, False],  # active
        [False, True],  # superuser
        ["", READ_PERMISSION, REQUEST_CONTEXT_PERMISSION],  # granted directly
        ["", READ_PERMISSION, REQUEST_CONTEXT_PERMISSION],  # granted through a group
    )
)


@pytest.mark.parametrize(("active", "superuser", "direct", "grouped"), CASES)
def test_same_answer_as_django(active: bool, superuser: bool, direct: str, grouped: str) -> None:
    user = make_user("u", active=active, superuser=superuser, direct=direct, grouped=grouped)
    for perm in PERMS:
        expected = fresh(user).has_perm(perm)
        assert has_audit_permission(fresh(user), perm) is expected, perm
    # The case table is not vacuous: Django grants exactly what was granted (or all/nothing).
    granted = {p for p in (direct, grouped) if p}
    assert fresh(user).has_perm(READ_PERMISSION) == (
        active and (superuser or READ_PERMISSION in granted)
    )


def test_one_query_for_both_permissions_then_none() -> None:
    user = fresh(make_user("u", active=True, superuser=False, direct=READ_PERMISSION, grouped=""))
    with CaptureQueriesContext(connection) as captured:
        assert has_audit_permission(user, READ_PERMISSION) is True
        assert has_audit_permission(user, REQUEST_CONTEXT_PERMISSION) is False
    assert len(captured.captured_queries) == 1
    with CaptureQueriesContext(connection) as captured:
        assert has_audit_permission(user, READ_PERMISSION) is True
    assert captured.captured_queries == []
    # Django's own path takes two queries for the same answer.
    with CaptureQueriesContext(connection) as captured:
        assert fresh(user).has_perm(READ_PERMISSION) is True
    assert len(captured.captured_queries) == 3  # the user, its permissions, its groups'


def test_same_codename_of_another_app_does_not_count() -> None:
    other = Permission.objects.create(
        codename="view_predictionevent",
        name="look-alike",
        content_type=ContentType.objects.get_for_model(Group),
    )
    user = User.objects.create_user("u")
    user.user_permissions.add(other)
    group = Group.objects.create(name="g")
    group.permissions.add(other)
    user.groups.add(group)
    assert fresh(user).has_perm("auth.view_predictionevent") is True
    assert has_audit_permission(fresh(user), READ_PERMISSION) is False
    assert fresh(user).has_perm(READ_PERMISSION) is False


def test_revoked_permission_is_seen_by_the_next_request() -> None:
    user = make_user("u", active=True, superuser=False, direct="", grouped=READ_PERMISSION)
    assert has_audit_permission(fresh(user), READ_PERMISSION) is True
    Group.objects.get(name="u-group").permissions.clear()
    assert has_audit_permission(fresh(user), READ_PERMISSION) is False


def test_lazy_user_as_the_middleware_gives_it() -> None:
    user = make_user("u", active=True, superuser=False, direct=READ_PERMISSION, grouped="")
    lazy: Any = SimpleLazyObject(lambda: fresh(user))
    assert has_audit_permission(lazy, READ_PERMISSION) is True
    assert has_audit_permission(lazy, REQUEST_CONTEXT_PERMISSION) is False


def test_anonymous_user() -> None:
    assert has_audit_permission(AnonymousUser(), READ_PERMISSION) is False


class GrantsEverything(BaseBackend):
    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return True


def test_another_backend_is_asked_through_django() -> None:
    user = User.objects.create_user("u")
    backends = [
        "django.contrib.auth.backends.ModelBackend",
        f"{__name__}.GrantsEverything",
    ]
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        assert has_audit_permission(fresh(user), READ_PERMISSION) is True
    assert has_audit_permission(fresh(user), READ_PERMISSION) is False


def test_all_users_model_backend_keeps_the_shortcut_and_the_inactive_rule() -> None:
    user = make_user("u", active=False, superuser=False, direct=READ_PERMISSION, grouped="")
    backends = ["django.contrib.auth.backends.AllowAllUsersModelBackend"]
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        assert fresh(user).has_perm(READ_PERMISSION) is False
        assert has_audit_permission(fresh(user), READ_PERMISSION) is False
        user.is_active = True
        user.save()
        with CaptureQueriesContext(connection) as captured:
            assert has_audit_permission(fresh(user), READ_PERMISSION) is True
        assert len(captured.captured_queries) == 2  # the user, then the permission query


def test_django_cache_already_filled_is_used() -> None:
    user = fresh(make_user("u", active=True, superuser=False, direct=READ_PERMISSION, grouped=""))
    assert user.has_perm(READ_PERMISSION) is True  # fills Django's _perm_cache
    with CaptureQueriesContext(connection) as captured:
        assert has_audit_permission(user, READ_PERMISSION) is True
    assert captured.captured_queries == []


def test_other_apps_permissions_go_through_django() -> None:
    user = User.objects.create_user("u")
    user.user_permissions.add(Permission.objects.get(codename="view_group"))
    assert has_audit_permission(fresh(user), "auth.view_group") is True
    assert has_audit_permission(fresh(user), "auth.change_group") is False
