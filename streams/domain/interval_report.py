"""Tumbling interval windows per (site, line, queue), emitted as report rows once stream time has
passed their end. Records arrive in event-time order, so a window is final when the stream's
time reaches its end."""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache
from typing import Any, Final, Iterator, NamedTuple

from .call_legs import LOST, LegClosed, Record
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


# What a window keeps of a group until its row is due: [arrivals, answer times, abandon waits,
# timed out, transferred, lost]. Appending a wait is all a closed leg costs; the counts a Tally
# holds (thresholds, bands) are taken from the sorted waits when the row is made (`_tally_of`).
_ARRIVALS, _ANSWERS, _ABANDONS = 0, 1, 2
_COUNTED_AT: Final = {"timed_out": 3, "transferred": 4, LOST: 5}
Outcomes = list[Any]


def _tally_of(outcomes: Outcomes, line: LineConfig) -> Tally:
    """The Tally that `Tally.add_outcome` would have made of the same legs."""
    arrivals, answers, abandons, timed_out, transferred, lost = outcomes
    answers.sort()
    abandons.sort()
    sl_ms, short_ms = line.sl_threshold_s * 1000, line.short_abandon_s * 1000
    under_10, under_60 = bisect_left(answers, 10_000), bisect_left(answers, 60_000)
    return Tally(arrivals, len(answers), len(abandons), bisect_left(abandons, short_ms), timed_out, transferred,
                 lost, bisect_left(answers, sl_ms), bisect_left(abandons, sl_ms), sum(abandons), under_10,
                 under_60 - under_10, len(answers) - under_60, answers)


class IntervalReport:
    """Accumulates records into open windows; `rows_until(now_ms)` yields the finished ones in
    report order (window_start, site, line, queue)."""

    def __init__(self, size_s: int, config: FlowConfig) -> None:
        self._config = config
        self._windows = IntervalWindows(size_s, zone(config.tz))
        # window (start, end) -> group -> outcomes
        self._open: dict[tuple[int, int], dict[Group, Outcomes]] = {}
        self._earliest_end: int | None = None
        self._last_bound: tuple[int | None, str] = (None, "")  # the last bound formatted, and its text

    def add(self, records: list[Record]) -> None:
        window_of = self._windows.window_of
        open_windows = self._open
        counted_at = _COUNTED_AT
        start = end = 0
        groups: dict[Group, Outcomes] = {}
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
            outcomes = groups.get(group)
            if outcomes is None:
                outcomes = groups[group] = [0, [], [], 0, 0, 0]
            if closed:
                outcome = record.outcome  # type: ignore[union-attr]
                if outcome == "answered":
                    outcomes[_ANSWERS].append(at_ms - record.offered_ms)  # type: ignore[union-attr]
                elif outcome == "abandoned":
                    outcomes[_ABANDONS].append(at_ms - record.offered_ms)  # type: ignore[union-attr]
                else:
                    outcomes[counted_at[outcome]] += 1
            else:
                outcomes[_ARRIVALS] += 1

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

    def _rows_of(self, window: tuple[int, int], groups: dict[Group, Outcomes]) -> Iterator[ReportRow]:
        start, end = self._bound_text(window[0]), self._bound_text(window[1])
        line_config = self._config.line
        for group in sorted(groups):
            site, line, queue = group
            rules = line_config(line)
            tally = _tally_of(groups[group], rules)
            if tally.is_empty:
                continue
            yield _new_row(ReportRow, (start, end, site, line, queue, tally_figures(tally, rules, presorted=True)))

    def _bound_text(self, instant_ms: int) -> str:
        # A window's end is the next one's start: each bound is formatted once, not twice.
        if instant_ms == self._last_bound[0]:
            return self._last_bound[1]
        text = format_window_bound(instant_ms)
        self._last_bound = (instant_ms, text)
        return text
