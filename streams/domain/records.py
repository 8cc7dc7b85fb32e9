"""Figures computed in parts and merged. Each source partition of a distributed pipeline tallies its
own records per window and group (`WindowTallies`); whoever holds every part of a window merges them
into the report row (`report_row`), the very row one IntervalReport over all the records gives:
counts add up, and the answer times are kept whole, so percentiles stay exact.

A part is a function of the records alone, so a part computed again after a restart is identical to
the first: merging is idempotent when parts are keyed by (window, group, source)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .call_legs import LegClosed, Record
from .config import FlowConfig
from .figures import Tally, figures_of
from .interval_report import format_window_bound
from .state import Json, restore_tally, tally_state
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
               config: FlowConfig) -> dict[str, object] | None:
    """The interval-report row of a group and window from its parts; None when they are empty
    (such windows are omitted from the report)."""
    merged = Tally()
    for tally in tallies:
        merged.merge(tally)
    if merged.is_empty:
        return None
    site, line, queue = group
    row: dict[str, object] = {"window_start": format_window_bound(start_ms),
                              "window_end": format_window_bound(end_ms),
                              "site": site, "line": line, "queue": queue}
    row.update(figures_of(merged, config.line(line)))
    return row
