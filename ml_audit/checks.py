"""System checks for ml_audit settings (``python manage.py check``).

=============  ===========================================================================
id             problem
=============  ===========================================================================
ml_audit.E001  ``ML_AUDIT`` is not a dict, has an unknown key or an invalid value
ml_audit.E002  the redaction policy is invalid (e.g. ``MODE: "hash"`` without ``HASH_KEY``)
ml_audit.E003  ``USE_TZ`` is False: audit timestamps must be timezone-aware
ml_audit.E004  the spool directory exists and is not private: owned by another user, writable
               by its group or by everyone, or not a directory (the spool refuses it too)
ml_audit.E005  sealing is on (``SEALING``) without a ``SEAL_KEY``, or a sealing key is
               shorter than 32 bytes
ml_audit.E006  a retention period (``RETENTION``) is below the floor (six months, or
               ``RETENTION["FLOOR_DAYS"]``) and ``RETENTION_FLOOR_OVERRIDE`` gives no reason
ml_audit.E007  ``SUBJECT_KEY`` is not a str or bytes key of at least 32 bytes; or (database
               check: ``check --database``, ``migrate``) subject keys are stored but
               ``SUBJECT_KEY`` is not set, so no prediction can name its subject
ml_audit.E008  ``REASON_CODES`` is malformed: an unknown key, a bad sign, ``TOP`` or entry,
               or one code given two texts in one model's set
ml_audit.E009  (database check, PostgreSQL, purging configured) the purge role written into
               the trigger function ``ml_audit_forbid_mutation()`` is not ``PURGE_ROLE``
ml_audit.W001  audit rows go to a separate alias but ``MLAuditRouter`` is not installed
ml_audit.W002  the audit database has no append-only triggers (only SQLite and PostgreSQL do)
ml_audit.W003  spool files would live in the system temp directory (may be wiped on reboot)
=============  ===========================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections

from ml_audit.conf import DEFAULTS, MLAuditSettings
from ml_audit.exceptions import ConfigurationError
from ml_audit.otel.spool_files import directory_problem
from ml_audit.redaction import RedactionPolicy

ROUTER_PATH = "ml_audit.routers.MLAuditRouter"
TRIGGER_VENDORS = ("sqlite", "postgresql")
SEAL_KEY_SETTINGS = ("SEAL_KEY", "SEAL_PREVIOUS_KEYS")


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # A fresh object, so a check never reads values cached before settings changed.
    conf = MLAuditSettings()
    messages: list[CheckMessage] = []
    try:
        conf.user_settings  # noqa: B018 - validates the dict and its keys
    except ConfigurationError as exc:
        return [Error(str(exc), hint="Fix settings.ML_AUDIT.", id="ml_audit.E001")]
    for key in DEFAULTS:
        if key in {"REDACTION", "REASON_CODES", "SUBJECT_KEY", *SEAL_KEY_SETTINGS}:
            continue
        try:
            getattr(conf, key)
        except ConfigurationError as exc:
            messages.append(Error(str(exc), hint="Fix settings.ML_AUDIT.", id="ml_audit.E001"))
    try:
        RedactionPolicy.from_config(conf.redaction_config)
    except ConfigurationError as exc:
        messages.append(
            Error(
                str(exc),
                hint="Fix ML_AUDIT['REDACTION'] (or the older ML_AUDIT_REDACTION).",
                id="ml_audit.E002",
            )
        )
    messages.extend(_seal_key_messages(conf))
    messages.extend(_retention_messages(conf))
    messages.extend(_reason_code_messages(conf))
    messages.extend(_subject_key_messages(conf))
    if not settings.USE_TZ:
        messages.append(
            Error(
                "ml_audit stores timezone-aware timestamps, but USE_TZ is False.",
                hint="Set USE_TZ = True (the default since Django 5.0).",
                id="ml_audit.E003",
            )
        )
    try:
        alias = conf.DATABASE_ALIAS
    except ConfigurationError:
        return messages  # already reported as E001
    if alias != "default" and ROUTER_PATH not in getattr(settings, "DATABASE_ROUTERS", []):
        messages.append(
            Warning(
                f"ML_AUDIT['DATABASE_ALIAS'] is {alias!r} but {ROUTER_PATH} is not in "
                "DATABASE_ROUTERS, so migrations, the admin and your own queries of ml_audit "
                "models will use the default database.",
                hint=f'Add "{ROUTER_PATH}" to DATABASE_ROUTERS.',
                id="ml_audit.W001",
            )
        )
    try:
        spool_dir = conf.SPOOL_DIR
    except ConfigurationError:
        spool_dir = None  # already reported as E001
    if spool_dir is not None:
        messages.extend(_spool_dir_messages(conf, spool_dir))
    vendor = connections[alias].vendor
    if vendor not in TRIGGER_VENDORS:
        messages.append(
            Warning(
                f"The audit database {alias!r} is {vendor}; append-only is enforced there "
                "by the ORM only, not by database triggers.",
                hint="Use PostgreSQL (or SQLite) for the audit alias, and give the "
                "application credentials that may only INSERT and SELECT audit tables.",
                id="ml_audit.W002",
            )
        )
    return messages


def _seal_key_messages(conf: MLAuditSettings) -> list[CheckMessage]:
    hint = (
        "Set ML_AUDIT['SEAL_KEY'] to a secret of at least 32 bytes kept outside the audit "
        "database (e.g. from an environment variable), or leave ML_AUDIT['SEALING'] off."
    )
    messages: list[CheckMessage] = []
    for key in SEAL_KEY_SETTINGS:
        try:
            getattr(conf, key)
        except ConfigurationError as exc:
            messages.append(Error(str(exc), hint=hint, id="ml_audit.E005"))
    if messages:
        return messages
    try:
        sealing = conf.SEALING
    except ConfigurationError:
        return messages  # already reported as E001
    if sealing and conf.SEAL_KEY is None:
        messages.append(
            Error(
                "ML_AUDIT['SEALING'] is on but ML_AUDIT['SEAL_KEY'] is not set: seal heads "
                "cannot be authenticated.",
                hint=hint,
                id="ml_audit.E005",
            )
        )
    return messages


def _reason_code_messages(conf: MLAuditSettings) -> list[CheckMessage]:
    try:
        conf.REASON_CODES  # noqa: B018 - parses and checks every entry
    except ConfigurationError as exc:
        return [
            Error(
                str(exc),
                hint="Fix ML_AUDIT['REASON_CODES'] (see docs/reason-codes.md).",
                id="ml_audit.E008",
            )
        ]
    return []


_SUBJECT_KEY_HINT = (
    "Set ML_AUDIT['SUBJECT_KEY'] to a secret of at least 32 bytes kept outside the audit "
    "database, and never change it (docs/subjects.md)."
)


def _subject_key_messages(conf: MLAuditSettings) -> list[CheckMessage]:
    try:
        conf.SUBJECT_KEY  # noqa: B018 - checks type and length
    except ConfigurationError as exc:
        return [Error(str(exc), hint=_SUBJECT_KEY_HINT, id="ml_audit.E007")]
    return []


@register(Tags.database)
def check_subject_key_in_use(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Subjects are recorded (the subject key table has rows) but ``SUBJECT_KEY`` is unset: the
    next prediction naming a subject would be refused. Runs where Django runs database checks
    (``check --database``, ``migrate``)."""
    conf = MLAuditSettings()
    try:
        alias, key = conf.DATABASE_ALIAS, conf.SUBJECT_KEY
    except ConfigurationError:
        return []  # reported by check_settings
    if key is not None or not databases or alias not in databases:
        return []
    from ml_audit.models import SubjectKey

    try:
        in_use = SubjectKey.objects.using(alias).exists()
    except DatabaseError:  # not migrated yet
        return []
    if not in_use:
        return []
    return [
        Error(
            "Subject keys are stored, but ML_AUDIT['SUBJECT_KEY'] is not set: predictions "
            "naming a subject are refused, and no subject can be forgotten.",
            hint=_SUBJECT_KEY_HINT,
            id="ml_audit.E007",
        )
    ]


