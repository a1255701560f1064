"""``manage.py demo --check``: what the demo recorded, checked against what it sent."""

from __future__ import annotations

import base64
import collections
import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from demo_site.traffic import Sent
from ml_audit import effective_outcome, subject_ref
from ml_audit.models import Explanation, ModelVersion, Outcome, PredictionEvent, Review


class DemoCheckFailed(AssertionError):
    pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoCheckFailed(message)


def _get(
    url: str, credentials: tuple[str, str] | None, accept: str = "application/json"
) -> tuple[int, Any]:
    headers = {"Accept": accept}
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            if accept != "application/json":
                return response.status, (response.headers.get_content_type(), raw.decode())
            return response.status, json.loads(raw)
    except urllib.error.HTTPError as error:
        return error.code, None


def rows_and_redaction(sent: Iterable[Sent]) -> dict[str, int]:
    """Every scored request has its row, with its trace id and explanation; no PII in clear."""
    sent = list(sent)
    recorded = [s for s in sent if s.application.kind != "invalid"]
    refused = [s for s in sent if s.application.kind == "invalid"]
    for s in refused:
        _expect(s.status == 400, f"an invalid application got HTTP {s.status}, not 400")
        _expect(s.prediction_id is None, "an invalid application got a prediction id")
    ids = [s.prediction_id for s in recorded]
    _expect(all(ids), "a scored request has no X-Prediction-Id header")
    events = {
        e.prediction_id: e
        for e in PredictionEvent.objects.filter(prediction_id__in=ids).prefetch_related(
            "explanations"
        )
    }
    _expect(len(events) == len(recorded), f"{len(recorded)} scored, {len(events)} rows")
    explained = 0
    for s in recorded:
        event = events[s.prediction_id]  # type: ignore[index]
        _expect(event.trace_id == s.trace_id, f"{event.prediction_id}: trace id differs")
        stored = json.dumps(
            [event.features, event.output, event.error_message, event.metadata], default=str
        )
        for secret in s.application.secrets:
            _expect(secret not in stored, f"{event.prediction_id}: {secret!r} stored in clear")
        if s.application.kind == "out_of_range":
            _expect(s.status == 422, f"an out-of-range application got HTTP {s.status}")
            _expect(event.status == "failed", f"{event.prediction_id} is not marked failed")
            _expect(event.error_type.endswith("OutsideModelRange"), "wrong error type")
            continue
        _expect(s.status == 200, f"{event.prediction_id}: HTTP {s.status}")
        _expect(event.status == "success", f"{event.prediction_id} is not a success")
        _expect(event.decision_outcome == s.body["decision"], "stored decision differs")
        explanation = event.explanation
        _expect(explanation is not None, f"{event.prediction_id} has no explanation")
        payload = explanation.payload  # type: ignore[union-attr]
        log_odds = payload["base_value"] + sum(payload["shap_values"].values())
        p = s.body["default_probability"]
        _expect(
            math.isclose(log_odds, math.log(p / (1 - p)), abs_tol=1e-3),
            f"{event.prediction_id}: contributions do not add up to the model's log-odds",
        )
        explained += 1
    return {"recorded": len(recorded), "explained": explained, "refused": len(refused)}


