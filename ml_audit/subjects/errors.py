"""What naming, finding or forgetting a data subject can fail with (no Django models here, so
the span helpers and the DRF decorator can catch these without loading them)."""

from __future__ import annotations

from ml_audit.exceptions import MLAuditError

__all__ = ["SubjectHeld", "SubjectUnavailable", "UnknownSubject"]


class SubjectUnavailable(MLAuditError, RuntimeError):
    """The subject key table could not be read or written (the database is down, or refused).

    A prediction that names a subject whose reference this process has not cached needs that
    table; when it cannot be reached the prediction is refused before the model runs (the
    reference cannot be made up, and a record without it would be missing from the subject's
    report), so nothing is acknowledged that is not recorded as asked.
    """


class UnknownSubject(MLAuditError, LookupError):
    """No key is stored for this identifier (in this tenant): never named by a prediction, or
    forgotten already."""


class SubjectHeld(MLAuditError):
    """A legal hold in force covers predictions of the subject: it cannot be forgotten now.

    ``holds`` lists the ids of the holds that cover them.
    """

    def __init__(self, message: str, holds: tuple[str, ...] = ()) -> None:
        self.holds = holds
        super().__init__(message)
