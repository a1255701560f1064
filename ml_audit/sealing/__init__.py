"""Tamper evidence: seals over the stored audit rows, and their verification.

* :func:`seal_pending` / :func:`seal_all` (``manage.py ml_audit_seal``) cut seals;
  :func:`seal_if_due` is the span processor writer's periodic step.
* :func:`verify` (``manage.py ml_audit_verify``) recomputes row hashes, seal roots, the chain
  and the HMACs and reports each class of tampering.

See ``docs/tamper-evidence.md``. Names resolve lazily: importing this package loads no models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_audit.sealing.sealer import seal_all, seal_if_due, seal_pending
    from ml_audit.sealing.verifier import verify

__all__ = ["seal_all", "seal_if_due", "seal_pending", "verify"]


def __getattr__(name: str) -> Any:
    if name in {"seal_all", "seal_if_due", "seal_pending"}:
        from ml_audit.sealing import sealer

        return getattr(sealer, name)
    if name == "verify":
        from ml_audit.sealing.verifier import verify

        return verify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
