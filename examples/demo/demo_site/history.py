"""After the traffic: earlier weeks' decisions, people's reviews and observed outcomes.

What a credit service accumulates over time, recorded through ml_audit's public API:

* **Earlier weeks.** The quality of a model version is counted per ISO week of its
  predictions, and a chart of one week is a dot. So the demo also records ``weeks`` weeks of
  earlier decisions with ``record_prediction_event(timestamp=...)``, as a service importing
  its history would (scored by the same model, explained, ``metadata={"source":
  HISTORY_SOURCE}``). Some of those applicants apply again in today's traffic: their subject
  reports hold both decisions.
* **Reviews** (``record_review``): credit officers decide the applications the model referred
  to them (``override`` with the final outcome), confirm some declines, escalate one, and an
  applicant contests a decline (``contest_received``, then ``contest_resolved``).
* **Outcomes** (``record_outcome``): for most earlier decisions, whether the loan was repaid,
  observed days to weeks later, in the model's vocabulary of decisions (``"approve"``: the
  applicant repaid; ``"decline"``: the applicant defaulted), so that the quality view can
  compare them with the model's decisions and with the officers' overrides.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import random
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from demo_site.model import MODEL_NAME, MODEL_VERSION, SEED, trained_model
from demo_site.traffic import Application, Sent, applications
from ml_audit import attach_explanation, record_outcome, record_prediction_event, record_review
from ml_audit.records import ActorPayload

#: ``metadata["source"]`` of the earlier weeks' predictions.
HISTORY_SOURCE = "demo history"
#: ``Outcome.source`` of the outcomes the demo records.
OUTCOME_SOURCE = "loan-servicing"
#: Earlier decisions per week.
PER_WEEK = 30
#: Share of the earlier decisions whose outcome has been observed.
OUTCOME_SHARE = 0.7
#: How often an officer's override matches what later happened.
OFFICER_RIGHT = 0.85
#: The service account importing the history, and the officer who reviews.
IMPORTER = "risk-batch"
OFFICER = "officer"

OVERRIDE_REASONS = {
    "approve": "Income and repayments verified with payslips and bank statements",
    "decline": "Affordability check failed on verified income",
}


@dataclasses.dataclass
class Recorded:
    """What :func:`record` wrote."""

    history: int = 0
    reviews: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    outcomes: int = 0
    #: Primary keys of the reviews and outcomes written.
    review_ids: list[Any] = dataclasses.field(default_factory=list)
    outcome_ids: list[Any] = dataclasses.field(default_factory=list)
    #: prediction ids of today's traffic that were overridden or confirmed, by action.
    reviewed_today: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )


def truth(application: Application) -> str:
    """The decision that was right in hindsight, in the model's vocabulary."""
    return "decline" if application.defaulted else "approve"


def _actor(application: Application) -> ActorPayload:
    caller = application.caller
    return ActorPayload(
        actor_type="service" if caller.service else "user",
        actor_id=caller.username,
        tenant_id=caller.tenant,
        user_agent=caller.user_agent,
    )


