"""What a wallboard shows at an instant T (SPEC section 4, "Live board"): rolling-window and today's
figures, calls waiting and the longest wait, agents by state, each group's data age, and per line
the callers to call back. T is passed in, so figures decay as time moves on without traffic.

Records (from the CallTracker, in event-time order) wait in `_incoming` until a snapshot's T
reaches them; each then enters every window once and leaves it once, so a snapshot costs what
changed since the last one plus the groups shown, not a pass over every call or record held."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Final, Iterable, NamedTuple, Sequence

from .call_legs import LINE_TOTAL, Arrival, CallTracker, LegClosed, Record
from .config import FlowConfig
from .events import AGENT_STATE, CallEvent
from .figures import Tally, figures_of
from .totals import GroupTotals, RunningTotals
from .windows import IntervalWindows, zone

Group = tuple[str, str, str]
Line = tuple[str, str]
TODAY: Final = "today"
_CALLBACK_OUTCOMES: Final = frozenset({"abandoned", "answered"})  # line-call ends the callback list follows
_COUNT_FIELDS: Final = tuple(f.name for f in fields(Tally) if f.name != "answer_ms")


def rolling_label(window_s: int) -> str:
    return f"{window_s // 60}m" if window_s % 60 == 0 else f"{window_s}s"


@dataclass(frozen=True, slots=True)
class QueueNow:
    waiting: int
    longest_wait_s: float


@dataclass(frozen=True, slots=True)
class Callback:
    """A caller who abandoned on a line and has not been answered there since: someone to ring
    back. `caller` is the pseudonymous hash, kept for matching only (never shown)."""

    call_id: str
    queue: str
    abandoned_ms: int
    wait_s: float
    caller: str | None


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    now_ms: int
    # window label ("15m", "60m", "today") -> group -> figures (as in the interval report)
    figures: dict[str, dict[Group, dict[str, object]]]
    queues: dict[Group, QueueNow]
    # (site, line, queue, state) -> number of agents; agents not tied to a queue use line/queue ""
    agents: dict[tuple[str, str, str, str], int]
    data_age_s: dict[Group, float]
    # (site, line) -> callers to call back, newest abandon first
    callbacks: dict[tuple[str, str], tuple[Callback, ...]] = field(default_factory=dict)
    # counts since the flow started (streams/domain/totals.py)
    totals: dict[Group, GroupTotals] = field(default_factory=dict)


class _LineOutcome(NamedTuple):
    """A line-call's abandon or answer, with what the callback list needs and records lack."""

    record: LegClosed
    caller: str | None
    queue: str  # the queue the caller was in when it ended


