"""A progress bar on stderr, shown only when stderr is a terminal (never in pipes, logs or CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total_bytes: int | None, label: str, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._total = total_bytes
        self._label = label
        self._done = 0
        self._started = time.monotonic()
        self._next_draw = 0.0

    def update(self, done_bytes: int) -> None:
        """Called now and then with the bytes read so far."""
        self._done = done_bytes
        if self._enabled:
            now = time.monotonic()
            if now >= self._next_draw:
                self._next_draw = now + 0.2
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed / 1e6
        if self._total:
            fraction = min(1.0, self._done / self._total)
            bar = "#" * int(fraction * 30)
            eta = (elapsed / fraction - elapsed) if fraction > 0 else 0
            text = f"\r{self._label} [{bar:<30}] {fraction:6.1%} {rate:,.1f} MB/s eta {eta:,.0f}s "
        else:
            text = f"\r{self._label} {self._done / 1e6:,.1f} MB read, {rate:,.1f} MB/s "
        self._stream.write(text)
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