def api(
    base_url: str,
    credentials: tuple[str, str],
    sent: Iterable[Sent],
    trace_url_template: str | None = None,
) -> dict[str, int]:
    """The read API answers the auditor, refuses strangers, and serves redacted rows whose
    trace links follow the template."""
    api_root = f"{base_url}/api/ml-audit"
    status, _ = _get(f"{api_root}/predictions/", None)
    _expect(status in (401, 403), f"anonymous read got HTTP {status}")
    status, page = _get(f"{api_root}/predictions/?model_name=credit_risk&page_size=50", credentials)
    _expect(status == 200, f"the auditor's list got HTTP {status}")
    _expect(len(page["results"]) > 0, "the API lists no predictions")
    scored = next(s for s in sent if s.status == 200)
    status, rows = _get(
        f"{api_root}/predictions/?prediction_id={scored.prediction_id}", credentials
    )
    _expect(status == 200 and len(rows["results"]) == 1, "prediction_id filter failed")
    detail = rows["results"][0]
    _expect(detail["features"]["email"] != scored.application.body["email"], "email in clear")
    _expect(detail["explanation"] is not None, "the API shows no explanation")
    expected_link = (
        trace_url_template.format(trace_id=scored.trace_id) if trace_url_template else None
    )
    _expect(detail["trace_url"] == expected_link, f"trace_url is {detail['trace_url']!r}")
    status, detail_by_id = _get(f"{api_root}/predictions/{detail['id']}/", credentials)
    _expect(status == 200 and detail_by_id["prediction_id"] == scored.prediction_id, "detail")
    status, trace = _get(f"{api_root}/traces/{scored.trace_id}/", credentials)
    _expect(status == 200, f"traces/ got HTTP {status}")
    traced = [p["prediction_id"] for p in trace["predictions"]]
    _expect(scored.prediction_id in traced, "the trace does not list its prediction")
    return {"api_rows_seen": len(page["results"])}


def _ids_of(sent: Iterable[Sent]) -> set[str]:
    return {s.application.applicant_id for s in sent}


def subjects(sent: Iterable[Sent], spans: Iterable[Any]) -> dict[str, int]:
    """Every recorded prediction names its applicant by the subject reference the applicant's
    id and tenant give; no applicant id is stored anywhere (rows, explanations, reason codes,
    reviews, outcomes) or on any span the demo ended."""
    sent = [s for s in sent if s.prediction_id]
    events = {
        e.prediction_id: e
        for e in PredictionEvent.objects.filter(prediction_id__in=[s.prediction_id for s in sent])
    }
    refs = set()
    for s in sent:
        event = events[s.prediction_id]  # type: ignore[index]
        expected = subject_ref(s.application.applicant_id, tenant=s.application.caller.tenant)
        _expect(
            event.subject_ref == expected and len(expected) == 64,
            f"{event.prediction_id}: subject_ref {event.subject_ref!r}, expected {expected!r}",
        )
        refs.add(expected)
    repeated = len(sent) - len(refs)
    _expect(repeated > 0 or len(sent) < 20, "no applicant applied twice: no repeated subject")
    # Every applicant id starts with one of these: none of them may be found anywhere.
    applicant_ids = ("APP-", "HIST-")
    stored = json.dumps(
        [
            list(PredictionEvent.objects.values()),
            list(Explanation.objects.values()),
            list(Review.objects.values()),
            list(Outcome.objects.values()),
        ],
        default=str,
    )
    for applicant_id in applicant_ids:
        _expect(applicant_id not in stored, f"applicant id {applicant_id!r} stored in clear")
    spans = list(spans)
    with_ref = 0
    for span in spans:
        attributes = json.dumps(dict(span.attributes or {}), default=str)
        for applicant_id in applicant_ids:
            _expect(applicant_id not in attributes, f"{applicant_id!r} on span {span.name!r}")
        with_ref += "ml_audit.subject.ref" in (span.attributes or {})
    _expect(with_ref >= len(sent), f"{with_ref} spans carry a subject reference")
    return {"with_subject": len(sent), "subjects": len(refs), "spans": len(spans)}


