"""The verifier's speed-ups hold their contracts: COPY messages become exactly the rows' lines
however PostgreSQL cuts them, the batched Merkle builder gives RFC 6962's root at every size
(and when asked for a root mid-stream), and the late-row bound of the COPY row pass says what
the UUIDv7 arithmetic it replaces says."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ml_audit.sealing import pgcopy
from ml_audit.sealing.merkle import MerkleBuilder
from ml_audit.sealing.rowpass import _EPOCH, _MICROSECOND, _late_bound


class _Result:
    def __init__(self, status: Any) -> None:
        self.status = status


class _PGconn:
    """libpq's side of ``COPY TO``: ``get_copy_data`` hands out ``messages``, then -1."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = list(messages)
        self.results = [_Result(pgcopy._COMMAND_OK)]

    def get_copy_data(self, async_: int) -> tuple[int, Any]:
        assert async_ == 0
        if not self.messages:
            return -1, b""
        data = self.messages.pop(0)
        return len(data), memoryview(data)

    def get_result(self) -> _Result | None:
        return self.results.pop(0) if self.results else None


class _Cursor:
    def __init__(self, messages: list[bytes]) -> None:
        self.connection = type(
            "Connection",
            (),
            {
                "pgconn": _PGconn(messages),
                "info": type("Info", (), {"encoding": "utf-8"})(),
            },
        )()
        self.statements: list[str] = []

    @contextmanager
    def copy(self, statement: str, params: Any = None) -> Iterator[None]:
        self.statements.append(statement)
        yield


def _lines(messages: list[bytes]) -> list[str]:
    cursor = _Cursor(messages)
    found = [line for batch in pgcopy.copy_lines(cursor, "SELECT 1") for line in batch]
    assert cursor.statements == ["COPY (SELECT 1) TO STDOUT"]
    return found


pytestmark = pytest.mark.skipif(pgcopy._COMMAND_OK is None, reason="needs psycopg 3")


def test_copy_lines_one_row_per_message() -> None:
    rows = [f"{i}\ta\\tb\té 😀".encode() for i in range(2 * pgcopy.BATCH + 3)]
    assert _lines([row + b"\n" for row in rows]) == [row.decode() for row in rows]


def test_copy_lines_rows_cut_and_joined_across_messages() -> None:
    text = "".join(f"{i}\tvalue é 😀 {i * 7}\n" for i in range(500)).encode()
    expected = text.decode().split("\n")[:-1]
    rng = random.Random(1)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), 40))
        messages = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _lines(messages) == expected
    # Several whole rows in one message.
    assert _lines([b"a\tb\nc\td\n", b"e\n"]) == ["a\tb", "c\td", "e"]
    assert _lines([]) == []


def test_copy_lines_raises_the_error_that_ended_the_copy(monkeypatch: Any) -> None:
    cursor = _Cursor([b"1\n"])
    failed = _Result("FATAL")
    cursor.connection.pgconn.results = [failed]
    raised = []

    def copy_error(result: Any, encoding: str) -> Exception:
        raised.append((result, encoding))
        return RuntimeError("division by zero")

    monkeypatch.setattr(pgcopy, "_copy_error", copy_error)
    with pytest.raises(RuntimeError, match="division by zero"):
        list(pgcopy.copy_lines(cursor, "SELECT 1"))
    assert raised == [(failed, "utf-8")]


def _rfc_root(leaves: list[bytes]) -> str:
    def mth(data: list[bytes]) -> bytes:
        if not data:
            return hashlib.sha256(b"").digest()
        if len(data) == 1:
            return hashlib.sha256(b"\x00" + data[0]).digest()
        k = 1
        while k * 2 < len(data):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()

    return mth(leaves).hex()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 1023, 1024, 1025, 2048, 3001])
def test_batched_merkle_builder_gives_the_rfc_root(size: int) -> None:
    rng = random.Random(size)
    leaves = [rng.randbytes(rng.randrange(1, 30)) for _ in range(size)]
    builder = MerkleBuilder()
    for data in leaves:
        builder.add(data)
    assert builder.count == size
    assert builder.root() == _rfc_root(leaves)
    assert builder.count == size


