"""Event sources for the embedded pipeline and the clocks that pace them. A source is polled with
the current time and hands back what is due; connectors plug in here through `QueueSource`."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Iterator, Protocol

from streams.domain.events import CallEvent, InvalidEvent, parse_event
from streams.io.event_lines import Rejection


class Clock(Protocol):
    def now_ms(self) -> int: ...


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass
class AcceleratedClock:
    """Stream time that starts at `start_ms` and runs `speed` times faster than real time."""

    start_ms: int
    speed: float = 1.0

    def __post_init__(self) -> None:
        self._origin = time.monotonic()

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._origin) * self.speed * 1000)


class StreamClock:
    """The time of the newest event a source has handed over: for finite files replayed through the
    live pipeline, whose events are far from the wall clock."""

    def __init__(self, source: QueueSource) -> None:
        self._source = source

    def now_ms(self) -> int:
        return self._source.newest_ms


class EventSource(Protocol):
    name: str

    def poll(self, now_ms: int, limit: int) -> list[CallEvent | Rejection]:
        """Items due by `now_ms`, at most `limit`."""
        ...

    @property
    def exhausted(self) -> bool: ...


class PacedEvents:
    """Releases a time-ordered stream of canonical event objects as the clock reaches each one."""

    def __init__(self, name: str, objects: Iterator[dict[str, object]]) -> None:
        self.name = name
        self._objects = objects
        self._number = 0
        self._next: CallEvent | Rejection | None = None
        self._advance()

    @property
    def exhausted(self) -> bool:
        return self._next is None

    def _advance(self) -> None:
        self._next = None
        for obj in self._objects:
            self._number += 1
            try:
                self._next = parse_event(obj)
            except InvalidEvent as error:
                self._next = Rejection(self.name, self._number, f"invalid {error}", "")
            return

    def poll(self, now_ms: int, limit: int) -> list[CallEvent | Rejection]:
        items: list[CallEvent | Rejection] = []
        while self._next is not None and len(items) < limit:
            # A rejection is due at once: it has no trustworthy time.
            if isinstance(self._next, CallEvent) and self._next.occurred_ms > now_ms:
                break
            items.append(self._next)
            self._advance()
        return items


class QueueSource:
    """Items pushed by a connector running in its own thread; never blocks the pipeline."""

    def __init__(self, name: str, maxsize: int = 100_000) -> None:
        self.name = name
        self.items: queue.Queue[CallEvent | Rejection | None] = queue.Queue(maxsize)
        self._exhausted = False
        self.newest_ms = 0

    @property
    def exhausted(self) -> bool:
        return self._exhausted and self.items.empty()

    def poll(self, now_ms: int, limit: int) -> list[CallEvent | Rejection]:
        items: list[CallEvent | Rejection] = []
        while len(items) < limit:
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._exhausted = True
                break
            if isinstance(item, CallEvent) and item.occurred_ms > self.newest_ms:
                self.newest_ms = item.occurred_ms
            items.append(item)
        return items
