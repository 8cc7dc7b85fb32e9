"""A sink for connector tests: what a connector sends, kept in memory and waitable."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from connectors.sink import DeadLetter, SinkCounts, validate


class CollectingSink:
    """The sink interface, keeping what it is given (thread-safe: the connector runs in a thread).
    Events are validated as a real sink does; `changed` is notified at each event taken, for tests
    that wait for events (readiness, not sleeping); `stop` is set after `stop_after` events."""

    def __init__(self, source: str = "queue-log", stop_after: int | None = None,
                 stop: threading.Event | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.dead: list[DeadLetter] = []
        self.counts = SinkCounts()
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._source, self._stop_after, self._stop = source, stop_after, stop

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        checked = validate(event, self._source, location)
        if isinstance(checked, DeadLetter):
            self.dead_letter(checked)
            return
        with self._lock:
            self.events.append(dict(event))
            self.counts.sent += 1
            self.changed.notify_all()
        if self._stop is not None and self._stop_after is not None and len(self.events) >= self._stop_after:
            self._stop.set()

    def dead_letter(self, letter: DeadLetter) -> None:
        with self._lock:
            self.dead.append(letter)
            self.counts.dead_lettered += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def ids(self) -> list[str]:
        with self._lock:
            return [e["event_id"] for e in self.events]
