"""The spool trusts nothing it reads back: planted, hostile and broken files, forged lines, a loose
directory; liveness by lock (a journal of a killed process, racing replayers); redaction again
on replay, idempotent on what our own writer spooled."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from ml_audit import store
from ml_audit.checks import check_settings
from ml_audit.conf import audit_settings
from ml_audit.exceptions import ConfigurationError
from ml_audit.models import Explanation, PredictionEvent
from ml_audit.otel.processor import MLAuditSpanProcessor
from ml_audit.otel.spool import (
    MAX_LINE_BYTES,
    MAX_LINE_DEPTH,
    InsecureSpoolDirectory,
    Spool,
    SpooledExplanation,
    decode_line,
    encode_line,
    prepare_directory,
)
from ml_audit.otel.spool_files import read_lines
from ml_audit.records import ActorPayload, ExplanationRecord, PredictionRecord
from ml_audit.redaction import RedactionPolicy, redact
from tests import factories
from tests.otel.test_processor import end_prediction

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
OTHER_UID = 65534  # "nobody"
ALL_PAYLOADS = ["features", "output", "metadata", "auth_context", "explanation"]
HASH_KEY = "a-hash-key-of-at-least-16-bytes"


def redacted(**overrides: Any) -> PredictionRecord:
    return factories.redacted(**{"actor": None, **overrides})


class Writer:
    """A replay writer that records every record it is given (thread-safe enough: appends)."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []

    def __call__(self, records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        self.records.extend(records)
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    @property
    def ids(self) -> list[str]:
        return [r.prediction_id for r in self.records]


def db_write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
    return store.write_many(records, using=using)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    instance = Spool(tmp_path / "spool")
    prepare_directory(instance.directory)
    yield instance
    instance.close()


_planted = 0


def plant(
    directory: Path, suffix: str = ".ready", data: bytes | None = b"", *, age: float = 100.0
) -> Path:
    """A regular file (or, with ``data=None``, just the name) named like a spool file of
    another process, ``age`` seconds old (older files are replayed first)."""
    global _planted
    _planted += 1
    path = directory / f"spool-{40000 + _planted}-{uuid.uuid4().hex}{suffix}"
    if data is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        make_old(path, age)
    return path


def make_old(path: Path, age: float) -> None:
    when = time.time() - age
    os.utime(path, (when, when), follow_symlinks=False)


def lines(*records: PredictionRecord | SpooledExplanation) -> bytes:
    return b"".join(encode_line(record) for record in records)


def forged(record: PredictionRecord | None = None, **changes: Any) -> bytes:
    """A well-formed line as someone else could write it: ``record``'s fields with changes."""
    data = (record or redacted()).to_dict()
    data.update(changes)
    return json.dumps(data).encode() + b"\n"


def corrupt_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".corrupt"))


def call_replay(directory: Path, *args: str) -> str:
    out = StringIO()
    call_command("ml_audit_replay", "--spool-dir", str(directory), *args, stdout=out)
    return out.getvalue()


