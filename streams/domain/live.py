"""What a wallboard shows now: rolling-window and today's figures, calls waiting, the longest wait,
agents by state and the age of each group's data. Evaluated at a stream time passed in, so figures
decay as time moves on without traffic."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Iterable

from .call_legs import LINE_TOTAL, Arrival, CallTracker, LegClosed, Record
from .config import FlowConfig
from .events import AGENT_STATE, CallEvent
from .figures import Tally, figures_of
from .windows import IntervalWindows, zone

Group = tuple[str, str, str]
TODAY: Final = "today"


def rolling_label(window_s: int) -> str:
    return f"{window_s // 60}m" if window_s % 60 == 0 else f"{window_s}s"


@dataclass(frozen=True, slots=True)
class QueueNow:
    waiting: int
    longest_wait_s: float


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    now_ms: int
    # window label ("15m", "60m", "today") -> group -> figures (as in the interval report)
    figures: dict[str, dict[Group, dict[str, object]]]
    queues: dict[Group, QueueNow]
    # (site, line, queue, state) -> number of agents; agents not tied to a queue use line/queue ""
    agents: dict[tuple[str, str, str, str], int]
    data_age_s: dict[Group, float]


class LiveBoard:
    def __init__(self, config: FlowConfig) -> None:
        self._config = config
        self._horizon_ms = max(config.rolling_windows_s) * 1000
        self._recent: deque[Record] = deque()  # records within the longest rolling window
        self._days = IntervalWindows(86_400, zone(config.tz))
        self._today: tuple[int, int] = (0, 0)
        self._today_tallies: dict[Group, Tally] = {}
        self._agents: dict[tuple[str, str], tuple[str, str, str]] = {}  # (site, agent) -> (line, queue, state)
        self._last_seen_ms: dict[Group, int] = {}

    def observe(self, event: CallEvent) -> None:
        if event.type == AGENT_STATE:
            assert event.agent is not None and event.state is not None
            self._agents[(event.site, event.agent)] = (event.line, event.queue, event.state)
            return
        occurred_ms = event.occurred_ms
        seen = self._last_seen_ms
        for key in ((event.site, event.line, event.queue), (event.site, event.line, LINE_TOTAL)):
            if occurred_ms > seen.get(key, -1):
                seen[key] = occurred_ms

    def add(self, records: Iterable[Record]) -> None:
        recent = self._recent
        for record in records:
            recent.append(record)
            at_ms = _at(record)
            if not self._today[0] <= at_ms < self._today[1]:
                day = self._days.window_of(at_ms)
                if day[0] > self._today[0]:  # records come in time order: only ever a new day
                    self._today, self._today_tallies = day, {}
            _count(self._today_tallies, record, self._config)

    def snapshot(self, now_ms: int, tracker: CallTracker) -> BoardSnapshot:
        recent = self._recent
        while recent and _at(recent[0]) <= now_ms - self._horizon_ms:
            recent.popleft()
        figures: dict[str, dict[Group, dict[str, object]]] = {}
        for window_s in self._config.rolling_windows_s:
            since_ms = now_ms - window_s * 1000
            tallies: dict[Group, Tally] = {}
            for record in recent:
                if _at(record) > since_ms:
                    _count(tallies, record, self._config)
            figures[rolling_label(window_s)] = self._figures(tallies)
        if not self._today[0] <= now_ms < self._today[1]:
            self._today, self._today_tallies = self._days.window_of(now_ms), {}
        figures[TODAY] = self._figures(self._today_tallies)
        # Every group ever seen keeps a row (zeros when quiet) so a board shows decay, not a gap.
        for by_group in figures.values():
            for group in self._last_seen_ms:
                if group not in by_group:
                    by_group[group] = figures_of(Tally(), self._config.line(group[1]))
        return BoardSnapshot(now_ms, figures, self._queues_now(now_ms, tracker), self._agent_counts(),
                             {g: max(0.0, (now_ms - t) / 1000) for g, t in self._last_seen_ms.items()})

    def _figures(self, tallies: dict[Group, Tally]) -> dict[Group, dict[str, object]]:
        return {g: figures_of(t, self._config.line(g[1])) for g, t in tallies.items()}

    def _queues_now(self, now_ms: int, tracker: CallTracker) -> dict[Group, QueueNow]:
        oldest: dict[Group, int] = {}
        counts: dict[Group, int] = {}
        for group in self._last_seen_ms:
            counts[group] = 0
        for call in tracker.calls.values():
            for leg in call.legs:
                if leg.outcome is not None:
                    continue
                for group in ((leg.site, leg.line, leg.queue), (leg.site, leg.line, LINE_TOTAL)):
                    counts[group] = counts.get(group, 0) + 1
                    if leg.offered_ms < oldest.get(group, now_ms + 1):
                        oldest[group] = leg.offered_ms
        return {g: QueueNow(n, max(0.0, (now_ms - oldest[g]) / 1000) if g in oldest else 0.0)
                for g, n in counts.items()}

    def _agent_counts(self) -> dict[tuple[str, str, str, str], int]:
        counts: dict[tuple[str, str, str, str], int] = {}
        for (site, _agent), (line, queue, state) in self._agents.items():
            key = (site, line, queue, state)
            counts[key] = counts.get(key, 0) + 1
        return counts


def _count(tallies: dict[Group, Tally], record: Record, config: FlowConfig) -> None:
    group = (record.site, record.line, record.queue)
    tally = tallies.get(group)
    if tally is None:
        tally = tallies[group] = Tally()
    if type(record) is Arrival:
        tally.arrivals += 1
    else:
        assert isinstance(record, LegClosed)
        tally.add_outcome(record.outcome, record.wait_ms, config.line(record.line))


def _at(record: Record) -> int:
    return record.closed_ms if type(record) is LegClosed else record.occurred_ms  # type: ignore[union-attr]


def side_by_side(snapshots: Iterable[BoardSnapshot], now_ms: int) -> BoardSnapshot:
    """One board of several that show disjoint groups (the sites of different partitions)."""
    figures: dict[str, dict[Group, dict[str, object]]] = {}
    queues: dict[Group, QueueNow] = {}
    agents: dict[tuple[str, str, str, str], int] = {}
    ages: dict[Group, float] = {}
    for snapshot in snapshots:
        for label, by_group in snapshot.figures.items():
            figures.setdefault(label, {}).update(by_group)
        queues.update(snapshot.queues)
        agents.update(snapshot.agents)
        ages.update(snapshot.data_age_s)
    return BoardSnapshot(now_ms, figures, queues, agents, ages)
