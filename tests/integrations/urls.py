from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.integrations import views

router = SimpleRouter()
router.register("viewset", views.ScoreViewSet, basename="score-viewset")

urlpatterns = [
    *router.urls,
    path("score/", views.ScoreView.as_view()),
    path("plain/", views.NoSerializerView.as_view()),
    path("legacy/", views.LegacyFraudView.as_view()),
    path("score-fn/", views.score_function),
    path("score-features/<str:kind>/", views.score_with_features),
]
