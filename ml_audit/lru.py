"""A small thread-safe LRU mapping, shared by the process-wide caches (the writer's model and
actor ids in :mod:`ml_audit.store`, subject references in :mod:`ml_audit.subjects.keys`).

Safe across ``fork``: call :meth:`LruCache.reset_after_fork` in the child
(``os.register_at_fork(after_in_child=...)``), since a fork while another thread held the lock
would leave the child's copy locked. Imports nothing of Django.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["LruCache"]


class LruCache:
    """At most ``max_size`` entries; the least recently used go first."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._max_size:
                self._data.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