def replay_in_thread(spool: Spool, writer: Writer) -> Any:
    """``spool.replay(writer)`` in a daemon thread; the result, or a failure if it hangs."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(spool.replay(writer)), daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the replay hangs"
    return outcome[0]


# ------------------------------------------------------------------------------ nesting


@pytest.mark.django_db
def test_a_line_of_200000_brackets_is_quarantined_and_the_records_after_it_written(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    bomb = b"[" * 200_000 + b"\n"
    path = plant(
        spool.directory,
        data=lines(redacted(prediction_id="before-bomb"))
        + bomb
        + lines(redacted(prediction_id="after-bomb")),
    )
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"), pytest.raises(CommandError) as e:
        call_replay(spool.directory)
    assert e.value.returncode == 1  # something was quarantined: said, after the rest was done
    assert sorted(PredictionEvent.objects.values_list("prediction_id", flat=True)) == [
        "after-bomb",
        "before-bomb",
    ]
    assert f"nested more than {MAX_LINE_DEPTH} levels deep" in caplog.text
    assert not path.exists()
    assert not path.with_suffix(".replaying").exists()
    assert path.with_suffix(".corrupt").read_bytes() == bomb
    assert "0 file(s) replayed" in call_replay(spool.directory)  # and the next run is clean


@pytest.mark.parametrize(
    "bomb",
    [
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"[" * 1_000 + b"]" * 1_000,
        b'{"features":{"x":' + b"[" * 80 + b"]" * 80 + b"}}",
    ],
)
def test_deep_nesting_is_refused_before_it_is_parsed(bomb: bytes) -> None:
    with pytest.raises(ValueError, match="nested more than"):
        decode_line(bomb + b"\n")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    record = redacted(features={"text": "[" * 500 + '{"\\"' * 100, "n": 1})
    assert decode_line(encode_line(record)) == (record, None)


def test_a_payload_nested_as_deep_as_a_record_may_be_round_trips() -> None:
    deep: Any = 1
    for _ in range(63):  # ml_audit.normalise.MAX_DEPTH levels, the root included
        deep = [deep]
    record = redacted(
        features={"deep": deep},
        actor=ActorPayload("user", "u", auth_context={"deep": deep}),
    )
    assert decode_line(encode_line(record)) == (record, None)


# ------------------------------------------------------------------------------ line length


def test_the_line_limit_is_documented_and_16_mib() -> None:
    assert MAX_LINE_BYTES == 16 * 1024 * 1024
    with pytest.raises(ValueError, match="longer than"):
        decode_line(b" " * MAX_LINE_BYTES + b"\n")


def test_a_line_longer_than_the_limit_is_quarantined_without_being_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_line_bytes=4096)
    prepare_directory(spool.directory)
    long_line = b'{"x":"' + b"y" * 50_000 + b'"}\n'
    first, last = lines(redacted(prediction_id="short-1")), lines(redacted(prediction_id="s2"))
    path = plant(spool.directory, data=first + long_line + last)
    fd = os.open(path, os.O_RDONLY)
    try:
        read = list(read_lines(fd, 4096))
    finally:
        os.close(fd)
    assert [(line.number, line.offset, line.length, line.data) for line in read] == [
        (1, 0, len(first), first),
        (2, len(first), len(long_line), None),
        (3, len(first) + len(long_line), len(last), last),
    ]
    writer = Writer()
    result = spool.replay(writer)
    assert writer.ids == ["short-1", "s2"]
    assert (result.files, result.corrupt) == (1, 1)
    assert path.with_suffix(".corrupt").read_bytes() == long_line  # kept whole, for people


def test_a_torn_overlong_last_line_is_quarantined_with_a_newline(tmp_path: Path) -> None:
    ok = lines(redacted(prediction_id="ok"))
    spool = Spool(tmp_path / "spool", max_line_bytes=len(ok) + 10)
    prepare_directory(spool.directory)
    path = plant(spool.directory, data=ok + b"z" * 1000)  # no newline: the writer crashed
    writer = Writer()
    result = spool.replay(writer)
    assert (writer.ids, result.corrupt) == (["ok"], 1)
    assert path.with_suffix(".corrupt").read_bytes() == b"z" * 1000 + b"\n"


# ------------------------------------------------------------------------------ not files


@pytest.mark.parametrize("suffix", [".ready", ".jsonl", ".journal", ".replaying"])
def test_a_fifo_named_like_a_spool_file_neither_hangs_nor_blocks_the_replay(
    spool: Spool, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    fifo = plant(spool.directory, suffix, data=None)
    os.mkfifo(fifo, 0o600)
    make_old(fifo, 1000)
    good = plant(spool.directory, data=lines(redacted(prediction_id="after-fifo")))
    writer = Writer()
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = replay_in_thread(spool, writer)
    assert writer.ids == ["after-fifo"]
    assert (result.files, result.corrupt) == (1, 1)
    assert not good.exists()
    (moved,) = [p for p in spool.directory.iterdir()]
    assert moved.name.endswith(".corrupt")
    assert stat.S_ISFIFO(os.lstat(moved).st_mode)
    assert "not a regular file (a FIFO)" in caplog.text
    assert replay_in_thread(spool, Writer()).corrupt == 0  # reported once, not on every run


@pytest.mark.django_db(transaction=True)
def test_a_fifo_in_the_spool_does_not_stall_a_live_batch_writer(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    prepare_directory(directory)
    fifo = plant(directory, ".jsonl", data=None)
    os.mkfifo(fifo, 0o600)
    leftover = plant(directory, data=lines(redacted(prediction_id="left-over")))
    processor = MLAuditSpanProcessor(mode="batch", spool_dir=directory, retry_backoff_millis=1)
    processor.shutdown_timeout = 10.0
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    try:
        end_prediction(tracer, redacted(prediction_id="live-1"))
        assert processor.force_flush(timeout_millis=int(WAIT * 1000))  # the replay ran too
        end_prediction(tracer, redacted(prediction_id="live-2"))
        assert processor.force_flush(timeout_millis=int(WAIT * 1000))
    finally:
        processor.shutdown()
    assert sorted(PredictionEvent.objects.values_list("prediction_id", flat=True)) == [
        "left-over",
        "live-1",
        "live-2",
    ]
    assert not leftover.exists()
    assert processor.stats()["dropped"] == 1  # the FIFO, quarantined and counted
    assert len(corrupt_names(directory)) == 1


def test_a_directory_named_like_a_spool_file_does_not_block_the_files_after_it(
    spool: Spool,
) -> None:
    blocker = plant(spool.directory, data=None)
    blocker.mkdir()
    (blocker / "inside").write_bytes(b"whatever")
    make_old(blocker, 1000)
    plant(spool.directory, data=lines(redacted(prediction_id="after-dir")))
    writer = Writer()
    result = spool.replay(writer)
    assert (writer.ids, result.files, result.corrupt) == (["after-dir"], 1, 1)
    (moved,) = spool.directory.iterdir()
    assert moved.is_dir()
    assert moved.name == blocker.with_suffix(".corrupt").name
    assert (moved / "inside").read_bytes() == b"whatever"  # moved, not emptied


def test_an_unreadable_file_does_not_block_the_files_after_it(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unreadable = plant(spool.directory, data=lines(redacted(prediction_id="locked-away")), age=999)
    plant(spool.directory, data=lines(redacted(prediction_id="after-unreadable")))
    if IS_ROOT:  # root reads every file: make this one fail as it would for anyone else
        real_open = os.open

        def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(path).name == unreadable.name:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_)
    else:  # pragma: no cover - the CI runs as root
        unreadable.chmod(0)
    writer = Writer()
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = spool.replay(writer)
    assert (writer.ids, result.files, result.corrupt) == (["after-unreadable"], 1, 1)
    assert unreadable.with_suffix(".corrupt").exists()
    assert "cannot be opened" in caplog.text


def test_a_symlink_named_like_a_spool_file_is_not_followed(
    spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere.jsonl"
    data = lines(redacted(prediction_id="through-a-link"))
    elsewhere.write_bytes(data)
    link = plant(spool.directory, data=None)
    link.symlink_to(elsewhere)
    writer = Writer()
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = spool.replay(writer)
    assert writer.ids == []
    assert result.corrupt == 1
    assert "not a regular file (a symbolic link)" in caplog.text
    assert elsewhere.read_bytes() == data
    assert link.with_suffix(".corrupt").is_symlink()


def test_a_file_others_may_write_to_is_quarantined(spool: Spool) -> None:
    data = lines(redacted(prediction_id="loose"))
    loose = plant(spool.directory, data=data, age=999)
    loose.chmod(0o666)
    plant(spool.directory, data=lines(redacted(prediction_id="private")))
    writer = Writer()
    result = spool.replay(writer)
    assert (writer.ids, result.corrupt) == (["private"], 1)
    assert loose.with_suffix(".corrupt").read_bytes() == data


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give a file to another user")
def test_a_file_of_another_user_is_quarantined_unread(spool: Spool) -> None:
    # Well-formed and valid: only its owner says it is not ours (any tenant, any timestamp...).
    theirs = plant(
        spool.directory,
        data=lines(
            redacted(
                prediction_id="planted",
                actor=ActorPayload("user", "mallory", tenant_id="someone-elses-tenant"),
                timestamp=dt.datetime(2001, 1, 1, tzinfo=dt.UTC),
            ),
            SpooledExplanation("victim", explanation_record()),
        ),
        age=999,
    )
    os.chown(theirs, OTHER_UID, OTHER_UID)
    plant(spool.directory, data=lines(redacted(prediction_id="ours")))
    writer = Writer()
    explanations: list[SpooledExplanation] = []

    def write_explanation(entry: SpooledExplanation, using: str | None) -> bool:
        explanations.append(entry)
        return True

    result = spool.replay(writer, write_explanation=write_explanation)
    assert (writer.ids, explanations, result.corrupt) == (["ours"], [], 1)
    assert theirs.with_suffix(".corrupt").exists()


# ------------------------------------------------------------------------------ forged lines


def explanation_record(**overrides: Any) -> ExplanationRecord:
    return ExplanationRecord.create(
        method=overrides.pop("method", "shap"),
        payload=overrides.pop("payload", {"income": 0.4}),
        summary_text=overrides.pop("summary_text", "Income raised the score."),
        generated_at=dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC),
        **overrides,
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"features": "a string"}, "features: must be a mapping"),
        ({"trace_id": "not-hex-at-all"}, "trace_id"),
        ({"trace_id": 12}, "trace_id: must be a string"),
        ({"span_id": "XYZ"}, "span_id"),
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp: has no time zone"),
        ({"timestamp": 1700000000}, "timestamp"),
        ({"event_id": "nope"}, "UUID"),
        ({"confidence": 7}, "confidence"),
        ({"status": "pwned"}, "status"),
        ({"model_name": ""}, "model_name"),
        ({"actor": {"actor_type": "god", "actor_id": "x"}}, "actor.actor_type"),
        ({"actor": {"actor_type": "user", "actor_id": "x", "role": "admin"}}, "unknown field"),
        ({"actor": "root"}, "actor"),
        ({"redaction": None}, "does not say it was redacted"),
        ({"redaction": {"policy": 1, "paths": {}}}, "redaction"),
        ({"schema": True}, "schema"),
        ({"extra": 1}, "unexpected extra"),
        ({"latency_ms": -5}, "latency_ms"),
        ({"error_message": None}, "error_message: must be a string"),
    ],
)
def test_a_forged_invalid_record_is_refused_as_a_live_one_would_be(
    changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_line(forged(**changes))


def test_forged_invalid_records_are_quarantined_and_the_valid_ones_written(spool: Spool) -> None:
    data = (
        forged(features="a string")
        + lines(redacted(prediction_id="valid-1"))
        + forged(trace_id="0123-not-hex")
        + forged(redacted(prediction_id="x"), prediction_id="")
        + lines(redacted(prediction_id="valid-2"))
    )
    path = plant(spool.directory, data=data)
    writer = Writer()
    result = spool.replay(writer)
    assert writer.ids == ["valid-1", "valid-2"]
    assert (result.files, result.corrupt, result.inserted) == (1, 3, 2)
    assert len(path.with_suffix(".corrupt").read_bytes().splitlines()) == 3


def test_a_forged_line_with_raw_personal_data_is_redacted_before_it_is_written() -> None:
    line = forged(
        features={"email": "alice@example.com", "note": "call me at alice@example.com", "n": 2},
        redaction={"policy": "1:forged", "paths": {}},  # says it was redacted; it was not
    )
    record, _ = decode_line(line)
    assert isinstance(record, PredictionRecord)
    assert record.features == {"email": "*****", "note": "call me at *****", "n": 2}
    assert record.redaction == {
        "policy": audit_settings.redaction_policy.version,
        "paths": {"features": ["email", "note"]},
    }


@pytest.mark.django_db
def test_raw_personal_data_never_reaches_a_row_even_one_that_verifies(spool: Spool) -> None:
    line = forged(
        redacted(prediction_id="forged-pii"),
        features={"email": "alice@example.com", "ssn": "123-45-6789"},
        error_message="lookup failed for alice@example.com",
        status="failed",
        error_type="LookupError",
        output=None,
        confidence=None,
        redaction={"policy": "1:forged", "paths": {}},
    )
    plant(spool.directory, data=line)
    call_replay(spool.directory)
    event = PredictionEvent.objects.get(prediction_id="forged-pii")
    assert event.features == {"email": "*****", "ssn": "*****"}
    assert "alice" not in json.dumps(store.event_to_record(event).stored_fields())
    assert store.verify_event(event)


@pytest.mark.django_db
def test_a_forged_explanation_is_validated_and_redacted_before_it_becomes_current(
    spool: Spool, settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACT_PAYLOADS": ["features", "explanation"]}
    store.write(redacted(prediction_id="explained"))
    explanation: dict[str, Any] = {
        **explanation_record().to_dict(),
        "payload": {"email": "alice@example.com", "weight": 0.5},
        "summary_text": "Mail alice@example.com about it.",
    }
    valid = {
        "schema": "ml_audit.spooled_explanation/1",
        "prediction_id": "explained",
        "explanation": explanation,
    }
    invalid = {**valid, "explanation": {**explanation, "status": "pwned"}}
    data = b"".join(json.dumps(line).encode() + b"\n" for line in (invalid, valid))
    plant(spool.directory, data=data)
    with pytest.raises(CommandError):  # the invalid one was quarantined
        call_replay(spool.directory)
    (current,) = Explanation.objects.filter(prediction__prediction_id="explained")
    assert current.payload == {"email": "*****", "weight": 0.5}
    assert current.summary_text == "Mail ***** about it."
    assert store.verify_explanation(current)
    assert len(corrupt_names(spool.directory)) == 1


@pytest.mark.parametrize(
    ("latency", "expected"),
    [(12, 12.0), (0.25, 0.25), (0, 0.0), (10**6, 1e6)],
)
def test_decode_line_applies_a_numeric_latency(latency: Any, expected: float) -> None:
    record = redacted(latency_ms=None)
    data = json.loads(encode_line(record, "audit"))
    data["_latency_ms"] = latency
    decoded, using = decode_line(json.dumps(data).encode() + b"\n")
    assert isinstance(decoded, PredictionRecord)
    assert (decoded.latency_ms, using) == (expected, "audit")
    assert decoded == dataclasses.replace(record, latency_ms=expected)
    assert decode_line(encode_line(record, latency_ms=expected))[0] == decoded


@pytest.mark.parametrize(
    ("latency", "reason"),
    [
        (True, "_latency_ms: must be a number"),
        ("12", "_latency_ms: must be a number"),
        (None, "_latency_ms: must be a number"),
        (-1, "latency_ms: must be zero or more"),
        (1e400, "latency_ms: must be a finite number"),
    ],
)
def test_decode_line_refuses_a_latency_that_is_not_a_number_of_milliseconds(
    latency: Any, reason: str
) -> None:
    data = redacted().to_dict()
    data["_latency_ms"] = latency
    with pytest.raises(ValueError, match=reason):
        decode_line(json.dumps(data).encode().replace(b"Infinity", b"1e400") + b"\n")


def test_nan_and_infinity_are_not_json() -> None:
    line = encode_line(redacted()).replace(b'"confidence":0.25', b'"confidence":NaN')
    with pytest.raises(ValueError, match="NaN is not a JSON number"):
        decode_line(line)


def test_an_explanation_line_has_no_latency() -> None:
    entry = SpooledExplanation("p", explanation_record())
    data = json.loads(encode_line(entry))
    data["_latency_ms"] = 1
    with pytest.raises(ValueError, match="no _latency_ms"):
        decode_line(json.dumps(data).encode() + b"\n")
    with pytest.raises(ValueError, match="no latency"):
        encode_line(entry, latency_ms=1)


# ------------------------------------------------------------------------------ redaction again


def full_record(policy: RedactionPolicy, payloads: frozenset[str]) -> PredictionRecord:
    """A record with something for every detector and payload, redacted as the live path
    redacts it."""
    return PredictionRecord.create(
        model_name="scorer",
        model_version="3",
        features={
            "email": "alice@example.com",
            "note": "write to bob@example.org or call +44 20 7946 0958 today",
            "card": "4111 1111 1111 1111",
            "age": 30,
            "nested": {"password": "hunter2", "list": ["carol@example.net", 1, None]},
            "iban": "DE89 3704 0044 0532 0130 00",
        },
        output={"token": "abc", "text": "ssn 123-45-6789", "score": 0.5},
        metadata={"api_key": "sk_live_abcdefghijklmnopqrstuvwx", "run": 7},
        actor=ActorPayload(
            "user",
            "u-1",
            tenant_id="t-1",
            ip_address="192.0.2.1",
            auth_context={"bearer": "Bearer abcdefghijklmnopqrstu12345", "sub": "u-1"},
        ),
        status="failed",
        error_type="ValueError",
        error_message="no account for alice@example.com",
        trace_id="0af7651916cd43dd8448eb211c80319c",
    ).redact(policy, payloads)


POLICIES = [
    pytest.param({}, id="mask"),
    pytest.param({"MODE": "hash", "HASH_KEY": HASH_KEY}, id="hash"),
    pytest.param({"MODE": "drop"}, id="drop"),
    pytest.param({"MASK_VALUE": "[gone]", "DENYLIST": ["age"]}, id="mask-denylist"),
]


@pytest.mark.parametrize("config", POLICIES)
def test_redacting_again_changes_nothing_our_own_writer_spooled(
    config: dict[str, Any], settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACTION": config, "REDACT_PAYLOADS": ALL_PAYLOADS}
    policy, payloads = audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS
    record = full_record(policy, payloads)
    assert "alice" not in json.dumps(record.to_dict())
    decoded, _ = decode_line(encode_line(record))
    assert decoded == record
    assert isinstance(decoded, PredictionRecord)
    assert decoded.content_hash() == record.content_hash()
    explanation = explanation_record(
        payload={"email": "alice@example.com", "w": [0.1, "bob@example.org"]},
        summary_text="Ask alice@example.com.",
    ).redact(policy)
    entry = SpooledExplanation("p", explanation)
    assert decode_line(encode_line(entry)) == (entry, None)


@pytest.mark.django_db
@pytest.mark.parametrize("config", POLICIES)
def test_a_spooled_record_is_stored_as_it_would_have_been(
    spool: Spool, config: dict[str, Any], settings: Any
) -> None:
    settings.ML_AUDIT = {"REDACTION": config, "REDACT_PAYLOADS": ALL_PAYLOADS}
    record = full_record(audit_settings.redaction_policy, audit_settings.REDACT_PAYLOADS)
    spool.append([record], using=None)
    spool.rotate()
    assert "1 file(s) replayed" in call_replay(spool.directory)
    event = PredictionEvent.objects.get(prediction_id=record.prediction_id)
    assert event.content_hash == record.content_hash()
    assert store.event_to_record(event) == record
    assert store.verify_event(event)


pii = st.sampled_from(
    [
        "alice@example.com",
        "4111 1111 1111 1111",
        "+44 20 7946 0958",
        "123-45-6789",
        "DE89 3704 0044 0532 0130 00",
        "Bearer abcdefghijklmnopqrstu12345",
        "*****",
        "hmac-sha256:0123456789abcdef0123456789abcdef",
    ]
)
texts = st.lists(pii | st.text(max_size=12), max_size=4).map(" ".join)
keys = st.sampled_from(["email", "note", "password", "age", "text", "phone_1", "x"])
values = st.recursive(
    st.none() | st.integers(-5, 5) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)


@hypothesis_settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    features=st.dictionaries(keys, values, max_size=4),
    output=values,
    mode=st.sampled_from(["mask", "hash", "drop"]),
)
def test_redaction_again_is_idempotent_on_any_redacted_record(
    features: dict[str, Any], output: Any, mode: str
) -> None:
    config: dict[str, Any] = {"MODE": mode, "HASH_KEY": HASH_KEY}
    policy = RedactionPolicy.from_config(config)
    payloads = frozenset({"features", "output", "metadata"})
    try:
        record = PredictionRecord.create(
            model_name="m", model_version="1", features=features, output=output
        ).redact(policy, payloads)
    except ValueError:  # text the records module refuses (U+0000...)
        return
    decoded, _ = decode_line(encode_line(record), policy=policy, payloads=payloads)
    assert isinstance(decoded, PredictionRecord)
    assert decode_line(encode_line(decoded), policy=policy, payloads=payloads)[0] == decoded
    if mode != "hash":
        # Unchanged exactly when redaction itself is idempotent on the stored values (it is
        # not always: a value its first pass missed is redacted now, see the IBAN test).
        idempotent = all(
            redact(value, policy).value == value for value in (record.features, record.output)
        )
        assert (decoded == record) == idempotent
    # And an unredacted record, spooled as if redacted, comes out as the live path makes it.
    raw = PredictionRecord.create(
        model_name="m", model_version="1", features=features, output=output
    )
    claimed = raw.evolve(redaction={"policy": "forged", "paths": {}})
    decoded, _ = decode_line(encode_line(claimed), policy=policy, payloads=payloads)
    assert isinstance(decoded, PredictionRecord)
    live = raw.redact(policy, payloads)
    # (Hash mode keeps a planted pseudonym where it would hash a value: it is one already.)
    if mode != "hash" or "hmac-sha256:" not in json.dumps([features, output]):
        assert (decoded.features, decoded.output) == (live.features, live.output)


def test_a_stricter_policy_at_replay_redacts_what_was_spooled_under_the_old_one(
    settings: Any,
) -> None:
    record = redacted(features={"age": 30, "email": "x@example.com"})
    assert record.features == {"age": 30, "email": "*****"}
    settings.ML_AUDIT = {"REDACTION": {"DENYLIST": ["age"]}}
    decoded, _ = decode_line(encode_line(record))
    assert isinstance(decoded, PredictionRecord)
    assert decoded.features == {"age": "*****", "email": "*****"}
    assert decoded.redaction == {
        "policy": audit_settings.redaction_policy.version,
        "paths": {"features": ["age", "email"]},
    }
    # A laxer one changes nothing: what was redacted stays redacted, as it was described.
    settings.ML_AUDIT = {"REDACTION": {"ALLOWLIST": ["email"]}}
    assert decode_line(encode_line(record)) == (record, None)


def test_a_value_the_first_redaction_missed_is_redacted_on_replay() -> None:
    # ml_audit.redaction leaves the second of two adjacent IBANs in clear on its first pass
    # and masks it on the second: the replay redacts what is left, and says so.
    record = redacted(features={"note": "DE89 3704 0044 0532 0130 00 DE89 3704 0044 0532 0130 00"})
    decoded, _ = decode_line(encode_line(record))
    assert isinstance(decoded, PredictionRecord)
    assert decoded.features == {"note": "***** *****"}
    assert decoded.redaction == {
        "policy": audit_settings.redaction_policy.version,
        "paths": {"features": ["note"]},
    }


# ------------------------------------------------------------------------------ the directory


def test_a_new_directory_and_its_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = Spool(tmp_path / "deep" / "spool")
        path = spool.append([redacted()])
    finally:
        os.umask(old)
    assert path is not None
    assert stat.S_IMODE(spool.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    spool.rotate()
    prepare_directory(spool.directory)  # ours, 0700: fine, again and again


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o722])
def test_a_directory_others_may_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(mode)
    spool = Spool(directory)
    with pytest.raises(InsecureSpoolDirectory) as refused:
        spool.append([redacted()])
    message = str(refused.value)
    assert str(directory) in message
    assert f"mode {mode:#o}" in message
    assert isinstance(refused.value, ConfigurationError)
    assert (refused.value.directory, refused.value.mode) == (directory, mode)
    assert list(directory.iterdir()) == []  # nothing was written there
    assert stat.S_IMODE(directory.stat().st_mode) == mode  # nor changed
    plant(directory, data=lines(redacted(prediction_id="planted")))
    writer = Writer()
    with pytest.raises(InsecureSpoolDirectory):
        spool.replay(writer)
    assert writer.records == []


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755])
def test_a_directory_only_its_owner_may_write_to_is_used(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "private"
    directory.mkdir()
    directory.chmod(mode)
    spool = Spool(directory)
    assert spool.append([redacted()]) is not None
    spool.rotate()
    assert spool.replay(Writer()).files == 1


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give a directory to another user")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, OTHER_UID, OTHER_UID)
    with pytest.raises(InsecureSpoolDirectory, match=f"owned by uid {OTHER_UID}"):
        Spool(directory).append([redacted()])


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InsecureSpoolDirectory, match="is not a directory"):
        Spool(tmp_path / "file").append([redacted()])


@pytest.mark.django_db
def test_the_replay_command_refuses_a_loose_directory(tmp_path: Path) -> None:
    directory = tmp_path / "loose"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(CommandError, match="refuses the spool directory"):
        call_replay(directory)


def test_the_system_check_reports_a_loose_spool_directory(tmp_path: Path, settings: Any) -> None:
    directory = tmp_path / "loose"
    settings.ML_AUDIT = {"SPOOL_DIR": str(directory)}
    assert check_settings() == []  # missing: it will be created private
    directory.mkdir()
    directory.chmod(0o700)
    assert check_settings() == []
    directory.chmod(0o777)
    (message,) = check_settings()
    assert message.id == "ml_audit.E004"
    assert str(directory) in message.msg
    assert "0o777" in message.msg
    assert "chmod 700" in (message.hint or "")


# ------------------------------------------------------------------------------ liveness by lock

HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time, uuid
    directory, data = sys.argv[1], sys.stdin.buffer.read()
    stem = f"spool-{os.getpid()}-{uuid.uuid4().hex}"
    tmp = os.path.join(directory, "." + stem + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    path = os.path.join(directory, stem + ".journal")
    os.rename(tmp, path)
    os.write(fd, data)
    print(path, flush=True)
    time.sleep(600)
    """
)


