"""The retention policy: how long each audit row is kept, from ``ML_AUDIT["RETENTION"]``.

Pure (no models): :mod:`ml_audit.conf` builds it and the system check ``ml_audit.E006``
reads :meth:`RetentionPolicy.below_floor`.

Which period applies to a prediction of model ``m`` for tenant ``t``:

* ``MODELS[m]`` and ``TENANTS[t]`` when either is configured; when both are, the **longer**
  (a row is kept as long as any rule that names it asks);
* else ``DEFAULT_DAYS``;
* ``None`` anywhere means "keep forever".

Explanation revisions (and later reviews, outcomes) follow their prediction. The access log has
its own period, ``ACCESS_LOG_DAYS`` (default: ``DEFAULT_DAYS``).

The floor, ``FLOOR_DAYS`` (default and minimum 183 days: six months, EU AI Act Art. 19(1) and
26(6)), may be raised (e.g. 762 for Regulation B's 25 months); a period below it, or a floor
below 183, needs ``ML_AUDIT["RETENTION_FLOOR_OVERRIDE"]``, a text saying why, which every purge
record then carries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ml_audit.exceptions import ConfigurationError

__all__ = ["MIN_FLOOR_DAYS", "RetentionPolicy", "Rule"]

#: Six months: EU AI Act Art. 19(1) and 26(6) ("at least six months").
MIN_FLOOR_DAYS = 183
#: The shortest override reason accepted: a word or two is not a reason.
MIN_OVERRIDE_CHARS = 10
_KEYS = ("DEFAULT_DAYS", "MODELS", "TENANTS", "ACCESS_LOG_DAYS", "FLOOR_DAYS")


@dataclass(frozen=True)
class Rule:
    """The period that applies to a set of rows, and the setting it comes from."""

    days: int | None
    source: str  # "DEFAULT_DAYS", "MODELS['credit']", "TENANTS['acme']", "ACCESS_LOG_DAYS"

    def cutoff(self, now: dt.datetime) -> dt.datetime | None:
        """Rows recorded before this time are past retention; ``None``: kept forever."""
        return None if self.days is None else now - dt.timedelta(days=self.days)


@dataclass(frozen=True)
class RetentionPolicy:
    default_days: int | None = None
    models: Mapping[str, int | None] = field(default_factory=dict)
    tenants: Mapping[str, int | None] = field(default_factory=dict)
    access_log_days: int | None = None
    floor_days: int = MIN_FLOOR_DAYS
    floor_override: str | None = None

    @classmethod
    def from_settings(cls, value: Any, override: Any = None) -> RetentionPolicy:
        """Parse ``ML_AUDIT["RETENTION"]``; malformed values raise ``ConfigurationError``
        (a period below the floor does not: see :meth:`below_floor`)."""
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                'ML_AUDIT["RETENTION"] must be a dict such as {"DEFAULT_DAYS": 760}.'
            )
        unknown = sorted(map(str, set(value) - set(_KEYS)))
        if unknown:
            raise ConfigurationError(
                f'Unknown ML_AUDIT["RETENTION"] key(s): {", ".join(unknown)}; '
                f"valid keys are {', '.join(_KEYS)}."
            )
        if override is not None and (
            not isinstance(override, str) or len(override.strip()) < MIN_OVERRIDE_CHARS
        ):
            raise ConfigurationError(
                'ML_AUDIT["RETENTION_FLOOR_OVERRIDE"] must be None or a text of at least '
                f"{MIN_OVERRIDE_CHARS} characters saying why a shorter period is lawful."
            )
        default = _days("DEFAULT_DAYS", value.get("DEFAULT_DAYS"))
        access = value.get("ACCESS_LOG_DAYS", default)
        floor = _days("FLOOR_DAYS", value.get("FLOOR_DAYS", MIN_FLOOR_DAYS))
        if floor is None:
            raise ConfigurationError('ML_AUDIT["RETENTION"]["FLOOR_DAYS"] cannot be None.')
        return cls(
            default_days=default,
            models=_per_name("MODELS", value.get("MODELS", {})),
            tenants=_per_name("TENANTS", value.get("TENANTS", {})),
            access_log_days=_days("ACCESS_LOG_DAYS", access),
            floor_days=floor,
            floor_override=override.strip() if isinstance(override, str) else None,
        )

    # -------------------------------------------------------------------- which period

    def rule_for(self, model_name: str, tenant_id: str) -> Rule:
        """The period of a prediction of ``model_name`` for ``tenant_id`` (module docstring)."""
        specific = []
        if model_name in self.models:
            specific.append(Rule(self.models[model_name], f"MODELS[{model_name!r}]"))
        if tenant_id in self.tenants:
            specific.append(Rule(self.tenants[tenant_id], f"TENANTS[{tenant_id!r}]"))
        if not specific:
            return Rule(self.default_days, "DEFAULT_DAYS")
        if any(rule.days is None for rule in specific):
            return next(rule for rule in specific if rule.days is None)
        return max(specific, key=lambda rule: rule.days or 0)

    def access_rule(self) -> Rule:
        return Rule(self.access_log_days, "ACCESS_LOG_DAYS")

    @property
    def purges_anything(self) -> bool:
        periods = [self.default_days, self.access_log_days, *self.models.values()]
        return any(days is not None for days in [*periods, *self.tenants.values()])

    @property
    def shortest_days(self) -> int | None:
        """The shortest configured prediction period: no prediction younger is ever purged."""
        periods = [self.default_days, *self.models.values(), *self.tenants.values()]
        known = [days for days in periods if days is not None]
        return min(known) if known else None

    # -------------------------------------------------------------------- the floor

    def below_floor(self) -> list[str]:
        """The settings below the floor (``[]`` when none is, or when an override is set)."""
        if self.floor_override is not None:
            return []
        problems = []
        if self.floor_days < MIN_FLOOR_DAYS:
            problems.append(f"FLOOR_DAYS={self.floor_days} (< {MIN_FLOOR_DAYS})")
        periods: list[tuple[str, int | None]] = [
            ("DEFAULT_DAYS", self.default_days),
            ("ACCESS_LOG_DAYS", self.access_log_days),
            *((f"MODELS[{name!r}]", days) for name, days in self.models.items()),
            *((f"TENANTS[{name!r}]", days) for name, days in self.tenants.items()),
        ]
        floor = max(self.floor_days, MIN_FLOOR_DAYS)
        for name, days in periods:
            if days is not None and days < floor:
                problems.append(f"{name}={days} (< {floor})")
        return problems

    def check(self) -> None:
        """Raise ``ConfigurationError`` when a period is below the floor without override."""
        problems = self.below_floor()
        if problems:
            raise ConfigurationError(
                'ML_AUDIT["RETENTION"] sets periods below the retention floor: '
                f"{', '.join(problems)}. Raise them, or set "
                'ML_AUDIT["RETENTION_FLOOR_OVERRIDE"] to the reason a shorter period is lawful.'
            )

    def describe(self) -> dict[str, Any]:
        """The policy as JSON, as each purge record keeps it."""
        return {
            "DEFAULT_DAYS": self.default_days,
            "MODELS": dict(self.models),
            "TENANTS": dict(self.tenants),
            "ACCESS_LOG_DAYS": self.access_log_days,
            "FLOOR_DAYS": self.floor_days,
            "FLOOR_OVERRIDE": self.floor_override,
        }


def _days(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f'ML_AUDIT["RETENTION"][{name!r}] must be a number of days >= 1 or None, not {value!r}.'
        )
    return value


def _per_name(name: str, value: Any) -> dict[str, int | None]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f'ML_AUDIT["RETENTION"][{name!r}] must be a dict {{name: days}}.')
    result = {}
    for key, days in value.items():
        if not isinstance(key, str):
            raise ConfigurationError(f'ML_AUDIT["RETENTION"][{name!r}] keys must be strings.')
        result[key] = _days(f"{name}'][{key!r}", days)
    return result
