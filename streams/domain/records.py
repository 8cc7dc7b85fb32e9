"""Figures computed in parts and merged. Each source partition of a distributed pipeline tallies its
own records per window and group (`WindowTallies`); whoever holds every part of a window merges them
into the report row (`report_row`), the very row one IntervalReport over all the records gives:
counts add up, and the answer times are kept whole, so percentiles stay exact.

A part is a function of the records alone, so a part computed again after a restart is identical to
the first: merging is idempotent when parts are keyed by (window, group, source)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .call_legs import LINE_TOTAL, LegClosed, Record
from .config import FlowConfig
from .events import AGENT_STATE, CallEvent
from .figures import Tally, figures_of, tally_figures
from .interval_report import ReportRow, format_window_bound
from .live import TODAY, BoardSnapshot, QueueNow, rolling_label
from .state import Json, restore_tally, tally_state
from .totals import GroupTotals, RunningTotals, added, at_least, restore_totals, totals_state
from .windows import IntervalWindows, zone

Group = tuple[str, str, str]
Window = tuple[int, int]


@dataclass(frozen=True, slots=True)
class WindowPart:
    """One source's tally of one group in one window [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    group: Group
    tally: Tally


class WindowTallies:
    """Tumbling-window tallies of one source, taken out as parts once the source's stream time has
    passed a window's end (records arrive in event-time order, as from a CallTracker)."""

    def __init__(self, size_s: int, config: FlowConfig) -> None:
        self._config = config
        self._windows = IntervalWindows(size_s, zone(config.tz))
        self._open: dict[Window, dict[Group, Tally]] = {}

    def window_of(self, instant_ms: int) -> Window:
        return self._windows.window_of(instant_ms)

    def add(self, records: Iterable[Record]) -> None:
        window_of = self._windows.window_of
        line_config = self._config.line
        window: Window = (0, 0)
        groups: dict[Group, Tally] = {}
        for record in records:
            closed = type(record) is LegClosed
            at_ms = record.closed_ms if closed else record.occurred_ms  # type: ignore[union-attr]
            if not window[0] <= at_ms < window[1]:
                window = window_of(at_ms)
                groups = self._open.setdefault(window, {})
            group = (record.site, record.line, record.queue)
            tally = groups.get(group)
            if tally is None:
                tally = groups[group] = Tally()
            if closed:
                tally.add_outcome(record.outcome, record.closed_ms - record.offered_ms,  # type: ignore[union-attr]
                                  line_config(record.line))
            else:
                tally.arrivals += 1

    def take_until(self, now_ms: int | None) -> list[WindowPart]:
        """Parts of every window that ended at or before `now_ms` (all when None), in window and
        group order, removing them."""
        parts: list[WindowPart] = []
        for window in sorted(w for w in self._open if now_ms is None or w[1] <= now_ms):
            groups = self._open.pop(window)
            parts.extend(WindowPart(window[0], window[1], group, groups[group]) for group in sorted(groups)
                         if not groups[group].is_empty)
        return parts

    @property
    def open_windows(self) -> int:
        return len(self._open)

    def state(self) -> list[Json]:
        return [[start, end, [[*group, tally_state(tally)] for group, tally in groups.items()]]
                for (start, end), groups in self._open.items()]

    def restore(self, state: list[Json]) -> None:
        self._open = {(int(start), int(end)): {(site, line, queue): restore_tally(tally)
                                               for site, line, queue, tally in groups}
                      for start, end, groups in state}


def report_row(start_ms: int, end_ms: int, group: Group, tallies: Iterable[Tally],
               config: FlowConfig) -> ReportRow | None:
    """The interval-report row of a group and window from its parts; None when they are empty
    (such windows are omitted from the report)."""
    merged = Tally()
    for tally in tallies:
        merged.merge(tally)
    if merged.is_empty:
        return None
    site, line, queue = group
    return ReportRow(format_window_bound(start_ms), format_window_bound(end_ms), site, line, queue,
                     tally_figures(merged, config.line(line)))


# --- the live board in parts -----------------------------------------------------------------

BUCKET_MS = 10_000  # rolling windows are summed from buckets this long (SPEC: 10 s or finer)
DAY_EVERY_MS = 5_000  # a source's "today" tally goes out at most this often


@dataclass(frozen=True, slots=True)
class GroupNow:
    """What one source knows of one group now. Tallies replace the ones sent before for the same
    bucket or day (a source always sends them whole), so sending them again changes nothing."""

    group: Group
    buckets: tuple[tuple[int, Tally], ...]  # (bucket start, tally): changed buckets, or all
    day: tuple[int, Tally] | None  # (local day start, tally) of the source's current day
    waiting: int
    oldest_offered_ms: int | None  # offer time of the oldest leg still waiting
    last_seen_ms: int | None  # time of the group's newest event
    agents: tuple[tuple[str, int], ...]  # (state, agents in it), for agents of this queue
    totals: GroupTotals | None = None  # the source's counts since it started, when they changed


