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
    #: Whom the application is about: the subject of its prediction (never stored in clear).
    applicant_id: str = ""
    #: Whether this applicant defaults (the synthetic data set's ground truth): the outcome
    #: the demo records later for some of the decisions.
    defaulted: bool = False


@dataclasses.dataclass
class Sent:
    application: Application
    status: int
    body: dict[str, Any]
    prediction_id: str | None
    trace_id: str | None


#: Share of applications made by an applicant who applied before (to the same tenant).
REPEAT_SHARE = 0.15


def applications(count: int, seed: int = SEED + 1, *, id_prefix: str = "APP-") -> list[Application]:
    """``count`` applications from mixed callers: ~4% invalid, ~4% outside the model's range,
    ~15% by an applicant who applied before (same applicant id, person and caller), so that a
    subject's report has more than one decision. Applicant ids are ``{id_prefix}NNNNNN``."""
    rng = random.Random(seed)
    repeats = random.Random(seed + 7)  # its own stream: the rest stays as it was
    X, defaulted = synthetic_applicants(count, seed)
    result = []
    people: list[tuple[Caller, str, str, str, int]] = []
    for i, values in enumerate(X):
        features: dict[str, Any] = dict(zip(FEATURES, (float(v) for v in values), strict=True))
        for name, digits in DIGITS.items():
            features[name] = round(features[name], digits) if digits else round(features[name])
        first, last = rng.choice(FIRST), rng.choice(LAST)
        applicant_id, person = f"{id_prefix}{i + 1:06d}", i
        repeat = bool(people) and repeats.random() < REPEAT_SHARE
        if repeat:
            _, applicant_id, first, last, person = repeats.choice(people)
        email = f"{first}.{last}{person}@example.com".lower()
        phone = f"+44 20 7946 {person % 10000:04d}"
        body = {
            **features,
            "applicant_id": applicant_id,
            "full_name": f"{first} {last}",
            "email": email,
            "phone": phone,
        }
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
        caller = rng.choice(CALLERS)
        if repeat:
            caller = next(p[0] for p in people if p[1] == applicant_id)  # the same tenant
        else:
            people.append((caller, applicant_id, first, last, person))
        secrets.append(applicant_id)
        result.append(
            Application(caller, body, tuple(secrets), kind, applicant_id, bool(defaulted[i]))
        )
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