def test_merkle_root_mid_stream_then_more_leaves() -> None:
    rng = random.Random(7)
    leaves = [rng.randbytes(8) for _ in range(3000)]
    builder = MerkleBuilder()
    for index, data in enumerate(leaves):
        builder.add(data)
        if index in {0, 5, 1100, 2047, 2100}:
            assert builder.root() == _rfc_root(leaves[: index + 1])
    assert builder.root() == _rfc_root(leaves)
    assert builder.count == len(leaves)


def test_late_bound_agrees_with_the_uuid7_arithmetic() -> None:
    rng = random.Random(3)
    checked = 0
    for _ in range(20_000):
        horizon = _EPOCH + dt.timedelta(microseconds=rng.randrange(0, 2**41 * 1000))
        micros = (horizon - _EPOCH) // _MICROSECOND
        bound = _late_bound(horizon)
        ms = micros // 1000 + rng.randrange(-3, 4)
        if ms < 0:
            continue
        digits = f"{ms:012x}"
        row_id = f"{digits[:8]}-{digits[8:]}-7abc-8def-0123456789ab"
        assert (row_id[:13] >= bound) == (int(digits, 16) * 1000 > micros + 2)
        checked += 1
    assert checked > 10_000


def test_merkle_extend_equals_adding_one_at_a_time() -> None:
    rng = random.Random(7)
    for size in (0, 1, 5, 1023, 1024, 1025, 3000, 5000):
        leaves = [f"leaf-{i}".encode() for i in range(size)]
        one = MerkleBuilder()
        for leaf in leaves:
            one.add(leaf)
        many = MerkleBuilder()
        start = 0
        while start < size:  # uneven slices, as COPY chunks come
            step = rng.randint(1, 2500)
            many.extend(leaves[start : start + step])
            start += step
        assert (many.root(), many.count) == (one.root(), one.count) == (_rfc_root(leaves), size)


def test_all_plain_in_accepts_only_one_seals_plain_member_lines() -> None:
    from ml_audit.sealing.verifier import _all_plain_in

    line = "3\t17\t1\t0190a1b2-0000-7000-8000-000000000000\t" + "ab" * 32
    assert _all_plain_in([line, line], "3\t")
    assert not _all_plain_in([line, "4" + line[1:]], "3\t")  # another seal
    assert not _all_plain_in([line, "33" + line[1:]], "3\t")  # a longer id, same digits
    assert not _all_plain_in([line, line + "\textra"], "3\t")
    assert not _all_plain_in([line, line.replace("ab", "a\\\\b", 1)], "3\t")  # an escape


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_member_changed_inside_a_large_seal_is_found(settings: Any) -> None:
    """Seals of several COPY chunks go through the whole-chunk path of the roots check: a
    member changed, or moved to another seal, in the middle of one is still reported."""
    from django.db import connection

    from ml_audit import store
    from ml_audit.sealing import seal_all
    from ml_audit.sealing.verifier import verify
    from tests.factories import redacted
    from tests.seals.helpers import SEAL_SETTINGS, triggers_off

    settings.ML_AUDIT = dict(SEAL_SETTINGS)
    store.write_many([redacted(prediction_id=f"p{i}") for i in range(6000)])
    assert len(seal_all(max_rows=5000)) == 2
    assert verify().ok
    with connection.cursor() as cursor:
        cursor.execute("SELECT seal_id, row_hash FROM ml_audit_sealmember WHERE id = 3500")
        seal_id, original = cursor.fetchone()
    assert seal_id == 1  # inside seal 1 (members 1-5000), in its second COPY chunk
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_sealmember SET row_hash = %s WHERE id = 3500", ["0" * 64])
    assert verify().findings["seal_mismatch"].first == {"seal": 1}
    with triggers_off() as cursor:
        cursor.execute("UPDATE ml_audit_sealmember SET row_hash = %s WHERE id = 3500", [original])
    assert verify().ok
    with triggers_off() as cursor:  # a member of seal 1 moved to seal 2, between seal 1's
        cursor.execute("UPDATE ml_audit_sealmember SET seal_id = 2 WHERE id = 2600")
    assert "seal_mismatch" in verify().findings