def group_now_state(update: GroupNow) -> list[Json]:
    return [list(update.group), [[start, tally_state(tally)] for start, tally in update.buckets],
            None if update.day is None else [update.day[0], tally_state(update.day[1])],
            update.waiting, update.oldest_offered_ms, update.last_seen_ms,
            [list(item) for item in update.agents],
            None if update.totals is None else totals_state(update.totals)]


def restore_group_now(values: list[Json]) -> GroupNow:
    group, buckets, day, waiting, oldest, seen, agents, *rest = values  # totals: not in older messages
    totals = rest[0] if rest else None
    return GroupNow((group[0], group[1], group[2]),
                    tuple((int(start), restore_tally(tally)) for start, tally in buckets),
                    None if day is None else (int(day[0]), restore_tally(day[1])),
                    int(waiting), oldest, seen, tuple((str(state), int(n)) for state, n in agents),
                    None if totals is None else restore_totals(totals))


class LiveTallies:
    """One source's part of the wallboard: its records tallied per group in short buckets (for the
    rolling windows) and per local day (for today), the events it saw (data age, agents), and the
    legs waiting now, followed from the records themselves (an arrival opens a leg, its LegClosed
    closes it; a line's total counts its queues' waiting legs, as the LiveBoard does), so asking
    costs nothing however many calls the tracker remembers. `updates` says what changed since it
    was last asked."""

    def __init__(self, config: FlowConfig, bucket_ms: int = BUCKET_MS) -> None:
        self._config = config
        self._bucket_ms = bucket_ms
        self._horizon_ms = max(config.rolling_windows_s) * 1000 + bucket_ms
        self._days = IntervalWindows(86_400, zone(config.tz))
        self._buckets: dict[Group, dict[int, Tally]] = {}
        self._days_now: dict[Group, tuple[int, Tally]] = {}
        self._seen: dict[Group, int] = {}
        self._agents: dict[tuple[str, str], tuple[str, str, str]] = {}  # (site, agent) -> (line, queue, state)
        self._changed_buckets: set[tuple[Group, int]] = set()
        self._changed_days: set[Group] = set()
        self._day_sent_ms: dict[Group, int] = {}  # when each group's day tally was last sent
        # group -> offer time -> legs offered then and still waiting
        self._waiting: dict[Group, dict[int, int]] = {}
        self._totals = RunningTotals(config)
        self._totals_due: set[Group] = set()  # groups whose totals changed since last sent
        # What was last said of each group's waiting legs, newest event and agents (not saved:
        # after a restore everything is said again).
        self._sent: dict[Group, tuple[int, int | None, int | None, tuple[tuple[str, int], ...]]] = {}

    def observe(self, event: CallEvent) -> None:
        self.observe_all((event,))

    def observe_all(self, events: Iterable[CallEvent]) -> None:
        """Note each event's time as its group's newest, and agents' states (events in the order a
        tracker applies them, so each is its group's newest so far)."""
        seen, agents = self._seen, self._agents
        for event in events:
            if event.type == AGENT_STATE:
                assert event.agent is not None and event.state is not None
                agents[(event.site, event.agent)] = (event.line, event.queue, event.state)
            else:
                site, line, occurred_ms = event.site, event.line, event.occurred_ms
                seen[(site, line, event.queue)] = occurred_ms
                seen[(site, line, LINE_TOTAL)] = occurred_ms

    def add(self, records: Sequence[Record]) -> None:
        self._totals.add(records)
        line_config = self._config.line
        bucket_ms = self._bucket_ms
        window_of = self._days.window_of
        all_buckets, days_now, waiting = self._buckets, self._days_now, self._waiting
        changed_buckets, changed_days, totals_due = self._changed_buckets, self._changed_days, self._totals_due
        day_start = day_end = 0
        for record in records:
            closed = type(record) is LegClosed
            at_ms = record.closed_ms if closed else record.occurred_ms  # type: ignore[union-attr]
            if not day_start <= at_ms < day_end:
                day_start, day_end = window_of(at_ms)
            group = (record.site, record.line, record.queue)
            start = at_ms - at_ms % bucket_ms
            buckets = all_buckets.get(group)
            if buckets is None:
                buckets = all_buckets[group] = {}
            bucket = buckets.get(start)
            if bucket is None:
                bucket = buckets[start] = Tally()
            day = days_now.get(group)
            if day is None or day[0] < day_start:
                day = days_now[group] = (day_start, Tally())
            today = day[1] if day[0] == day_start else None  # None: a record of a day already past
            if closed:
                outcome, wait_ms = record.outcome, record.closed_ms - record.offered_ms  # type: ignore[union-attr]
                rules = line_config(record.line)
                bucket.add_outcome(outcome, wait_ms, rules)
                if today is not None:
                    today.add_outcome(outcome, wait_ms, rules)
            else:
                bucket.arrivals += 1
                if today is not None:
                    today.arrivals += 1
            changed_buckets.add((group, start))
            changed_days.add(group)
            totals_due.add(group)
            if record.queue != LINE_TOTAL:
                # A queue's record opens or closes a leg there and in its line's total.
                offered_ms = record.offered_ms if closed else at_ms  # type: ignore[union-attr]
                for held in (group, (record.site, record.line, LINE_TOTAL)):
                    offers = waiting.get(held)
                    if offers is None:
                        offers = waiting[held] = {}
                    if closed:
                        left = offers.get(offered_ms, 0) - 1
                        if left > 0:
                            offers[offered_ms] = left
                        else:
                            offers.pop(offered_ms, None)
                    else:
                        offers[offered_ms] = offers.get(offered_ms, 0) + 1

    def updates(self, now_ms: int, full: bool = False) -> list[GroupNow]:
        """The groups with news since the last call (every group when `full`): the buckets and day
        that changed (every one when `full`), waiting legs, newest event and agents now. Buckets that
        fell out of the longest rolling window are dropped first."""
        horizon = now_ms - self._horizon_ms
        for buckets in self._buckets.values():
            for start in [s for s in buckets if s + self._bucket_ms <= horizon]:
                del buckets[start]
        waiting = {group: sum(offers.values()) for group, offers in self._waiting.items() if offers}
        oldest = {group: min(offers) for group, offers in self._waiting.items() if offers}
        agents: dict[Group, list[tuple[str, int]]] = {}
        counts: dict[tuple[str, str, str, str], int] = {}
        for (site, _agent), (line, queue, state) in self._agents.items():
            counts[(site, line, queue, state)] = counts.get((site, line, queue, state), 0) + 1
        for (site, line, queue, state), count in sorted(counts.items()):
            agents.setdefault((site, line, queue), []).append((state, count))
        groups = set(self._seen) | set(self._buckets) | set(waiting) | set(agents) | set(self._sent)
        out: list[GroupNow] = []
        for group in sorted(groups):
            buckets = self._buckets.get(group, {})
            changed = tuple((start, buckets[start]) for start in sorted(buckets)
                            if full or (group, start) in self._changed_buckets)
            # A day tally holds every answer time of the day: sent whole, so not at every change.
            day_due = full or (group in self._changed_days
                               and now_ms - self._day_sent_ms.get(group, -DAY_EVERY_MS) >= DAY_EVERY_MS)
            day = self._days_now.get(group) if day_due else None
            if day is not None:
                self._day_sent_ms[group] = now_ms
                self._changed_days.discard(group)
            summary = (waiting.get(group, 0), oldest.get(group), self._seen.get(group), tuple(agents.get(group, ())))
            totals_due = full or group in self._totals_due
            if full or changed or day is not None or totals_due or self._sent.get(group) != summary:
                out.append(GroupNow(group, changed, day, *summary, self._totals.of(group) if totals_due else None))
                self._totals_due.discard(group)
                self._sent[group] = summary
        self._changed_buckets.clear()
        return out

    def state(self) -> dict[str, Json]:
        return {
            "buckets": [[*group, [[start, tally_state(t)] for start, t in buckets.items()]]
                        for group, buckets in self._buckets.items()],
            "days": [[*group, start, tally_state(t)] for group, (start, t) in self._days_now.items()],
            "seen": [[*group, at] for group, at in self._seen.items()],
            "agents": [[site, agent, *value] for (site, agent), value in self._agents.items()],
            "waiting": [[*group, list(offers.items())] for group, offers in self._waiting.items() if offers],
            "totals": self._totals.state(),
        }

    def restore(self, state: dict[str, Json]) -> None:
        self._buckets = {(s, l, q): {int(start): restore_tally(t) for start, t in buckets}
                         for s, l, q, buckets in state["buckets"]}
        self._days_now = {(s, l, q): (int(start), restore_tally(t)) for s, l, q, start, t in state["days"]}
        self._seen = {(s, l, q): int(at) for s, l, q, at in state["seen"]}
        self._agents = {(site, agent): (line, queue, st) for site, agent, line, queue, st in state["agents"]}
        self._waiting = {(s, l, q): {int(at): int(n) for at, n in offers} for s, l, q, offers in state["waiting"]}
        if "totals" in state:  # not in a checkpoint from before the totals: they count from here
            self._totals.restore(state["totals"])


