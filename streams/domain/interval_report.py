"""Tumbling interval windows per (site, line, queue), emitted as report rows once stream time has
passed their end. Records arrive in event-time order, so a window is final when the stream's
time reaches its end."""

from __future__ import annotations

from typing import Iterator

from .call_legs import Arrival, LegClosed, Record
from .config import FlowConfig
from .events import format_ts
from .figures import Tally, figures_of
from .windows import IntervalWindows, zone

Group = tuple[str, str, str]


def format_window_bound(instant_ms: int) -> str:
    text = format_ts(instant_ms)
    return text[:-5] + "Z" if text.endswith(".000Z") else text


class IntervalReport:
    """Accumulates records into open windows; `rows_until(now_ms)` yields the finished ones in
    report order (window_start, site, line, queue)."""

    def __init__(self, size_s: int, config: FlowConfig) -> None:
        self._config = config
        self._windows = IntervalWindows(size_s, zone(config.tz))
        # window (start, end) -> group -> tally
        self._open: dict[tuple[int, int], dict[Group, Tally]] = {}

    def add(self, records: list[Record]) -> None:
        window_of = self._windows.window_of
        open_windows = self._open
        for record in records:
            if type(record) is LegClosed:
                window = window_of(record.closed_ms)
            else:
                window = window_of(record.occurred_ms)
            groups = open_windows.get(window)
            if groups is None:
                groups = open_windows[window] = {}
            group = (record.site, record.line, record.queue)
            tally = groups.get(group)
            if tally is None:
                tally = groups[group] = Tally()
            if type(record) is Arrival:
                tally.arrivals += 1
            else:
                assert isinstance(record, LegClosed)
                tally.add_outcome(record.outcome, record.closed_ms - record.offered_ms,
                                  self._config.line(record.line))

    def rows_until(self, now_ms: int) -> Iterator[dict[str, object]]:
        """Rows of every window that ended at or before `now_ms`, removing them."""
        finished = sorted(w for w in self._open if w[1] <= now_ms)
        for window in finished:
            yield from self._rows_of(window, self._open.pop(window))

    def remaining_rows(self) -> Iterator[dict[str, object]]:
        """Rows of the windows still open (end of a finite stream): partial, but nothing is lost."""
        for window in sorted(self._open):
            yield from self._rows_of(window, self._open.pop(window))

    def _rows_of(self, window: tuple[int, int], groups: dict[Group, Tally]) -> Iterator[dict[str, object]]:
        start, end = format_window_bound(window[0]), format_window_bound(window[1])
        for group in sorted(groups):
            tally = groups[group]
            if tally.is_empty:
                continue
            site, line, queue = group
            row: dict[str, object] = {"window_start": start, "window_end": end,
                                      "site": site, "line": line, "queue": queue}
            row.update(figures_of(tally, self._config.line(line)))
            yield row
