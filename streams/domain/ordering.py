"""Puts events back into event-time order within the allowed lateness, drops duplicates by event_id
and sets aside events that come later than the lateness allows.

Events are held until the watermark (the newest event time seen, minus the allowed lateness) has
passed them, then released in (time, type, event_id) order: any input order within the lateness
therefore yields the same release sequence as the sorted stream."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Final, Iterable

from .events import TYPE_RANK, CallEvent

ACCEPTED: Final = "accepted"
DUPLICATE: Final = "duplicate"
LATE: Final = "late"

_BEFORE_ALL_MS: Final = -(1 << 62)  # earlier than any event time (datetime stops at year 1)
_AFTER_ALL_MS: Final = 1 << 62  # and later (it stops at year 9999)


def _key(event: CallEvent) -> tuple[int, int, str]:
    """The release order's key (a heap entry's first three items)."""
    return (event.occurred_ms, TYPE_RANK[event.type], event.event_id)


@dataclass(slots=True)
class OrderingCounts:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0


class EventOrderer:
    def __init__(self, allowed_lateness_ms: int) -> None:
        self._lateness_ms = allowed_lateness_ms
        # Most events arrive already in order: those go to a FIFO run (cheap: the events alone, no
        # sort key built); only the ones that arrive out of order pay for the heap of (key, event).
        # Release merges the two.
        self._run: deque[CallEvent] = deque()
        self._heap: list[tuple[int, int, str, CallEvent]] = []
        # event_id -> event time, kept while a duplicate could still be told from a late event.
        self._seen: dict[str, int] = {}
        self._newest_ms: int | None = None
        self._released_before_ms: int | None = None  # everything earlier has been released
        self._next_prune_ms = 0
        self.counts = OrderingCounts()

    @property
    def newest_ms(self) -> int | None:
        """The newest event time seen: the stream's current time."""
        return self._newest_ms

    @property
    def pending(self) -> int:
        return len(self._run) + len(self._heap)

    @property
    def released_before_ms(self) -> int | None:
        """Every event earlier than this has been released (or turned away as late)."""
        return self._released_before_ms

    def waiting_events(self) -> list[CallEvent]:
        """The events not released yet, in release order, left in place."""
        return sorted([*self._run, *(entry[3] for entry in self._heap)], key=_key)

    @classmethod
    def continuing(cls, allowed_lateness_ms: int, released_before_ms: int | None) -> EventOrderer:
        """An orderer for a stream already processed up to `released_before_ms`: earlier events
        are late, as if it had released them itself."""
        orderer = cls(allowed_lateness_ms)
        orderer._released_before_ms = released_before_ms
        return orderer

    def offer(self, event: CallEvent) -> str:
        """Take one event; returns ACCEPTED, DUPLICATE or LATE. Accepted events wait in the buffer."""
        seen = self._seen
        event_id = event.event_id
        if event_id in seen:
            self.counts.duplicates += 1
            return DUPLICATE
        occurred_ms = event.occurred_ms
        # Late means: further behind the newest event seen so far than the lateness allows (or
        # behind what a live clock already released). This depends only on the arrival order, not
        # on how often the caller releases, so batching releases changes nothing.
        newest = self._newest_ms
        if (newest is not None and occurred_ms < newest - self._lateness_ms) or (
                self._released_before_ms is not None and occurred_ms < self._released_before_ms):
            self.counts.late += 1
            return LATE
        seen[event_id] = occurred_ms
        entry = (occurred_ms, TYPE_RANK[event.type], event_id, event)
        run = self._run
        if not run or entry[:3] >= _key(run[-1]):
            run.append(event)
        else:
            heapq.heappush(self._heap, entry)
        if self._newest_ms is None or occurred_ms > self._newest_ms:
            self._newest_ms = occurred_ms
        self.counts.accepted += 1
        return ACCEPTED

    def offer_all(self, events: Iterable[CallEvent]) -> None:
        """`offer` each event in turn, only counting the outcomes: the same state afterwards,
        without a method call and a dozen attribute lookups per event (replay's hot loop)."""
        seen, run, heap = self._seen, self._run, self._heap
        lateness_ms = self._lateness_ms
        released_ms = _BEFORE_ALL_MS if self._released_before_ms is None else self._released_before_ms
        newest_ms = _BEFORE_ALL_MS if self._newest_ms is None else self._newest_ms
        # Late means earlier than both bounds of `offer`: kept as one number, moved with newest_ms.
        floor_ms = max(newest_ms - lateness_ms, released_ms)
        tail_ms, tail_rank, tail_id = _key(run[-1]) if run else (_BEFORE_ALL_MS, 0, "")
        rank_of, push, append = TYPE_RANK, heapq.heappush, run.append
        accepted = duplicates = late = 0
        for event in events:
            event_id = event.event_id
            if event_id in seen:
                duplicates += 1
                continue
            occurred_ms = event.occurred_ms
            if occurred_ms < floor_ms:
                late += 1
                continue
            seen[event_id] = occurred_ms
            rank = rank_of[event.type]
            # (time, rank, id) at or after the run's last entry: the run stays sorted.
            if occurred_ms > tail_ms or (occurred_ms == tail_ms and (
                    rank > tail_rank or (rank == tail_rank and event_id >= tail_id))):
                append(event)
                tail_ms, tail_rank, tail_id = occurred_ms, rank, event_id
            else:
                push(heap, (occurred_ms, rank, event_id, event))
            if occurred_ms > newest_ms:
                newest_ms = occurred_ms
                floor_ms = newest_ms - lateness_ms  # max() with released_ms, without a call per event
                if floor_ms < released_ms:
                    floor_ms = released_ms
            accepted += 1
        if newest_ms != _BEFORE_ALL_MS:
            self._newest_ms = newest_ms
        counts = self.counts
        counts.accepted += accepted
        counts.duplicates += duplicates
        counts.late += late

    def release(self, now_ms: int | None = None) -> list[CallEvent]:
        """Events now safe to process, in order. `now_ms` lets a live caller push the watermark past
        the newest event (a wall clock); replay leaves it to the events alone."""
        newest = self._newest_ms
        if now_ms is not None and (newest is None or now_ms > newest):
            newest = now_ms
        if newest is None:
            return []
        watermark = newest - self._lateness_ms
        out = self._take_before(watermark)
        if self._released_before_ms is None or watermark > self._released_before_ms:
            self._released_before_ms = watermark
            if watermark >= self._next_prune_ms:
                self._prune(watermark)
        return out

    def drain(self) -> list[CallEvent]:
        """Release everything (end of a finite stream)."""
        out = self._take_before(None)
        if out:
            last = out[-1].occurred_ms + 1
            if self._released_before_ms is None or last > self._released_before_ms:
                self._released_before_ms = last
        return out

    def _take_before(self, watermark: int | None) -> list[CallEvent]:
        """Merge the in-order run and the heap, taking entries earlier than the watermark (all of
        them when it is None) in (time, type, event_id) order."""
        run, heap = self._run, self._heap
        limit = _AFTER_ALL_MS if watermark is None else watermark
        out: list[CallEvent] = []
        while heap:
            if not run or heap[0][:3] < _key(run[0]):
                if heap[0][0] >= limit:
                    return out
                out.append(heapq.heappop(heap)[3])
            else:
                if run[0].occurred_ms >= limit:
                    return out
                out.append(run.popleft())
        # Only the run is left (the usual case: events came in order): take its stretch directly.
        append, take = out.append, run.popleft
        while run and run[0].occurred_ms < limit:
            append(take())
        return out

    def _prune(self, watermark: int) -> None:
        # Ids older than one more lateness behind the watermark can only come back as late events;
        # forgetting them keeps memory flat however long the stream runs.
        horizon = watermark - self._lateness_ms
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        self._next_prune_ms = watermark + max(self._lateness_ms, 60_000)
