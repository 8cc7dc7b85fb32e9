"""One events partition as the worker holds it, all its state in one object (exact and board CallFlows,
counters, read positions): the ingest service hands it messages and publishes what it returns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import zlib
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Sequence

from streams.domain.config import FlowConfig
from streams.domain.events import CallEvent, InvalidEvent, parse_event, parse_ts
from streams.domain.flow import CallFlow
from streams.domain.interval_report import ReportRow
from streams.domain.state import IncompatibleState, check_schema, freeze_flow, load_saved, schema, thaw_flow
from streams.io.codec import decode, decode_lines
from streams.kafka.figures_topic import CONTROL_HEADER, END_OF_STREAM

BOARD_IDLE_MS = 1000  # on the wall clock, a quiet board releases its last events this long after them
_headers = attrgetter("headers")
_value = attrgetter("value")
_UNSEEN: Any = object()  # a site not looked up yet (None: not this partition's)


def _is_end_marker(message: Any) -> bool:
    return bool(message.headers) and dict(message.headers).get(CONTROL_HEADER) == END_OF_STREAM


class CheckpointMismatch(ValueError):
    """A checkpoint written under other settings (window, lateness, lines, clock, partitions)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    offset: int
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Forward:  # a message of another partition's site, for the repartition topic
    offset: int
    site: str
    occurred_ms: int
    value: bytes
    end_of_stream: bool = False


@dataclass(slots=True)
class Counts:  # every counter the partition keeps (on /metrics, restored with the checkpoint)
    received: int = 0
    rejected: int = 0
    forwarded: int = 0  # messages of another partition's site, sent on to it
    deleted_unread: int = 0  # events the topic's retention deleted before they were read