class LiveBoard:
    """Fed by a CallFlow: `observe_all` the events the tracker applied (with `enders`), `add` the
    records it made; `snapshot(T)` at instants that do not go back (an earlier T is read as the latest one,
    so a wall clock stepping back shows the board as it was, never a half-undone one)."""

    def __init__(self, config: FlowConfig, tracker: CallTracker) -> None:
        self._config = config
        self._tracker = tracker
        self._now_ms: int | None = None
        self._incoming: deque[Record | _LineOutcome] = deque()  # records after the last snapshot's T
        self._rolling = [_RollingWindow(window_s * 1000, config) for window_s in config.rolling_windows_s]
        self._days = IntervalWindows(86_400, zone(config.tz))
        self._today: tuple[int, int] = (0, 0)
        self._today_tallies: dict[Group, Tally] = {}
        self._agents: dict[tuple[str, str], tuple[str, str, str]] = {}  # (site, agent) -> (line, queue, state)
        self._last_seen_ms: dict[Group, int] = {}
        # queue group -> call id -> offer time of its waiting leg there (oldest first: offers enter
        # in time order, and a call has at most one leg waiting per queue)
        self._waiting: dict[Group, dict[str, int]] = {}
        self._callbacks = _Callbacks(round(config.callback_window_s * 1000))
        self._totals = RunningTotals(config)
        # (call id, time) -> caller, of this batch's answers and abandons: noted by the tracker
        # (CallTracker.apply_all) as it applies them, when the call may still be held.
        self.enders: dict[tuple[str, int], str] = {}

    def observe_all(self, events: Iterable[CallEvent]) -> None:
        """Agents' states and each group's last event, of events in event-time order (the tracker
        has noted their callers: `enders`)."""
        agents, seen = self._agents, self._last_seen_ms
        for event in events:
            if event.type == AGENT_STATE:
                assert event.agent is not None and event.state is not None
                agents[(event.site, event.agent)] = (event.line, event.queue, event.state)
                continue
            # Events come in event-time order (as the orderer releases them): the latest is the newest.
            site, line = event.site, event.line
            seen[(site, line, event.queue)] = seen[(site, line, LINE_TOTAL)] = event.occurred_ms

    def add(self, records: Sequence[Record]) -> None:
        self._totals.add(records)
        incoming, enders = self._incoming, self.enders
        previous: Record | None = None
        for record in records:
            if type(record) is LegClosed and record.queue == LINE_TOTAL and record.outcome in _CALLBACK_OUTCOMES:
                # The tracker closes the queue's leg just before the line-call it ends.
                queue = previous.queue if previous is not None else ""
                incoming.append(_LineOutcome(record, enders.get((record.call_id, record.closed_ms)), queue))
            else:
                incoming.append(record)
            previous = record
        enders.clear()

    def snapshot(self, now_ms: int) -> BoardSnapshot:
        if self._now_ms is not None and now_ms < self._now_ms:
            now_ms = self._now_ms
        self._now_ms = now_ms
        self._take_in(now_ms)
        if not self._today[0] <= now_ms < self._today[1]:
            self._today, self._today_tallies = self._days.window_of(now_ms), {}
        groups = self._last_seen_ms
        figures: dict[str, dict[Group, dict[str, object]]] = {}
        for window in self._rolling:
            window.move_to(now_ms)
            figures[window.label] = self._figures(window.tallies)
        figures[TODAY] = self._figures(self._today_tallies)
        lines = {(site, line) for site, line, _queue in groups}
        return BoardSnapshot(now_ms, figures, self._queues_now(now_ms), self._agent_counts(),
                             {g: max(0.0, (now_ms - t) / 1000) for g, t in groups.items()},
                             self._callbacks.listed(now_ms, lines), self._totals.snapshot())

    def _take_in(self, now_ms: int) -> None:
        """Records up to T enter the windows, today, the waiting legs and the callback list."""
        incoming, config, waiting, callbacks = self._incoming, self._config, self._waiting, self._callbacks
        # A backlog moves T hours at a time: what T's windows and day have already left behind
        # would only be counted to be taken off again (or thrown away with its day) below.
        rolling = []
        for window in self._rolling:
            window.move_to(now_ms)
            rolling.append((window, now_ms - window._span_ms))
        today_from_ms = self._days.window_of(now_ms)[0]
        while incoming:
            item = incoming[0]
            record: Record
            if isinstance(item, _LineOutcome):
                line_outcome, record = item, item.record
            else:
                line_outcome, record = None, item
            if isinstance(record, Arrival):
                arrival, at_ms = True, record.occurred_ms
            else:
                arrival, at_ms = False, record.closed_ms
            if at_ms > now_ms:
                break
            incoming.popleft()
            for window, since_ms in rolling:
                if at_ms > since_ms or window._held:  # else it would leave again at once
                    window.enter(record, at_ms)
            if at_ms >= today_from_ms or self._today[0] >= today_from_ms:
                if not self._today[0] <= at_ms < self._today[1]:
                    day = self._days.window_of(at_ms)
                    if day[0] > self._today[0]:
                        self._today, self._today_tallies = day, {}
                _count(self._today_tallies, record, config)
            if line_outcome is not None:
                callbacks.line_call_ended(line_outcome)
            elif record.queue != LINE_TOTAL:
                group = (record.site, record.line, record.queue)
                if arrival:
                    waiting.setdefault(group, {})[record.call_id] = at_ms
                else:
                    legs = waiting.get(group)
                    if legs is not None:
                        legs.pop(record.call_id, None)

    def _figures(self, tallies: dict[Group, Tally]) -> dict[Group, dict[str, object]]:
        # Every group ever seen keeps a row (zeros when quiet) so a board shows decay, not a gap.
        line_config, empty = self._config.line, Tally()
        return {g: figures_of(tallies.get(g, empty), line_config(g[1]), presorted=True) for g in self._last_seen_ms}

    def _queues_now(self, now_ms: int) -> dict[Group, QueueNow]:
        """Waiting legs per queue; on a line's total, calls waiting, each since its first offer on
        the line (its line-call's start), so a transfer between queues does not restart it."""
        counts = {group: 0 for group in self._last_seen_ms}
        oldest: dict[Group, int] = {}
        on_line: dict[Group, dict[str, int]] = {}
        calls = self._tracker.calls
        for group, legs in self._waiting.items():
            if not legs:
                continue
            counts[group] = len(legs)
            oldest[group] = next(iter(legs.values()))
            key = (group[0], group[1])
            total = on_line.setdefault((group[0], group[1], LINE_TOTAL), {})
            for call_id in legs:
                call = calls.get(call_id)
                line_call = None if call is None else call.line_calls.get(key)
                if line_call is not None and not line_call.closed:
                    total[call_id] = line_call.first_offered_ms
        for group, first_offers in on_line.items():
            counts[group] = len(first_offers)
            if first_offers:
                oldest[group] = min(first_offers.values())
        return {g: QueueNow(n, max(0.0, (now_ms - oldest[g]) / 1000) if g in oldest else 0.0)
                for g, n in counts.items()}

    def _agent_counts(self) -> dict[tuple[str, str, str, str], int]:
        counts: dict[tuple[str, str, str, str], int] = {}
        for (site, _agent), (line, queue, state) in self._agents.items():
            key = (site, line, queue, state)
            counts[key] = counts.get(key, 0) + 1
        return counts


