"""``manage.py demo --check``: what the demo recorded, checked against what it sent."""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from demo_site.traffic import Sent
from ml_audit.models import PredictionEvent


class DemoCheckFailed(AssertionError):
    pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoCheckFailed(message)


def _get(url: str, credentials: tuple[str, str] | None) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
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
