"""ml_audit_seal / ml_audit_verify: output, --export/--against, --json shape, exit codes, the
system check, lag and max_rows, key rotation."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml_audit.checks import check_settings
from ml_audit.models import Seal
from ml_audit.sealing import seal_all, seal_pending
from ml_audit.sealing.sealer import EPOCH
from tests.seals.helpers import (
    KEY,
    SEAL_SETTINGS,
    populate,
    record,
    run_verify,
    seal_now,
    triggers_off,
    verify_json,
)

pytestmark = pytest.mark.django_db


def seal_command(*args: str) -> str:
    out = io.StringIO()
    call_command("ml_audit_seal", *args, stdout=out)
    return out.getvalue()


@pytest.mark.usefixtures("sealing")
def test_seal_command_prints_what_it_sealed_and_exports_the_head(tmp_path: Path) -> None:
    populate()
    export = tmp_path / "head.json"
    out = seal_command("--export", str(export))
    assert "sealed seal 1: 11 rows (6 prediction, 3 explanation, 2 access)" in out
    document = json.loads(export.read_text())
    assert document["format"] == "ml_audit.seal-export/1"
    assert document["head"]["seal"] == 1
    assert document["head"]["key_id"] == "test-1"
    assert document["head"]["counts"] == {"access": 2, "explanation": 3, "prediction": 6}
    assert len(document["mac"]) == 64
    assert KEY not in export.read_text()
    assert "nothing to seal" in seal_command()


@pytest.mark.usefixtures("sealing")
def test_verify_exit_codes_and_text(tmp_path: Path) -> None:
    populate()
    seal_command()
    status, out = run_verify()
    assert status == 0
    assert out.splitlines()[-1].startswith("OK: checked 1 seals")
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_accesslog SET status_code = 500")
    status, out = run_verify()
    assert status == 1
    assert out.startswith("FAIL changed_row: 2 found; first: access ")
    assert "TAMPERING DETECTED" in out


@pytest.mark.usefixtures("sealing")
def test_verify_json_shape() -> None:
    populate()
    seal_command()
    status, report = verify_json()
    assert status == 0
    assert set(report) == {
        "ok",
        "checked",
        "findings",
        "notices",
        "purges",
        "latest_seal",
        "seconds",
    }
    assert report["ok"] is True
    assert report["purges"] == []
    assert report["findings"] == []
    assert report["checked"]["prediction"] == 6
    assert report["checked"]["seal members"] == 11
    assert report["latest_seal"]["seal"] == 1
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_accesslog")
    status, report = verify_json()
    assert status == 1
    (finding,) = report["findings"]
    assert set(finding) == {"class", "count", "first", "message"}
    assert finding["class"] == "deleted_row"
    assert finding["count"] == 2
    assert finding["first"]["table"] == "access"


@pytest.mark.usefixtures("sealing")
def test_against_an_exported_head(tmp_path: Path) -> None:
    populate()
    export = tmp_path / "head.json"
    seal_command("--export", str(export))
    record(50)
    seal_now()  # the chain grows: the exported head is still in it, unchanged
    assert run_verify("--against", str(export))[0] == 0
    # The newest seals removed: the chain alone is consistent, the export is not.
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM ml_audit_sealmember")
        cursor.execute("DELETE FROM ml_audit_seal")
    status, report = verify_json("--against", str(export))
    assert status == 1
    names = {finding["class"] for finding in report["findings"]}
    assert {"removed_seal", "export_mismatch"} <= names


@pytest.mark.usefixtures("sealing")
def test_against_a_changed_seal(tmp_path: Path) -> None:
    populate()
    export = tmp_path / "head.json"
    seal_command("--export", str(export))
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_seal SET leaves = 10")
    status, report = verify_json("--against", str(export))
    assert status == 1
    mismatch = next(f for f in report["findings"] if f["class"] == "export_mismatch")
    assert "leaves" in mismatch["message"]


@pytest.mark.usefixtures("sealing")
def test_against_refuses_a_file_that_is_no_export(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("{}")
    with pytest.raises(CommandError, match="not an exported seal head"):
        call_command("ml_audit_verify", "--against", str(bogus), stdout=io.StringIO())


@pytest.mark.usefixtures("sealing")
def test_since_until_limit_the_row_checks() -> None:
    populate()
    seal_command()
    status, report = verify_json("--since", "2999-01-01")
    assert status == 0
    assert report["checked"]["prediction"] == 0
    assert report["checked"]["seals"] == 1


def test_seal_command_without_a_key_fails(settings: Any) -> None:
    settings.ML_AUDIT = {}
    populate(2)
    with pytest.raises(CommandError, match="SEAL_KEY"):
        seal_command()


@pytest.mark.usefixtures("sealing")
def test_verify_without_the_key_cannot_authenticate(settings: Any) -> None:
    populate(2)
    seal_now()
    settings.ML_AUDIT = {}
    status, report = verify_json()
    assert status == 1
    assert [f["class"] for f in report["findings"]] == ["unknown_key"]


@pytest.mark.usefixtures("sealing")
def test_rotated_keys_still_verify_old_seals(settings: Any) -> None:
    populate(2)
    seal_now()
    settings.ML_AUDIT = {
        **SEAL_SETTINGS,
        "SEAL_KEY": "n" * 32,
        "SEAL_KEY_ID": "test-2",
        "SEAL_PREVIOUS_KEYS": {"test-1": KEY},
    }
    record(7)
    seal = seal_now()
    assert seal is not None
    assert seal.key_id == "test-2"
    assert run_verify()[0] == 0


def test_lag_keeps_young_rows_out(settings: Any) -> None:
    settings.ML_AUDIT = {**SEAL_SETTINGS, "SEAL_LAG_SECONDS": 3600}
    populate(2)
    assert seal_pending() is None
    assert run_verify()[0] == 0


@pytest.mark.usefixtures("sealing")
def test_max_rows_splits_into_seals_and_holds_the_horizon_back() -> None:
    populate(6)  # 11 rows
    seals = seal_all(max_rows=4)
    assert [s.leaves for s in seals] == [4, 4, 3]
    assert [s.horizon == EPOCH for s in seals] == [True, True, False]
    assert Seal.objects.count() == 3
    assert run_verify()[0] == 0


def _check_ids(settings: Any, **ml_audit: Any) -> list[str]:
    settings.ML_AUDIT = ml_audit
    return [m.id for m in check_settings() if m.id == "ml_audit.E005"]


def test_system_check_refuses_missing_or_short_keys(settings: Any) -> None:
    assert _check_ids(settings) == []  # sealing off by default: nothing required
    assert _check_ids(settings, SEALING=True) == ["ml_audit.E005"]
    assert _check_ids(settings, SEALING=True, SEAL_KEY="short") == ["ml_audit.E005"]
    assert _check_ids(settings, SEALING=True, SEAL_KEY=b"x" * 31) == ["ml_audit.E005"]
    assert _check_ids(settings, SEALING=True, SEAL_KEY=b"x" * 32) == []
    assert _check_ids(settings, SEAL_KEY="short") == ["ml_audit.E005"]
    assert _check_ids(settings, SEAL_PREVIOUS_KEYS={"old": "short"}) == ["ml_audit.E005"]


def test_seal_if_due_runs_only_when_sealing_is_on(settings: Any) -> None:
    from ml_audit.sealing import sealer

    populate(2)
    settings.ML_AUDIT = {**SEAL_SETTINGS, "SEALING": False}
    assert sealer.seal_if_due() is None
    settings.ML_AUDIT = {**SEAL_SETTINGS, "SEALING": True, "SEAL_INTERVAL_SECONDS": 3600}
    sealer._last_run.clear()
    import time

    time.sleep(0.01)
    seal = sealer.seal_if_due()
    assert seal is not None
    record(9)
    assert sealer.seal_if_due() is None  # not due for another hour
