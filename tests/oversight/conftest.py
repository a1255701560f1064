from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from ml_audit.models import PredictionEvent
from ml_audit.services import ActorPayload, record_prediction_event

T0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def predict(
    prediction_id: str = "loan-1", *, tenant: str = "acme", **overrides: Any
) -> PredictionEvent:
    """A recorded prediction (decision "decline") of ``tenant``, in trace :data:`TRACE`."""
    kwargs: dict[str, Any] = {
        "model_name": "credit",
        "model_version": "1",
        "prediction_id": prediction_id,
        "features": {"income": 30_000},
        "output": {"score": 0.2},
        "decision_outcome": "decline",
        "confidence": 0.8,
        "actor": ActorPayload("service", "scorer", tenant_id=tenant),
        "trace_id": TRACE,
        "timestamp": T0,
    }
    kwargs.update(overrides)
    return record_prediction_event(**kwargs)


def make_user(
    username: str, *codenames: str, staff: bool = False, password: str | None = None
) -> User:
    """A user with these ``ml_audit`` permissions (no password unless given: hashing one is
    slow, and the tests sign in with ``force_login``)."""
    user = User.objects.create_user(username, password=password, is_staff=staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="ml_audit", codename__in=codenames)
    )
    return User.objects.get(pk=user.pk)  # a fresh instance: no stale permission cache


@pytest.fixture
def prediction(db: None) -> PredictionEvent:
    return predict()


@pytest.fixture
def tenant_scoping(settings: Any) -> None:
    """Users carry ``allowed_tenants`` by username: ``acme-*`` users see acme only."""

    def resolver(request: Any) -> Any:
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else ""
        return ["acme"] if name.startswith("acme-") else None

    settings.ML_AUDIT = {**getattr(settings, "ML_AUDIT", {}), "API_TENANT_RESOLVER": resolver}
