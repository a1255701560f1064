"""``manage.py ml_audit_subject_report``."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml_audit.management.commands.ml_audit_subject_report import Command
from ml_audit.models import AccessLog, SubjectKey
from ml_audit.subjects import forget_subject

from .conftest import History

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("ml_audit_subject_report", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_json_by_identifier_and_tenant(history: History) -> None:
    keys = SubjectKey.objects.count()

    report = json.loads(run("--subject", "applicant-1", "--tenant", "acme"))

    assert report["subject_ref"] == history.ref
    assert [d["prediction_id"] for d in report["decisions"]] == ["app-1", "app-2"]
    assert report["truncated"] is False
    assert SubjectKey.objects.count() == keys  # looking up never creates a key


def test_by_reference_as_html_into_a_file(history: History, tmp_path: Path) -> None:
    target = tmp_path / "report.html"

    assert run("--ref", history.ref.upper(), "--format", "html", "--output", str(target)) == ""

    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "Automated decisions about one person" in html
    assert "Debt is high relative to income" in html


def test_the_read_is_access_logged_without_the_identifier(history: History) -> None:
    run("--subject", "applicant-1", "--tenant", "acme", "--format", "html")

    row = AccessLog.objects.get()
    assert row.endpoint == "command-subject-report"
    assert row.method == "COMMAND"
    assert row.returned_ids == [str(history.declined.pk), str(history.approved.pk)]
    assert row.result_count == 2
    assert row.query == {"format": ["html"], "tenant": ["acme"]}
    assert history.ref in row.path
    assert "applicant-1" not in json.dumps([row.path, row.query])
    assert row.username


def test_no_access_log_when_it_is_off(settings: Any, history: History) -> None:
    settings.ML_AUDIT = {**settings.ML_AUDIT, "API_ACCESS_LOG": False}

    run("--ref", history.ref)

    assert not AccessLog.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject", "nobody", "--tenant", "acme"], "No subject with this identifier in "),
        (["--subject", "applicant-1"], "(without a tenant) is known"),
        (["--subject", ""], "needs the subject's identifier"),
        (["--subject", "x" * 2000, "--tenant", "acme"], "subject"),
        (["--ref", "0" * 64], "No decision about the subject 000000"),
        (["--ref", "not-a-ref"], "--ref must be a subject reference"),
        (["--ref", "0" * 64, "--tenant", "acme"], "--tenant goes with --subject"),
    ],
)
def test_refusals(history: History, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert message in str(caught.value)
    assert not AccessLog.objects.exists()


def test_a_forgotten_subject(history: History) -> None:
    forget_subject("applicant-1", tenant="acme", reason="GDPR Art. 17", erased_by="dpo")

    with pytest.raises(CommandError, match="No subject with this identifier in tenant 'acme'"):
        run("--subject", "applicant-1", "--tenant", "acme")
    with pytest.raises(CommandError, match="This subject was forgotten on"):
        run("--ref", history.ref)


def test_without_a_subject_key_setting(settings: Any, history: History) -> None:
    settings.ML_AUDIT = {k: v for k, v in settings.ML_AUDIT.items() if k != "SUBJECT_KEY"}

    with pytest.raises(CommandError, match="SUBJECT_KEY"):
        run("--subject", "applicant-1", "--tenant", "acme")


def test_an_unknown_subject_exits_non_zero(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        Command().run_from_argv(
            ["manage.py", "ml_audit_subject_report", "--subject", "nobody", "--tenant", "acme"]
        )
    assert caught.value.code == 1
    assert "No subject with this identifier" in capsys.readouterr().err


def test_an_unwritable_output(history: History, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot write"):
        run("--ref", history.ref, "--output", str(tmp_path / "missing" / "report.json"))
