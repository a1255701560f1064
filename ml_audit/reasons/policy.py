"""The reason code policy, from ``ML_AUDIT["REASON_CODES"]``: which features' contributions
become which reason codes, for which models and decisions.

Pure (no models): :mod:`ml_audit.conf` builds it (a malformed entry is a
``ConfigurationError``, reported at start-up by the system check ``ml_audit.E008``), the
explanation writer applies it (:mod:`ml_audit.reasons.writer`). See ``docs/reason-codes.md``.

The shape::

    "REASON_CODES": {
        "TOP": 4,                       # reasons per prediction (default 4)
        "ADVERSE_SIGN": "+",            # the sign of a contribution that counts against the
                                        # subject: "+" (default) or "-"
        "ADVERSE_OUTCOMES": None,       # decisions that get reasons; None: every decision
        "FEATURES": {                   # the default set, for every model
            "debt_ratio": ("R01", "Debt is high relative to income"),
            "income": {"+": ("R02", "Income is low"), "-": None},
            "zip_code": None,           # never a reason (counted, without a code)
        },
        "MODELS": {                     # per model name, over the top level
            "credit": {"ADVERSE_OUTCOMES": ["declined"], "FEATURES": {...}},
        },
    }

A feature maps to ``(code, text)`` (a two-item list, or ``{"code": ..., "text": ...}``)
whatever the sign of its contribution, or to ``{"+": entry, "-": entry}`` per sign, or to
``None``. A model named under ``MODELS`` takes each of ``TOP``, ``ADVERSE_SIGN`` and
``ADVERSE_OUTCOMES`` from its own entry when given, else from the top level; its ``FEATURES``
are looked up first, then the top level's. A model not under ``MODELS`` uses the top level,
when it has ``FEATURES`` (even ``{}``); otherwise it gets no reason codes at all.

Direction: a contribution says how far a feature moved the model's output from its baseline
(a SHAP value, a LIME weight). ``ADVERSE_SIGN`` says which way is bad for the subject: ``"+"``
when a larger output is the worse outcome (probability of default, fraud or risk score), ``"-"``
when a larger output is the better one (a credit score, the probability of approval). The
reasons of a prediction are its ``TOP`` contributions of the adverse sign, largest magnitude
first: for an adverse decision, the features that pushed the model toward it (Regulation B's
principal reasons). Contributions of the other sign, and zeros, are never reasons. With
``ADVERSE_OUTCOMES`` set, any other decision gets an empty list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_audit.exceptions import ConfigurationError
from ml_audit.reasons.payload import contributions

__all__ = [
    "ADVERSE_SIGNS",
    "DEFAULT_TOP",
    "MAX_CODE",
    "MAX_TEXT",
    "Derivation",
    "Reason",
    "ReasonCodePolicy",
    "ReasonSet",
]

ADVERSE_SIGNS = ("+", "-")
DEFAULT_TOP = 4
#: The most reasons a set may ask for: a notice lists a few principal reasons, not every factor.
MAX_TOP = 50
MAX_CODE = 32
MAX_TEXT = 500
_SET_KEYS = ("TOP", "ADVERSE_SIGN", "ADVERSE_OUTCOMES", "FEATURES")
_KEYS = (*_SET_KEYS, "MODELS")
_SETTING = 'ML_AUDIT["REASON_CODES"]'


@dataclass(frozen=True)
class Reason:
    """One reason code and its text, as the subject reads it."""

    code: str
    text: str


#: A feature's entry, per contribution sign: the reason, or ``None`` (no code).
Entry = Mapping[str, Reason | None]


@dataclass(frozen=True)
class Derivation:
    """The reason codes of one explanation: ``codes`` as stored in
    :class:`~ml_audit.models.ReasonCodes` (``{"code", "text", "feature", "direction",
    "contribution"}``, strongest first), and the features among them that have no code."""

    codes: list[dict[str, Any]]
    unmapped: tuple[str, ...]


@dataclass(frozen=True)
class ReasonSet:
    """The effective reason codes of one model (or of every model not named)."""

    top: int
    adverse_sign: str
    adverse_outcomes: frozenset[str] | None
    features: Mapping[str, Entry]
    #: Where it comes from: ``REASON_CODES`` or ``REASON_CODES["MODELS"]["credit"]``.
    source: str

    def applies_to(self, decision: str) -> bool:
        """Whether a prediction with this decision gets reasons (else an empty list)."""
        return self.adverse_outcomes is None or decision in self.adverse_outcomes

    def reason(self, feature: str, sign: str) -> Reason | None:
        entry = self.features.get(feature)
        return None if entry is None else entry.get(sign)

    def derive(self, decision: str, payload: Any) -> Derivation:
        """The reason codes of an explanation ``payload`` of a prediction whose decision
        (``decision_outcome``) is ``decision``."""
        if not self.applies_to(decision):
            return Derivation([], ())
        sign = self.adverse_sign
        adverse = [
            (feature, value)
            for feature, value in contributions(payload)
            if (value > 0 if sign == "+" else value < 0)
        ]
        codes: list[dict[str, Any]] = []
        unmapped: list[str] = []
        for feature, value in adverse[: self.top]:
            reason = self.reason(feature, sign)
            if reason is None:
                unmapped.append(feature)
            codes.append(
                {
                    "code": reason.code if reason else "",
                    "text": reason.text if reason else "",
                    "feature": feature,
                    "direction": sign,
                    "contribution": value,
                }
            )
        return Derivation(codes, tuple(unmapped))


@dataclass(frozen=True)
class ReasonCodePolicy:
    """``ML_AUDIT["REASON_CODES"]``, parsed and checked."""

    default: ReasonSet | None = None
    models: Mapping[str, ReasonSet] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.models)

    def for_model(self, model_name: str) -> ReasonSet | None:
        """The set that applies to predictions of ``model_name``, or ``None`` (no codes)."""
        return self.models.get(model_name, self.default)

    @classmethod
    def from_settings(cls, value: Any) -> ReasonCodePolicy:
        """Parse ``ML_AUDIT["REASON_CODES"]``; anything malformed raises
        ``ConfigurationError`` naming the entry."""
        if value is None:
            return cls()
        top = _mapping(value, _SETTING, _KEYS)
        if not top:
            return cls()
        base_top = _top(top.get("TOP", DEFAULT_TOP), f'{_SETTING}["TOP"]')
        base_sign = _sign(top.get("ADVERSE_SIGN", "+"), f'{_SETTING}["ADVERSE_SIGN"]')
        base_outcomes = _outcomes(top.get("ADVERSE_OUTCOMES"), f'{_SETTING}["ADVERSE_OUTCOMES"]')
        base_features = _features(top.get("FEATURES", {}), f'{_SETTING}["FEATURES"]')
        default = None
        if "FEATURES" in top:
            default = ReasonSet(base_top, base_sign, base_outcomes, base_features, "REASON_CODES")
            _check_codes(default)
        models_value = _mapping(top.get("MODELS", {}), f'{_SETTING}["MODELS"]', None)
        models: dict[str, ReasonSet] = {}
        for name, entry in models_value.items():
            where = f'{_SETTING}["MODELS"][{name!r}]'
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"{where}: a model name must be a non-empty string.")
            own = _mapping(entry, where, _SET_KEYS)
            reasons = ReasonSet(
                top=_top(own["TOP"], f'{where}["TOP"]') if "TOP" in own else base_top,
                adverse_sign=(
                    _sign(own["ADVERSE_SIGN"], f'{where}["ADVERSE_SIGN"]')
                    if "ADVERSE_SIGN" in own
                    else base_sign
                ),
                adverse_outcomes=(
                    _outcomes(own["ADVERSE_OUTCOMES"], f'{where}["ADVERSE_OUTCOMES"]')
                    if "ADVERSE_OUTCOMES" in own
                    else base_outcomes
                ),
                features={
                    **base_features,
                    **_features(own.get("FEATURES", {}), f'{where}["FEATURES"]'),
                },
                source=f"REASON_CODES['MODELS'][{name!r}]",
            )
            _check_codes(reasons)
            models[name] = reasons
        return cls(default, models)


def _mapping(value: Any, where: str, keys: Sequence[str] | None) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a dict, not {type(value).__name__}.")
    if keys is not None:
        unknown = sorted(map(repr, set(value) - set(keys)))
        if unknown:
            raise ConfigurationError(
                f"{where} has unknown key(s) {', '.join(unknown)}; valid keys are "
                f"{', '.join(keys)}."
            )
    return value


def _top(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP:
        raise ConfigurationError(f"{where} must be an integer from 1 to {MAX_TOP}, not {value!r}.")
    return value


def _sign(value: Any, where: str) -> str:
    if value not in ADVERSE_SIGNS:
        raise ConfigurationError(
            f'{where} must be "+" (a larger model output is worse for the subject) or "-" (a '
            f"larger output is better), not {value!r}."
        )
    return str(value)


def _outcomes(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(
            f'{where} must be None or a list of decision outcomes, e.g. ["declined"], '
            f"not {value!r}."
        )
    if not all(isinstance(item, str) and item for item in value):
        raise ConfigurationError(f"{where} must list non-empty strings, not {value!r}.")
    return frozenset(value)


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{where} must be a non-empty string, not {value!r}.")
    if len(value) > limit or not value.isprintable():
        raise ConfigurationError(
            f"{where} must be printable text of at most {limit} characters, not {value!r}."
        )
    return value.strip()


def _reason(value: Any, where: str) -> Reason | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and set(value) == {"code", "text"}:
        code, text = value["code"], value["text"]
    elif isinstance(value, list | tuple) and len(value) == 2:
        code, text = value
    else:
        raise ConfigurationError(
            f'{where} must be (code, text), {{"code": ..., "text": ...}}, {{"+": ..., "-": '
            f"...}} or None, not {value!r}."
        )
    return Reason(_text(code, f"{where} code", MAX_CODE), _text(text, f"{where} text", MAX_TEXT))


def _features(value: Any, where: str) -> dict[str, Entry]:
    features: dict[str, Entry] = {}
    for feature, entry in _mapping(value, where, None).items():
        at = f"{where}[{feature!r}]"
        if not isinstance(feature, str) or not feature:
            raise ConfigurationError(f"{at}: a feature name must be a non-empty string.")
        if isinstance(entry, Mapping) and entry and set(entry) <= set(ADVERSE_SIGNS):
            features[feature] = {
                sign: _reason(entry.get(sign), f"{at}[{sign!r}]") for sign in ADVERSE_SIGNS
            }
        else:
            reason = _reason(entry, at)
            features[feature] = dict.fromkeys(ADVERSE_SIGNS, reason)
    return features


def _check_codes(reasons: ReasonSet) -> None:
    """One code, one text: a code given two texts in one model's set is a mistake (a notice
    would say two things under one code)."""
    texts: dict[str, tuple[str, str]] = {}
    for feature, entry in reasons.features.items():
        for reason in entry.values():
            if reason is None:
                continue
            seen = texts.setdefault(reason.code, (reason.text, feature))
            if seen[0] != reason.text:
                raise ConfigurationError(
                    f"{_SETTING}: code {reason.code!r} has two texts in {reasons.source} "
                    f"({seen[0]!r} for {seen[1]!r}, {reason.text!r} for {feature!r}); give each "
                    "code one text."
                )
