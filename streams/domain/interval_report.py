"""Tumbling interval windows per (site, line, queue), emitted as report rows once stream time has
passed their end. Records arrive in event-time order, so a window is final when the stream's
time reaches its end."""

from __future__ import annotations

from typing import Iterator

from .call_legs import Arrival, LegClosed, Record
from .config import FlowConfig, LineConfig
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
        self._earliest_end: int | None = None

    def add(self, records: list[Record]) -> None:
        window_of = self._windows.window_of
        open_windows = self._open
        line_config = self._config.line
        lines: dict[str, LineConfig] = {}
        start = end = 0
        groups: dict[Group, Tally] = {}
        for record in records:
            closed = type(record) is LegClosed
            at_ms = record.closed_ms if closed else record.occurred_ms  # type: ignore[union-attr]
            if not start <= at_ms < end:  # records are mostly in time order: reuse
                window = window_of(at_ms)
                start, end = window
                groups_or_none = open_windows.get(window)
                if groups_or_none is None:
                    groups_or_none = open_windows[window] = {}
                    if self._earliest_end is None or end < self._earliest_end:
                        self._earliest_end = end
                groups = groups_or_none
            group = record[:3]  # (site, line, queue): both kinds of record start with them
            tally = groups.get(group)
            if tally is None:
                tally = groups[group] = Tally()
            if closed:
                line = lines.get(record.line)
                if line is None:
                    line = lines[record.line] = line_config(record.line)
                tally.add_outcome(record.outcome, record.closed_ms - record.offered_ms,  # type: ignore[union-attr]
                                  line)
            else:
                tally.arrivals += 1

    def rows_until(self, now_ms: int) -> list[dict[str, object]]:
        """Rows of every window that ended at or before `now_ms`, removing them."""
        if self._earliest_end is None or now_ms < self._earliest_end:
            return []
        rows: list[dict[str, object]] = []
        for window in sorted(w for w in self._open if w[1] <= now_ms):
            rows.extend(self._rows_of(window, self._open.pop(window)))
        self._earliest_end = min((w[1] for w in self._open), default=None)
        return rows

    def remaining_rows(self) -> list[dict[str, object]]:
        """Rows of the windows still open (end of a finite stream): partial, but nothing is lost."""
        return self.rows_until(max((w[1] for w in self._open), default=0))

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
