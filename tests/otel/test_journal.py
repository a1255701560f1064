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
from ml_audit.otel.spool_files import SpoolLine, read_lines
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


def read_all(path: Path) -> list[SpoolLine]:
    """The lines a replay would read from a segment (the spool's own reader)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(read_lines(fd, 1 << 20))
    finally:
        os.close(fd)


def lines_in(path: Path) -> list[bytes]:
    return [line.data or b"" for line in read_all(path)]


@pytest.fixture(params=[True, False], ids=["mapped", "write"])
def journal(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Journal]:
    made = Journal(tmp_path / "spool", max_segment_bytes=4096, mapped=request.param)
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
    assert lines_in(path) == [line]  # in the kernel: another reader sees it now
    assert (segment.map is not None) is journal.mapped
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.directory.stat().st_mode) == 0o700
    assert not lock_is_free(path)  # its process lives: nobody may replay it


def test_lines_are_dropped_once_every_record_is_done(journal: Journal) -> None:
    first = journal.append(journal_line(redacted(prediction_id="j-3"), None, None))
    second = journal.append(journal_line(redacted(prediction_id="j-4"), None, None))
    assert first is second
    journal.done(first)
    assert len(lines_in(first.path)) == 2  # one record still waits
    assert journal.pending() == 1
    journal.done(second)
    assert all(lines_in(path) == [] for path in segments(journal.directory))
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
    holding = [path for path in segments(journal.directory) if lines_in(path)]
    assert holding == sorted({s.path for s in made if s is not full})
    assert made[-1].path in holding


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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "spool", mapped=False)
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
    big = Journal(journal.directory, mapped=journal.mapped)
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
    assert sorted(lines_in(path)) == sorted(lines)
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


def test_a_drained_mapped_segment_gives_way_to_a_spare_made_off_the_request_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "spool", mapped=True)
    first = journal.append(journal_line(redacted(prediction_id="s-1"), None, None))
    journal.done(first)  # the writer thread: a fresh segment takes over from the drained one
    made: list[Path] = []
    real_open = journal._open

    def counting_open(need: int) -> Any:
        segment = real_open(need)
        made.append(segment.path)
        return segment

    monkeypatch.setattr(journal, "_open", counting_open)
    second = journal.append(journal_line(redacted(prediction_id="s-2"), None, None))
    assert second is not first  # the spare took over ...
    assert made == []  # ... and the request thread made no file
    assert not first.path.exists()  # the drained segment is gone with its old lines
    assert [b'"s-2"' in line for line in lines_in(second.path)] == [True]
    journal.done(second)
    journal.close()
    assert segments(journal.directory) == []


def test_a_segment_that_cannot_be_preallocated_is_written_with_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    journal = Journal(tmp_path / "spool", mapped=True)
    line = journal_line(redacted(prediction_id="f-1"), None, None)
    with caplog.at_level(logging.WARNING, logger="ml_audit.otel"):
        segment = journal.append(line)
    assert segment.map is None
    assert segment.path.read_bytes() == line  # no padding: an ordinary appended file
    assert "cannot be preallocated" in caplog.text
    journal.done(segment)
    assert segment.path.read_bytes() == b""
    journal.close()


def test_a_mapped_journal_cannot_be_asked_to_fsync(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot fsync"):
        Journal(tmp_path, mapped=True, fsync=True)
    assert Journal(tmp_path, fsync=True).mapped is False


def test_the_reader_stops_at_padding_and_keeps_a_torn_line_apart(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    # Two lines, a copy the process did not finish, then the preallocated rest of the file.
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"c":' + bytes(70_000))
    assert lines_in(path) == [b'{"a":1}\n', b'{"b":2}\n', b'{"c":']
    assert [line.unfinished for line in read_all(path)] == [False, False, True]
    # memcpy may store a line's end before its middle: a copy with holes, with or without its
    # newline, followed by padding is the unfinished copy too (never a 64 KiB unreadable line).
    path.write_bytes(b'{"a":1}\n{"c":' + bytes(30) + b'tail"}' + bytes(70_000))
    assert lines_in(path) == [b'{"a":1}\n', b'{"c":' + bytes(30) + b'tail"}']
    assert [line.unfinished for line in read_all(path)] == [False, True]
    path.write_bytes(b'{"a":1}\n{"c":' + bytes(30) + b'tail"}\n' + bytes(70_000))
    assert [line.unfinished for line in read_all(path)] == [False, True]
    # NUL bytes followed by other lines are not padding: an invalid line, then more lines.
    path.write_bytes(b'{"a":1}\n\x00\x00\n{"b":2}\n' + bytes(10))
    assert lines_in(path) == [b'{"a":1}\n', b"\x00\x00\n", b'{"b":2}\n']
    path.write_bytes(bytes(5000))
    assert lines_in(path) == []


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
        seen.append(b"".join(lines_in(item[3].path)))
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
    assert all(lines_in(p) == [] for p in segments(processor.spool.directory))
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
