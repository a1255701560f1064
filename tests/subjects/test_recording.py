"""``subject=`` through the one path from a record to a row: record, content hash, span,
journal and spool lines, writer, reading back; the identifier itself goes nowhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ml_audit import store
from ml_audit.canonical import canonical_json
from ml_audit.exceptions import InvalidRecord, PredictionConflict
from ml_audit.models import ModelVersion, PredictionEvent, SubjectKey
from ml_audit.otel import conventions, processor
from ml_audit.otel.conventions import ATTR, PAYLOAD_ATTRIBUTES
from ml_audit.otel.setup import get_pipeline
from ml_audit.otel.spans import audit_prediction, prediction_span
from ml_audit.otel.spool_lines import decode_line, encode_line
from ml_audit.records import IDENTITY_FIELDS, PredictionRecord, revalidated
from ml_audit.redaction import RedactionPolicy
from ml_audit.services import ActorPayload
from ml_audit.subjects import SubjectUnavailable, subject_ref
from ml_audit.subjects import keys as subject_keys
from tests.factories import redacted
from tests.subjects.helpers import ALICE, BOB, predict

pytestmark = pytest.mark.django_db

REF = "0123456789abcdef" * 4
PINNED = "4d3b42ee0fa7667e1e476537af50af0b14a14394bb079a5b3002e12a51d4b5e5"


# ----------------------------------------------------------------------------- the record


def test_a_record_without_a_subject_hashes_as_before_subjects_existed() -> None:
    record = redacted()
    fields = record.stored_fields()
    assert "subject_ref" not in fields
    assert record.content_hash() == hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    # Pinned: the hash this record had before subjects existed (computed with the records
    # module of the release before), so no stored row's content hash changes.
    fixed = redacted(
        event_id=uuid.UUID("01900000-0000-7000-8000-000000000001"),
        prediction_id="pinned",
        timestamp=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        metadata={"k": [1, 2.5, None]},
        actor=ActorPayload(
            "user", "u1", tenant_id="acme", ip_address="10.0.0.1", user_agent="ua",
            auth_context={"s": 1},
        ),
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )  # fmt: skip
    assert fixed.content_hash() == PINNED
    assert fixed.evolve(subject_ref=REF).content_hash() != PINNED


def test_a_subject_ref_is_stored_and_hashed_only_when_set() -> None:
    record = redacted(subject_ref=REF)
    fields = record.stored_fields()
    assert fields["subject_ref"] == REF
    assert record.content_hash() == hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    assert (
        record.content_hash()
        != redacted(event_id=record.event_id)
        .evolve(prediction_id=record.prediction_id, timestamp=record.timestamp)
        .content_hash()
    )
    assert record.identity()["subject_ref"] == REF
    assert IDENTITY_FIELDS[-1] == "subject_ref"


@pytest.mark.parametrize("value", ["x" * 64, REF.upper(), REF[:63], REF + "0", ALICE, 5, ["a"]])
def test_a_record_refuses_anything_but_a_reference(value: Any) -> None:
    with pytest.raises(InvalidRecord) as info:
        redacted(subject_ref=value)
    assert info.value.field == "subject_ref"
    # And so does a record rebuilt from a span's attributes or a spool line.
    with pytest.raises(InvalidRecord):
        revalidated(redacted().evolve(subject_ref=value))


def test_to_dict_writes_the_ref_only_when_set_and_reads_back() -> None:
    plain = redacted()
    assert "subject_ref" not in plain.to_dict()
    assert PredictionRecord.from_dict(plain.to_dict()) == plain
    named = redacted(subject_ref=REF)
    data = json.loads(json.dumps(named.to_dict()))
    assert data["subject_ref"] == REF
    assert PredictionRecord.from_dict(data) == named


def test_spool_lines_with_and_without_a_ref_replay() -> None:
    policy, payloads = RedactionPolicy(), frozenset({"features"})
    named = redacted(subject_ref=REF)
    record, using = decode_line(encode_line(named, "audit"), policy=policy, payloads=payloads)
    assert (record, using) == (named, "audit")
    # A line written before subjects existed (no key at all) still replays.
    old = redacted()
    line = encode_line(old)
    assert b"subject_ref" not in line
    assert decode_line(line, policy=policy, payloads=payloads)[0] == old


@pytest.mark.parametrize("value", [ALICE, 7, None, "ABC"])
def test_a_spool_line_with_a_bad_ref_is_refused(value: Any) -> None:
    data = redacted().to_dict()
    data["subject_ref"] = value
    line = json.dumps(data).encode() + b"\n"
    with pytest.raises(ValueError, match="subject_ref"):
        decode_line(line, policy=RedactionPolicy(), payloads=frozenset({"features"}))


def test_spans_carry_the_ref_with_the_payloads_and_decode_back() -> None:
    record = redacted(subject_ref=REF)
    attributes = conventions.encode(record)
    assert attributes[ATTR.SUBJECT_REF] == REF
    assert conventions.decode(attributes) == record
    assert ATTR.SUBJECT_REF in PAYLOAD_ATTRIBUTES
    bare = conventions.encode(record, export_payloads=False)
    assert ATTR.SUBJECT_REF not in bare
    # Never cut, whatever the attribute limit.
    assert conventions.encode(record, max_length=16)[ATTR.SUBJECT_REF] == REF
    assert ATTR.SUBJECT_REF not in conventions.encode(redacted())


# ----------------------------------------------------------------------------- recording calls


def _everything_exported(exporter: InMemorySpanExporter) -> str:
    return json.dumps(
        [
            {
                "name": span.name,
                "attributes": dict(span.attributes or {}),
                "events": [dict(event.attributes or {}) for event in span.events],
            }
            for span in exporter.get_finished_spans()
        ],
        default=str,
    )


def test_record_prediction_event_stores_the_ref_never_the_identifier(
    subjects: Any, exporter: InMemorySpanExporter
) -> None:
    event = predict(1)
    ref = subject_ref(ALICE, tenant="acme")
    assert ref is not None
    assert event.subject_ref == ref
    assert store.verify_event(event)
    # The inverse of the writer holds with a subject: event_to_record(write(r)) == r.
    stored = PredictionEvent.objects.select_related("model", "actor").get(pk=event.pk)
    assert store.event_to_record(stored).subject_ref == ref
    assert store.event_to_record(stored).content_hash() == stored.content_hash
    # Same subject, same tenant: same reference; another subject or tenant: another.
    assert predict(2).subject_ref == ref
    assert predict(3, BOB).subject_ref not in ("", ref)
    assert predict(4, tenant="globex").subject_ref not in ("", ref)
    assert predict(5, None).subject_ref == ""
    # Nowhere in a row, nowhere on an exported span.
    rows = json.dumps(list(PredictionEvent.objects.values()), default=str)
    assert ALICE not in rows
    assert BOB not in rows
    exported = _everything_exported(exporter)
    assert ref in exported
    assert ALICE not in exported
    assert BOB not in exported


def test_the_writer_round_trips_a_record_with_a_subject(subjects: Any) -> None:
    ref = subject_ref(ALICE, create=True)
    record = redacted(subject_ref=ref)
    event = store.write(record)
    again = PredictionEvent.objects.select_related("model", "actor").get(pk=event.pk)
    assert store.event_to_record(again) == record
    assert again.content_hash == record.content_hash()


@pytest.mark.parametrize("batch", [1, 3, 40])
def test_write_many_stores_the_ref_on_every_path(subjects: Any, batch: int) -> None:
    """One record (compiled INSERT), a batch (bulk INSERT, or COPY on PostgreSQL)."""
    ref = subject_ref(ALICE, create=True)
    records = [
        redacted(prediction_id=f"b-{batch}-{i}", subject_ref=ref if i % 2 else "")
        for i in range(batch)
    ]
    result = store.write_many(records)
    assert result.created == batch
    for record in records:
        row = PredictionEvent.objects.select_related("model", "actor").get(
            prediction_id=record.prediction_id
        )
        assert row.subject_ref == record.subject_ref
        assert store.event_to_record(row) == record
        assert store.verify_event(row)


def test_recording_again_with_another_subject_is_a_conflict(subjects: Any) -> None:
    predict(1)
    assert predict(1).subject_ref  # the same content: the stored row
    with pytest.raises(PredictionConflict) as info:
        predict(1, BOB)
    assert info.value.fields == ("subject_ref",)


def test_prediction_span_and_the_decorator_name_the_subject(
    subjects: Any, exporter: InMemorySpanExporter
) -> None:
    actor = ActorPayload("service", "batch", tenant_id="acme")
    with prediction_span(
        model_name="credit",
        model_version="1",
        features={"age": 41},
        actor=actor,
        subject=ALICE,
        mode="sync",
    ) as p:
        p.set_output({"score": 0.1})
    ref = subject_ref(ALICE, tenant="acme")
    assert p.event.subject_ref == ref
    assert ref

    @audit_prediction(
        model_name="credit", model_version="1", actor="who", subject="applicant", mode="sync"
    )
    def score(features: dict[str, Any], who: ActorPayload, applicant: str) -> dict[str, Any]:
        return {"score": 0.2}

    @audit_prediction(
        model_name="credit",
        model_version="1",
        subject=lambda features, customer: customer,
        mode="sync",
    )
    def score_by_callable(features: dict[str, Any], customer: str) -> dict[str, Any]:
        return {"score": 0.3}

    score({"age": 41}, who=actor, applicant=ALICE)
    score_by_callable({"age": 41}, BOB)
    refs = dict(PredictionEvent.objects.values_list("output__score", "subject_ref"))
    assert refs[0.2] == ref
    assert refs[0.3] == subject_ref(BOB)
    assert refs[0.3]
    exported = _everything_exported(exporter)
    assert ALICE not in exported
    assert BOB not in exported


def test_async_spans_read_an_uncached_subject_key_from_a_thread(subjects: Any) -> None:
    """Inside an event loop the key is not read on the loop's thread (Django refuses ORM
    calls there): ``async with`` and a decorated coroutine read or create it in a thread."""

    @audit_prediction(model_name="credit", model_version="1", subject="applicant", mode="sync")
    async def score(features: dict[str, Any], applicant: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"score": 0.4}

    async def main() -> str:
        async with prediction_span(
            model_name="credit", model_version="1", features={"age": 41}, subject=ALICE, mode="sync"
        ) as p:
            await asyncio.sleep(0)
            p.set_output({"score": 0.1})
        subject_keys.clear_cache()  # BOB's key is created, ALICE's read, not from memory
        await score({"age": 41}, BOB)
        subject_keys.clear_cache()
        await score({"age": 42}, ALICE)
        return p.prediction_id

    assert not SubjectKey.objects.exists()
    async_to_sync(main)()
    refs = dict(PredictionEvent.objects.values_list("output__score", "subject_ref"))
    assert SubjectKey.objects.count() == 2
    assert refs[0.1] == subject_ref(ALICE)
    assert refs[0.4] in {subject_ref(ALICE), subject_ref(BOB)}
    assert set(PredictionEvent.objects.values_list("subject_ref", flat=True)) == {
        subject_ref(ALICE),
        subject_ref(BOB),
    }


def test_an_outage_refuses_the_prediction_before_the_model_runs(
    subjects: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("down")

    monkeypatch.setattr(subject_keys, "_read_or_create", down)
    ran = []
    with (
        pytest.raises(SubjectUnavailable),
        prediction_span(model_name="credit", model_version="1", features={"a": 1}, subject=ALICE),
    ):
        ran.append(True)
    with pytest.raises(SubjectUnavailable):
        predict(1)
    assert ran == []
    assert PredictionEvent.objects.count() == 0
    assert not ModelVersion.objects.exists()


def test_invalid_subjects_are_refused_before_anything_is_written(subjects: Any) -> None:
    with pytest.raises(InvalidRecord, match="subject"):
        predict(1, "")
    with pytest.raises(InvalidRecord, match="subject"):
        prediction_span(model_name="m", model_version="1", features={}, subject={"id": 1})  # type: ignore[arg-type]
    assert not PredictionEvent.objects.exists()
    assert not SubjectKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_journal_lines_hold_the_ref_never_the_identifier(
    subjects: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    subjects["WRITE_MODE"] = "journal"
    lines: list[bytes] = []
    original = processor.journal_line  # type: ignore[attr-defined]

    def spy(*args: Any, **kwargs: Any) -> bytes:
        line = original(*args, **kwargs)
        lines.append(line)
        return line

    monkeypatch.setattr(processor, "journal_line", spy)
    with prediction_span(
        model_name="credit",
        model_version="1",
        features={"age": 3},
        actor=ActorPayload("user", "u1", tenant_id="acme"),
        subject=ALICE,
    ) as p:
        p.set_output({"score": 0.5})
    assert get_pipeline().processor.force_flush()
    ref = subject_ref(ALICE, tenant="acme")
    assert len(lines) == 1
    assert json.loads(lines[0])["subject_ref"] == ref
    assert ALICE.encode() not in lines[0]
    deadline = time.monotonic() + 10
    while not PredictionEvent.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert PredictionEvent.objects.get().subject_ref == ref


def test_an_orm_insert_keeps_a_computed_ref_and_refuses_an_identifier(subjects: Any) -> None:
    ref = subject_ref(ALICE, create=True)
    model = ModelVersion.objects.create(model_name="orm", version="1")
    assert ref is not None
    event = PredictionEvent(model=model, features={"a": 1}, subject_ref=ref)
    event.save()
    assert PredictionEvent.objects.get(pk=event.pk).subject_ref == ref
    assert store.verify_event(PredictionEvent.objects.get(pk=event.pk))
    with pytest.raises(InvalidRecord, match="subject_ref"):
        PredictionEvent(model=model, features={"a": 2}, subject_ref=ALICE[:64]).save()
