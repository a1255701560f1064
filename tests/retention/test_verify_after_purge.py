"""A recorded purge is not tampering: ``ml_audit_verify`` passes after it; a deletion that no
purge recorded is still reported. (Tampering with the purge records, tombstones and holds
themselves: ``test_verify_purges.py``.)
"""

from __future__ import annotations

from typing import Any

import pytest

from ml_audit.models import PredictionEvent
from ml_audit.retention import run_purge
from ml_audit.retention_models import PurgedRow
from ml_audit.sealing.verifier import verify
from tests.retention.helpers import access_row, predict, seal_at_now

pytestmark = pytest.mark.django_db

KEY = "r" * 40


@pytest.fixture
def sealed_retention(settings: Any) -> None:
    settings.ML_AUDIT = {
        "SEAL_KEY": KEY,
        "SEAL_KEY_ID": "retention-test",
        "SEAL_LAG_SECONDS": 0,
        "RETENTION": {"DEFAULT_DAYS": 400, "ACCESS_LOG_DAYS": 200},
    }


def _trail() -> list[PredictionEvent]:
    events = [predict(i, age_days=500, explain=1) for i in range(3)]
    events.append(predict(9, age_days=10, explain=1))
    access_row(300)
    access_row(10)
    seal_at_now()
    assert verify().ok
    return events


def test_verify_passes_after_a_recorded_purge(sealed_retention: None) -> None:
    _trail()
    result = run_purge(ran_by="tester", execute=True, batch_size=2)
    assert result.counts == {"prediction": 3, "explanation": 3, "access": 1}
    report = verify()
    assert report.findings == {}, report.lines()
    assert report.notices == {}, report.lines()
    # The purge sealed its own records afterwards: all three batches are sealed.
    assert report.checked["purge"] == 3
    assert "purge not sealed yet" not in report.checked


def test_purge_removes_sealed_rows_and_tombstones_them(sealed_retention: None) -> None:
    events = _trail()
    run_purge(ran_by="tester", execute=True)
    assert {str(row.row_id) for row in PurgedRow.objects.filter(kind=1)} == {
        str(e.pk) for e in events[:3]
    }
    assert PurgedRow.objects.count() == 7
    assert verify().ok


def test_a_deletion_no_purge_recorded_is_still_reported(sealed_retention: None) -> None:
    from tests.seals.helpers import db_id, triggers_off

    events = _trail()
    run_purge(ran_by="tester", execute=True)
    with triggers_off() as cursor:
        cursor.execute(
            "DELETE FROM ml_audit_explanation WHERE prediction_id = %s", [db_id(events[3].pk)]
        )
        cursor.execute("DELETE FROM ml_audit_predictionevent WHERE id = %s", [db_id(events[3].pk)])
    found = verify().findings["deleted_row"]
    # Only the two rows deleted behind the purge's back.
    assert found.count == 2
    assert found.first["table"] in {"prediction", "explanation"}
