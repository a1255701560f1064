"""Spool files: append, rotate, claim, replay, crash leftovers; `manage.py ml_audit_replay`."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_audit import store
from ml_audit.models import PredictionEvent
from ml_audit.otel.spool import Spool, SpooledExplanation, decode_line, encode_line
from ml_audit.records import ExplanationRecord, PredictionRecord
from tests import factories


def redacted(**overrides: Any) -> PredictionRecord:
    return factories.redacted(**{"actor": None, **overrides})


class FakeWriter:
    """A replay writer that records its calls and reports every record as created."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_with = fail_with

    def __call__(self, records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        self.calls.append(([r.prediction_id for r in records], using))
        if self.fail_with is not None:
            raise self.fail_with
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    @property
    def ids(self) -> list[str]:
        return [pid for ids, _ in self.calls for pid in ids]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    instance = Spool(tmp_path / "spool")
    yield instance
    instance.close()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


# ------------------------------------------------------------------------------ writing


def test_constructing_a_spool_touches_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "not-yet")
    assert not (tmp_path / "not-yet").exists()
    assert spool.ready_files() == []
    assert spool.replay(FakeWriter()).files == 0
    assert spool.append([]) is None
    assert not (tmp_path / "not-yet").exists()


def test_append_creates_a_private_directory_and_file_of_json_lines(spool: Spool) -> None:
    records = [redacted(prediction_id=f"a-{i}") for i in range(3)]
    path = spool.append(records)
    assert path is not None
    assert stat.S_IMODE(spool.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.name == f"spool-{os.getpid()}-{path.stem.rsplit('-', 1)[1]}.jsonl"
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [r.to_dict() for r in records]
    assert [PredictionRecord.from_dict(json.loads(line)) for line in lines] == records
    assert spool.active_records == 3
    # Further appends go to the same file.
    assert spool.append([redacted(prediction_id="a-3")]) == path
    assert len(path.read_bytes().splitlines()) == 4


def test_only_redacted_records_are_spooled(spool: Spool) -> None:
    raw = PredictionRecord.create(model_name="m", model_version="1", features={"email": "x"})
    with pytest.raises(ValueError, match="not redacted"):
        spool.append([redacted(), raw])
    assert spool.active_path is None
    assert not spool.directory.exists()


def test_rotate_makes_the_active_file_ready(spool: Spool) -> None:
    path = spool.append([redacted()])
    assert path is not None
    ready = spool.rotate()
    assert ready == path.with_suffix(".ready")
    assert not path.exists()
    assert spool.ready_files() == [ready]
    assert spool.active_path is None
    assert spool.rotate() is None  # nothing active any more


def test_rotation_at_the_size_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_file_bytes=1)
    spool.append([redacted(prediction_id="r-1")])
    spool.append([redacted(prediction_id="r-2")])
    assert spool.active_path is None
    assert len(spool.ready_files()) == 2
    with pytest.raises(ValueError, match="max_file_bytes must be a positive integer"):
        Spool(tmp_path, max_file_bytes=0)


