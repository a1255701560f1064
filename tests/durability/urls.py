"""URLs of the fault tests' gunicorn project."""

from __future__ import annotations

from django.urls import path

from tests.durability.views import ScoreView

urlpatterns = [path("score/", ScoreView.as_view())]