def oversight(recorded: Any) -> dict[str, int]:
    """The reviews and outcomes the demo recorded are stored; each overridden prediction's
    effective outcome is its latest override's final outcome."""
    ours = Review.objects.filter(pk__in=recorded.review_ids)  # this run's
    reviews = ours.count()
    actions = collections.Counter(ours.values_list("action", flat=True))
    _expect(actions == recorded.reviews, f"reviews stored: {dict(actions)}")
    if recorded.history:
        for action in ("confirm", "override", "escalate", "contest_received", "contest_resolved"):
            _expect(action in actions, f"no {action} review was recorded")
    overrides = list(ours.filter(action="override").select_related("prediction"))
    for review in overrides:
        effective = effective_outcome(review.prediction)
        _expect(
            effective == review.final_outcome,
            f"{review.prediction.prediction_id}: effective outcome {effective!r}, the "
            f"override says {review.final_outcome!r}",
        )
    for prediction_id in recorded.reviewed_today["override"]:
        event = PredictionEvent.objects.get(prediction_id=prediction_id)
        _expect(
            effective_outcome(prediction_id) != event.decision_outcome,
            f"{prediction_id}: the override did not change the decision",
        )
    outcomes = Outcome.objects.filter(pk__in=recorded.outcome_ids).count()
    _expect(outcomes == recorded.outcomes, f"{outcomes} outcomes stored")
    return {"reviews": reviews, "overrides": len(overrides), "outcomes": outcomes}


def quality(base_url: str, credentials: tuple[str, str]) -> dict[str, Any]:
    """The quality API gives the model version's figures: a week per week with predictions,
    every outcome counted, accuracies, the overrides."""
    from demo_site.model import MODEL_NAME, MODEL_VERSION

    model = ModelVersion.objects.get(model_name=MODEL_NAME, version=MODEL_VERSION)
    url = f"{base_url}/api/ml-audit/models/{model.pk}/quality/"
    status, _ = _get(url, None)
    _expect(status in (401, 403), f"anonymous quality read got HTTP {status}")
    status, body = _get(url, credentials)
    _expect(status == 200, f"models/{{id}}/quality/ got HTTP {status}")
    total, weeks = body["total"], body["weeks"]
    _expect(body["model"]["version"] == MODEL_VERSION, "the quality of another model version")
    _expect(
        total["predictions"] == PredictionEvent.objects.filter(model=model).count(),
        f"the quality total counts {total['predictions']} predictions",
    )
    with_outcome = (
        Outcome.objects.filter(prediction__model=model).values("prediction").distinct().count()
    )
    _expect(total["with_outcome"] == with_outcome, "outcomes missing from quality")
    overridden = (
        Review.objects.filter(prediction__model=model, action="override")
        .values("prediction")
        .distinct()
        .count()
    )
    _expect(total["overridden"] == overridden, "overrides missing from quality")
    _expect(sum(w["predictions"] for w in weeks) == total["predictions"], "weeks do not add up")
    if total["with_outcome"]:
        _expect(len([w for w in weeks if w["accuracy"] is not None]) >= 2, "one week of figures")
        _expect(total["accuracy"] is not None, "no accuracy")
    return {
        "model": f"{MODEL_NAME} {MODEL_VERSION}",
        "weeks": len(weeks),
        "with_outcome": total["with_outcome"],
        "accuracy": total["accuracy"],
        "effective_accuracy": total["effective_accuracy"],
    }


