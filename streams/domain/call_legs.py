"""The call-leg state machine: turns events (in event-time order) into arrivals and closed legs.

A leg is a call's time in one queue. Its outcome is its first terminal event; later terminal
events are conflicts. A leg still open `max_wait` after its offer is closed as `lost`.

Line totals (queue `*`) follow calls, not legs: a line-call starts at the call's first offer on a
line and ends at the first non-transfer outcome of one of its legs on that line, so a transfer
between two queues of one line stays one call. A call transferred off the line to another line
is simply no longer the line's (it has no line-total outcome), as transfers are excluded from
every figure."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Iterable, NamedTuple

import msgspec

from .events import ABANDONED, AGENT_STATE, ANSWERED, ENDED, OFFERED, TIMEOUT, TRANSFERRED, CallEvent

LINE_TOTAL: Final = "*"

# Leg outcomes as reported (the event `timeout` becomes the outcome `timed_out`).
OUTCOME_OF_EVENT: Final = {ANSWERED: "answered", ABANDONED: "abandoned", TIMEOUT: "timed_out",
                           TRANSFERRED: "transferred"}
LOST: Final = "lost"


# Records are NamedTuples (immutable, and much cheaper to build than frozen dataclasses): one or
# two are made per event.
class Arrival(NamedTuple):
    site: str
    line: str
    queue: str
    occurred_ms: int
    call_id: str = ""


class LegClosed(NamedTuple):
    """A leg (or, with queue `*`, a line-call) reached its outcome at `closed_ms`."""

    site: str
    line: str
    queue: str
    outcome: str
    offered_ms: int
    closed_ms: int
    call_id: str = ""

    @property
    def wait_ms(self) -> int:
        return self.closed_ms - self.offered_ms


# Legs, line-calls and calls are msgspec Structs: mutable and slotted like the dataclasses they
# were, and built by C code (a dataclass's generated __init__ is a Python call: three of them for
# most offers). Legs and line-calls hold no containers, so the cyclic collector can skip them.
class Leg(msgspec.Struct, gc=False):
    site: str
    line: str
    queue: str
    offered_ms: int
    outcome: str | None = None
    closed_ms: int | None = None
    ended_ms: int | None = None


class LineCall(msgspec.Struct, gc=False):
    first_offered_ms: int
    closed: bool = False
    left_ms: int | None = None  # when its last leg on the line was transferred away


class CallState(msgspec.Struct):
    legs: list[Leg] = msgspec.field(default_factory=list)
    line_calls: dict[tuple[str, str], LineCall] = msgspec.field(default_factory=dict)
    last_ms: int = 0
    open_count: int = 0  # legs without an outcome yet
    caller: str | None = None  # the caller's hash, noted for a live board (callbacks) only

    def open_leg(self, queue: str) -> Leg | None:
        for leg in reversed(self.legs):
            if leg.queue == queue and leg.outcome is None:
                return leg
        return None


@dataclass(slots=True)
class TrackerCounts:
    conflicts: int = 0      # terminal events for a leg that already had its outcome, repeated offers
    unmatched: int = 0      # events for a leg or call never offered (or long forgotten)
    lost: int = 0


Record = Arrival | LegClosed


_new_record = tuple.__new__  # what a NamedTuple's own __new__ does, without its Python-level call


class CallTracker:
    """Holds every call still in play. Feed it events in order with `apply`; it appends the
    resulting records to `out`. `expire(now_ms)` closes legs that waited past `max_wait`."""

    def __init__(self, max_wait_ms: int) -> None:
        self._max_wait_ms = max_wait_ms
        self.calls: dict[str, CallState] = {}
        # (deadline, call_id, leg index) of every leg, oldest first: legs are offered in time order
        # and all wait the same max_wait, so deadlines arrive sorted and a FIFO suffices.
        self._deadlines: deque[tuple[int, str, int]] = deque()
        # (forget_at, call_id) for calls whose legs all closed, in the order they closed.
        self._closed_calls: deque[tuple[int, str]] = deque()
        self._next_housekeeping_ms = 0
        self.counts = TrackerCounts()
        # Ids of the calls changed (or forgotten) since the owner last took them: off (None) unless
        # an owner stores calls one by one (the worker's call table); see `take_changed`.
        self._changed: set[str] | None = None

    def track_changes(self, all_changed: bool = False) -> None:
        """From now on remember which calls change, for `take_changed` (with `all_changed`, every
        call held now counts as changed: a copy whose calls are stored nowhere yet)."""
        if self._changed is None:
            self._changed = set()
        if all_changed:
            self._changed.update(self.calls)

    def take_changed(self) -> set[str]:
        """The ids of the calls changed or forgotten since the last call (tracking must be on)."""
        if self._changed is None:
            raise RuntimeError("track_changes() was not called")
        changed, self._changed = self._changed, set()
        return changed

    def open_legs(self) -> list[Leg]:
        return [leg for call in self.calls.values() for leg in call.legs if leg.outcome is None]

    def expire(self, now_ms: int, out: list[Record]) -> None:
        """Close as lost every leg whose deadline is before `now_ms`, in deadline order."""
        deadlines = self._deadlines
        if deadlines and deadlines[0][0] < now_ms:
            calls = self.calls
            while deadlines and deadlines[0][0] < now_ms:
                deadline, call_id, index = deadlines.popleft()
                call = calls.get(call_id)
                if call is None or index >= len(call.legs):
                    continue
                leg = call.legs[index]
                if leg.outcome is None:
                    self.counts.lost += 1
                    self._close(call_id, call, leg, LOST, deadline, out)
        if now_ms >= self._next_housekeeping_ms:
            self._forget_closed_calls(now_ms)
            self._next_housekeeping_ms = now_ms + 60_000

    def apply(self, event: CallEvent, out: list[Record]) -> None:
        """Apply one event (see `apply_all`)."""
        self.apply_all((event,), out)

    def apply_all(self, events: Iterable[CallEvent], out: list[Record],
                  enders: dict[tuple[str, int], str] | None = None) -> None:
        """Apply events in event-time order, appending the records they make to `out`. One loop
        with its lookups made once: it runs for every event of a replay. With `enders` (a live
        board's), each call notes its caller (the latest an event of it names) and every answer or
        abandon of a call with a caller sets enders[(call id, time)] to it: the records say no caller."""
        calls, deadlines, counts, changed = self.calls, self._deadlines, self.counts, self._changed
        offer, close = self._offer, self._close
        housekeeping_ms = self._next_housekeeping_ms
        for event in events:
            now_ms = event.occurred_ms
            if (deadlines and deadlines[0][0] < now_ms) or now_ms >= housekeeping_ms:
                self.expire(now_ms, out)
                housekeeping_ms = self._next_housekeeping_ms
            event_type = event.type
            if event_type == OFFERED:
                offer(event, out)
                if enders is not None and event.caller is not None:
                    calls[event.call_id].caller = event.caller
                continue
            if event_type == AGENT_STATE:
                continue  # moves stream time (above) but belongs to no leg, even when it names a call
            call_id = event.call_id
            call = calls.get(call_id)
            if call is None:
                counts.unmatched += 1
                continue
            if enders is not None:
                if event.caller is not None:
                    call.caller = event.caller
                if call.caller is not None and (event_type == ANSWERED or event_type == ABANDONED):
                    enders[(call_id, now_ms)] = call.caller
            call.last_ms = now_ms
            if changed is not None:
                changed.add(call_id)
            queue = event.queue
            # The call's latest leg in the queue (calls have a leg or two: a loop beats a method call).
            for leg in reversed(call.legs):
                if leg.queue == queue:
                    break
            else:
                counts.unmatched += 1
                continue
            if event_type == ENDED:
                if leg.outcome != "answered" or leg.ended_ms is not None:
                    counts.conflicts += 1
                else:
                    leg.ended_ms = now_ms
                continue
            if leg.outcome is not None:
                # The queue's latest leg has its outcome: a conflict, unless an earlier leg there is
                # still open (which offers never make: a queue with an open leg takes no new one).
                open_leg = call.open_leg(queue)
                if open_leg is None:
                    counts.conflicts += 1
                    continue
                leg = open_leg
            close(call_id, call, leg, OUTCOME_OF_EVENT[event_type], now_ms, out)

    def _offer(self, event: CallEvent, out: list[Record]) -> None:
        call_id, queue, site, line, now_ms = event.call_id, event.queue, event.site, event.line, event.occurred_ms
        call = self.calls.get(call_id)
        if call is None:
            # A call's first offer (most offers): its leg, its line-call and both arrivals at once.
            self.calls[call_id] = CallState([Leg(site, line, queue, now_ms)], {(site, line): LineCall(now_ms)},
                                            now_ms, 1)
            if self._changed is not None:
                self._changed.add(call_id)
            self._deadlines.append((now_ms + self._max_wait_ms, call_id, 0))
            out.append(_new_record(Arrival, (site, line, queue, now_ms, call_id)))
            out.append(_new_record(Arrival, (site, line, LINE_TOTAL, now_ms, call_id)))
            return
        if call.open_leg(queue) is not None:
            self.counts.conflicts += 1  # offered again to a queue it is already waiting in
            return
        call.last_ms = now_ms
        if self._changed is not None:
            self._changed.add(call_id)
        key = (site, line)
        line_call = call.line_calls.get(key)
        # Decided before the new leg joins the call: it is the call's past on the line that counts.
        starts_line_call = (line_call is None or line_call.closed
                            or self._left_line_long_ago(call, line_call, key, now_ms))
        legs = call.legs
        legs.append(Leg(site, line, queue, now_ms))
        call.open_count += 1
        self._deadlines.append((now_ms + self._max_wait_ms, call_id, len(legs) - 1))
        out.append(_new_record(Arrival, (site, line, queue, now_ms, call_id)))
        if starts_line_call:
            call.line_calls[key] = LineCall(now_ms)
            out.append(_new_record(Arrival, (site, line, LINE_TOTAL, now_ms, call_id)))

    def _close(self, call_id: str, call: CallState, leg: Leg, outcome: str, closed_ms: int,
               out: list[Record]) -> None:
        leg.outcome = outcome
        leg.closed_ms = closed_ms
        call.open_count -= 1
        if self._changed is not None:
            self._changed.add(call_id)
        site, line, offered_ms = leg.site, leg.line, leg.offered_ms
        out.append(_new_record(LegClosed, (site, line, leg.queue, outcome, offered_ms, closed_ms, call_id)))
        if call.open_count <= 0:
            self._closed_calls.append((closed_ms + self._max_wait_ms, call_id))
        line_call = call.line_calls.get((site, line))
        if line_call is None:
            return
        if outcome == "transferred":
            line_call.left_ms = closed_ms
            return  # the line-call goes on in the next queue (or leaves the line)
        if not line_call.closed:
            line_call.closed = True
            out.append(_new_record(LegClosed, (site, line, LINE_TOTAL, outcome, line_call.first_offered_ms,
                                               closed_ms, call_id)))

    def _left_line_long_ago(self, call: CallState, line_call: LineCall, key: tuple[str, str], now_ms: int) -> bool:
        """A call that left a line by a transfer and comes back more than max_wait later is a new
        call there: the same answer whether or not the call has been forgotten meanwhile."""
        if line_call.left_ms is None or now_ms - line_call.left_ms <= self._max_wait_ms:
            return False
        return not any(leg.outcome is None and (leg.site, leg.line) == key for leg in call.legs)

    def _forget_closed_calls(self, now_ms: int) -> None:
        # A call with every leg closed is kept for max_wait after its last event (to recognise
        # conflicts and `ended`), then forgotten: memory follows the calls in play, not the stream.
        closed_calls, calls, max_wait_ms, changed = self._closed_calls, self.calls, self._max_wait_ms, self._changed
        while closed_calls and closed_calls[0][0] < now_ms:
            call_id = closed_calls.popleft()[1]
            call = calls.get(call_id)
            if call is None or call.open_count > 0:
                continue  # already forgotten, or offered again since (it will be queued when it closes)
            forget_at = call.last_ms + max_wait_ms
            if forget_at < now_ms:
                del calls[call_id]
                if changed is not None:
                    changed.add(call_id)
            else:
                closed_calls.append((forget_at, call_id))  # it had an event since it closed
