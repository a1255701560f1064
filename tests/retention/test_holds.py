"""Legal holds: placed and released by appending rows, in Python and by the command."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from ml_audit.exceptions import AppendOnlyError, InvalidRecord
from ml_audit.models import PredictionEvent
from ml_audit.retention import active_holds, place_hold, release_hold
from ml_audit.retention.holds import held_q
from ml_audit.retention_models import LegalHold
from tests.retention.helpers import days_ago, predict

pytestmark = pytest.mark.django_db


def test_place_and_release_append_two_rows() -> None:
    hold = place_hold(reason="Litigation 17", created_by="alice", tenant_id="acme")
    assert active_holds() == [hold]
    release = release_hold(hold, reason="Case closed", created_by="bob")
    assert LegalHold.objects.count() == 2
    assert (release.action, release.releases_id, release.created_by) == ("release", hold.pk, "bob")
    assert active_holds() == []
    stored = LegalHold.objects.get(pk=hold.pk)
    assert (stored.reason, stored.created_by, stored.tenant_id) == (
        "Litigation 17",
        "alice",
        "acme",
    )


def test_a_hold_is_released_once_and_only_placements_are_released() -> None:
    hold = place_hold(reason="why", created_by="alice", model_name="credit")
    release = release_hold(str(hold.pk), reason="done", created_by="bob")
    with pytest.raises(InvalidRecord, match="released already"):
        release_hold(hold.pk, reason="again", created_by="bob")
    with pytest.raises(InvalidRecord, match="no placed hold"):
        release_hold(release, reason="release a release", created_by="bob")
    with pytest.raises(InvalidRecord, match="not a hold id"):
        release_hold("nope", reason="x", created_by="bob")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one scope criterion"),
        ({"everything": True, "tenant_id": "acme"}, "no scope criteria"),
        ({"actor_type": "user"}, "give actor_id"),
        ({"tenant_id": "acme", "reason": " "}, "reason"),
        ({"tenant_id": "acme", "created_by": ""}, "created_by"),
        ({"time_from": days_ago(1), "time_to": days_ago(2)}, "before time_from"),
        ({"time_from": days_ago(1).replace(tzinfo=None)}, "timezone-aware"),
        ({"prediction_ids": [""]}, "non-empty"),
    ],
)
def test_invalid_holds_are_refused(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, Any] = {"reason": "why", "created_by": "alice", **kwargs}
    with pytest.raises(InvalidRecord, match=message):
        place_hold(**arguments)
    assert LegalHold.objects.count() == 0


def test_hold_rows_are_append_only() -> None:
    hold = place_hold(reason="why", created_by="alice", everything=True)
    with pytest.raises(AppendOnlyError):
        hold.save()
    with pytest.raises(AppendOnlyError):
        LegalHold.objects.filter(pk=hold.pk).update(reason="rewritten")
    with pytest.raises(AppendOnlyError):
        hold.delete()
    with (
        pytest.raises(Exception, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE ml_audit_legalhold SET reason = 'x'")
    with (
        pytest.raises(Exception, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM ml_audit_legalhold")
    assert LegalHold.objects.get().reason == "why"


def test_a_release_must_name_a_placement_in_the_database() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        LegalHold(action="release", reason="x", created_by="a", created_at=days_ago(0)).save()


def test_scopes_select_what_they_name() -> None:
    rows = [
        predict(0, age_days=500, tenant="acme", actor="u1", model="credit"),
        predict(1, age_days=500, tenant="globex", actor="u1", model="credit"),
        predict(2, age_days=500, tenant="acme", actor="u2", model="fraud"),
        predict(3, age_days=10, tenant="acme", actor="u2", model="credit"),
    ]

    def held(**scope: Any) -> set[str]:
        hold = place_hold(reason="why", created_by="a", **scope)
        q = held_q([hold])
        assert q is not None
        return set(PredictionEvent.objects.filter(q).values_list("prediction_id", flat=True))

    ids = [row.prediction_id for row in rows]
    assert held(tenant_id="acme") == {ids[0], ids[2], ids[3]}
    assert held(actor_id="u1") == {ids[0], ids[1]}
    assert held(actor_type="service", actor_id="u1") == set()
    assert held(model_name="fraud") == {ids[2]}
    assert held(prediction_ids=[ids[1], "unknown"]) == {ids[1]}
    assert held(time_from=days_ago(20)) == {ids[3]}
    assert held(time_to=days_ago(20), tenant_id="acme", model_name="credit") == {ids[0]}
    assert held(everything=True) == set(ids)
    assert held_q([]) is None


def _hold(*args: str) -> str:
    out = io.StringIO()
    call_command("ml_audit_hold", *args, stdout=out)
    return out.getvalue()


def test_command_places_lists_and_releases() -> None:
    out = _hold(
        "place",
        "--reason",
        "Subpoena 9",
        "--by",
        "carol",
        "--tenant",
        "acme",
        "--prediction-id",
        "p1",
        "--prediction-id",
        "p2",
        "--from",
        "2025-01-01",
        "--reference",
        "CASE-9",
    )
    hold = LegalHold.objects.get()
    assert str(hold.pk) in out
    assert hold.prediction_ids == ["p1", "p2"]
    assert (hold.reference, hold.created_by, hold.time_from and hold.time_from.year) == (
        "CASE-9",
        "carol",
        2025,
    )
    listed = json.loads(_hold("list", "--json"))
    assert [row["id"] for row in listed] == [str(hold.pk)]
    _hold("release", str(hold.pk), "--reason", "Quashed", "--by", "dave")
    assert json.loads(_hold("list", "--json")) == []
    everything = json.loads(_hold("list", "--all", "--json"))
    assert everything[0]["released_by"] == "dave"
    assert everything[0]["release_reason"] == "Quashed"
    assert "No holds in force." in _hold("list")


def test_command_errors_are_command_errors() -> None:
    with pytest.raises(CommandError, match="scope criterion"):
        _hold("place", "--reason", "why", "--by", "x")
    with pytest.raises(CommandError, match="not an ISO 8601"):
        _hold("place", "--reason", "why", "--by", "x", "--from", "yesterday")
    assert LegalHold.objects.count() == 0
