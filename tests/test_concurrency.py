"""Concurrent first use on PostgreSQL: 8 processes, exactly one row each time."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections, transaction

from ml_audit import store
from ml_audit.models import Explanation, ModelVersion, PredictionEvent, RequestingActor
from ml_audit.services import ActorPayload, record_prediction_event

pytestmark = pytest.mark.postgres

WORKERS = 8


def _worker(barrier: Any, results: Any, kwargs: dict[str, Any]) -> None:
    try:
        store.clear_caches()
        barrier.wait(timeout=30)
        event = record_prediction_event(**kwargs)
        results.put(("ok", str(event.pk)))
    except BaseException as exc:  # report everything, including IntegrityError
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()


def _run_in_processes(make_kwargs: Callable[[int], dict[str, Any]]) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    connections.close_all()  # never share a live connection with the children
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_worker, args=(barrier, results, make_kwargs(i))) for i in range(WORKERS)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def _purge(prediction_ids: list[str]) -> None:
    with transaction.atomic(), store.allow_purge():
        Explanation.objects.filter(prediction__prediction_id__in=prediction_ids).delete()
        PredictionEvent.objects.filter(prediction_id__in=prediction_ids).delete()


def test_eight_processes_recording_the_same_prediction_id(
    django_db_setup: None, django_db_blocker: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    kwargs = {
        "model_name": f"race-model-{tag}",
        "model_version": "1",
        "features": {"age": 1},
        "output": {"score": 0.5},
        "prediction_id": f"race-{tag}",
        "actor": ActorPayload("user", f"race-user-{tag}"),
    }
    with django_db_blocker.unblock():
        outcomes = _run_in_processes(lambda i: kwargs)
        try:
            assert [kind for kind, _ in outcomes] == ["ok"] * WORKERS, outcomes
            assert len({pk for _, pk in outcomes}) == 1
            assert PredictionEvent.objects.filter(prediction_id=f"race-{tag}").count() == 1
            assert ModelVersion.objects.filter(model_name=f"race-model-{tag}").count() == 1
            assert RequestingActor.objects.filter(actor_id=f"race-user-{tag}").count() == 1
        finally:
            _purge([f"race-{tag}"])


def test_eight_processes_first_using_the_same_actor(
    django_db_setup: None, django_db_blocker: Any
) -> None:
    tag = uuid.uuid4().hex[:8]

    def kwargs(i: int) -> dict[str, Any]:
        return {
            "model_name": f"actor-race-{tag}",
            "model_version": "1",
            "features": {"i": i},
            "prediction_id": f"actor-race-{tag}-{i}",
            "actor": ActorPayload("service", f"svc-{tag}", tenant_id="tenant-a"),
        }

    with django_db_blocker.unblock():
        outcomes = _run_in_processes(kwargs)
        ids = [f"actor-race-{tag}-{i}" for i in range(WORKERS)]
        try:
            assert [kind for kind, _ in outcomes] == ["ok"] * WORKERS, outcomes
            assert RequestingActor.objects.filter(actor_id=f"svc-{tag}").count() == 1
            actor = RequestingActor.objects.get(actor_id=f"svc-{tag}")
            events = PredictionEvent.objects.filter(prediction_id__in=ids)
            assert events.count() == WORKERS
            assert set(events.values_list("actor_id", flat=True)) == {actor.pk}
            assert ModelVersion.objects.filter(model_name=f"actor-race-{tag}").count() == 1
        finally:
            _purge(ids)