def subject_report(
    base_url: str, credentials: tuple[str, str], sent: Iterable[Sent]
) -> dict[str, Any]:
    """The report of the applicant with the most decisions, at least one of them adverse:
    every decision of the subject, with reason codes in words, and no applicant id; the
    printable page for a browser."""
    by_subject: dict[str, list[PredictionEvent]] = {}
    for event in PredictionEvent.objects.exclude(subject_ref="").order_by("timestamp", "id"):
        by_subject.setdefault(event.subject_ref, []).append(event)
    adverse = {
        ref: events
        for ref, events in by_subject.items()
        if any(e.decision_outcome in ("decline", "review") for e in events)
    }
    _expect(bool(by_subject), "no prediction names a subject")
    # A small run (--weeks 0, a few requests) may have approvals only: no reasons to show.
    ref, events = max((adverse or by_subject).items(), key=lambda item: len(item[1]))
    url = f"{base_url}/api/ml-audit/subjects/{ref}/report/"
    status, _ = _get(url, None)
    _expect(status in (401, 403), f"anonymous subject report got HTTP {status}")
    status, report = _get(url, credentials)
    _expect(status == 200, f"subjects/{{ref}}/report/ got HTTP {status}")
    _expect(report["subject_ref"] == ref, "the report of another subject")
    decisions = report["decisions"]
    _expect(
        [d["prediction_id"] for d in decisions] == [e.prediction_id for e in events],
        "the report does not list the subject's decisions, oldest first",
    )
    codes = []
    for decision, event in zip(decisions, events, strict=True):
        explanation = decision["explanation"]
        if event.status != "success":
            continue
        _expect(decision["model_decision"] == event.decision_outcome, "decision differs")
        _expect(explanation is not None, f"{event.prediction_id}: no explanation in the report")
        reasons = explanation["reasons"]
        _expect(reasons is not None, f"{event.prediction_id}: no reason codes stored")
        if event.decision_outcome in ("decline", "review"):
            _expect(len(reasons) > 0, f"{event.prediction_id}: adverse, without reasons")
        else:
            _expect(reasons == [], f"{event.prediction_id}: reasons for an approval")
        for reason in reasons:
            _expect(reason["code"].startswith("R") and reason["in_words"], f"reason {reason}")
            codes.append(reason["code"])
    _expect(bool(codes) or not adverse, "no reason code in the report")
    text = json.dumps(report)
    for applicant_id in _ids_of(sent):
        _expect(applicant_id not in text, f"{applicant_id!r} in the subject report")
    status, (content_type, page) = _get(url, credentials, accept="text/html")
    _expect(status == 200 and content_type == "text/html", f"the page: {status} {content_type}")
    _expect("Automated decisions about one person" in page, "not the printable report")
    return {"decisions": len(decisions), "codes": sorted(set(codes)), "subject_ref": ref}


def sealed_trail(sent: Iterable[Sent], reported_ref: str) -> dict[str, Any]:
    """Seal what was recorded, forget one applicant (not the one whose report was checked),
    seal again and verify the whole trail: forgetting shreds a key and changes no row, so
    nothing may be reported."""
    from ml_audit.models import Seal, SubjectErasure, SubjectKey
    from ml_audit.sealing import seal_all, verify
    from ml_audit.subjects import forget_subject

    seal_all()
    candidates = [
        s.application
        for s in sent
        if s.status == 200
        and subject_ref(s.application.applicant_id, tenant=s.application.caller.tenant)
        not in (None, reported_ref)
    ]
    _expect(bool(candidates), "no applicant to forget")
    application = candidates[0]
    ref = subject_ref(application.applicant_id, tenant=application.caller.tenant)
    erasure = forget_subject(
        application.applicant_id,
        tenant=application.caller.tenant,
        reason="the demo's erasure request (GDPR Art. 17)",
        erased_by="demo",
        reference="DEMO-1",
    )
    _expect(erasure.subject_ref == ref, "the erasure names another reference")
    _expect(
        subject_ref(application.applicant_id, tenant=application.caller.tenant) is None,
        "the forgotten applicant still has a key",
    )
    _expect(SubjectErasure.objects.filter(subject_ref=ref).count() == 1, "no erasure record")
    _expect(
        PredictionEvent.objects.filter(subject_ref=ref).count() == erasure.predictions > 0,
        "the forgotten applicant's predictions are not all kept",
    )
    _expect(SubjectKey.objects.exists(), "every subject forgotten")
    seal_all()
    report = verify()
    _expect(report.ok, f"ml_audit_verify reports {sorted(report.findings)}")
    sealed = report.checked.get("seal members", 0)
    _expect(sealed > 0, "nothing was sealed")
    return {"seals": Seal.objects.count(), "sealed": sealed, "forgotten": erasure.predictions}