def test_the_journal_of_a_killed_process_is_replayed_and_a_live_one_is_not(spool: Spool) -> None:
    data = encode_line(redacted(prediction_id="journal-1"), latency_ms=3.5) + encode_line(
        redacted(prediction_id="journal-2"), "audit", latency_ms=4
    )
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(spool.directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(data)
        child.stdin.close()
        segment = Path(child.stdout.readline().decode().strip())
        assert segment.read_bytes() == data
        # Alive: its segment is not touched, whoever asks.
        writer = Writer()
        assert spool.abandoned_files() == []
        assert spool.replay(writer).files == 0
        assert spool.replay(writer, include_active=True).files == 0
        assert writer.records == []
        assert segment.exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # Killed: the kernel freed its lock; the next replay takes its segment, no flag needed.
    assert spool.abandoned_files() == [segment]
    writer = Writer()
    result = spool.replay(writer)
    assert (result.files, result.inserted, result.corrupt) == (1, 2, 0)
    assert [(r.prediction_id, r.latency_ms) for r in writer.records] == [
        ("journal-1", 3.5),
        ("journal-2", 4.0),
    ]
    assert list(spool.directory.iterdir()) == []


MAPPED_HOLDER = textwrap.dedent(
    """
    import sys, time
    from ml_audit.otel.journal import Journal
    directory, cut, tail = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    first, second, third = sys.stdin.buffer.read().splitlines(keepends=True)
    journal = Journal(directory, mapped=True)
    segment = journal.append(first)
    journal.append(second)
    assert segment.map is not None
    # The copy of a third line, interrupted: what kill -9 leaves in the middle of an append.
    segment.map[segment.size : segment.size + cut] = third[:cut]
    if tail:  # memcpy stored the line's last bytes (its newline too) before its middle
        end = segment.size + len(third)
        segment.map[end - tail : end] = third[-tail:]
    print(segment.path, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("tail", [0, 32], ids=["prefix", "with-holes"])
def test_a_mapped_journal_of_a_killed_process_is_replayed_without_its_unfinished_line(
    spool: Spool, caplog: pytest.LogCaptureFixture, tail: int
) -> None:
    data = b"".join(
        encode_line(redacted(prediction_id=f"mapped-{i}"), latency_ms=1.0) for i in range(3)
    )
    third = data.splitlines(keepends=True)[2]
    child = subprocess.Popen(
        [sys.executable, "-c", MAPPED_HOLDER, str(spool.directory), "57", str(tail)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(data)
        child.stdin.close()
        segment = Path(child.stdout.readline().decode().strip())
        assert segment.stat().st_size >= 8 * 1024 * 1024  # preallocated, NUL-padded
        assert spool.replay(Writer()).files == 0  # alive: not touched
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        if child.stdout is not None:
            child.stdout.close()
    assert [line.unfinished for line in read_lines_of(segment)] == [False, False, True]
    writer = Writer()
    with caplog.at_level(logging.WARNING, logger="ml_audit.otel"):
        result = spool.replay(writer)
    assert (result.files, result.inserted, result.unfinished, result.corrupt) == (1, 2, 1, 0)
    assert result.ok
    assert writer.ids == ["mapped-0", "mapped-1"]
    assert f"unfinished copy ({len(third) if tail else 57} bytes)" in caplog.text
    assert list(spool.directory.iterdir()) == []  # nothing quarantined, nothing left


def read_lines_of(path: Path) -> list[Any]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(read_lines(fd, MAX_LINE_BYTES))
    finally:
        os.close(fd)


def many_files(directory: Path, files: int, per_file: int) -> list[str]:
    ids: list[str] = []
    for f in range(files):
        records = [redacted(prediction_id=f"race-{f}-{i}") for i in range(per_file)]
        plant(directory, ".journal" if f % 2 else ".ready", data=lines(*records), age=100 - f)
        ids.extend(r.prediction_id for r in records)
    return ids


@pytest.mark.parametrize(("files", "per_file"), [(1, 30), (6, 5)])
def test_threads_racing_to_replay_never_replay_one_file_twice(
    spool: Spool, files: int, per_file: int
) -> None:
    ids = many_files(spool.directory, files=files, per_file=per_file)
    writer_ids: list[str] = []
    lock = threading.Lock()

    def slow_write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        time.sleep(0.002)
        with lock:
            writer_ids.extend(r.prediction_id for r in records)
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    barrier = threading.Barrier(3)
    results: list[Any] = []

    def run() -> None:
        replayer = Spool(spool.directory)  # a replayer of its own, as another worker has
        barrier.wait()
        results.append(replayer.replay(slow_write, batch_size=1))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(writer_ids) == sorted(ids)  # each record once: no file replayed twice
    assert sum(r.files for r in results) == files
    assert list(spool.directory.iterdir()) == []


def writing_to(out: Path) -> Any:
    """A slow replay writer that appends the ids it is given to the file ``out``."""

    def write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        time.sleep(0.002)
        with out.open("a") as handle:
            handle.writelines(f"{r.prediction_id}\n" for r in records)
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    return write


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize(("files", "per_file"), [(1, 30), (6, 5)])
def test_two_processes_racing_to_replay_never_replay_one_file_twice(
    spool: Spool, tmp_path: Path, files: int, per_file: int
) -> None:
    ids = many_files(spool.directory, files=files, per_file=per_file)
    start_r, start_w = os.pipe()
    children = []
    for n in range(2):
        out = tmp_path / f"child-{n}.ids"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(start_w)
                os.read(start_r, 1)

                result = Spool(spool.directory).replay(writing_to(out), batch_size=1)
                out.with_suffix(".files").write_text(str(result.files))
                code = 0
            finally:
                os._exit(code)
        children.append((pid, out))
    os.close(start_r)
    os.write(start_w, b"go")
    os.close(start_w)
    seen: list[str] = []
    replayed = 0
    for pid, out in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        if out.exists():
            seen.extend(out.read_text().split())
        replayed += int(out.with_suffix(".files").read_text())
    assert sorted(seen) == sorted(ids)
    assert replayed == files
    assert list(spool.directory.iterdir()) == []
