"""Retention, legal holds and purges of the audit trail (``docs/retention.md``).

* :mod:`~ml_audit.retention.policy` how long rows are kept (``ML_AUDIT["RETENTION"]``);
* :mod:`~ml_audit.retention.holds` legal holds: :func:`place_hold`, :func:`release_hold`;
* :mod:`~ml_audit.retention.purge` what is past retention and under no hold, and its removal
  through the one escape hatch, leaving a :class:`~ml_audit.models.PurgeRecord` per batch;
* :mod:`~ml_audit.retention.roles` the least-privilege PostgreSQL roles
  (``manage.py ml_audit_db_roles``).

Names resolve lazily: importing this package loads no models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_audit.retention.holds import active_holds, place_hold, release_hold
    from ml_audit.retention.purge import plan_purge, run_purge

__all__ = ["active_holds", "place_hold", "plan_purge", "release_hold", "run_purge"]

_HOMES = {
    "active_holds": "holds",
    "place_hold": "holds",
    "release_hold": "holds",
    "plan_purge": "purge",
    "run_purge": "purge",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"ml_audit.retention.{home}"), name)
