from django.contrib import admin
from django.urls import include, path

from demo_site import views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("api/score/", views.ScoreView.as_view(), name="score"),
    path("api/ml-audit/", include("ml_audit.api.urls")),
    # DRF's login and logout views: the browsable API's "Log in" link, the way into the API
    # from a browser (the API answers anonymous visitors 401).
    path("api-auth/", include("rest_framework.urls")),
]
