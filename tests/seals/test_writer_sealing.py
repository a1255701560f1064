"""The span processor's writer thread seals what it wrote, by itself, when sealing is on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from ml_audit.models import PredictionEvent
from ml_audit.otel.processor import MLAuditSpanProcessor
from ml_audit.seal_models import Seal, SealMember
from ml_audit.sealing import sealer
from ml_audit.sealing.verifier import verify
from tests.factories import redacted
from tests.otel.test_processor import end_prediction
from tests.seals.helpers import SEAL_SETTINGS

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[MLAuditSpanProcessor, Tracer]]:
    sealer._last_run.clear()
    processor = MLAuditSpanProcessor(mode="journal", spool_dir=tmp_path / "spool")
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    yield processor, provider.get_tracer("tests")
    processor.shutdown()


def sealed_ids() -> set[str]:
    return {str(row_id) for row_id in SealMember.objects.values_list("row_id", flat=True)}


def wait_until_sealed(ids: set[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not ids <= sealed_ids():
        assert time.monotonic() < deadline, f"not sealed within {WAIT} s: {ids - sealed_ids()}"
        time.sleep(0.1)


def test_the_writer_seals_what_it_wrote_without_being_asked(
    writer: tuple[MLAuditSpanProcessor, Tracer], settings: Any
) -> None:
    settings.ML_AUDIT = {**SEAL_SETTINGS, "SEALING": True, "SEAL_INTERVAL_SECONDS": 1}
    processor, tracer = writer
    for i in range(3):
        end_prediction(tracer, redacted(prediction_id=f"ws-{i}"))
    assert processor.force_flush(int(WAIT * 1000))
    first = {str(pk) for pk in PredictionEvent.objects.values_list("id", flat=True)}
    assert len(first) == 3
    wait_until_sealed(first)  # after the batch, or on the idle wake-up a second later
    # Later rows go into a later seal, also while the writer is otherwise idle.
    end_prediction(tracer, redacted(prediction_id="ws-late"))
    assert processor.force_flush(int(WAIT * 1000))
    late = {str(PredictionEvent.objects.get(prediction_id="ws-late").id)}
    wait_until_sealed(late)
    assert Seal.objects.count() >= 2
    report = verify()
    assert report.ok, report.findings


def test_without_sealing_the_writer_seals_nothing(
    writer: tuple[MLAuditSpanProcessor, Tracer], settings: Any
) -> None:
    settings.ML_AUDIT = {**SEAL_SETTINGS, "SEALING": False, "SEAL_INTERVAL_SECONDS": 1}
    processor, tracer = writer
    end_prediction(tracer, redacted(prediction_id="ns-1"))
    assert processor.force_flush(int(WAIT * 1000))
    time.sleep(1.5)  # past one interval: nothing may have been sealed meanwhile
    assert PredictionEvent.objects.filter(prediction_id="ns-1").exists()
    assert Seal.objects.count() == 0
