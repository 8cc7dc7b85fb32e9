"""Which AMI frames are new. Asterisk never sends a frame twice on one connection, and on a default
set-up (no `timestampevents`, manager debug off) its frames carry neither `Timestamp` nor
`SequenceNumber`: a caller who goes round a `Queue()` loop sends byte-identical frames on every
visit. So nothing a connection delivers once is ever dropped. Frames are recognised as repeats in
two cases only:

- the same `SequenceNumber` (with its `Timestamp`, when present) again: a console capture prints
  some frames twice; Asterisk numbers every frame it sends once;
- the overlap after a reconnection, when the new connection starts by sending again what earlier
  ones delivered (a recorder or proxy replaying from its start). Frames with a `SequenceNumber` or
  `Timestamp` are unique, so one seen before is a repeat. Frames with neither are held while the
  new connection's frames repeat, from its first frame on, the stream delivered so far (the new
  frames of every earlier connection, in order); once they have repeated all of it they are
  dropped, and as soon as one differs (or nothing comes for `hold_ms`) the held frames are new
  after all and pass on in order. A live Asterisk, which never replays, costs at most the wait for
  its next frame; its frames are taken for a replay only if a new connection starts by repeating,
  byte for byte, everything delivered since the connector started.

Each new frame gets its occurrence number: how many frames with exactly its content were new
before it, plus one. Event ids of frames without SequenceNumber or Timestamp carry it, so the
second visit of a looping caller is a new event, not a duplicate of the first."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, TypeVar

from connectors.ami.ami_framing import AmiMessage

_SEQUENCE: Final = re.compile(r"[0-9]{1,20}")
_EPOCH_SECONDS: Final = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,9})?")
DEFAULT_HISTORY: Final = 4_096   # new frames a replay is compared with (at least)
DEFAULT_HOLD_MS: Final = 2_000
_OCCURRENCE_MEMORY: Final = 50_000
K = TypeVar("K")
V = TypeVar("V")


def sequence_of(message: AmiMessage) -> str:
    """The frame's SequenceNumber when it is one, else ''."""
    text = message.get("SequenceNumber").strip()
    return text if _SEQUENCE.fullmatch(text) else ""


def timestamp_of(message: AmiMessage) -> str:
    """The frame's Timestamp when it reads as epoch seconds, else ''."""
    text = message.get("Timestamp").strip()
    return text if _EPOCH_SECONDS.fullmatch(text) else ""


@dataclass(frozen=True, slots=True)
class NewFrame:
    message: AmiMessage
    received_ms: int
    occurrence: int  # 1 for the first frame with this content, 2 for the next, ...


@dataclass
class OverlapCounts:
    console_repeats: int = 0  # the same SequenceNumber again on one connection
    replayed: int = 0         # repeats of earlier connections' frames after a reconnection
    held_then_new: int = 0    # held as a possible replay, then passed on as new


class OverlapFilter:
    """Frames in arrival order in; the new ones out, each with its occurrence number."""

    def __init__(self, history: int = DEFAULT_HISTORY, hold_ms: int = DEFAULT_HOLD_MS) -> None:
        self.counts = OverlapCounts()
        self._history = history
        self._hold_ms = hold_ms
        self._stream: list[int] = []       # content keys of the new frames so far, in order
        self._this_connection: OrderedDict[int, None] = OrderedDict()
        self._unique_seen: OrderedDict[int, None] = OrderedDict()  # keyed frames of every connection
        self._occurrences: OrderedDict[int, int] = OrderedDict()
        self._replay_at: int | None = None  # where in `_stream` a replay would be now
        self._held: list[tuple[AmiMessage, int, int]] = []  # (message, received_ms, key)

    def new_connection(self) -> list[NewFrame]:
        """A connection ends and another begins: what was held is new; the next frames may replay."""
        out = self._release_held()
        if len(self._stream) > 2 * self._history:
            del self._stream[: len(self._stream) - self._history]
        self._this_connection.clear()
        self._replay_at = 0 if self._stream else None
        return out

    def admit(self, message: AmiMessage, received_ms: int) -> list[NewFrame]:
        """One event frame as it arrived: the frames now known to be new, in order (maybe none)."""
        key = hash(message.headers)
        unique = bool(sequence_of(message) or timestamp_of(message))
        out: list[NewFrame] = []
        if self._replay_at is not None:
            if self._stream[self._replay_at] == key:
                self._replay_at += 1
                if not unique:
                    self._held.append((message, received_ms, key))
                if self._replay_at == len(self._stream):
                    # All that was delivered before came again: the held frames were that replay.
                    self.counts.replayed += len(self._held)
                    self._held = []
                    self._replay_at = None
                if not unique:
                    return out
            else:
                self._replay_at = None  # not (or no longer) a replay: the connection's own frames
                out.extend(self._release_held())
        if unique:
            if key in self._unique_seen:
                if key in self._this_connection:
                    self.counts.console_repeats += 1
                else:
                    self.counts.replayed += 1
                return out
            remember(self._unique_seen, key, None, _OCCURRENCE_MEMORY)
            remember(self._this_connection, key, None, self._history)
        out.append(self._new(message, received_ms, key))
        return out

    def tick(self, now_ms: int) -> list[NewFrame]:
        """Frames held as a possible replay for longer than `hold_ms` are new after all."""
        if self._held and now_ms - self._held[0][1] > self._hold_ms:
            self._replay_at = None
            return self._release_held()
        return []

    def held(self) -> int:
        return len(self._held)

    # -- inside ----------------------------------------------------------------------------------

    def _release_held(self) -> list[NewFrame]:
        held, self._held = self._held, []
        self.counts.held_then_new += len(held)
        return [self._new(message, received_ms, key) for message, received_ms, key in held]

    def _new(self, message: AmiMessage, received_ms: int, key: int) -> NewFrame:
        self._stream.append(key)
        occurrence = self._occurrences.get(key, 0) + 1
        remember(self._occurrences, key, occurrence, _OCCURRENCE_MEMORY)
        return NewFrame(message, received_ms, occurrence)


def remember(store: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    """`key` -> `value` as the newest entry of a bounded memory, the oldest beyond `limit` forgotten."""
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)
