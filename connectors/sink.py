"""The one interface every connector writes through: canonical events out, bad records to a dead
letter with a reason. Implementations: JSON Lines (a file or stdout, for replay), an in-process
queue (the embedded pipeline) and Kafka (connectors.kafka_sink)."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, TextIO

from connectors.privacy import redact_numbers
from streams.domain.events import CallEvent, InvalidEvent, parse_event
from streams.io.event_lines import Rejection


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not become a canonical event, and why. `payload` is the raw record with
    number-like runs masked, so a dead letter never carries a caller's number."""

    source: str
    reason: str
    location: str = ""
    payload: str = ""

    @classmethod
    def of(cls, source: str, reason: str, location: object = "", raw: str | bytes = "") -> DeadLetter:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return cls(source, reason, "" if location is None else str(location), redact_numbers(text[:4096]))

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason, "location": self.location, "payload": self.payload}


@dataclass
class SinkCounts:
    sent: int = 0
    dead_lettered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class EventSink(Protocol):
    counts: SinkCounts

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        """One canonical event object. The sink validates it; an invalid one is dead-lettered,
        with `location` (where the source record was) to find it by."""

    def dead_letter(self, letter: DeadLetter) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def validate(event: Mapping[str, Any], source: str, location: str = "") -> CallEvent | DeadLetter:
    """The last check before an event leaves a connector (the worker checks again on arrival)."""
    try:
        return parse_event(dict(event))
    except InvalidEvent as error:
        return DeadLetter.of(source, f"invalid {error}", location or event.get("event_id", ""),
                             json.dumps(event, default=str))


class _Counting:
    counts: SinkCounts

    def _count_dead(self, letter: DeadLetter) -> None:
        self.counts.dead_lettered += 1
        key = letter.reason.split(":")[0]
        self.counts.by_reason[key] = self.counts.by_reason.get(key, 0) + 1


class JsonLinesSink(_Counting):
    """Events as canonical JSON Lines on `events`; dead letters as JSON Lines on `dead_letters`."""

    def __init__(self, events: TextIO, dead_letters: TextIO, source: str) -> None:
        self._events = events
        self._dead = dead_letters
        self._source = source
        self._lock = threading.Lock()  # transports may call from several threads
        self.counts = SinkCounts()

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        checked = validate(event, self._source, location)
        if isinstance(checked, DeadLetter):
            self.dead_letter(checked)
            return
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._events.write(line + "\n")
            self.counts.sent += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        with self._lock:
            self._dead.write(json.dumps({"dead_letter": letter.to_dict()}, ensure_ascii=False) + "\n")
            self._count_dead(letter)

    def flush(self) -> None:
        with self._lock:
            self._events.flush()
            self._dead.flush()

    def close(self) -> None:
        self.flush()


class QueueSink(_Counting):
    """Hands events to the embedded pipeline's QueueSource. `put` blocks when the pipeline is
    behind: back-pressure on the connector, never a dropped event."""

    def __init__(self, items: queue.Queue[CallEvent | Rejection | None], source: str) -> None:
        self._items = items
        self._source = source
        self.counts = SinkCounts()

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        checked = validate(event, self._source, location)
        if isinstance(checked, DeadLetter):
            self.dead_letter(checked)
            return
        self._items.put(checked)
        self.counts.sent += 1

    def dead_letter(self, letter: DeadLetter) -> None:
        self._count_dead(letter)
        self._items.put(Rejection(letter.source, 0, f"{letter.location}: {letter.reason}" if letter.location
                                  else letter.reason, letter.payload))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._items.put(None)  # end of this source
