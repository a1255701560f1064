"""Settings of ml_audit, read lazily from ``settings.ML_AUDIT`` (a dict; every key optional).

:data:`DEFAULTS` lists every key with its default and what it means. Values are read when first
used and cached; the cache is dropped on Django's ``setting_changed`` signal, so
``override_settings`` works in tests. Invalid values raise
:class:`~ml_audit.exceptions.ConfigurationError` naming the key; ``manage.py check`` reports
them at start-up (:mod:`ml_audit.checks`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ml_audit.exceptions import ConfigurationError
from ml_audit.redaction import RedactionPolicy

__all__ = [
    "DEFAULTS",
    "REDACTABLE_PAYLOADS",
    "MLAuditSettings",
    "RedactionConfig",
    "audit_settings",
    "get_redaction_config",
    "resolve_alias",
    "trace_url",
]

#: 0.2.0's name of the redaction settings object: it is :class:`RedactionPolicy`.
RedactionConfig = RedactionPolicy

#: Payloads that REDACT_PAYLOADS may name. Features are always redacted.
REDACTABLE_PAYLOADS = ("features", "output", "metadata", "auth_context", "explanation")

NAIVE_DATETIME_POLICIES = ("reject", "utc")

DEFAULTS: dict[str, Any] = {
    # Database alias used for every audit read and write. Point it at a separate alias
    # (with ``ml_audit.routers.MLAuditRouter`` in DATABASE_ROUTERS) to keep the audit trail
    # in its own database, under credentials that may only INSERT and SELECT.
    "DATABASE_ALIAS": "default",
    # Environment stored when a recording call does not name one ("prod", "staging", ...).
    "ENVIRONMENT": "",
    # Redaction policy; see ml_audit.redaction for every key. Merged over the seed-compatible
    # ``ML_AUDIT_REDACTION`` setting (keys given here win).
    "REDACTION": {},
    # Which payloads are redacted. "features" is always redacted; add "output", "metadata",
    # "auth_context" and/or "explanation" to redact those too.
    "REDACT_PAYLOADS": ["features"],
    # What a naive datetime passed as ``timestamp`` means: "reject" (raise InvalidRecord) or
    # "utc" (read it as UTC).
    "NAIVE_DATETIME_POLICY": "reject",
    # --- OpenTelemetry (see ml_audit.otel) ---
    # Attach the audit span processor to the global SDK TracerProvider (creating one when
    # none exists and SET_GLOBAL_TRACER_PROVIDER is on). Off: predictions still become
    # spans and rows, through a private provider that exports nothing.
    "OTEL_ENABLED": True,
    "SET_GLOBAL_TRACER_PROVIDER": True,
    # Largest payload (features, output, metadata, an explanation's payload or summary) a
    # recording call accepts, in characters (see ml_audit.normalise.check_payload_size): a
    # larger one is refused with InvalidRecord before any work on it. None: no limit.
    "MAX_PAYLOAD_BYTES": 1_048_576,
    # How the span helpers persist. "journal": each record is appended to this process's
    # journal file before the span ends (it survives the process from then on) and written
    # by a background worker in batches. "batch": the same worker, without the journal — a
    # record still queued when the process dies (kill -9, OOM, a crash, SIGTERM without a
    # graceful handler) is LOST. "sync": written before the span ends.
    # record_prediction_event always writes synchronously so it can return the row.
    "WRITE_MODE": "journal",
    # journal mode: fdatasync each journal append, so acknowledged records also survive a
    # power loss or kernel crash (not only the death of the process), at the cost of a disk
    # flush per prediction.
    "JOURNAL_FSYNC": False,
    # Put redacted payloads (features, output, metadata, auth context) on exported spans.
    "EXPORT_PAYLOADS": True,
    # Cut each exported JSON attribute to this many characters (None: no cut of ours).
    "EXPORT_MAX_ATTRIBUTE_LENGTH": None,
    # Which attribute conventions prediction and explanation spans carry: "ml_audit" (the
    # ml_audit.* attributes, the authoritative contract; always on) and "openinference" (the
    # OpenInference attributes Arize Phoenix and Arize render: span kind, input/output,
    # metadata, tags; see ml_audit.otel.openinference). ("ml_audit",) turns the latter off.
    "SPAN_CONVENTIONS": ("ml_audit", "openinference"),
    # Batch writer.
    "BATCH_MAX_QUEUE_SIZE": 10000,
    "BATCH_MAX_SIZE": 500,
    "BATCH_SCHEDULE_DELAY_MS": 200,
    # On a full queue, wait this long for room, then spool the record to disk.
    "BATCH_QUEUE_FULL_TIMEOUT_MS": 50,
    # Drop (logged and counted) instead of spooling when the queue stays full.
    "DROP_ON_OVERFLOW": False,
    # Database errors: retries with exponential backoff, then spool.
    "WRITE_RETRY_ATTEMPTS": 3,
    "WRITE_RETRY_BACKOFF_MS": 100,
    # Directory of the append-only spool files (None: BASE_DIR / "ml_audit_spool" when
    # settings.BASE_DIR exists, else a per-user directory under the system temp dir,
    # which the system check ml_audit.W003 warns about).
    "SPOOL_DIR": None,
    # Building the actor from a request (ml_audit.actors.actor_from_request):
    # dotted path of a callable(request) -> tenant id or None.
    "TENANT_RESOLVER": None,
    # Proxies whose X-Forwarded-For is believed (IPs or CIDR networks).
    "TRUSTED_PROXIES": [],
    # What @audited_prediction (ml_audit.integrations.drf) does when the audit record of a
    # prediction cannot be written: "fail" answers 503 and withholds the prediction (the
    # record is spooled and replayed all the same: the model did run); "serve" answers with
    # the prediction, the record is spooled and replayed, the failure logged and counted.
    "ON_AUDIT_FAILURE": "fail",
    # --- Read side (ml_audit.api, the admin) ---
    # Link from a prediction to its trace in your APM; "{trace_id}" is replaced by the trace
    # id, e.g. "http://127.0.0.1:6006/redirects/traces/{trace_id}". None: no links.
    "TRACE_URL_TEMPLATE": None,
    # Tenant scoping of the REST API and the admin: dotted path of a callable(request) ->
    # iterable of the tenant ids the request may read (a single string is one tenant), or None
    # for every tenant.
    "API_TENANT_RESOLVER": None,
    # REST API permission classes (dotted paths or classes), replacing DRF's defaults.
    "API_PERMISSION_CLASSES": ["ml_audit.api.permissions.CanViewPredictions"],
    # REST API pagination: "cursor" (keyset, no COUNT) or "page" (page numbers + a COUNT).
    "API_PAGINATION": "cursor",
    # Largest page a client may ask for with ?page_size=.
    "API_MAX_PAGE_SIZE": 1000,
    # Record every REST API request and every admin read of predictions and explanations (who,
    # what, which predictions were returned) in the append-only AccessLog table: the "audit of
    # the audit" (HIPAA 164.312(b)).
    "API_ACCESS_LOG": True,
    # --- OTLP/HTTP ingest endpoint (ml_audit.ingest) ---
    # Largest request body accepted, in bytes, both as sent and after gzip decompression:
    # a larger one is answered 413 without being read (or decompressed) further.
    "INGEST_MAX_BODY_BYTES": 16_777_216,
    # Ingest requests handled at once by one process; one more is answered 429.
    "INGEST_MAX_CONCURRENCY": 4,
    # Seconds a sender is asked to wait (Retry-After) after a 429 or a 503.
    "INGEST_RETRY_AFTER_SECONDS": 5,
    # --- Tamper evidence (ml_audit.sealing; docs/tamper-evidence.md) ---
    # Seal stored rows automatically (the span processor's writer calls
    # ml_audit.sealing.seal_if_due()). Off by default; ``manage.py ml_audit_seal`` seals on
    # demand either way. On: SEAL_KEY is required (system check ml_audit.E005).
    "SEALING": False,
    # The secret that authenticates seal heads (HMAC-SHA-256): a str or bytes of at least 32
    # bytes, kept outside the audit database (environment, secret manager). None: unset.
    "SEAL_KEY": None,
    # The name of SEAL_KEY, written into every seal head, so that keys can rotate.
    "SEAL_KEY_ID": "k1",
    # Earlier keys, {key id: key}, still used to verify the seals they made.
    "SEAL_PREVIOUS_KEYS": {},
    # A row is sealed once its id (UUIDv7: when the library created it) is this many seconds
    # old; it also bounds how late a row may commit without being reported as inserted.
    "SEAL_LAG_SECONDS": 60,
    # Seconds between automatic seals (seal_if_due); the most rows one seal covers.
    "SEAL_INTERVAL_SECONDS": 60,
    "SEAL_MAX_ROWS": 100_000,
    # --- Retention, legal holds, purges (ml_audit.retention; docs/retention.md) ---
    # How long rows are kept, in days: {"DEFAULT_DAYS": 760, "MODELS": {model name: days},
    # "TENANTS": {tenant id: days}, "ACCESS_LOG_DAYS": days, "FLOOR_DAYS": 183}. A missing
    # or None period keeps rows forever; {} (the default) purges nothing.
    "RETENTION": {},
    # A period below the floor (RETENTION["FLOOR_DAYS"], at least 183 days = six months, EU AI
    # Act Art. 19 / 26(6)) is refused by system check ml_audit.E006 unless this names why.
    "RETENTION_FLOOR_OVERRIDE": None,
    # PostgreSQL: the role whose members alone may open the purge hatch (checked by the
    # trigger function; written into it by migration 0009 and by ml_audit_db_roles --apply).
    "PURGE_ROLE": "ml_audit_purge",
    # Rows deleted per transaction by ml_audit_purge --execute.
    "PURGE_BATCH_SIZE": 1000,
    # --- Reason codes (ml_audit.reasons; docs/reason-codes.md) ---
    # Features (and the sign of their contribution) -> (code, text): {"TOP": 4,
    # "ADVERSE_SIGN": "+", "ADVERSE_OUTCOMES": None, "FEATURES": {feature: (code, text) or
    # {"+": ..., "-": ...} or None}, "MODELS": {model name: {same keys but MODELS}}}. Each new
    # explanation revision then gets its reason codes: its TOP contributions of the adverse
    # sign, in words. {} (the default): none.
    "REASON_CODES": {},
    # --- Data subjects (ml_audit.subjects; docs/subjects.md) ---
    # The secret under which a subject's identifier is looked up in the subject key table
    # (HMAC-SHA-256): a str or bytes of at least 32 bytes, kept outside the audit database and
    # never changed (another key finds none of the existing subjects). Required once a
    # prediction names a subject (subject=...). None: unset.
    "SUBJECT_KEY": None,
    # How long a process keeps a subject's reference in memory, in seconds: after
    # ml_audit_forget, other processes may still use the forgotten reference this long. 0: never.
    "SUBJECT_KEY_CACHE_SECONDS": 60,
}

API_PAGINATIONS = ("cursor", "page")

WRITE_MODES = ("journal", "batch", "sync")

AUDIT_FAILURE_POLICIES = ("fail", "serve")

#: Attribute conventions ``SPAN_CONVENTIONS`` may name; "ml_audit" is required.
SPAN_CONVENTION_SETS = ("ml_audit", "openinference")


class MLAuditSettings:
    """Lazy, validated view of ``settings.ML_AUDIT``.

    Each property raises :class:`~ml_audit.exceptions.ConfigurationError` naming the setting
    when its value is invalid; :mod:`ml_audit.checks` reports the same problems at start-up.
    """

    @cached_property
    def user_settings(self) -> dict[str, Any]:
        raw = getattr(django_settings, "ML_AUDIT", None) or {}
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"settings.ML_AUDIT must be a dict, not {type(raw).__name__}.")
        unknown = sorted(set(raw) - set(DEFAULTS))
        if unknown:
            raise ConfigurationError(
                f"Unknown ML_AUDIT key(s): {', '.join(map(str, unknown))}. "
                f"Valid keys are: {', '.join(sorted(DEFAULTS))}."
            )
        return dict(raw)

    def _get(self, key: str) -> Any:
        return self.user_settings.get(key, DEFAULTS[key])

    @cached_property
    def DATABASE_ALIAS(self) -> str:
        alias = self._get("DATABASE_ALIAS")
        if not isinstance(alias, str) or not alias:
            raise ConfigurationError(
                "ML_AUDIT['DATABASE_ALIAS'] must be the name of an entry of settings.DATABASES."
            )
        if alias not in django_settings.DATABASES:
            raise ConfigurationError(
                f"ML_AUDIT['DATABASE_ALIAS'] is {alias!r}, which is not in settings.DATABASES "
                f"({', '.join(sorted(django_settings.DATABASES))}). Add that database or "
                "change the alias."
            )
        return alias

    @cached_property
    def ENVIRONMENT(self) -> str:
        env = self._get("ENVIRONMENT")
        if not isinstance(env, str):
            raise ConfigurationError("ML_AUDIT['ENVIRONMENT'] must be a string.")
        return env

    @cached_property
    def REDACT_PAYLOADS(self) -> frozenset[str]:
        value = self._get("REDACT_PAYLOADS")
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ConfigurationError(
                "ML_AUDIT['REDACT_PAYLOADS'] must be a list of payload names, e.g. "
                '["features", "output"].'
            )
        names = set(value)
        unknown = sorted(map(str, names - set(REDACTABLE_PAYLOADS)))
        if unknown:
            raise ConfigurationError(
                f"ML_AUDIT['REDACT_PAYLOADS'] names unknown payload(s) {', '.join(unknown)}; "
                f"choose from {', '.join(REDACTABLE_PAYLOADS)}."
            )
        return frozenset(names | {"features"})

    @cached_property
    def NAIVE_DATETIME_POLICY(self) -> str:
        return self._choice("NAIVE_DATETIME_POLICY", NAIVE_DATETIME_POLICIES)

    def _choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self._get(key)
        if value not in choices:
            raise ConfigurationError(
                f"ML_AUDIT[{key!r}] must be one of {', '.join(choices)}, not {value!r}."
            )
        return str(value)

    def _bool(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise ConfigurationError(f"ML_AUDIT[{key!r}] must be True or False, not {value!r}.")
        return value

    def _callable(self, key: str) -> Callable[[Any], Any] | None:
        """A callable(request) given as itself or as a dotted path; ``None`` stays ``None``."""
        value = self._get(key)
        if value is None:
            return None
        if callable(value):
            return value  # type: ignore[no-any-return]
        if not isinstance(value, str):
            raise ConfigurationError(
                f"ML_AUDIT[{key!r}] must be a dotted path to a callable(request)."
            )
        try:
            resolver = import_string(value)
        except ImportError as exc:
            raise ConfigurationError(
                f"ML_AUDIT[{key!r}] {value!r} cannot be imported: {exc}"
            ) from exc
        if not callable(resolver):
            raise ConfigurationError(f"ML_AUDIT[{key!r}] {value!r} is not callable.")
        return resolver  # type: ignore[no-any-return]

    def _int(self, key: str, *, minimum: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(
                f"ML_AUDIT[{key!r}] must be an integer >= {minimum}, not {value!r}."
            )
        return value

    @cached_property
    def OTEL_ENABLED(self) -> bool:
        return self._bool("OTEL_ENABLED")

    @cached_property
    def SET_GLOBAL_TRACER_PROVIDER(self) -> bool:
        return self._bool("SET_GLOBAL_TRACER_PROVIDER")

    @cached_property
    def WRITE_MODE(self) -> str:
        return self._choice("WRITE_MODE", WRITE_MODES)

    @cached_property
    def ON_AUDIT_FAILURE(self) -> str:
        return self._choice("ON_AUDIT_FAILURE", AUDIT_FAILURE_POLICIES)

    @cached_property
    def EXPORT_PAYLOADS(self) -> bool:
        return self._bool("EXPORT_PAYLOADS")

    @cached_property
    def EXPORT_MAX_ATTRIBUTE_LENGTH(self) -> int | None:
        if self._get("EXPORT_MAX_ATTRIBUTE_LENGTH") is None:
            return None
        return self._int("EXPORT_MAX_ATTRIBUTE_LENGTH", minimum=16)

    @cached_property
    def SPAN_CONVENTIONS(self) -> frozenset[str]:
        value = self._get("SPAN_CONVENTIONS")
        example = '("ml_audit", "openinference")'
        entries = tuple(value) if isinstance(value, list | tuple | set | frozenset) else ()
        if not entries or not all(isinstance(entry, str) for entry in entries):
            raise ConfigurationError(
                f"ML_AUDIT['SPAN_CONVENTIONS'] must be a list or tuple of convention names, "
                f"e.g. {example}, not {value!r}."
            )
        names = set(entries)
        unknown = sorted(map(repr, names - set(SPAN_CONVENTION_SETS)))
        if unknown:
            raise ConfigurationError(
                f"ML_AUDIT['SPAN_CONVENTIONS'] names unknown convention(s) {', '.join(unknown)}; "
                f"choose from {', '.join(SPAN_CONVENTION_SETS)}."
            )
        if "ml_audit" not in names:
            raise ConfigurationError(
                "ML_AUDIT['SPAN_CONVENTIONS'] must include \"ml_audit\": the ml_audit.* "
                "attributes are the contract that audit span readers (the OTLP ingest "
                f'endpoint, replays) decode; e.g. {example} or ("ml_audit",).'
            )
        return frozenset(names)

    @cached_property
    def BATCH_MAX_QUEUE_SIZE(self) -> int:
        return self._int("BATCH_MAX_QUEUE_SIZE", minimum=1)

    @cached_property
    def BATCH_MAX_SIZE(self) -> int:
        return self._int("BATCH_MAX_SIZE", minimum=1)

    @cached_property
    def BATCH_SCHEDULE_DELAY_MS(self) -> int:
        return self._int("BATCH_SCHEDULE_DELAY_MS", minimum=1)

    @cached_property
    def BATCH_QUEUE_FULL_TIMEOUT_MS(self) -> int:
        return self._int("BATCH_QUEUE_FULL_TIMEOUT_MS", minimum=0)

    @cached_property
    def DROP_ON_OVERFLOW(self) -> bool:
        return self._bool("DROP_ON_OVERFLOW")

    @cached_property
    def MAX_PAYLOAD_BYTES(self) -> int | None:
        if self._get("MAX_PAYLOAD_BYTES") is None:
            return None
        return self._int("MAX_PAYLOAD_BYTES", minimum=1024)

    @cached_property
    def JOURNAL_FSYNC(self) -> bool:
        return self._bool("JOURNAL_FSYNC")

    @cached_property
    def WRITE_RETRY_ATTEMPTS(self) -> int:
        return self._int("WRITE_RETRY_ATTEMPTS", minimum=0)

    @cached_property
    def WRITE_RETRY_BACKOFF_MS(self) -> int:
        return self._int("WRITE_RETRY_BACKOFF_MS", minimum=0)

    @cached_property
    def SPOOL_DIR(self) -> Path:
        value = self._get("SPOOL_DIR")
        if value is None:
            base_dir = getattr(django_settings, "BASE_DIR", None)  # None also means unset
            if base_dir is not None:
                return Path(base_dir) / "ml_audit_spool"
            return Path(tempfile.gettempdir()) / f"ml_audit-spool-{os.getuid()}"
        if not isinstance(value, str | os.PathLike):
            raise ConfigurationError("ML_AUDIT['SPOOL_DIR'] must be a directory path.")
        return Path(value)

    @cached_property
    def TENANT_RESOLVER(self) -> Callable[[Any], Any] | None:
        return self._callable("TENANT_RESOLVER")

    @cached_property
    def TRUSTED_PROXIES(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        value = self._get("TRUSTED_PROXIES")
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ConfigurationError(
                "ML_AUDIT['TRUSTED_PROXIES'] must be a list of IP addresses or networks."
            )
        networks = []
        for entry in value:
            try:
                networks.append(ipaddress.ip_network(str(entry), strict=False))
            except ValueError as exc:
                raise ConfigurationError(
                    f"ML_AUDIT['TRUSTED_PROXIES'] entry {entry!r} is not an IP address or network."
                ) from exc
        return tuple(networks)

    @cached_property
    def TRACE_URL_TEMPLATE(self) -> str | None:
        value = self._get("TRACE_URL_TEMPLATE")
        if value is None:
            return None
        message = (
            "ML_AUDIT['TRACE_URL_TEMPLATE'] must be None or a string containing {trace_id}, "
            'e.g. "http://127.0.0.1:6006/redirects/traces/{trace_id}"'
        )
        if not isinstance(value, str) or "{trace_id}" not in value:
            raise ConfigurationError(f"{message}, not {value!r}.")
        try:
            value.format(trace_id="0" * 32)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigurationError(
                f"{message}; {value!r} has another placeholder or a stray brace ({exc!r}). "
                "Write a literal brace as {{ or }}."
            ) from exc
        return value

    @cached_property
    def API_TENANT_RESOLVER(self) -> Callable[[Any], Any] | None:
        return self._callable("API_TENANT_RESOLVER")

    @cached_property
    def API_PERMISSION_CLASSES(self) -> tuple[str | type, ...]:
        """Dotted paths or classes, as given; ``ml_audit.api.permissions`` imports them.

        Not imported here, so that ``manage.py check`` passes in projects without Django REST
        framework installed.
        """
        value = self._get("API_PERMISSION_CLASSES")
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ConfigurationError(
                "ML_AUDIT['API_PERMISSION_CLASSES'] must be a list of permission classes or "
                'their dotted paths, e.g. ["ml_audit.api.permissions.CanViewPredictions"].'
            )
        entries = tuple(value)
        for entry in entries:
            if not (isinstance(entry, type) or (isinstance(entry, str) and "." in entry)):
                raise ConfigurationError(
                    f"ML_AUDIT['API_PERMISSION_CLASSES'] entry {entry!r} is neither a class "
                    "nor a dotted path to one."
                )
        return entries

    @cached_property
    def API_PAGINATION(self) -> str:
        return self._choice("API_PAGINATION", API_PAGINATIONS)

    @cached_property
    def API_MAX_PAGE_SIZE(self) -> int:
        return self._int("API_MAX_PAGE_SIZE", minimum=1)

    @cached_property
    def API_ACCESS_LOG(self) -> bool:
        return self._bool("API_ACCESS_LOG")

    @cached_property
    def INGEST_MAX_BODY_BYTES(self) -> int:
        return self._int("INGEST_MAX_BODY_BYTES", minimum=1024)

    @cached_property
    def INGEST_MAX_CONCURRENCY(self) -> int:
        return self._int("INGEST_MAX_CONCURRENCY", minimum=1)

    @cached_property
    def INGEST_RETRY_AFTER_SECONDS(self) -> int:
        return self._int("INGEST_RETRY_AFTER_SECONDS", minimum=1)

    @cached_property
    def SEALING(self) -> bool:
        return self._bool("SEALING")

    @cached_property
    def SEAL_KEY(self) -> bytes | None:
        return _seal_key("SEAL_KEY", self._get("SEAL_KEY"))

    @cached_property
    def SEAL_KEY_ID(self) -> str:
        value = self._get("SEAL_KEY_ID")
        if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
            raise ConfigurationError(
                f"ML_AUDIT['SEAL_KEY_ID'] must be a short printable name, not {value!r}."
            )
        return value

    @cached_property
    def SEAL_PREVIOUS_KEYS(self) -> dict[str, bytes]:
        value = self._get("SEAL_PREVIOUS_KEYS")
        if not isinstance(value, Mapping):
            raise ConfigurationError("ML_AUDIT['SEAL_PREVIOUS_KEYS'] must be a dict {key id: key}.")
        keys = {}
        for key_id, key in value.items():
            checked = _seal_key(f"SEAL_PREVIOUS_KEYS[{key_id!r}]", key)
            if not isinstance(key_id, str) or checked is None:
                raise ConfigurationError(
                    f"ML_AUDIT['SEAL_PREVIOUS_KEYS'] entry {key_id!r} needs a str id and a key."
                )
            keys[key_id] = checked
        return keys

    @cached_property
    def SEAL_LAG_SECONDS(self) -> int:
        return self._int("SEAL_LAG_SECONDS", minimum=0)

    @cached_property
    def SEAL_INTERVAL_SECONDS(self) -> int:
        return self._int("SEAL_INTERVAL_SECONDS", minimum=1)

    @cached_property
    def SEAL_MAX_ROWS(self) -> int:
        return self._int("SEAL_MAX_ROWS", minimum=1)

    @cached_property
    def RETENTION(self) -> Any:
        from ml_audit.retention.policy import RetentionPolicy

        return RetentionPolicy.from_settings(
            self._get("RETENTION"), self._get("RETENTION_FLOOR_OVERRIDE")
        )

    @cached_property
    def RETENTION_FLOOR_OVERRIDE(self) -> str | None:
        return self.RETENTION.floor_override  # type: ignore[no-any-return]

    @cached_property
    def PURGE_ROLE(self) -> str:
        value = self._get("PURGE_ROLE")
        if not isinstance(value, str) or not _ROLE_NAME(value):
            raise ConfigurationError(
                f"ML_AUDIT['PURGE_ROLE'] must be a PostgreSQL role name ([a-z_][a-z0-9_]*, "
                f"at most 63 characters), not {value!r}."
            )
        return value

    @cached_property
    def PURGE_BATCH_SIZE(self) -> int:
        return self._int("PURGE_BATCH_SIZE", minimum=1)

    @cached_property
    def REASON_CODES(self) -> Any:
        """A :class:`ml_audit.reasons.policy.ReasonCodePolicy` (``enabled`` False when unset)."""
        from ml_audit.reasons.policy import ReasonCodePolicy

        return ReasonCodePolicy.from_settings(self._get("REASON_CODES"))

    @cached_property
    def SUBJECT_KEY(self) -> bytes | None:
        return _seal_key("SUBJECT_KEY", self._get("SUBJECT_KEY"), what="a subject key")

    @cached_property
    def SUBJECT_KEY_CACHE_SECONDS(self) -> int:
        return self._int("SUBJECT_KEY_CACHE_SECONDS", minimum=0)

    @cached_property
    def redaction_config(self) -> dict[str, Any]:
        """The effective redaction config: ``ML_AUDIT_REDACTION`` overlaid by ``REDACTION``."""
        legacy = getattr(django_settings, "ML_AUDIT_REDACTION", None) or {}
        current = self._get("REDACTION") or {}
        for name, value in (("ML_AUDIT_REDACTION", legacy), ("ML_AUDIT['REDACTION']", current)):
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"{name} must be a dict, not {type(value).__name__}.")
        return {**legacy, **current}

    @cached_property
    def redaction_policy(self) -> RedactionPolicy:
        return RedactionPolicy.from_config(self.redaction_config)

    def reload(self) -> None:
        """Forget every cached value; the next access reads the settings again."""
        for name in list(vars(self)):
            if name != "reload":
                del self.__dict__[name]


audit_settings = MLAuditSettings()

#: A role name ``PURGE_ROLE`` accepts: written into SQL unquoted, so plain identifiers only.
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}").fullmatch

#: The shortest SEAL_KEY accepted, in bytes (HMAC-SHA-256's block of security: 256 bits).
MIN_SEAL_KEY_BYTES = 32


def _seal_key(name: str, value: Any, *, what: str = "a sealing key") -> bytes | None:
    """A sealing (or subject) key as bytes (str keys are UTF-8 encoded), ``None`` when unset;
    a key shorter than :data:`MIN_SEAL_KEY_BYTES` is refused."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise ConfigurationError(f"ML_AUDIT[{name!r}] must be a str or bytes key.")
    if len(value) < MIN_SEAL_KEY_BYTES:
        raise ConfigurationError(
            f"ML_AUDIT[{name!r}] is {len(value)} bytes long; {what} needs at least "
            f"{MIN_SEAL_KEY_BYTES} (e.g. python -c 'import secrets; print(secrets.token_hex(32))')."
        )
    return value


def trace_url(trace_id: str) -> str | None:
    """The APM link of a trace from ``ML_AUDIT['TRACE_URL_TEMPLATE']``, or ``None``."""
    template = audit_settings.TRACE_URL_TEMPLATE
    if not template or not trace_id:
        return None
    return template.format(trace_id=trace_id)


@receiver(setting_changed)
def _reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"ML_AUDIT", "ML_AUDIT_REDACTION", "DATABASES"}:
        audit_settings.reload()


def resolve_alias(using: str | None = None) -> str:
    """The database alias for audit reads and writes: ``using``, else
    ``ML_AUDIT['DATABASE_ALIAS']``."""
    return using or audit_settings.DATABASE_ALIAS


def get_redaction_config() -> RedactionPolicy:
    """The redaction policy in force (``ML_AUDIT['REDACTION']`` over ``ML_AUDIT_REDACTION``).

    0.2.0's name; ``allowlist``, ``denylist``, ``mask_value`` and ``is_sensitive(name)`` work
    as they did there.
    """
    return audit_settings.redaction_policy
