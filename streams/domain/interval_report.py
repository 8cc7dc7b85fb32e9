"""Tumbling interval windows per (site, line, queue), emitted as report rows once stream time has
passed their end. Records arrive in event-time order, so a window is final when the stream's
time reaches its end."""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator, NamedTuple

from .call_legs import Arrival, LegClosed, Record
from .config import FlowConfig, LineConfig
from .events import format_ts
from .figures import Figures, Tally, tally_figures
from .windows import IntervalWindows, zone

Group = tuple[str, str, str]


@lru_cache(maxsize=4096)  # every group of a window has a row with the same two bounds
def format_window_bound(instant_ms: int) -> str:
    text = format_ts(instant_ms)
    return text[:-5] + "Z" if text.endswith(".000Z") else text


_new_row = tuple.__new__  # ReportRow without its generated __new__'s Python-level call


class ReportRow(NamedTuple):
    """One row of the interval report: a window, a group and the group's figures in it."""

    window_start: str
    window_end: str
    site: str
    line: str
    queue: str
    figures: Figures

    def as_dict(self) -> dict[str, object]:
        """The row as one flat JSON object, keys in REPORT_FIELDS order."""
        row: dict[str, object] = {"window_start": self.window_start, "window_end": self.window_end,
                                  "site": self.site, "line": self.line, "queue": self.queue}
        row.update(self.figures._asdict())
        return row


class IntervalReport:
    """Accumulates records into open windows; `rows_until(now_ms)` yields the finished ones in
    report order (window_start, site, line, queue)."""

    def __init__(self, size_s: int, config: FlowConfig) -> None:
        self._config = config
        self._windows = IntervalWindows(size_s, zone(config.tz))
        # window (start, end) -> group -> tally
        self._open: dict[tuple[int, int], dict[Group, Tally]] = {}
        self._earliest_end: int | None = None
        self._last_bound: tuple[int | None, str] = (None, "")  # the last bound formatted, and its text

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

    def rows_until(self, now_ms: int) -> list[ReportRow]:
        """Rows of every window that ended at or before `now_ms`, removing them."""
        if self._earliest_end is None or now_ms < self._earliest_end:
            return []
        rows: list[ReportRow] = []
        for window in sorted(w for w in self._open if w[1] <= now_ms):
            rows.extend(self._rows_of(window, self._open.pop(window)))
        self._earliest_end = min((w[1] for w in self._open), default=None)
        return rows

    def remaining_rows(self) -> list[ReportRow]:
        """Rows of the windows still open (end of a finite stream): partial, but nothing is lost."""
        return self.rows_until(max((w[1] for w in self._open), default=0))

    def _rows_of(self, window: tuple[int, int], groups: dict[Group, Tally]) -> Iterator[ReportRow]:
        start, end = self._bound_text(window[0]), self._bound_text(window[1])
        line_config = self._config.line
        for group in sorted(groups):
            tally = groups[group]
            if tally.is_empty:
                continue
            site, line, queue = group
            yield _new_row(ReportRow, (start, end, site, line, queue, tally_figures(tally, line_config(line))))

    def _bound_text(self, instant_ms: int) -> str:
        # A window's end is the next one's start: each bound is formatted once, not twice.
        if instant_ms == self._last_bound[0]:
            return self._last_bound[1]
        text = format_window_bound(instant_ms)
        self._last_bound = (instant_ms, text)
        return text
