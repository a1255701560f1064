"""The view gunicorn serves in the fault tests: a DRF prediction recorded by
``@audited_prediction(on_audit_failure="serve")`` (so in ``WRITE_MODE``, by default
``"journal"``: acknowledged once the response is sent)."""

from __future__ import annotations

import os
from typing import Any

from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ml_audit.integrations.drf import audited_prediction


class ScoreView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @audited_prediction(
        model_name="durability-http",
        model_version="1",
        decision_field="label",
        confidence_field="score",
        on_audit_failure="serve",
    )
    def post(self, request: Request) -> Response:
        return Response({"score": 0.25, "label": "clear", "pid": os.getpid()})