def test_a_failed_append_leaves_no_torn_line(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    spool.append([redacted(prediction_id="before")])
    real_write = os.write

    def half_then_disk_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ml_audit.otel.spool.os.write", half_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        spool.append([redacted(prediction_id="lost-to-disk-full")])
    monkeypatch.undo()
    spool.append([redacted(prediction_id="after")])
    spool.rotate()
    writer = FakeWriter()
    result = spool.replay(writer)
    assert writer.ids == ["before", "after"]
    assert (result.inserted, result.corrupt) == (2, 0)


def test_a_forked_child_appends_to_a_file_of_its_own(spool: Spool) -> None:
    parent_file = spool.append([redacted(prediction_id="parent-1")])
    assert parent_file is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            child_file = spool.append([redacted(prediction_id="child-1")])
            spool.rotate()
            code = 0 if child_file is not None and child_file != parent_file else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's file is untouched, still active and still locked by the parent.
    spool.append([redacted(prediction_id="parent-2")])
    assert spool.active_path == parent_file
    assert len(parent_file.read_bytes().splitlines()) == 2
    writer = FakeWriter()
    spool.replay(writer)
    assert writer.ids == ["child-1"]


# ------------------------------------------------------------------------------ replay


def test_replay_writes_every_record_in_chunks_and_deletes_the_files(spool: Spool) -> None:
    spool.append([redacted(prediction_id=f"c-{i}") for i in range(5)])
    spool.rotate()
    spool.append([redacted(prediction_id=f"d-{i}") for i in range(2)])
    spool.rotate()
    writer = FakeWriter()
    result = spool.replay(writer, batch_size=2)
    assert [len(ids) for ids, _ in writer.calls] == [2, 2, 1, 2]
    assert writer.ids == [f"c-{i}" for i in range(5)] + ["d-0", "d-1"]
    assert (result.files, result.inserted, result.replayed, result.failed) == (2, 7, 7, 0)
    assert result.ok
    assert list(spool.directory.iterdir()) == []


def test_a_failed_replay_keeps_the_file_for_the_next_one(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    spool.append([redacted(prediction_id=f"f-{i}") for i in range(3)])
    spool.rotate()
    spool.append([redacted(prediction_id="g-0")])
    ready = spool.rotate()
    failing = FakeWriter(fail_with=OperationalError("server closed the connection"))
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = spool.replay(failing, batch_size=2)
    assert (result.files, result.failed, result.inserted) == (0, 3, 0)
    assert len(failing.calls) == 1  # stopped at the first failure: the database is down
    assert not result.ok
    assert "stays in the spool" in caplog.text
    assert len(spool.ready_files()) == 2
    assert ready in spool.ready_files()
    writer = FakeWriter()
    result = spool.replay(writer)
    assert sorted(writer.ids) == ["f-0", "f-1", "f-2", "g-0"]
    assert result.files == 2
    assert spool.ready_files() == []


def test_a_record_refused_on_its_own_is_kept_and_the_others_are_written(spool: Spool) -> None:
    spool.append([redacted(prediction_id=pid) for pid in ("ok-1", "poison", "ok-2")])
    spool.rotate()

    def write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        if any(r.prediction_id == "poison" for r in records):
            raise ValueError("refused")
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    result = spool.replay(write, is_transient=lambda exc: not isinstance(exc, ValueError))
    assert (result.files, result.inserted, result.failed) == (1, 2, 1)
    spool.rotate()
    kept = spool.ready_files()
    assert len(kept) == 1
    assert [
        decode_line(line)[0].prediction_id for line in kept[0].read_bytes().splitlines(True)
    ] == ["poison"]


def test_records_keep_the_alias_they_were_spooled_for(spool: Spool) -> None:
    spool.append([redacted(prediction_id="default-1")])
    spool.append(
        [redacted(prediction_id="audit-1"), redacted(prediction_id="audit-2")], using="audit"
    )
    spool.append([redacted(prediction_id="default-2")])
    spool.rotate()
    writer = FakeWriter()
    spool.replay(writer)
    assert writer.calls == [
        (["default-1"], None),
        (["audit-1", "audit-2"], "audit"),
        (["default-2"], None),
    ]


def test_conflicts_and_duplicates_are_counted(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    from ml_audit.exceptions import PredictionConflict

    records = [redacted(prediction_id=pid) for pid in ("new", "dup", "clash")]
    spool.append(records)
    spool.rotate()

    def write(batch: list[PredictionRecord], using: str | None) -> store.WriteResult:
        return store.WriteResult(
            [
                store.WriteOutcome(batch[0], None, created=True),
                store.WriteOutcome(batch[1], None, created=False),
                store.WriteOutcome(
                    batch[2], None, created=False, conflict=PredictionConflict("clash", ("output",))
                ),
            ]
        )

    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = spool.replay(write)
    assert (result.inserted, result.duplicates, result.conflicts, result.replayed) == (1, 1, 1, 2)
    assert not result.ok
    assert "clash" in caplog.text
    assert "differs in: output" in caplog.text
    assert "0.25" not in caplog.text  # fields, never values


def test_a_torn_line_is_moved_aside_and_logged(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    path = spool.append([redacted(prediction_id="whole-1"), redacted(prediction_id="whole-2")])
    assert path is not None
    spool.rotate()
    ready = path.with_suffix(".ready")
    torn = encode_line(redacted(prediction_id="torn"))[:40]  # a crash in the middle of a write
    with ready.open("ab") as handle:
        handle.write(b"{not json}\n" + torn)
    writer = FakeWriter()
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = spool.replay(writer)
    assert writer.ids == ["whole-1", "whole-2"]
    assert (result.files, result.corrupt, result.inserted) == (1, 2, 2)
    corrupt = path.with_suffix(".corrupt")
    assert corrupt.read_bytes() == b"{not json}\n" + torn + b"\n"
    assert spool.corrupt_files() == [corrupt]
    assert "line 3 cannot be read back" in caplog.text
    assert "line 4 cannot be read back" in caplog.text
    assert spool.replay(FakeWriter()).files == 0  # .corrupt files are never replayed


def test_corrupt_lines_are_moved_aside_once_even_when_the_replay_is_retried(spool: Spool) -> None:
    path = spool.append([redacted(prediction_id="x")])
    assert path is not None
    spool.rotate()
    with path.with_suffix(".ready").open("ab") as handle:
        handle.write(b"garbage\n")
    spool.replay(FakeWriter(fail_with=OperationalError("down")))
    assert not path.with_suffix(".corrupt").exists()
    spool.replay(FakeWriter())
    assert path.with_suffix(".corrupt").read_bytes() == b"garbage\n"


def test_a_file_held_by_another_replayer_is_skipped(spool: Spool) -> None:
    spool.append([redacted()])
    ready = spool.rotate()
    assert ready is not None
    other = os.open(ready, os.O_RDONLY)  # another process's open file description
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = spool.replay(FakeWriter())
        assert (result.files, result.skipped) == (0, 1)
        assert ready.exists()
    finally:
        os.close(other)
    assert spool.replay(FakeWriter()).files == 1


def test_a_replaying_file_left_by_a_dead_replayer_is_reclaimed(spool: Spool) -> None:
    spool.append([redacted(prediction_id="half-done")])
    ready = spool.rotate()
    assert ready is not None
    left = ready.rename(ready.with_suffix(".replaying"))
    assert spool.abandoned_files() == [left]
    writer = FakeWriter()
    assert spool.replay(writer).files == 1
    assert writer.ids == ["half-done"]


def test_an_active_file_is_never_replayed_while_its_writer_lives(spool: Spool) -> None:
    spool.append([redacted()])
    writer = FakeWriter()
    assert spool.replay(writer, include_active=True).files == 0
    assert writer.calls == []
    assert spool.abandoned_files(include_active=True) == []


@pytest.mark.parametrize("suffix", [".jsonl", ".journal"])
@pytest.mark.parametrize("pid", ["dead", "alive"])
def test_an_active_or_journal_file_whose_lock_is_free_is_replayed_without_being_asked(
    spool: Spool, suffix: str, pid: str
) -> None:
    # Liveness is the lock, not the pid: a pid in the name may be reused by any live process
    # (here: this one), or belong to another container.
    spool.directory.mkdir(mode=0o700, parents=True)
    number = dead_pid() if pid == "dead" else os.getpid()
    leftover = spool.directory / f"spool-{number}-{'ab' * 16}{suffix}"
    leftover.write_bytes(encode_line(redacted(prediction_id="from-a-crash")))
    assert spool.abandoned_files() == [leftover]
    writer = FakeWriter()
    result = spool.replay(writer)
    assert (result.files, result.inserted) == (1, 1)
    assert writer.ids == ["from-a-crash"]
    assert not leftover.exists()
    assert list(spool.directory.iterdir()) == []


@pytest.mark.parametrize("suffix", [".jsonl", ".journal"])
def test_an_active_or_journal_file_whose_lock_is_held_is_not_replayed_even_if_its_pid_is_gone(
    spool: Spool, suffix: str
) -> None:
    spool.directory.mkdir(mode=0o700, parents=True)
    leftover = spool.directory / f"spool-{dead_pid()}-{'cd' * 16}{suffix}"
    leftover.write_bytes(encode_line(redacted()))
    holder = os.open(leftover, os.O_RDONLY)  # e.g. a writer in another pid namespace
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert spool.abandoned_files() == []
        assert spool.replay(FakeWriter()).files == 0
        assert spool.replay(FakeWriter(), include_active=True).files == 0
        assert leftover.exists()
    finally:
        os.close(holder)
    assert spool.replay(FakeWriter()).files == 1  # its holder is gone now


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(features=st.dictionaries(st.text(max_size=10), json_values, max_size=5), output=json_values)
def test_any_record_survives_the_spool_unchanged(
    tmp_path: Path, features: dict[str, Any], output: Any
) -> None:
    try:
        record = redacted(features=features, output=output, metadata={"m": output})
    except ValueError:  # e.g. text the records module refuses (U+0000)
        return
    assert decode_line(encode_line(record, "audit")) == (record, "audit")
    spool = Spool(tmp_path / "hypothesis")
    spool.append([record])
    spool.rotate()
    got: list[PredictionRecord] = []

    def write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        got.extend(records)
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    spool.replay(write)
    assert got == [record]


# ------------------------------------------------------------------------------ the command


@pytest.mark.django_db
def test_replay_command_writes_the_spool_into_the_database(spool: Spool) -> None:
    records = [redacted(prediction_id=f"cmd-{i}") for i in range(4)]
    spool.append(records)
    spool.rotate()
    store.write(records[0])  # already stored before it was spooled: a duplicate, not a 2nd row
    out = _call(spool.directory)
    assert "1 file(s) replayed, 4 record(s) in the database (3 inserted, 1 already stored)" in out
    assert sorted(PredictionEvent.objects.values_list("prediction_id", flat=True)) == [
        r.prediction_id for r in records
    ]
    assert list(spool.directory.iterdir()) == []
    assert "0 file(s) replayed" in _call(spool.directory)  # nothing left: idempotent


@pytest.mark.django_db(transaction=True)  # the command closes the connections when it exits
def test_replay_command_exits_with_status_1_when_the_database_fails(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.append([redacted(prediction_id="down-1")])
    spool.rotate()

    def down(records: Any, *, using: Any = None) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(store, "write_many", down)
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(
            ["manage.py", "ml_audit_replay", "--spool-dir", str(spool.directory)]
        )
    assert exited.value.code == 1
    assert len(spool.ready_files()) == 1  # kept for the next run
    monkeypatch.undo()
    assert "1 record(s) in the database" in _call(spool.directory)
    assert PredictionEvent.objects.filter(prediction_id="down-1").exists()


@pytest.mark.django_db
def test_replay_command_fails_on_unreadable_lines_after_replaying_the_rest(spool: Spool) -> None:
    path = spool.append([redacted(prediction_id="readable")])
    assert path is not None
    spool.rotate()
    with path.with_suffix(".ready").open("ab") as handle:
        handle.write(b"torn{")
    with pytest.raises(CommandError) as failed:
        _call(spool.directory)
    assert failed.value.returncode == 1
    assert PredictionEvent.objects.filter(prediction_id="readable").exists()
    assert path.with_suffix(".corrupt").read_bytes() == b"torn{\n"


@pytest.mark.django_db
def test_replay_command_recovers_files_of_crashed_processes(spool: Spool) -> None:
    spool.directory.mkdir(mode=0o700, parents=True)
    leftover = spool.directory / f"spool-{dead_pid()}-{'ef' * 16}.jsonl"
    leftover.write_bytes(encode_line(redacted(prediction_id="crashed")))
    journal = spool.directory / f"spool-{os.getpid()}-{'0f' * 16}.journal"  # a reused pid
    journal.write_bytes(encode_line(redacted(prediction_id="journaled"), latency_ms=12.5))
    live = spool.append([redacted(prediction_id="still-being-written")])
    out = _call(spool.directory)
    assert "2 file(s) replayed" in out
    assert sorted(PredictionEvent.objects.values_list("prediction_id", flat=True)) == [
        "crashed",
        "journaled",
    ]
    assert PredictionEvent.objects.get(prediction_id="journaled").latency_ms == 12.5
    assert live is not None
    assert live.exists()
    # --include-active is still accepted, and changes nothing.
    assert "0 file(s) replayed" in _call(spool.directory, "--include-active")
    assert live.exists()


@pytest.mark.django_db(databases=["default", "audit"])
def test_replay_command_database_option_and_spooled_aliases(spool: Spool) -> None:
    spool.append([redacted(prediction_id="for-audit")], using="audit")
    spool.append([redacted(prediction_id="for-default")])
    spool.rotate()
    _call(spool.directory)
    assert PredictionEvent.objects.using("audit").filter(prediction_id="for-audit").exists()
    assert PredictionEvent.objects.using("default").filter(prediction_id="for-default").exists()
    spool.append([redacted(prediction_id="forced")], using="default")
    spool.rotate()
    _call(spool.directory, "--database", "audit")
    assert PredictionEvent.objects.using("audit").filter(prediction_id="forced").exists()
    assert not PredictionEvent.objects.using("default").filter(prediction_id="forced").exists()


def _call(directory: Path, *args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("ml_audit_replay", "--spool-dir", str(directory), *args, stdout=out)
    return out.getvalue()


# ------------------------------------------------------------------------------ explanations


def explanation(method: str = "shap", **overrides: Any) -> ExplanationRecord:
    return ExplanationRecord.create(
        method=method,
        payload={"income": 0.4, "age": -0.1, **overrides.pop("payload", {})},
        summary_text=overrides.pop("summary_text", "Income raised the score."),
        method_version="0.45",
        generated_at=dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC),
        **overrides,
    )


def test_an_explanation_survives_the_spool_unchanged(spool: Spool) -> None:
    entry = SpooledExplanation("p-1", explanation(payload={"ünï": [1, 2.5, None]}))
    assert decode_line(encode_line(entry)) == (entry, None)
    assert decode_line(encode_line(entry, "audit")) == (entry, "audit")
    spool.append([redacted(prediction_id="p-1"), entry], using="audit")
    (path,) = [p for p in spool.directory.iterdir()]
    lines = path.read_bytes().splitlines(True)
    assert [decode_line(line)[0] for line in lines][1] == entry


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"prediction_id": ""}, "without a prediction id"),
        ({"prediction_id": 7}, "without a prediction id"),
        ({"explanation": "shap"}, "without its explanation"),
        ({"extra": 1}, "unexpected keys"),
        ({"explanation": {"method": "shap"}}, "not an explanation record"),
        ({"explanation": {**explanation().to_dict(), "status": "bogus"}}, "status"),
        ({"explanation": {**explanation().to_dict(), "generated_at": "noon"}}, "generated_at"),
        ({"explanation": {**explanation().to_dict(), "generated_at": 5}}, "generated_at"),
    ],
)
def test_a_malformed_spooled_explanation_is_unreadable(change: dict[str, Any], reason: str) -> None:
    data = json.loads(encode_line(SpooledExplanation("p-1", explanation())))
    data.update(change)
    with pytest.raises(ValueError, match=reason):
        decode_line(json.dumps(data).encode() + b"\n")


class FakeExplanationWriter:
    """Records its calls (into ``log`` shared with a FakeWriter's ids when given)."""

    def __init__(self, fail_with: BaseException | None = None, written: bool = True) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail_with = fail_with
        self.written = written

    def __call__(self, entry: SpooledExplanation, using: str | None) -> bool:
        self.calls.append((entry.prediction_id, using))
        if self.fail_with is not None:
            raise self.fail_with
        return self.written


def test_replay_writes_an_explanation_after_the_records_before_it(spool: Spool) -> None:
    order: list[str] = []
    spool.append([redacted(prediction_id="a"), redacted(prediction_id="b")])
    spool.append([SpooledExplanation("b", explanation())])
    spool.append([redacted(prediction_id="c")])
    spool.rotate()

    def write(records: list[PredictionRecord], using: str | None) -> store.WriteResult:
        order.extend(r.prediction_id for r in records)
        return store.WriteResult([store.WriteOutcome(r, None, created=True) for r in records])

    def write_explanation(entry: SpooledExplanation, using: str | None) -> bool:
        order.append(f"explanation of {entry.prediction_id}")
        return True

    result = spool.replay(write, write_explanation=write_explanation)
    assert order == ["a", "b", "explanation of b", "c"]  # the chunk before it is flushed first
    assert (result.files, result.inserted, result.duplicates, result.failed) == (1, 4, 0, 0)
    assert spool.ready_files() == []


def test_an_identical_explanation_already_current_counts_as_a_duplicate(spool: Spool) -> None:
    spool.append([SpooledExplanation("p", explanation())])
    spool.rotate()
    result = spool.replay(FakeWriter(), write_explanation=FakeExplanationWriter(written=False))
    assert (result.inserted, result.duplicates, result.files) == (0, 1, 1)


def test_an_explanation_that_cannot_be_written_stays_in_the_spool(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    entry = SpooledExplanation("not-yet", explanation())
    spool.append([redacted(prediction_id="r"), entry])
    spool.rotate()
    missing = FakeExplanationWriter(fail_with=LookupError("no prediction 'not-yet' (yet)"))
    with caplog.at_level(logging.ERROR, logger="ml_audit.otel"):
        result = spool.replay(FakeWriter(), write_explanation=missing, is_transient=lambda e: False)
    assert (result.files, result.inserted, result.failed) == (1, 1, 1)
    assert "explanation of prediction not-yet" in caplog.text
    spool.rotate()
    (kept,) = spool.ready_files()
    assert [decode_line(line)[0] for line in kept.read_bytes().splitlines(True)] == [entry]
    # Without an explanation writer it is kept too; with one, it is written at last.
    assert spool.replay(FakeWriter()).failed == 1
    spool.rotate()
    writer = FakeExplanationWriter()
    assert spool.replay(FakeWriter(), write_explanation=writer).inserted == 1
    assert writer.calls == [("not-yet", None)]


def test_a_database_failure_on_an_explanation_stops_the_replay(spool: Spool) -> None:
    spool.append([SpooledExplanation("p", explanation()), redacted(prediction_id="after")])
    ready = spool.rotate()
    down = FakeExplanationWriter(fail_with=OperationalError("server closed the connection"))
    writer = FakeWriter()
    result = spool.replay(writer, write_explanation=down)
    assert (result.files, result.failed) == (0, 2)
    assert writer.calls == []  # nothing after the failure was tried
    assert spool.ready_files() == [ready]


@pytest.mark.django_db
def test_replay_command_writes_spooled_explanations_after_their_predictions(
    spool: Spool,
) -> None:
    record = redacted(prediction_id="cmd-x")
    spool.append([record, SpooledExplanation("cmd-x", explanation())])
    spool.rotate()
    out = _call(spool.directory)
    assert "2 record(s) in the database (2 inserted, 0 already stored)" in out
    event = PredictionEvent.objects.get(prediction_id="cmd-x")
    assert event.explanation is not None
    assert (event.explanation.method, event.explanation.revision) == ("shap", 1)
    assert store.verify_explanation(event.explanation)
