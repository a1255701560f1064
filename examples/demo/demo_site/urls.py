from django.contrib import admin
from django.urls import include, path

from demo_site import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("api/score/", views.ScoreView.as_view(), name="score"),
    path("api/ml-audit/", include("ml_audit.api.urls")),
]