@register(Tags.database)
def check_purge_role_in_trigger(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """PostgreSQL, with purging configured (``RETENTION`` periods or a ``PURGE_ROLE``): the
    hatch lets through members of the role written into it at ``migrate`` time (migration
    0009); when ``PURGE_ROLE`` changed since, every purge is refused and the old role can
    still purge. Runs where Django runs database checks (``check --database``, ``migrate``);
    says nothing when the database cannot be reached."""
    conf = MLAuditSettings()
    try:
        alias, role, policy = conf.DATABASE_ALIAS, conf.PURGE_ROLE, conf.RETENTION
    except ConfigurationError:
        return []  # reported by check_settings
    if not databases or alias not in databases:
        return []
    if not policy.purges_anything and "PURGE_ROLE" not in conf.user_settings:
        return []
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return []
    from ml_audit.retention.roles import trigger_purge_role

    try:
        baked = trigger_purge_role(connection)
    except DatabaseError:  # the database is down or unreachable: nothing to compare
        return []
    if baked is None or baked == role:
        return []  # not migrated yet (migrate writes the current role), or in agreement
    return [
        Error(
            f"The trigger function ml_audit_forbid_mutation() of database {alias!r} opens the "
            f"purge hatch to role {baked!r}, but ML_AUDIT['PURGE_ROLE'] is {role!r}: "
            f"ml_audit_purge would be refused, and {baked!r} can still purge.",
            hint=f"Run `python manage.py ml_audit_db_roles --apply --database {alias}` as a "
            "superuser (with the --owner/--app/--auditor names you use): it rewrites the "
            f"function for {role!r} and grants {role!r} its privileges. Or set "
            f"ML_AUDIT['PURGE_ROLE'] back to {baked!r} (docs/retention.md).",
            id="ml_audit.E009",
        )
    ]


def _retention_messages(conf: MLAuditSettings) -> list[CheckMessage]:
    try:
        problems = conf.RETENTION.below_floor()
    except ConfigurationError:
        return []  # already reported as E001
    if not problems:
        return []
    return [
        Error(
            "ML_AUDIT['RETENTION'] keeps rows for less than the retention floor: "
            + ", ".join(problems),
            hint="Raise the period(s) (EU AI Act Art. 19/26(6): at least six months), or set "
            "ML_AUDIT['RETENTION_FLOOR_OVERRIDE'] to the reason a shorter period is lawful "
            "(docs/retention.md).",
            id="ml_audit.E006",
        )
    ]


def _spool_dir_messages(conf: MLAuditSettings, spool_dir: Path) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if conf.user_settings.get("SPOOL_DIR") is None and getattr(settings, "BASE_DIR", None) is None:
        messages.append(
            Warning(
                f"ml_audit spools records it cannot write yet to {spool_dir}, under the system "
                "temp directory, which may be emptied on reboot.",
                hint="Set ML_AUDIT['SPOOL_DIR'] (or settings.BASE_DIR) to a durable directory.",
                id="ml_audit.W003",
            )
        )
    try:
        problem = directory_problem(spool_dir)
    except OSError as exc:  # e.g. a parent directory this user may not search
        problem = f"ml_audit cannot inspect the spool directory {spool_dir}: {exc}"
    if problem is not None:
        messages.append(
            Error(
                problem,
                hint=f"Make it private to the user the application runs as (chown that user "
                f"{spool_dir}; chmod 700 {spool_dir}), or point ML_AUDIT['SPOOL_DIR'] at a "
                "directory that does not exist yet: ml_audit creates it with mode 0700.",
                id="ml_audit.E004",
            )
        )
    return messages