class _RollingWindow:
    """Tallies of the records with T - span < time <= T: each record is counted as it enters
    and taken off again as it leaves, answer times kept sorted both ways."""

    def __init__(self, span_ms: int, config: FlowConfig) -> None:
        self.label = rolling_label(span_ms // 1000)
        self._span_ms = span_ms
        self._config = config
        self._held: deque[tuple[int, Record]] = deque()
        self.tallies: dict[Group, Tally] = {}

    def enter(self, record: Record, at_ms: int) -> None:
        self._held.append((at_ms, record))
        _count(self.tallies, record, self._config)

    def move_to(self, now_ms: int) -> None:
        held, since_ms = self._held, now_ms - self._span_ms
        while held and held[0][0] <= since_ms:
            _uncount(self.tallies, held.popleft()[1], self._config)


class _Callbacks:
    """Per line, the line-calls abandoned within the callback window, oldest first, less those
    whose caller (by hash) rang the line again afterwards and was answered. Holds only the
    window's abandons."""

    def __init__(self, window_ms: int) -> None:
        self._window_ms = window_ms
        self._abandons: dict[Line, dict[tuple[str, int], Callback]] = {}
        self._of_caller: dict[tuple[str, str, str], list[tuple[str, int]]] = {}

    def line_call_ended(self, ended: _LineOutcome) -> None:
        record, caller = ended.record, ended.caller
        line = (record.site, record.line)
        if record.outcome == "abandoned":
            key = (record.call_id, record.closed_ms)
            self._abandons.setdefault(line, {})[key] = Callback(
                record.call_id, ended.queue, record.closed_ms, record.wait_ms / 1000, caller)
            if caller is not None:
                self._of_caller.setdefault((*line, caller), []).append(key)
        elif caller is not None:  # answered: the abandons before this call's first offer are dealt with
            keys = self._of_caller.get((*line, caller))
            if keys:
                abandons = self._abandons[line]
                for key in [k for k in keys if k[1] < record.offered_ms]:
                    keys.remove(key)
                    abandons.pop(key, None)
                if not keys:
                    del self._of_caller[(*line, caller)]

    def listed(self, now_ms: int, lines: set[Line]) -> dict[Line, tuple[Callback, ...]]:
        since_ms = now_ms - self._window_ms
        for line, abandons in self._abandons.items():
            while abandons:
                key, callback = next(iter(abandons.items()))
                if callback.abandoned_ms > since_ms:
                    break
                del abandons[key]
                if callback.caller is not None:
                    keys = self._of_caller[(*line, callback.caller)]
                    keys.remove(key)
                    if not keys:
                        del self._of_caller[(*line, callback.caller)]
        return {line: tuple(reversed(self._abandons.get(line, {}).values())) for line in lines}


def _count(tallies: dict[Group, Tally], record: Record, config: FlowConfig) -> None:
    group = (record.site, record.line, record.queue)
    tally = tallies.get(group)
    if tally is None:
        tally = tallies[group] = Tally()
    if type(record) is Arrival:
        tally.arrivals += 1
        return
    assert isinstance(record, LegClosed)
    tally.add_outcome(record.outcome, record.wait_ms, config.line(record.line))
    answers = tally.answer_ms
    if record.outcome == "answered" and len(answers) > 1 and answers[-2] > answers[-1]:
        insort(answers, answers.pop())  # kept sorted: figures then sort a sorted list, in linear time


def _uncount(tallies: dict[Group, Tally], record: Record, config: FlowConfig) -> None:
    tally = tallies[(record.site, record.line, record.queue)]
    if type(record) is Arrival:
        tally.arrivals -= 1
        return
    assert isinstance(record, LegClosed)
    # What the record added, taken off again: the same rules, applied once more to an empty tally.
    added = Tally()
    added.add_outcome(record.outcome, record.wait_ms, config.line(record.line))
    for name in _COUNT_FIELDS:
        setattr(tally, name, getattr(tally, name) - getattr(added, name))
    if added.answer_ms:
        answers = tally.answer_ms
        del answers[bisect_left(answers, added.answer_ms[0])]


def side_by_side(snapshots: Iterable[BoardSnapshot], now_ms: int) -> BoardSnapshot:
    """One board of several that show disjoint groups (the sites of different partitions)."""
    board = BoardSnapshot(now_ms, {}, {}, {}, {})
    for snapshot in snapshots:
        for label, by_group in snapshot.figures.items():
            board.figures.setdefault(label, {}).update(by_group)
        board.queues.update(snapshot.queues)
        board.agents.update(snapshot.agents)
        board.data_age_s.update(snapshot.data_age_s)
        board.callbacks.update(snapshot.callbacks)
        board.totals.update(snapshot.totals)
    return board