@dataclass(slots=True)
class _SourceGroup:
    day: tuple[int, Tally] | None = None
    waiting: int = 0
    oldest_offered_ms: int | None = None
    last_seen_ms: int | None = None
    agents: tuple[tuple[str, int], ...] = ()
    totals: GroupTotals | None = None


class LiveMerge:
    """The wallboard of the groups one aggregator holds, from every source's GroupNow: rolling
    windows summed from buckets (a bucket counts when it overlaps the window, so a window reaches
    back at most one bucket further), today from the sources' day tallies, waiting legs and agents
    added up, the longest wait from the oldest waiting leg of any source, and the counts since the
    start (streams/domain/totals.py) added up, each source's never falling back."""

    def __init__(self, config: FlowConfig, bucket_ms: int = BUCKET_MS) -> None:
        self._config = config
        self._bucket_ms = bucket_ms
        self._horizon_ms = max(config.rolling_windows_s) * 1000 + bucket_ms
        self._days = IntervalWindows(86_400, zone(config.tz))
        self._sources: dict[Group, dict[int, _SourceGroup]] = {}
        # group -> bucket start -> source -> tally, and the merged tally of each bucket
        self._parts: dict[Group, dict[int, dict[int, Tally]]] = {}
        self._merged: dict[Group, dict[int, Tally]] = {}

    def update(self, source: int, update: GroupNow) -> None:
        group = update.group
        parts = self._parts.setdefault(group, {})
        merged = self._merged.setdefault(group, {})
        for start, tally in update.buckets:
            by_source = parts.setdefault(start, {})
            by_source[source] = tally
            total = Tally()
            for part in by_source.values():
                total.merge(part)
            merged[start] = total
        held = self._sources.setdefault(group, {}).setdefault(source, _SourceGroup())
        if update.day is not None:
            held.day = update.day
        held.waiting = update.waiting
        held.oldest_offered_ms = update.oldest_offered_ms
        if update.last_seen_ms is not None:
            held.last_seen_ms = update.last_seen_ms
        held.agents = update.agents
        if update.totals is not None:
            held.totals = update.totals if held.totals is None else at_least(held.totals, update.totals)

    def forget(self, keep: Callable[[Group], bool]) -> None:
        """Drop the groups this aggregator no longer holds."""
        for table in (self._sources, self._parts, self._merged):
            for group in [g for g in table if not keep(g)]:
                del table[group]

    def groups(self) -> list[Group]:
        return sorted(self._sources)

    def snapshot(self, now_ms: int) -> BoardSnapshot:
        horizon = now_ms - self._horizon_ms
        for group, merged in self._merged.items():
            for start in [s for s in merged if s + self._bucket_ms <= horizon]:
                del merged[start]
                del self._parts[group][start]
        today = self._days.window_of(now_ms)[0]
        figures: dict[str, dict[Group, dict[str, object]]] = {
            rolling_label(w): {} for w in self._config.rolling_windows_s}
        figures[TODAY] = {}
        queues: dict[Group, QueueNow] = {}
        agents: dict[tuple[str, str, str, str], int] = {}
        data_age: dict[Group, float] = {}
        totals: dict[Group, GroupTotals] = {}
        for group, by_source in sorted(self._sources.items()):
            line = self._config.line(group[1])
            merged = self._merged.get(group, {})
            for window_s in self._config.rolling_windows_s:
                since = now_ms - window_s * 1000
                total = Tally()
                for start, tally in merged.items():
                    if start + self._bucket_ms > since and start <= now_ms:
                        total.merge(tally)
                figures[rolling_label(window_s)][group] = figures_of(total, line)
            day_total = Tally()
            waiting = 0
            oldest: int | None = None
            seen: int | None = None
            for held in by_source.values():
                if held.day is not None and held.day[0] == today:
                    day_total.merge(held.day[1])
                waiting += held.waiting
                if held.oldest_offered_ms is not None and (oldest is None or held.oldest_offered_ms < oldest):
                    oldest = held.oldest_offered_ms
                if held.last_seen_ms is not None and (seen is None or held.last_seen_ms > seen):
                    seen = held.last_seen_ms
                for state, count in held.agents:
                    key = (*group, state)
                    agents[key] = agents.get(key, 0) + count
                if held.totals is not None:
                    totals[group] = held.totals if group not in totals else added(totals[group], held.totals)
            if seen is None and not merged and not waiting:
                for window in figures.values():  # a group of agents only: no calls, no figures
                    window.pop(group, None)
                continue
            figures[TODAY][group] = figures_of(day_total, line)
            queues[group] = QueueNow(waiting, max(0.0, (now_ms - oldest) / 1000) if oldest is not None else 0.0)
            if seen is not None:
                data_age[group] = max(0.0, (now_ms - seen) / 1000)
        return BoardSnapshot(now_ms, figures, queues, agents, data_age, totals=totals)
