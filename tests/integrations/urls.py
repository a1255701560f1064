from django.urls import path

from tests.integrations import views

urlpatterns = [
    path("score/", views.ScoreView.as_view()),
    path("score-fn/", views.score_function),
    path("score-features/<str:kind>/", views.score_with_features),
]
