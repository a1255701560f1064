"""Synthetic callers and applications, sent as real HTTP requests to the demo's endpoint."""

from __future__ import annotations

import dataclasses
import json
import random
import urllib.error
import urllib.request
from typing import Any

from demo_site.model import FEATURES, SEED, synthetic_applicants


@dataclasses.dataclass(frozen=True)
class Caller:
    username: str
    tenant: str
    service: bool = False
    user_agent: str = "credit-portal/4.2"


CALLERS = (
    Caller("alice", "acme-bank"),
    Caller("bob", "acme-bank", user_agent="acme-mobile/2.0 (Android 15)"),
    Caller("carol", "globex"),
    Caller("risk-batch", "globex", service=True, user_agent="globex-batch/1.3"),
    Caller("dave", "initech", user_agent="initech-broker/0.9"),
)

#: How applications round each input (as a form would).
DIGITS = {
    "income_k": 1,
    "debt_to_income": 3,
    "credit_history_months": 0,
    "late_payments_12m": 0,
    "loan_amount_k": 1,
    "age": 0,
}

FIRST = ("Jane", "Omar", "Li", "Ana", "Tomasz", "Fatima", "Kofi", "Maria", "Sven", "Priya")
LAST = ("Doe", "Haddad", "Wei", "Silva", "Nowak", "Khan", "Mensah", "Rossi", "Berg", "Iyer")


@dataclasses.dataclass
class Application:
    caller: Caller
    body: dict[str, Any]
    #: What must never appear in the audit trail in clear.
    secrets: tuple[str, ...]
    #: "ok", "invalid" (refused before scoring) or "out_of_range" (the model refuses it).
    kind: str = "ok"


@dataclasses.dataclass
class Sent:
    application: Application
    status: int
    body: dict[str, Any]
    prediction_id: str | None
    trace_id: str | None


def applications(count: int, seed: int = SEED + 1) -> list[Application]:
    """``count`` applications from mixed callers: ~4% invalid, ~4% outside the model's range."""
    rng = random.Random(seed)
    X, _ = synthetic_applicants(count, seed)
    result = []
    for i, values in enumerate(X):
        features: dict[str, Any] = dict(zip(FEATURES, (float(v) for v in values), strict=True))
        for name, digits in DIGITS.items():
            features[name] = round(features[name], digits) if digits else round(features[name])
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{i}@example.com".lower()
        phone = f"+44 20 7946 {i % 10000:04d}"
        body = {**features, "full_name": f"{first} {last}", "email": email, "phone": phone}
        secrets: list[str] = [email, phone, f"{first} {last}"]
        roll = rng.random()
        if roll < 0.25:
            card = "4111 1111 1111 1111"
            body["notes"] = f"Customer read out card {card} on the call; call back on {phone}."
            secrets.append(card)
        kind = "ok"
        if roll > 0.96:
            body["age"] = 15  # refused by the serializer: nothing was predicted
            kind = "invalid"
        elif roll > 0.92:
            body["loan_amount_k"] = round(features["income_k"] * 30, 1)
            kind = "out_of_range"
        result.append(Application(rng.choice(CALLERS), body, tuple(secrets), kind))
    return result


def _trace_id(traceresponse: str | None) -> str | None:
    # W3C traceresponse: "00-<trace id>-<span id>-<flags>"
    parts = (traceresponse or "").split("-")
    return parts[1] if len(parts) == 4 else None


def send(base_url: str, application: Application, api_key: str) -> Sent:
    request = urllib.request.Request(
        f"{base_url}/api/score/",
        data=json.dumps(application.body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Api-Key": api_key,
            "User-Agent": application.caller.user_agent,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {"raw": raw.decode(errors="replace")[:200]}
    return Sent(
        application,
        status,
        body if isinstance(body, dict) else {"data": body},
        headers.get("X-Prediction-Id"),
        _trace_id(headers.get("traceresponse")),
    )