def earlier_applications(weeks: int, sent: Sequence[Sent]) -> list[Application]:
    """``weeks * PER_WEEK`` valid, in-range applications; every fourth is by an applicant of
    today's traffic (same id and caller, hence the same subject)."""
    returning = [s.application for s in sent if s.status == 200]
    result: list[Application] = []
    for i, application in enumerate(
        a for a in applications(weeks * PER_WEEK * 2, SEED + 2, id_prefix="HIST-") if a.kind == "ok"
    ):
        if len(result) == weeks * PER_WEEK:
            break
        if i % 4 == 0 and i // 4 < len(returning):
            today = returning[i // 4]
            body = {**application.body, "applicant_id": today.applicant_id}
            application = dataclasses.replace(
                application,
                caller=today.caller,
                body=body,
                applicant_id=today.applicant_id,
                secrets=(*application.secrets, today.applicant_id),
            )
        result.append(application)
    return result


def record(weeks: int, sent: Sequence[Sent], officer: Any, seed: int = SEED + 3) -> Recorded:
    """Record the earlier weeks, the reviews and the outcomes (see the module docstring)."""
    rng = random.Random(seed)
    now = timezone.now()
    done = Recorded()
    model = trained_model()
    earlier_declines: list[Any] = []  # not reviewed yet

    def review(prediction: Any, action: str, **fields: Any) -> None:
        reviewer = fields.pop("reviewer", officer)
        stored = record_review(prediction, reviewer=reviewer, action=action, **fields)
        done.reviews[action] += 1
        done.review_ids.append(stored.pk)

    # Earlier weeks: decisions, officers' reviews, outcomes.
    for n, application in enumerate(earlier_applications(weeks, sent)):
        week = 1 + n % weeks
        at = now - dt.timedelta(days=7 * week + rng.uniform(0, 6.5))
        score = model.score(application.body)
        prediction = record_prediction_event(
            MODEL_NAME,
            MODEL_VERSION,
            features=application.body,
            output=score,
            decision_outcome=score["decision"],
            confidence=score["confidence"],
            actor=_actor(application),
            subject=application.applicant_id,
            metadata={"source": HISTORY_SOURCE},
            timestamp=at,
        )
        attach_explanation(prediction, **model.explain(application.body), generated_at=at)
        done.history += 1
        reviewed = min(at + dt.timedelta(hours=rng.uniform(2, 30)), now)
        if score["decision"] == "review":
            right = rng.random() < OFFICER_RIGHT
            final = truth(application) if right else ("decline", "approve")[application.defaulted]
            review(
                prediction,
                "override",
                final_outcome=final,
                reason=OVERRIDE_REASONS[final],
                at=reviewed,
            )
        elif score["decision"] == "decline" and rng.random() < 0.3:
            review(prediction, "confirm", reason="Arrears confirmed with the bureau", at=reviewed)
        elif score["decision"] == "decline":
            earlier_declines.append(prediction)
        if rng.random() < OUTCOME_SHARE:
            # Days to weeks later, and before today.
            later = min(dt.timedelta(days=21), now - at) * rng.uniform(0.2, 0.95)
            observed = at + later
            outcome = record_outcome(
                prediction,
                value=truth(application),
                observed_at=observed,
                source=OUTCOME_SOURCE,
                recorded_by="demo",
            )
            done.outcomes += 1
            done.outcome_ids.append(outcome.pk)

    # Today's traffic: officers at work on the decisions just made.
    scored = [s for s in sent if s.status == 200]
    referred = [s for s in scored if s.body["decision"] == "review"]
    declined = [s for s in scored if s.body["decision"] == "decline"]
    for s in referred[:3]:
        final = truth(s.application)
        review(s.prediction_id, "override", final_outcome=final, reason=OVERRIDE_REASONS[final])
        done.reviewed_today["override"].append(str(s.prediction_id))
    # Few adverse decisions today (a small --count): earlier, unreviewed declines stand in.
    others = [s.prediction_id for s in referred[3:] + declined[2:]] + earlier_declines
    for prediction in others[:1]:
        review(
            prediction,
            "escalate",
            reason="Self-employed income: needs a senior underwriter",
            comment="Two years of accounts requested.",
        )
    for s in declined[:2]:
        review(s.prediction_id, "confirm", reason="Arrears confirmed with the bureau")
        done.reviewed_today["confirm"].append(str(s.prediction_id))
    for prediction in others[1:2]:
        review(
            prediction,
            "contest_received",
            reviewer={"actor_type": "service", "actor_id": "complaints-inbox"},
            reason="The applicant says the late payments were a bank error",
            comment="Received by e-mail; the applicant asks for a person to look again.",
        )
        review(
            prediction,
            "contest_resolved",
            reason="Bureau confirmed the late payments; the decision stands",
        )
    return done
