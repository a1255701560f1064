"""The reviews of the admin prediction page (hooked in by ``ml_audit.admin``).

The page's "Reviews" section lists every review of the prediction, latest first (who, when,
action, final outcome, reason, comment: all as stored, i.e. redacted), under the effective
outcome (the latest override's, else the model's). Reading them costs one query, whatever
their number.

Users holding ``ml_audit.add_review`` also get a form there: appending a review is the one
write the prediction admin offers. Who reviewed comes from the request (the signed-in user,
by username), never from the form; the time is the server's. The form's fields sit in the
page's own form (which carries the CSRF token) and its button posts them to
``<prediction>/review/`` (:func:`review_view`), which appends the review with
:func:`~ml_audit.oversight.reviews.record_review` and redirects back to the prediction with a
message. Input it refuses is shown again on a page of its own, with the errors next to their
fields. That URL needs the same view permission and tenant scope as the prediction page (a
prediction outside the user's tenants is a 404), plus ``ml_audit.add_review``; each request to
it is access-logged as ``admin-prediction-review``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from ml_audit.api import access
from ml_audit.decision_models import Review, ReviewAction
from ml_audit.exceptions import InvalidRecord
from ml_audit.oversight.reviews import MAX_REVIEW_COMMENT, MAX_REVIEW_REASON, check_review
from ml_audit.validation import MAX_DECISION_OUTCOME

if TYPE_CHECKING:
    from ml_audit.models import PredictionEvent

__all__ = [
    "ADD_REVIEW",
    "REVIEW_ENDPOINT",
    "ReviewForm",
    "review_form_panel",
    "review_urls",
    "review_view",
    "reviews_fieldset",
    "reviews_of",
    "reviews_panel",
]

#: The permission that shows the form and lets a user append a review.
ADD_REVIEW = "ml_audit.add_review"
#: ``AccessLog.endpoint`` of the review URL.
REVIEW_ENDPOINT = "admin-prediction-review"
#: Prefix of the form's field names: they share the prediction page's form.
FORM_PREFIX = "review"
#: Where a prediction instance keeps its reviews once read (both panels use one query).
_CACHE_ATTR = "_ml_audit_reviews"


class ReviewForm(forms.Form):
    """A review as a person enters it; checked by the same rules as ``record_review``."""

    action = forms.ChoiceField(choices=[("", "---------"), *ReviewAction.choices])
    final_outcome = forms.CharField(
        required=False,
        max_length=MAX_DECISION_OUTCOME,
        help_text="Override only: the decision that replaces the model's.",
    )
    reason = forms.CharField(required=False, max_length=MAX_REVIEW_REASON)
    comment = forms.CharField(
        required=False,
        max_length=MAX_REVIEW_COMMENT,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="E-mail addresses, card numbers, phone numbers and other values the "
        "redaction detects are replaced before it is stored.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", FORM_PREFIX)
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            check_review(
                data.get("action"),
                data.get("final_outcome"),
                data.get("reason"),
                data.get("comment"),
            )
        except InvalidRecord as exc:
            self.add_error_of(exc)
        return data

    def add_error_of(self, exc: InvalidRecord) -> None:
        """``exc`` next to the field it names (or above the form)."""
        message = str(exc).split(": ", 1)[-1]
        field = exc.field if exc.field in self.fields else None
        if field is None:
            message = str(exc)
        self.add_error(field, message)


def reviews_of(obj: PredictionEvent) -> list[Review]:
    """The prediction's reviews, latest first (``created_at``, then ``id``), read once per
    instance."""
    cached: list[Review] | None = getattr(obj, _CACHE_ATTR, None)
    if cached is None:
        cached = list(
            Review.objects.using(obj._state.db)
            .filter(prediction_id=obj.pk)
            .order_by("-created_at", "-id")
        )
        setattr(obj, _CACHE_ATTR, cached)
    return cached


def _panel_context(obj: PredictionEvent) -> dict[str, Any]:
    reviews = reviews_of(obj)
    override = next((r for r in reviews if r.action == ReviewAction.OVERRIDE), None)
    return {
        "reviews": reviews,
        "override": override,
        "effective_outcome": obj.decision_outcome if override is None else override.final_outcome,
        "model_outcome": obj.decision_outcome,
    }


def reviews_panel(obj: PredictionEvent) -> SafeString:
    """The effective outcome and every review (one query)."""
    return render_to_string("ml_audit/admin/reviews.html", _panel_context(obj))


def review_url(obj: PredictionEvent, admin_site_name: str) -> str:
    opts = obj._meta
    return reverse(
        f"{admin_site_name}:{opts.app_label}_{opts.model_name}_review", args=[str(obj.pk)]
    )


def review_form_panel(obj: PredictionEvent, admin_site_name: str) -> SafeString:
    """The review form, inside the prediction page's form: its button posts to the review
    URL (``formaction``), with the page's CSRF token."""
    return render_to_string(
        "ml_audit/admin/review_form.html",
        {"form": ReviewForm(), "action_url": review_url(obj, admin_site_name), "embedded": True},
    )


