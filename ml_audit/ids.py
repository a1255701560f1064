"""Identifiers: time-ordered UUIDv7 primary keys and the shape of W3C trace ids."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

__all__ = ["is_w3c_trace_id", "uuid7"]

_W3C_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_UUID_SAFETY = uuid.SafeUUID.unknown
_set_attribute = object.__setattr__


class _UUID7Generator:
    """RFC 9562 UUIDv7 with a 12-bit counter in ``rand_a`` (method 1), monotonic per process.

    Random bits come from ``os.urandom`` in blocks of 4 KiB: one system call per ~400 ids
    instead of two per id (on some virtual machines ``getrandom`` costs tens of microseconds).
    The block is discarded in a forked child so parent and child never share random bits.
    """

    _POOL = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0
        self._pool = b""
        self._offset = 0

    def _random(self, size: int) -> int:
        if self._offset + size > len(self._pool):
            self._pool = os.urandom(self._POOL)
            self._offset = 0
        start = self._offset
        self._offset += size
        return int.from_bytes(self._pool[start : start + size], "big")

    def __call__(self) -> uuid.UUID:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                # Start low in the counter space so a burst in one millisecond has room.
                counter = self._random(2) & 0x1FF
            else:
                counter = self._counter + 1
                if counter > 0xFFF:
                    # Counter exhausted: borrow the next millisecond rather than lose ordering.
                    self._last_ms += 1
                    counter = 0
                ms = self._last_ms
            self._counter = counter
            # self._random(8), inline (once per id)
            start = self._offset
            end = start + 8
            pool = self._pool
            if end > len(pool):
                pool = self._pool = os.urandom(self._POOL)
                start, end = 0, 8
            self._offset = end
            rand_b = int.from_bytes(pool[start:end], "big") & _RAND_B_MASK
        # uuid.UUID(int=...) without its argument checks (the value is in range): the same
        # object (same int and is_safe; equal, same hash, same pickle), in half the time.
        result = object.__new__(uuid.UUID)
        _set_attribute(
            result, "int", (ms & _MS_MASK) << 80 | _VERSION_AND_VARIANT | counter << 64 | rand_b
        )
        _set_attribute(result, "is_safe", _UUID_SAFETY)
        return result

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._offset = 0


_uuid7_generator = _UUID7Generator()
os.register_at_fork(after_in_child=_uuid7_generator._reset_after_fork)


def uuid7() -> uuid.UUID:
    """A new time-ordered UUIDv7 (RFC 9562), strictly increasing within this process."""
    return _uuid7_generator()


def is_w3c_trace_id(text: str) -> bool:
    """Whether ``text`` is a W3C trace id as stored: 32 lower-case hex digits, not all zero."""
    return bool(_W3C_TRACE_ID.match(text)) and text != "0" * 32
