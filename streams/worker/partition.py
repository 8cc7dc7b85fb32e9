"""One partition of the call-events topic as the worker tracks it, with the domain code: decode and
validate each message, order, track call legs, and tally windows. Two flows run side by side as in
the embedded pipeline: the exact flow waits the full allowed lateness and yields interval-window
parts; the board flow waits only the live lateness and feeds the wallboard's parts.

Until a partition has read everything the topic held (a worker starting, or catching up after
downtime), its board follows the exact flow instead: the wallboard's parts are tallied from the
exact flow's records, the allowed lateness behind. Reading history, the board moves hours a second
and nobody watches it, and a second orderer and tracker would do every event's work twice (a fifth
of the worker's time). `go_live` then gives the board its own orderer and tracker, copied from the
exact flow's, and from there on it runs the live lateness behind.

No Kafka here: the ingest service hands it messages and publishes what it returns. Its state is
saved in two parts (streams/worker/call_table.py): the calls, one record per call in the call table
(`call_changes`), and the rest with the offset of the next message in a checkpoint (`snapshot`);
`restore` puts them back together."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from streams.domain.call_legs import CallTracker, Record
from streams.domain.config import FlowConfig
from streams.domain.events import CallEvent, InvalidEvent, parse_event, parse_ts
from streams.domain.ordering import EventOrderer
from streams.domain.records import GroupNow, LiveTallies, WindowPart, WindowTallies
from streams.domain.state import (call_state, check_schema, orderer_state, restore_call, restore_orderer,
                                  restore_tracker, schema, tracker_state)
from streams.io.codec import decode

from .call_table import CallTable, encode_pair

CONTROL_HEADER = "callwatch-control"
BOARD_IDLE_MS = 1000
END_OF_STREAM = b"end-of-stream"


@dataclass(frozen=True, slots=True)
class Message:
    """What a partition needs of a Kafka record."""

    offset: int
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    offset: int
    reason: str
    raw: bytes


@dataclass(slots=True)
class PartitionCounts:
    received: int = 0
    rejected: int = 0
    late: int = 0
    duplicates: int = 0


class CheckpointMismatch(ValueError):
    """A checkpoint written under other settings (window, lateness, lines, clock) or code."""


def fingerprint(config: FlowConfig, window_s: int, wall_clock: bool) -> str:
    """What a checkpoint's meaning depends on besides the code's schema."""
    text = repr((dataclasses.asdict(config), window_s, wall_clock))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Advance:
    """What a partition has to publish after `advance`."""

    parts: list[WindowPart] = field(default_factory=list)
    watermark_ms: int | None = None  # every later record of this partition is at or after this time
    stream_time_ms: int | None = None


class PartitionFlow:
    def __init__(self, partition: int, config: FlowConfig, window_s: int, wall_clock: bool) -> None:
        self.partition = partition
        self.next_offset = 0
        self._config = config
        self._wall = wall_clock
        self._fingerprint = fingerprint(config, window_s, wall_clock)
        self._lateness_ms = config.allowed_lateness_ms
        self._live_lateness_ms = min(round(config.live_lateness_s * 1000), self._lateness_ms)
        self._exact = EventOrderer(self._lateness_ms)
        self._exact_tracker = CallTracker(config.max_wait_ms)
        self._exact_tracker.track_changes()
        self._windows = WindowTallies(window_s, config)
        self._board_follows_exact = True  # until go_live: no board orderer or tracker of its own
        self._board = EventOrderer(self._live_lateness_ms)
        self._board_tracker = CallTracker(config.max_wait_ms)
        self._board_tracker.track_changes()
        self._live = LiveTallies(config)
        self.table = CallTable()
        self._processed_until_ms: int | None = None  # the exact flow has applied everything before
        self._board_until_ms: int | None = None
        self._floor_ms: int | None = None  # an end-of-stream marker finished every window before this
        self._parts: list[WindowPart] = []
        self.counts = PartitionCounts()

    # --- input -------------------------------------------------------------------------------

    def take(self, messages: Sequence[Message]) -> list[Rejected]:
        """Offer each message not taken yet (a re-read after a restart skips what the checkpoint has)."""
        rejected: list[Rejected] = []
        events: list[CallEvent] = []  # valid events not offered yet: offered together, in order
        counts = self.counts
        for message in messages:
            if message.offset < self.next_offset:
                continue
            self.next_offset = message.offset + 1
            if message.headers and _control(message.headers) == END_OF_STREAM:
                self._offer(events)
                events = []
                problem = self._end_of_stream(message.value)
                if problem:
                    rejected.append(Rejected(message.offset, problem, message.value or b""))
                continue
            counts.received += 1
            try:
                # text first: the decoder would otherwise sniff the encoding of every message
                events.append(parse_event(decode(message.value.decode("utf-8"))))  # type: ignore[union-attr]
            except InvalidEvent as error:
                counts.rejected += 1
                rejected.append(Rejected(message.offset, f"invalid {error}", message.value or b""))
            except (ValueError, AttributeError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
                counts.rejected += 1
                reason = "empty message" if message.value is None else f"not JSON: {str(error).splitlines()[0]}"
                rejected.append(Rejected(message.offset, reason, message.value or b""))
        self._offer(events)
        return rejected

    def _offer(self, events: list[CallEvent]) -> None:
        """Both flows take the events (the orderers' batch loop: no method call per event); late and
        duplicate ones are those the exact flow turned away."""
        if not events:
            return
        ordering = self._exact.counts
        late, duplicates = ordering.late, ordering.duplicates
        self._exact.offer_all(events)
        if not self._board_follows_exact:
            self._board.offer_all(events)
        self.counts.late += ordering.late - late
        self.counts.duplicates += ordering.duplicates - duplicates

    def _end_of_stream(self, value: bytes | None) -> str | None:
        """Everything before the marker is final: process it all, close lost legs up to `at` (the
        last event time of the whole stream, as a replay's last event would) and emit every window."""
        try:
            at_ms = parse_ts(json.loads(value or b"{}").get("at"))
        except (ValueError, AttributeError) as error:
            return f"bad end-of-stream marker: {error}"
        records: list[Record] = []
        drained = self._exact.drain()
        for event in drained:
            self._exact_tracker.apply(event, records)
        self._exact_tracker.expire(at_ms, records)
        self._windows.add(records)
        self._parts.extend(self._windows.take_until(None))
        floor = self._windows.window_of(at_ms)[1]
        self._floor_ms = floor if self._floor_ms is None else max(self._floor_ms, floor)
        if self._processed_until_ms is None or at_ms > self._processed_until_ms:
            self._processed_until_ms = at_ms
        if self._board_follows_exact:
            self._follow_exact(drained, records)
        else:
            self._advance_board(None, drain=True)
        return None

    # --- progress ----------------------------------------------------------------------------

    def advance(self, now_ms: int | None = None) -> Advance:
        """Apply what the orderers release (pushed by `now_ms` on the wall clock) and say what to
        publish: the window parts that became final and this partition's watermark."""
        now = now_ms if self._wall else None
        released = self._exact.release(now)
        records: list[Record] = []
        if released:
            apply = self._exact_tracker.apply
            for event in released:
                apply(event, records)
            self._processed_until_ms = released[-1].occurred_ms
        if now is not None:
            until = now - self._lateness_ms
            if self._processed_until_ms is None or until > self._processed_until_ms:
                self._exact_tracker.expire(until, records)
                self._processed_until_ms = until
        if records:
            self._windows.add(records)
        parts, self._parts = self._parts, []
        if self._processed_until_ms is not None:
            parts.extend(self._windows.take_until(self._processed_until_ms))
        if self._board_follows_exact:
            self._follow_exact(released, records)
        else:
            self._advance_board(now, drain=False)
        return Advance(parts, self.watermark_ms, self.stream_time_ms)

    def go_live(self) -> None:
        """The partition has read everything the topic holds: from now on the board runs on its own,
        the live lateness behind, starting from copies of the exact flow's orderer and tracker (the
        events the exact flow still holds are the board's to release)."""
        if not self._board_follows_exact:
            return
        self._board_follows_exact = False
        self._board = EventOrderer.continuing(self._live_lateness_ms, self._exact.released_before_ms)
        self._board.offer_all(self._exact.waiting_events())
        self._board_tracker = restore_tracker(tracker_state(self._exact_tracker))
        self._board_tracker.track_changes(all_changed=True)  # none of its calls is in the call table yet
        self._board_until_ms = self._processed_until_ms

    @property
    def board_is_live(self) -> bool:
        return not self._board_follows_exact

    def _follow_exact(self, events: list[CallEvent], records: list[Record]) -> None:
        """The board, following the exact flow: what it applied, as the board flow would have."""
        self._live.observe_all(events)
        if records:
            self._live.add(records)

    def _advance_board(self, now: int | None, drain: bool) -> None:
        if now is not None:
            # While events flow, the board's watermark follows them (newest - live lateness): a
            # pause of this worker (a checkpoint, a rebalance) then makes no event late. Only when
            # none comes does the wall clock move it, max(live lateness, BOARD_IDLE_MS) behind, so
            # the last ones show.
            now -= max(0, BOARD_IDLE_MS - self._live_lateness_ms)
        released = self._board.drain() if drain else self._board.release(now)
        records: list[Record] = []
        if released:
            apply = self._board_tracker.apply
            for event in released:
                apply(event, records)
            self._live.observe_all(released)
            self._board_until_ms = released[-1].occurred_ms
        if now is not None:
            until = now - self._live_lateness_ms
            if self._board_until_ms is None or until > self._board_until_ms:
                self._board_tracker.expire(until, records)
                self._board_until_ms = until
        if records:
            self._live.add(records)

    def live_updates(self, now_ms: int, full: bool = False) -> list[GroupNow]:
        return self._live.updates(now_ms, full)

    def window_of(self, instant_ms: int) -> tuple[int, int]:
        return self._windows.window_of(instant_ms)

    @property
    def watermark_ms(self) -> int | None:
        until = self._processed_until_ms
        if self._floor_ms is not None and (until is None or self._floor_ms > until):
            return self._floor_ms
        return until

    @property
    def stream_time_ms(self) -> int | None:
        """The newest event time seen (the exact orderer sees every valid event)."""
        return self._exact.newest_ms

    @property
    def pending(self) -> int:
        return self._exact.pending

    @property
    def exact_counts(self) -> tuple[int, int, int, int, int, int]:
        """accepted, duplicates, late, conflicts, unmatched, lost of the exact flow."""
        ordering, tracking = self._exact.counts, self._exact_tracker.counts
        return (ordering.accepted, ordering.duplicates, ordering.late, tracking.conflicts,
                tracking.unmatched, tracking.lost)

    # --- checkpoint --------------------------------------------------------------------------

    def call_changes(self) -> dict[str, str | None]:
        """Each call changed since the last time, as its encoded [exact, board] pair (None when
        both flows have forgotten it): the call records of the next checkpoint round."""
        exact, board = self._exact_tracker, self._board_tracker
        changes: dict[str, str | None] = {}
        for call_id in sorted(exact.take_changed() | board.take_changed()):
            in_exact, in_board = exact.calls.get(call_id), board.calls.get(call_id)
            if in_exact is None and in_board is None:
                changes[call_id] = None
            else:
                changes[call_id] = encode_pair([None if in_exact is None else call_state(in_exact),
                                                None if in_board is None else call_state(in_board)])
        return changes

    def snapshot(self, epoch: int) -> dict[str, Any]:
        """Everything but the calls (they are in the call table, up to the round of `epoch`)."""
        return {
            "schema": schema(), "fingerprint": self._fingerprint, "partition": self.partition,
            "next_offset": self.next_offset, "epoch": epoch,
            "exact": {"orderer": orderer_state(self._exact),
                      "tracker": tracker_state(self._exact_tracker, with_calls=False),
                      "windows": self._windows.state(), "processed_until_ms": self._processed_until_ms,
                      "floor_ms": self._floor_ms},
            "board": {"follows_exact": self._board_follows_exact, "orderer": orderer_state(self._board),
                      "tracker": tracker_state(self._board_tracker, with_calls=False),
                      "live": self._live.state(), "until_ms": self._board_until_ms},
            "counts": dataclasses.astuple(self.counts),
        }

    def restore(self, state: dict[str, Any] | None, calls: Iterable[tuple[str, bytes | None]]) -> None:
        """Continue from a checkpoint (None: there is none yet) and the latest call-table record of
        each call. Raises CheckpointMismatch if the checkpoint was taken under other settings."""
        epoch = 0
        if state is not None:
            check_schema(state.get("schema"))
            if state.get("fingerprint") != self._fingerprint:
                raise CheckpointMismatch("checkpoint taken with other settings (window, lateness, lines or clock)")
            epoch = int(state["epoch"])
        pairs = self.table.restore(calls, epoch)
        if state is None:
            return  # stale records of a first round that never completed: rewritten in the next round
        exact_calls = {call_id: restore_call(pair[0]) for call_id, pair in pairs.items() if pair[0] is not None}
        board_calls = {call_id: restore_call(pair[1]) for call_id, pair in pairs.items() if pair[1] is not None}
        exact, board = state["exact"], state["board"]
        self.next_offset = int(state["next_offset"])
        self._exact = restore_orderer(exact["orderer"])
        self._exact_tracker = restore_tracker(exact["tracker"], exact_calls)
        self._exact_tracker.track_changes()
        self._windows.restore(exact["windows"])
        self._processed_until_ms = exact["processed_until_ms"]
        self._floor_ms = exact["floor_ms"]
        self._board_follows_exact = bool(board.get("follows_exact", False))
        self._board = restore_orderer(board["orderer"])
        self._board_tracker = restore_tracker(board["tracker"], board_calls)
        self._board_tracker.track_changes()
        self._live.restore(board["live"])
        self._board_until_ms = board["until_ms"]
        self.counts = PartitionCounts(*state["counts"])


def _control(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    for key, value in headers:
        if key == CONTROL_HEADER:
            return value
    return None
