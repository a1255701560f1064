"""A dependency-free progress bar for terminals (``ml_audit_verify`` draws it on stderr)."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####-----]  52%  520,000/1,000,000 rows  3.1 s``, redrawn at most 10 times a second."""

    WIDTH = 30

    def __init__(self, stream: TextIO, *, total: int, label: str) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        share = min(self.done / self.total, 1.0)
        filled = int(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {share:4.0%}  {self.done:,}/{self.total:,} rows  "
            f"{now - self.started:.1f} s"
        )
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
