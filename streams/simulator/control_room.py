"""A deterministic discrete-event simulation of a UK police 999/101 control room, yielding canonical
v1 call events (SPEC section 2) in event-time order.

Calls arrive by the demand profile (demand.py), wait FCFS in their queue, are answered by the
handlers on shift (staffing.py) or give up when their patience (callers.py) runs out, so
abandonment emerges from queueing. Pure: standard library only, no I/O, no wall clock; the whole
run is a function of its arguments, and events are produced lazily from a heap of future happenings,
so memory follows the calls in play, not the length of the run."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Callable, Final, Iterator
from zoneinfo import ZoneInfo

from streams.domain.events import (ABANDONED, AGENT_STATE, ANSWERED, ENDED, OFFERED, TIMEOUT, TRANSFERRED,
                                   CallEvent, event_to_dict)

from .callers import (CALLERS, CallerBehaviour, draw_caller_hash, draw_patience_s, draw_pickup_s, draw_talk_s,
                      draw_wrapup_s)
from .demand import (LINE_101, LINE_999, SCENARIOS, LocalClock, PoissonArrivals, Scenario, arrival_rate_per_h,
                     mean_hourly_arrivals, peak_hourly_arrivals)
from .staffing import (BREAKS, CALLBACK_ACCEPT_SHARE, CALLBACK_OFFER_EVERY_S, CRIME_REPORT_SHARE, HOME_LINE,
                       LINE_OF_QUEUE, MISROUTE_DWELL_S, MISROUTED_101_SHARE, OVERFLOW_999_AFTER_S, PICK_ORDER,
                       PICK_ORDER_ALL_HANDS, QUEUE_101, QUEUE_101_CRIME, QUEUE_999, QUEUE_999_OVERFLOW, ROSTER, SERVES,
                       SERVES_ALL_HANDS, TIMEOUT_101_AFTER_S, Shift, break_offset_s, local_day_of)

TIME_ZONE: Final = "Europe/London"
SOURCE: Final = "simulate"


class UnknownScenario(ValueError):
    """A scenario name that is not one of SCENARIOS."""


def simulate(seed: int, start_ms: int, duration_s: float, scenario: str | Scenario = "normal",
             site: str = "default") -> Iterator[dict[str, object]]:
    """Canonical v1 event dicts of `duration_s` seconds of a control room from `start_ms` (UTC epoch
    ms), in nondecreasing event time; `math.inf` runs for ever (a live source paces it). The same
    arguments give the same events, and a shorter run is a prefix of a longer one. Ids carry the
    seed and a tag of the other arguments, so runs that differ in seed, start, scenario or site can
    be merged without their event ids colliding. Bad arguments raise ValueError here, not later."""
    chosen = _scenario(scenario)
    if not duration_s >= 0:
        raise ValueError(f"duration must be zero or more seconds, not {duration_s!r}")
    if not site:
        raise ValueError("site must be a non-empty string")
    return _ControlRoom(seed, start_ms, duration_s, chosen, site).run()


def simulate_to_lines(seed: int, start_ms: int, duration_s: float, scenario: str | Scenario = "normal",
                      site: str = "default") -> Iterator[str]:
    """The same events as compact JSON Lines text (without the newline)."""
    return (json.dumps(obj, separators=(",", ":")) for obj in simulate(seed, start_ms, duration_s, scenario, site))


def _scenario(scenario: str | Scenario) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    try:
        return SCENARIOS[scenario]
    except KeyError:
        raise UnknownScenario(f"unknown scenario {scenario!r} (use one of {', '.join(SCENARIOS)})") from None


# What a call is doing. HELD: in the queue but listening to the announcement, not yet routable.
WAITING, HELD, RINGING, TALKING, DONE = range(5)
# What a handler is doing. RESERVED: a call is ringing on their phone; the stream still says available.
OFF, AVAILABLE, RESERVED, BUSY, WRAPUP, AWAY = range(6)


@dataclass(eq=False, slots=True)
class _Call:
    call_id: str
    line: str
    entry_queue: str
    caller: str
    behaviour: CallerBehaviour
    impatient: bool
    attempt: int
    queue: str = ""
    leg: int = 0
    offered_ms: int = 0
    state: int = WAITING
    handler: _Handler | None = None


@dataclass(eq=False, slots=True)
class _Handler:
    agent_id: str
    group: str
    index: int  # within the shift, to stagger breaks
    state: int = OFF
    idle_since_ms: int = 0
    shift_end_ms: int = 0
    break_pending_s: float | None = None


@dataclass(frozen=True, slots=True)
class _ArrivalStream:
    line: str
    arrivals: PoissonArrivals


@dataclass(slots=True)
class _Ids:
    prefix: str
    events: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    calls: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_event(self) -> str:
        return f"{self.prefix}-{next(self.events)}"

    def next_call(self) -> str:
        return f"{self.prefix}-c{next(self.calls)}"


def _run_tag(start_ms: int, scenario: Scenario, site: str) -> str:
    return hashlib.blake2s(f"{start_ms}|{scenario!r}|{site}".encode(), digest_size=3).hexdigest()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class _ControlRoom:
    """The simulation state: calls in play, queues, handlers and a heap of timed actions. Each
    action runs at its time and may emit events stamped with that time and schedule later actions."""

    def __init__(self, seed: int, start_ms: int, duration_s: float, scenario: Scenario, site: str) -> None:
        self._end_ms = start_ms + _ms(duration_s) if math.isfinite(duration_s) else math.inf
        self._site = site
        self._tz = ZoneInfo(TIME_ZONE)
        self._clock = LocalClock(self._tz)
        self._ids = _Ids(f"sim-{seed}-{_run_tag(start_ms, scenario, site)}")
        # One generator for behaviour, one per arrival stream: a surge's extra calls come from their
        # own streams, so everything before the surge is drawn exactly as in the normal scenario.
        self._rng = random.Random(f"{seed}/behaviour")
        self._heap: list[tuple[int, int, Callable[[int], None]]] = []
        self._seq = itertools.count()
        self._out: list[dict[str, object]] = []
        self._queues: dict[str, deque[_Call]] = {q: deque() for q in LINE_OF_QUEUE}
        self._shifts: list[list[_Handler]] = []
        number = itertools.count(1)
        for shift in ROSTER:
            groups = [group for group, count in shift.headcount for _ in range(count)]
            self._shifts.append([_Handler(f"agent-{next(number):03d}", group, index)
                                 for index, group in enumerate(groups)])
        self._handlers = [handler for handlers in self._shifts for handler in handlers]
        self._serves, self._pick_order = SERVES, PICK_ORDER
        self._schedule(start_ms, self._open)
        for line in (LINE_999, LINE_101):
            self._start_stream(random.Random(f"{seed}/arrivals/{line}"), line, 1.0, 0.0, start_ms, None)
        if scenario.surge_duration_s > 0:
            surge_from = start_ms + _ms(scenario.surge_start_s)
            surge_until = surge_from + _ms(scenario.surge_duration_s)
            for line in (LINE_999, LINE_101):
                extra = scenario.multiplier(line) - 1
                if extra > 0:
                    self._start_stream(random.Random(f"{seed}/surge/{line}"), line, extra,
                                       mean_hourly_arrivals(line), surge_from, surge_until)
            if scenario.surge_all_hands_to_999:
                self._schedule(surge_from, partial(self._set_all_hands, True))
                self._schedule(surge_until, partial(self._set_all_hands, False))

    def run(self) -> Iterator[dict[str, object]]:
        heap, end_ms = self._heap, self._end_ms
        while heap and heap[0][0] < end_ms:
            at_ms, _, action = heapq.heappop(heap)
            action(at_ms)
            if self._out:
                batch, self._out = self._out, []
                yield from batch

    # -- plumbing

    def _schedule(self, at_ms: int, action: Callable[[int], None]) -> None:
        heapq.heappush(self._heap, (at_ms, next(self._seq), action))

    def _emit_call(self, call: _Call, event_type: str, at_ms: int, agent: str | None = None) -> None:
        event = CallEvent(self._ids.next_event(), call.call_id, event_type, at_ms, call.line, call.queue,
                          self._site, agent=agent, caller=call.caller, source=SOURCE)
        self._out.append(event_to_dict(event))

    def _emit_handler(self, handler: _Handler, state: str, at_ms: int) -> None:
        event = CallEvent(self._ids.next_event(), "", AGENT_STATE, at_ms, HOME_LINE[handler.group], "",
                          self._site, agent=handler.agent_id, state=state, source=SOURCE)
        obj = event_to_dict(event)
        # A handler's state is not about one call; an empty call_id would read as a real (bad) id.
        del obj["call_id"]
        self._out.append(obj)

    # -- arrivals

    def _start_stream(self, rng: random.Random, line: str, scale: float, floor_per_h: float, from_ms: int,
                      until_ms: int | None) -> None:
        """Arrivals at `scale` times the line's profile, which is read as at least `floor_per_h`."""
        def rate_per_h(instant_ms: int) -> float:
            weekday, hour = self._clock.read(instant_ms)
            return scale * max(arrival_rate_per_h(line, weekday, hour), floor_per_h)

        stream = _ArrivalStream(line, PoissonArrivals(rng, rate_per_h, scale * peak_hourly_arrivals(line),
                                                      from_ms, until_ms))
        self._schedule_arrival(stream)

    def _schedule_arrival(self, stream: _ArrivalStream) -> None:
        at_ms = stream.arrivals.next_ms()
        if at_ms is not None:
            self._schedule(at_ms, partial(self._on_arrival, stream))

    def _on_arrival(self, stream: _ArrivalStream, at_ms: int) -> None:
        rng = self._rng
        if stream.line == LINE_999:
            entry_queue = QUEUE_999
        else:
            entry_queue = QUEUE_101_CRIME if rng.random() < CRIME_REPORT_SHARE else QUEUE_101
        call = self._new_call(stream.line, entry_queue, draw_caller_hash(rng), 0, at_ms)
        self._offer(call, entry_queue, at_ms)
        self._schedule_arrival(stream)

    def _on_redial(self, previous: _Call, at_ms: int) -> None:
        call = self._new_call(previous.line, previous.entry_queue, previous.caller, previous.attempt + 1, at_ms)
        self._offer(call, call.entry_queue, at_ms)

    def _new_call(self, line: str, entry_queue: str, caller: str, attempt: int, at_ms: int) -> _Call:
        behaviour = CALLERS[entry_queue]
        patience_s, impatient = draw_patience_s(self._rng, behaviour)
        call = _Call(self._ids.next_call(), line, entry_queue, caller, behaviour, impatient, attempt)
        # Patience runs from the first offer: a transfer does not reset the caller's clock.
        self._schedule(at_ms + _ms(patience_s), partial(self._on_patience_lost, call))
        return call

    # -- queueing

    def _offer(self, call: _Call, queue: str, at_ms: int) -> None:
        call.queue = queue
        call.leg += 1
        call.offered_ms = at_ms
        self._emit_call(call, OFFERED, at_ms)
        if queue == QUEUE_999:
            self._schedule(at_ms + _ms(OVERFLOW_999_AFTER_S), partial(self._on_overflow, call, call.leg))
        elif LINE_OF_QUEUE[queue] == LINE_101:
            self._schedule(at_ms + _ms(CALLBACK_OFFER_EVERY_S), partial(self._on_callback_offered, call, call.leg))
            self._schedule(at_ms + _ms(TIMEOUT_101_AFTER_S), partial(self._on_timeout, call, call.leg))
        if queue == QUEUE_101 and self._rng.random() < MISROUTED_101_SHARE:
            call.state = HELD
            dwell_s = self._rng.uniform(*MISROUTE_DWELL_S)
            self._schedule(at_ms + _ms(dwell_s), partial(self._on_misroute, call, call.leg))
            return
        handler = self._free_handler(self._pick_order[queue])
        if handler is None:
            call.state = WAITING
            self._queues[queue].append(call)
        else:
            self._connect(handler, call, at_ms)

    def _free_handler(self, groups: tuple[str, ...]) -> _Handler | None:
        for group in groups:
            best: _Handler | None = None
            for handler in self._handlers:
                if (handler.state == AVAILABLE and handler.group == group
                        and (best is None or handler.idle_since_ms < best.idle_since_ms)):
                    best = handler
            if best is not None:
                return best
        return None

    def _take_work(self, handler: _Handler, at_ms: int) -> None:
        queues = self._queues
        for tier in self._serves[handler.group]:
            oldest: deque[_Call] | None = None
            for queue in tier:
                waiting = queues[queue]
                if waiting and (oldest is None or waiting[0].offered_ms < oldest[0].offered_ms):
                    oldest = waiting
            if oldest is not None:
                self._connect(handler, oldest.popleft(), at_ms)
                return

    def _leave_queue(self, call: _Call) -> None:
        if call.state == WAITING:
            self._queues[call.queue].remove(call)

    def _on_overflow(self, call: _Call, leg: int, at_ms: int) -> None:
        if call.state == WAITING and call.leg == leg:
            self._leave_queue(call)
            self._emit_call(call, TRANSFERRED, at_ms)
            self._offer(call, QUEUE_999_OVERFLOW, at_ms)

    def _on_misroute(self, call: _Call, leg: int, at_ms: int) -> None:
        if call.state == HELD and call.leg == leg:
            self._emit_call(call, TRANSFERRED, at_ms)
            self._offer(call, QUEUE_101_CRIME, at_ms)

    def _on_callback_offered(self, call: _Call, leg: int, at_ms: int) -> None:
        if call.state not in (WAITING, HELD) or call.leg != leg:
            return
        if self._rng.random() < CALLBACK_ACCEPT_SHARE:
            self._on_timeout(call, leg, at_ms)
        else:
            self._schedule(at_ms + _ms(CALLBACK_OFFER_EVERY_S), partial(self._on_callback_offered, call, leg))

    def _on_timeout(self, call: _Call, leg: int, at_ms: int) -> None:
        if call.state in (WAITING, HELD) and call.leg == leg:
            self._leave_queue(call)
            call.state = DONE
            self._emit_call(call, TIMEOUT, at_ms)

    def _on_patience_lost(self, call: _Call, at_ms: int) -> None:
        if call.state in (TALKING, DONE):
            return
        handler = call.handler if call.state == RINGING else None
        self._leave_queue(call)
        call.state = DONE
        call.handler = None
        self._emit_call(call, ABANDONED, at_ms)
        if handler is not None:
            self._release(handler, at_ms, announce=False)  # the stream never saw them leave 'available'
        behaviour = call.behaviour
        if (not call.impatient and call.attempt < behaviour.max_redials
                and self._rng.random() < behaviour.redial_share):
            redial_s = self._rng.uniform(*behaviour.redial_after_s)
            self._schedule(at_ms + _ms(redial_s), partial(self._on_redial, call))

    # -- handling

    def _connect(self, handler: _Handler, call: _Call, at_ms: int) -> None:
        handler.state = RESERVED
        call.state = RINGING
        call.handler = handler
        self._schedule(at_ms + _ms(draw_pickup_s(self._rng)), partial(self._on_pickup, call, call.leg))

    def _on_pickup(self, call: _Call, leg: int, at_ms: int) -> None:
        handler = call.handler
        if call.state != RINGING or call.leg != leg or handler is None:
            return
        call.state = TALKING
        handler.state = BUSY
        self._emit_call(call, ANSWERED, at_ms, handler.agent_id)
        self._emit_handler(handler, "busy", at_ms)
        talk_ms = _ms(draw_talk_s(self._rng, call.behaviour))
        self._schedule(at_ms + talk_ms, partial(self._on_talk_ended, call))

    def _on_talk_ended(self, call: _Call, at_ms: int) -> None:
        handler = call.handler
        assert handler is not None
        call.state = DONE
        call.handler = None
        self._emit_call(call, ENDED, at_ms, handler.agent_id)
        handler.state = WRAPUP
        self._emit_handler(handler, "wrapup", at_ms)
        wrapup_ms = _ms(draw_wrapup_s(self._rng, call.behaviour))
        self._schedule(at_ms + wrapup_ms, partial(self._on_wrapup_done, handler))

    def _on_wrapup_done(self, handler: _Handler, at_ms: int) -> None:
        self._release(handler, at_ms, announce=True)

    def _release(self, handler: _Handler, at_ms: int, announce: bool) -> None:
        """A handler is free again: off home if the shift is over, on a break if one is due, else
        back to the queues."""
        if at_ms >= handler.shift_end_ms:
            handler.state = OFF
            self._emit_handler(handler, "logged_out", at_ms)
        elif handler.break_pending_s is not None:
            self._go_on_break(handler, handler.break_pending_s, at_ms)
        else:
            handler.state = AVAILABLE
            handler.idle_since_ms = at_ms
            if announce:
                self._emit_handler(handler, "available", at_ms)
            self._take_work(handler, at_ms)

    def _set_all_hands(self, on: bool, at_ms: int) -> None:
        self._serves, self._pick_order = (SERVES_ALL_HANDS, PICK_ORDER_ALL_HANDS) if on else (SERVES, PICK_ORDER)
        for handler in self._handlers:
            if handler.state == AVAILABLE:
                self._take_work(handler, at_ms)

    # -- shifts and breaks

    def _open(self, at_ms: int) -> None:
        """Log in whoever is on shift at the start, and schedule every shift's next start."""
        today = local_day_of(at_ms, self._tz)
        for index, shift in enumerate(ROSTER):
            next_start_scheduled = False
            for days in (-1, 0, 1):
                day = today + timedelta(days=days)
                start_ms, end_ms = shift.bounds_ms(day, self._tz)
                if start_ms <= at_ms < end_ms:
                    self._log_in(index, at_ms, start_ms, end_ms)
                elif start_ms > at_ms and not next_start_scheduled:
                    self._schedule(start_ms, partial(self._on_shift_start, index, shift, day))
                    next_start_scheduled = True

    def _on_shift_start(self, index: int, shift: Shift, local_day: date, at_ms: int) -> None:
        start_ms, end_ms = shift.bounds_ms(local_day, self._tz)
        self._log_in(index, at_ms, start_ms, end_ms)
        following = local_day + timedelta(days=1)
        next_start_ms, _ = shift.bounds_ms(following, self._tz)
        self._schedule(next_start_ms, partial(self._on_shift_start, index, shift, following))

    def _log_in(self, index: int, at_ms: int, start_ms: int, end_ms: int) -> None:
        handlers = self._shifts[index]
        for handler in handlers:
            handler.state = AVAILABLE
            handler.idle_since_ms = at_ms
            handler.shift_end_ms = end_ms
            handler.break_pending_s = None
            self._emit_handler(handler, "available", at_ms)
            for pause in BREAKS:
                due_ms = start_ms + _ms(pause.after_s + break_offset_s(handler.index))
                if due_ms > at_ms:
                    self._schedule(due_ms, partial(self._on_break_due, handler, pause.length_s, end_ms))
        self._schedule(end_ms, partial(self._on_shift_end, index))
        for handler in handlers:
            if handler.state == AVAILABLE:
                self._take_work(handler, at_ms)

    def _on_shift_end(self, index: int, at_ms: int) -> None:
        for handler in self._shifts[index]:
            # Handlers on a call finish it (and its wrap-up) first; see _release.
            if handler.state in (AVAILABLE, AWAY):
                handler.state = OFF
                self._emit_handler(handler, "logged_out", at_ms)

    def _on_break_due(self, handler: _Handler, length_s: float, shift_end_ms: int, at_ms: int) -> None:
        if handler.state == OFF or handler.shift_end_ms != shift_end_ms:
            return
        if handler.state == AVAILABLE:
            self._go_on_break(handler, length_s, at_ms)
        else:
            handler.break_pending_s = length_s

    def _go_on_break(self, handler: _Handler, length_s: float, at_ms: int) -> None:
        handler.state = AWAY
        handler.break_pending_s = None
        self._emit_handler(handler, "away", at_ms)
        self._schedule(at_ms + _ms(length_s), partial(self._on_break_over, handler))

    def _on_break_over(self, handler: _Handler, at_ms: int) -> None:
        if handler.state == AWAY:
            self._release(handler, at_ms, announce=True)
