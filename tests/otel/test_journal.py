"""The journal of the ``journal`` write mode: a record is on disk before its span has ended,
and its line goes away once the writer has stored it."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from ml_audit.models import PredictionEvent
from ml_audit.otel.journal import Journal, journal_line
from ml_audit.otel.processor import MLAuditSpanProcessor
from ml_audit.records import PredictionRecord
from tests.factories import redacted
from tests.otel.test_processor import WAIT, end_prediction, stored_ids

pytestmark = pytest.mark.django_db(transaction=True)


def lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("spool-*.journal"))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    made = Journal(tmp_path / "spool", max_segment_bytes=4096)
    yield made
    made.close()


def test_a_line_holds_the_record_its_alias_and_latency() -> None:
    record = redacted(prediction_id="j-1")
    data = json.loads(journal_line(record, "audit", 12.5))
    assert data.pop("_using") == "audit"
    assert data.pop("_latency_ms") == 12.5
    assert PredictionRecord.from_dict(data) == record
    on_the_hour = dataclasses.replace(record, timestamp=record.timestamp.replace(microsecond=0))
    data = json.loads(journal_line(on_the_hour, None, None))
    assert PredictionRecord.from_dict(data) == on_the_hour
    assert journal_line(record, None, None).endswith(b"\n")
    assert "_using" not in json.loads(journal_line(record, None, None))


def test_an_append_is_in_a_locked_private_file_before_it_returns(journal: Journal) -> None:
    line = journal_line(redacted(prediction_id="j-2"), None, None)
    segment = journal.append(line)
    (path,) = segments(journal.directory)
    assert path == segment.path
    assert path.name.startswith(f"spool-{os.getpid()}-")
    assert path.read_bytes() == line  # in the kernel: another reader sees it now
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.directory.stat().st_mode) == 0o700
    assert not lock_is_free(path)  # its process lives: nobody may replay it


def test_lines_are_dropped_once_every_record_is_done(journal: Journal) -> None:
    first = journal.append(journal_line(redacted(prediction_id="j-3"), None, None))
    second = journal.append(journal_line(redacted(prediction_id="j-4"), None, None))
    assert first is second
    journal.done(first)
    assert first.path.stat().st_size > 0  # one record still waits
    assert journal.pending() == 1
    journal.done(second)
    assert first.path.stat().st_size == 0
    assert journal.pending() == 0


def test_a_full_segment_rotates_and_is_deleted_when_done(journal: Journal) -> None:
    made = [
        journal.append(journal_line(redacted(prediction_id=f"r-{i}"), None, None)) for i in range(8)
    ]
    full = made[0]
    assert full.rotated
    assert made[-1] is not full
    assert full.path.exists()  # its records are not stored yet
    journal.done(full, sum(1 for s in made if s is full))
    assert not full.path.exists()
    assert segments(journal.directory) == [made[-1].path]


def test_closing_keeps_what_is_not_done_and_frees_its_lock(journal: Journal) -> None:
    kept = journal.append(journal_line(redacted(prediction_id="j-5"), None, None))
    journal.close()
    assert kept.path.exists()
    assert lock_is_free(kept.path)
    other = Journal(journal.directory)
    done = other.append(journal_line(redacted(prediction_id="j-6"), None, None))
    other.done(done)
    other.close()
    assert not done.path.exists()


def test_a_failed_write_leaves_no_torn_line(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = journal_line(redacted(prediction_id="j-7"), None, None)
    segment = journal.append(line)
    real_write = os.write

    def half_then_full_disk(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        journal.append(line)
    monkeypatch.undo()
    assert segment.path.read_bytes() == line
    journal.append(line)
    assert segment.path.read_bytes() == line * 2


def test_threads_appending_at_once_write_whole_lines(journal: Journal) -> None:
    big = Journal(journal.directory)
    lines = [journal_line(redacted(prediction_id=f"t-{i}"), None, None) for i in range(400)]

    def append(part: list[bytes]) -> None:
        for line in part:
            big.append(line)

    threads = [threading.Thread(target=append, args=(lines[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    (path,) = segments(journal.directory)
    written = path.read_bytes().splitlines(keepends=True)
    assert sorted(written) == sorted(lines)
    big.close()


def test_a_forked_child_writes_its_own_segment_and_leaves_the_parents_locked(
    journal: Journal,
) -> None:
    parent = journal.append(journal_line(redacted(prediction_id="p-1"), None, None))
    pid = os.fork()
    if pid == 0:  # the child: append, then leave without cleaning up
        try:
            child = journal.append(journal_line(redacted(prediction_id="c-1"), None, None))
            os._exit(0 if child.path != parent.path else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not lock_is_free(parent.path)  # the child did not release the parent's lock
    children = [p for p in segments(journal.directory) if p != parent.path]
    assert len(children) == 1
    assert lock_is_free(children[0])
    assert b'"c-1"' in children[0].read_bytes()


# ------------------------------------------------------------------ through the processor


@pytest.fixture
def journal_processor(tmp_path: Path) -> Iterator[tuple[MLAuditSpanProcessor, Tracer]]:
    processor = MLAuditSpanProcessor(
        mode="journal", spool_dir=tmp_path / "spool", retry_backoff_millis=1
    )
    processor.shutdown_timeout = 10.0
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    yield processor, provider.get_tracer("tests")
    processor.shutdown()


def test_journal_mode_is_the_default(tmp_path: Path) -> None:
    processor = MLAuditSpanProcessor(spool_dir=tmp_path)
    assert processor.mode == "journal"
    assert processor.journal is not None
    assert MLAuditSpanProcessor(spool_dir=tmp_path, mode="batch").journal is None


def test_a_record_is_journaled_before_its_span_ends_then_stored_and_forgotten(
    journal_processor: tuple[MLAuditSpanProcessor, Tracer], monkeypatch: pytest.MonkeyPatch
) -> None:
    processor, tracer = journal_processor
    assert processor.journal is not None
    seen: list[bytes] = []
    real_enqueue = processor._enqueue

    def enqueue_after_looking(item: Any) -> None:
        # The moment the record joins the queue, its line must already be on disk.
        seen.append(item[3].path.read_bytes())
        real_enqueue(item)

    monkeypatch.setattr(processor, "_enqueue", enqueue_after_looking)
    end_prediction(tracer, redacted(prediction_id="jp-1"), latency_from_span=True)
    assert len(seen) == 1
    assert b'"jp-1"' in seen[0]
    assert b'"_latency_ms"' in seen[0]
    assert processor.force_flush(int(WAIT * 1000))
    assert stored_ids("jp-") == ["jp-1"]
    assert PredictionEvent.objects.get(prediction_id="jp-1").latency_ms is not None
    assert processor.journal.pending() == 0
    assert all(p.stat().st_size == 0 for p in segments(processor.spool.directory))
    processor.shutdown()
    assert segments(processor.spool.directory) == []


def test_a_record_that_cannot_be_journaled_is_written_at_once(
    journal_processor: tuple[MLAuditSpanProcessor, Tracer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor, tracer = journal_processor
    assert processor.journal is not None

    def full_disk(line: bytes) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(processor.journal, "append", full_disk)
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        end_prediction(tracer, redacted(prediction_id="jp-2"))
    assert stored_ids("jp-") == ["jp-2"]  # already in the database when the span has ended
    assert "could not journal prediction jp-2" in caplog.text
    assert processor.stats()["written"] == 1


def test_spooled_records_release_their_journal_lines(
    journal_processor: tuple[MLAuditSpanProcessor, Tracer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    processor, tracer = journal_processor
    assert processor.journal is not None

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr("ml_audit.otel.processor.store.write_many", down)
    for i in range(3):
        end_prediction(tracer, redacted(prediction_id=f"js-{i}"))
    assert processor.force_flush(int(WAIT * 1000))
    assert processor.stats()["spooled"] == 3
    assert processor.journal.pending() == 0  # each record is in the (fsynced) spool instead


def test_a_loose_spool_directory_is_refused_once_and_records_are_written_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)  # anyone could plant or alter journal lines here
    processor = MLAuditSpanProcessor(mode="journal", spool_dir=loose, retry_backoff_millis=1)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    try:
        with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
            for i in range(3):
                end_prediction(tracer, redacted(prediction_id=f"jl-{i}"))
        assert sorted(stored_ids("jl-")) == ["jl-0", "jl-1", "jl-2"]  # written before the end
        refusals = [r for r in caplog.records if "refuses the spool directory" in r.getMessage()]
        assert len(refusals) == 1
        assert list(loose.iterdir()) == []  # nothing was created in it
    finally:
        processor.shutdown()