class Partition:
    def __init__(self, number: int, partitions: int, config: FlowConfig, window_s: int, wall_clock: bool,
                 site_partition: Callable[[str], int]) -> None:
        self.number = number
        self.board_config = dataclasses.replace(
            config, allowed_lateness_s=min(config.live_lateness_s, config.allowed_lateness_s))
        self.wall = wall_clock
        self.partitions = partitions
        self.site_partition = site_partition
        settings = repr((dataclasses.asdict(config), window_s, wall_clock, partitions))
        self.fingerprint = hashlib.sha256(settings.encode()).hexdigest()[:16]
        self.exact = CallFlow(config, interval_s=window_s, live=True)
        self.board: CallFlow | None = None  # its own board flow once live; until then, exact's board
        self.counts = Counts()
        self.next_offset = 0  # of the events partition: the next message to read
        self.forward_from = 0  # the oldest events message whose forwarding is not known to be done
        self.next_repartitioned = 0  # of the repartition partition
        self.ends_seen: set[int] = set()  # sources whose end-of-stream came through the repartition topic
        self.end_at_ms: int | None = None  # the stream's end, from this partition's own marker
        self.finished = False
        self.read_ms = -1  # the newest event time read from the events partition, its own sites or not
        self.saved_at = 0.0  # monotonic seconds: when its last checkpoint was acknowledged
        self._own_keys: dict[str, bytes | None] = {}  # site -> its key if this partition's site, else None

    def take(self, messages: Sequence[Any]) -> tuple[list[Rejected], list[Forward]]:
        """Messages of the events partition (Kafka records: offset, key, value, headers): this
        partition's sites go to the flows, malformed ones back with a reason, others back to be forwarded."""
        if messages and messages[0].offset >= self.next_offset and not (
                any(map(_headers, messages)) and any(map(_is_end_marker, messages))):
            # The usual batch, all new events: decoded and validated as one block (a Python call less
            # per message); one that is not (a bad message) is read message by message below.
            try:
                block = decode_lines(map(_value, messages))
            except (ValueError, RecursionError, TypeError):  # TypeError: a message without a value
                pass
            else:
                return [], self._take_decoded(messages, block)
        rejected: list[Rejected] = []
        forward: list[Forward] = []
        events: list[CallEvent] = []
        counts = self.counts
        for message in messages:
            offset = message.offset
            if offset < self.next_offset:
                # Read again after a restart: applied before the checkpoint, but the forwarding
                # of other sites' events (and of an end marker) may not have been done (a copy
                # forwarded twice is a duplicate of the same event id there, not applied twice).
                if _is_end_marker(message):
                    self._end_marker(message, [], forward)
                    continue
                again = self._parse(message, [], count=False)
                if again is not None and not self._ours(message, again.site):
                    forward.append(Forward(offset, again.site, again.occurred_ms, message.value or b""))
                continue
            self.next_offset = offset + 1
            if _is_end_marker(message):
                self._offer(events)
                events = []
                self._end_marker(message, rejected, forward)
                continue
            counts.received += 1
            event = self._parse(message, rejected)
            if event is None:
                continue
            if event.occurred_ms > self.read_ms:
                self.read_ms = event.occurred_ms
            if self._ours(message, event.site):
                events.append(event)
            else:
                counts.forwarded += 1
                forward.append(Forward(offset, event.site, event.occurred_ms, message.value or b""))
        self._offer(events)
        return rejected, forward

    def _take_decoded(self, messages: Sequence[Any], decoded: list[CallEvent]) -> list[Forward]:
        """`take` of new messages that all decoded to valid events."""
        forward: list[Forward] = []
        events: list[CallEvent] = []
        own_keys = self._own_keys
        read_ms = self.read_ms
        for message, event in zip(messages, decoded):
            site = event.site
            key = own_keys.get(site, _UNSEEN)  # `_ours` without a call per message
            if key is _UNSEEN:
                key = self._own_key(site)
            if event.occurred_ms > read_ms:
                read_ms = event.occurred_ms
            if key is not None and message.key == key:
                events.append(event)
            else:
                self.counts.forwarded += 1
                forward.append(Forward(message.offset, site, event.occurred_ms, message.value))
        self.read_ms = read_ms
        self.next_offset = messages[-1].offset + 1
        self.counts.received += len(messages)
        self._offer(events)
        return forward

    def _own_key(self, site: str) -> bytes | None:
        """The key our producers give a site's events when the site is this partition's, else None."""
        key = self._own_keys.get(site, _UNSEEN)
        if key is _UNSEEN:
            key = self._own_keys[site] = site.encode() if self.site_partition(site) == self.number else None
        return key  # type: ignore[no-any-return]

    def _ours(self, message: Any, site: str) -> bool:
        """Ours only when keyed as our producers key (by site): a foreign producer's events of this
        partition's sites go the way of all its others (forwarded), or they would overtake those
        and make them late."""
        key = self._own_key(site)
        return key is not None and message.key == key

    def take_repartitioned(self, messages: Sequence[Any]) -> list[Rejected]:
        """Messages other partitions forwarded here (already counted as received there)."""
        rejected: list[Rejected] = []
        events: list[CallEvent] = []
        for message in messages:
            if message.offset < self.next_repartitioned:
                continue
            self.next_repartitioned = message.offset + 1
            if _is_end_marker(message):
                self._offer(events)
                events = []
                self.ends_seen.add(int(json.loads(message.value or b"{}")["source"]))
                continue
            event = self._parse(message, rejected)
            if event is not None:
                events.append(event)
        self._offer(events)
        return rejected

    def _parse(self, message: Any, rejected: list[Rejected], count: bool = True) -> CallEvent | None:
        try:
            # text first: the decoder would otherwise sniff the encoding of every message
            return parse_event(decode(message.value.decode("utf-8")))
        except InvalidEvent as error:
            reason = f"invalid {error}"
        except (ValueError, AttributeError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            reason = "empty message" if message.value is None else f"not JSON: {str(error).splitlines()[0]}"
        if count:
            self.counts.rejected += 1
        rejected.append(Rejected(message.offset, reason, message.value or b""))
        return None

    def _offer(self, events: list[CallEvent]) -> None:
        if events:
            self.exact.ingest_all(events)
            if self.board is not None:
                self.board.ingest_all(events)

    def _end_marker(self, message: Any, rejected: list[Rejected], forward: list[Forward]) -> None:
        """The stream ends at `at` (its last event): once every source's marker has come through the
        repartition topic too, everything held is final (see `advance`)."""
        try:
            at = json.loads(message.value or b"{}").get("at")
            at_ms = parse_ts(at)
        except (ValueError, AttributeError) as error:
            rejected.append(Rejected(message.offset, f"bad end-of-stream marker: {error}", message.value or b""))
            return
        self.end_at_ms = at_ms
        # To every partition of the repartition topic, behind what this one forwarded before it:
        # a site's repartitioned stream has ended when every source's marker has come through.
        value = json.dumps({"at": at, "source": self.number}).encode()
        forward.append(Forward(message.offset, "", at_ms, value, end_of_stream=True))

    def advance(self, now_ms: int | None, caught_up: bool) -> list[ReportRow]:
        """Apply what the lateness releases (on the wall clock, only once everything is read: a
        backlog is applied in event order, not turned away as late) and return the final rows."""
        if self.finished:
            return []
        if self.end_at_ms is not None and len(self.ends_seen) >= self.partitions and caught_up:
            self.finished = True
            rows = self.exact.finish_rows(until_ms=self.end_at_ms)
            if self.board is not None:
                self.board.finish_rows(until_ms=self.end_at_ms)
            return rows
        clock = now_ms if self.wall and caught_up else None
        rows = self.exact.advance_rows(clock)
        if caught_up and self.board is None and self.end_at_ms is None:  # an ended stream is about to finish
            self.go_live()
        if self.board is not None:
            # While events flow the board follows them (newest - live lateness); only when none
            # comes does the wall clock move it, a second behind, so the last ones show.
            self.board.advance_rows(None if clock is None else clock - BOARD_IDLE_MS)
        return rows

    def go_live(self) -> None:
        saved = freeze_flow(self.exact)
        self.board = thaw_flow(saved, self.board_config, report=False)
        self.exact = thaw_flow(saved, board=False)

    @property
    def board_flow(self) -> CallFlow:
        return self.exact if self.board is None else self.board

    def snapshot(self) -> bytes:
        """The whole state and read positions, compressed: a record of the checkpoints table."""
        return zlib.compress(pickle.dumps({
            "schema": schema(), "fingerprint": self.fingerprint, "partition": self.number,
            "offsets": [self.next_offset, self.forward_from, self.next_repartitioned],
            "ends_seen": sorted(self.ends_seen), "end_at_ms": self.end_at_ms, "finished": self.finished,
            "exact": freeze_flow(self.exact), "board": None if self.board is None else freeze_flow(self.board),
            "counts": dataclasses.astuple(self.counts)}, protocol=5), 1)

    def is_behind(self, saved: bytes) -> bool:
        """Has a checkpoint of this partition read further than this state in either topic? (Not one
        that cannot be read: `restore` says what is wrong with it.)"""
        try:
            offsets = load_saved(zlib.decompress(saved))["offsets"]
            return int(offsets[0]) > self.next_offset or int(offsets[2]) > self.next_repartitioned
        except (zlib.error, IncompatibleState, KeyError, IndexError, TypeError, ValueError):
            return False

    def restore(self, saved: bytes) -> None:
        """Continue from a checkpoint (docs/worker.md); raises CheckpointMismatch (other settings) or
        IncompatibleState (another version, or not a checkpoint at all)."""
        try:
            state = load_saved(zlib.decompress(saved))
        except (zlib.error, IncompatibleState) as error:
            raise IncompatibleState(f"not a checkpoint ({error})") from None
        try:
            check_schema(state.get("schema"))
            if state.get("fingerprint") != self.fingerprint:
                raise CheckpointMismatch("checkpoint taken with other settings (window, lateness, lines, clock "
                                         "or number of partitions)")
            self.next_offset, self.forward_from, self.next_repartitioned = (int(n) for n in state["offsets"])
            self.ends_seen = {int(n) for n in state["ends_seen"]}
            self.end_at_ms, self.finished = state["end_at_ms"], bool(state["finished"])
            self.exact = thaw_flow(state["exact"])
            self.board = None if state["board"] is None else thaw_flow(state["board"])
            self.counts = Counts(*state["counts"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, (CheckpointMismatch, IncompatibleState)):
                raise
            raise IncompatibleState(f"corrupt checkpoint ({type(error).__name__}: {error})") from None