def can_add_review(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.has_perm(ADD_REVIEW))


def reviews_fieldset(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    """The "Reviews" section of the prediction page: the form only for ``add_review``."""
    fields: tuple[str, ...] = ("reviews_panel",)
    if can_add_review(request):
        fields += ("review_form_panel",)
    return ("Reviews", {"fields": fields})


def review_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """``GET``: the form on a page of its own; ``POST``: append the review and go back to the
    prediction, or show the form again with its errors. Access-logged."""

    def view() -> HttpResponse:
        request.current_app = model_admin.admin_site.name
        if not model_admin.has_view_permission(request) or not can_add_review(request):
            raise PermissionDenied
        obj = model_admin.get_object(request, unquote(object_id))  # tenant-scoped
        if obj is None:
            raise Http404("No prediction matches the given query.")
        form = ReviewForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            from ml_audit.oversight.reviews import record_review

            data = form.cleaned_data
            try:
                review = record_review(
                    obj,
                    reviewer=request.user,
                    action=data["action"],
                    final_outcome=data["final_outcome"] or None,
                    reason=data["reason"],
                    comment=data["comment"],
                )
            except InvalidRecord as exc:
                form.add_error_of(exc)
            else:
                outcome = f" to {review.final_outcome!r}" if review.final_outcome else ""
                messages.success(
                    request, f"Review recorded: {review.get_action_display()}{outcome}."
                )
                opts = model_admin.opts
                return HttpResponseRedirect(
                    reverse(
                        f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                        args=[str(obj.pk)],
                    )
                )
        context = {
            **model_admin.admin_site.each_context(request),
            **_panel_context(obj),
            "opts": model_admin.opts,
            "original": obj,
            "title": "Add a review",
            "subtitle": obj.prediction_id,
            "form": form,
            "embedded": False,
            "action_url": request.path,
        }
        return TemplateResponse(request, "ml_audit/admin/review_page.html", context)

    return model_admin.access_logged(request, REVIEW_ENDPOINT, view, "original")  # type: ignore[no-any-return]


def review_urls(model_admin: Any) -> list[URLPattern]:
    """The review URL of ``model_admin`` (the prediction admin), ahead of its catch-all."""
    opts = model_admin.opts

    def view(request: HttpRequest, object_id: str) -> HttpResponse:
        return review_view(model_admin, request, object_id)

    wrapped: Any = model_admin.admin_site.admin_view(view)
    # As the other access-logged views: a refused request's access-log row must not be rolled
    # back with an ATOMIC_REQUESTS transaction.
    wrapped._non_atomic_requests = access.EVERY_ALIAS
    return [
        path(
            "<path:object_id>/review/",
            wrapped,
            name=f"{opts.app_label}_{opts.model_name}_review",
        )
    ]
