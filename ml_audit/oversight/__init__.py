"""Human oversight of recorded predictions: reviews and overrides (``docs/oversight.md``).

* :mod:`~ml_audit.oversight.reviews` :func:`record_review` (append a review),
  :func:`effective_outcome` and :func:`with_effective_outcome` (the latest override's outcome,
  else the model's);
* :mod:`~ml_audit.oversight.spans` each review as a span ``ml_audit.review <action>``, linked
  to its prediction's span;
* :mod:`~ml_audit.oversight.admin` the reviews panel and form of the admin prediction page.

The REST endpoint ``predictions/{id}/reviews/`` lives with the API (:mod:`ml_audit.api.reviews`).
Names resolve lazily: importing this package loads no models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_audit.oversight.reviews import (
        check_review,
        effective_outcome,
        record_review,
        with_effective_outcome,
    )

__all__ = ["check_review", "effective_outcome", "record_review", "with_effective_outcome"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ml_audit.oversight import reviews

    return getattr(reviews, name)
