from django.contrib import admin
from django.urls import include, path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("predict/", views.predict),
    path("api/ml-audit/", include("ml_audit.api.urls")),
    path("otlp/", include("ml_audit.ingest.urls")),
]
