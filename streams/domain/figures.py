"""The figures of SPEC section 3: a `Tally` accumulates one group's legs for one window, and
`tally_figures` turns it into the reported values (ratios with a zero denominator are None), which
`figures_of` gives as a dict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Final, NamedTuple

from .config import LineConfig


class Figures(NamedTuple):
    """One tally's figures, in the order of the report's columns."""

    arrivals: int
    offered: int
    answered: int
    abandoned: int
    short_abandoned: int
    timed_out: int
    transferred: int
    lost: int
    answered_within_sl: int
    sl_threshold_s: float
    sl_formula: str
    service_level: float | None
    abandonment_rate: float | None
    abandonment_rate_excl_short: float | None
    asa_s: float | None
    answer_p50_s: float | None
    answer_p90_s: float | None
    answer_p95_s: float | None
    answer_max_s: float | None
    abandon_wait_mean_s: float | None
    band_lt10: int
    band_10_60: int
    band_ge60: int


REPORT_FIELDS: Final = ("window_start", "window_end", "site", "line", "queue", *Figures._fields)
_new_tuple: Final = tuple.__new__


@dataclass(slots=True)
class Tally:
    """Counts and samples of one group in one window. Thresholds are applied as legs are added,
    so a tally belongs to one line's configuration."""

    arrivals: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    timed_out: int = 0
    transferred: int = 0
    lost: int = 0
    answered_within_sl: int = 0
    abandoned_within_sl: int = 0
    abandon_wait_ms_total: int = 0
    band_lt10: int = 0
    band_10_60: int = 0
    band_ge60: int = 0
    answer_ms: list[int] = field(default_factory=list)

    @property
    def offered(self) -> int:
        return self.answered + self.abandoned + self.timed_out

    @property
    def is_empty(self) -> bool:
        return not (self.arrivals or self.offered or self.transferred or self.lost)

    def add_outcome(self, outcome: str, wait_ms: int, line: LineConfig) -> None:
        if outcome == "answered":
            self.answered += 1
            self.answer_ms.append(wait_ms)
            if wait_ms < line.sl_threshold_s * 1000:
                self.answered_within_sl += 1
            if wait_ms < 10_000:
                self.band_lt10 += 1
            elif wait_ms < 60_000:
                self.band_10_60 += 1
            else:
                self.band_ge60 += 1
        elif outcome == "abandoned":
            self.abandoned += 1
            self.abandon_wait_ms_total += wait_ms
            if wait_ms < line.short_abandon_s * 1000:
                self.short_abandoned += 1
            if wait_ms < line.sl_threshold_s * 1000:
                self.abandoned_within_sl += 1
        elif outcome == "timed_out":
            self.timed_out += 1
        elif outcome == "transferred":
            self.transferred += 1
        else:
            self.lost += 1

    def merge(self, other: Tally) -> None:
        for name in _COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.answer_ms.extend(other.answer_ms)


_COUNT_FIELDS: Final = tuple(f.name for f in fields(Tally) if f.name != "answer_ms")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None


def _seconds(ms: float) -> float:
    return round(ms / 1000, 3)


def nearest_rank(sorted_values: list[int], percent: float) -> int:
    """Nearest-rank percentile: the smallest value with at least `percent` % of values at or below."""
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def service_level(tally: Tally, line: LineConfig) -> float | None:
    if line.sl_formula == "answered":
        return _ratio(tally.answered_within_sl, tally.answered)
    if line.sl_formula == "offered":
        return _ratio(tally.answered_within_sl, tally.offered - tally.short_abandoned)
    return _ratio(tally.answered_within_sl + tally.abandoned_within_sl, tally.offered)


def tally_figures(tally: Tally, line: LineConfig, presorted: bool = False) -> Figures:
    """Every figure of the interval report except the window and group columns. `presorted`: the
    tally's answer times are in ascending order already (the live board keeps them so)."""
    answered, abandoned, short_abandoned = tally.answered, tally.abandoned, tally.short_abandoned
    offered = tally.offered
    if tally.answer_ms:
        answers = tally.answer_ms if presorted else sorted(tally.answer_ms)
        # Answer times are whole milliseconds, and round(ms / 1000, 3) of a whole number of
        # milliseconds is ms / 1000 itself (the nearest double to a 3-decimal value), so _seconds
        # is left out where it could only cost time.
        asa_s: float | None = _seconds(sum(answers) / len(answers))
        p50_s: float | None = nearest_rank(answers, 50) / 1000
        p90_s: float | None = nearest_rank(answers, 90) / 1000
        p95_s: float | None = nearest_rank(answers, 95) / 1000
        max_s: float | None = answers[-1] / 1000
    else:
        asa_s = p50_s = p90_s = p95_s = max_s = None
    # tuple.__new__ is what Figures._make does, without the generated __new__'s 23-argument call.
    return _new_tuple(Figures, (
        tally.arrivals, offered, answered, abandoned, short_abandoned, tally.timed_out,
        tally.transferred, tally.lost, tally.answered_within_sl,
        float(line.sl_threshold_s),  # 10.0 in JSON even when configured as 10
        line.sl_formula,
        service_level(tally, line),
        _ratio(abandoned, offered),
        _ratio(abandoned - short_abandoned, offered - short_abandoned),
        asa_s, p50_s, p90_s, p95_s, max_s,
        _seconds(tally.abandon_wait_ms_total / abandoned) if abandoned else None,
        tally.band_lt10, tally.band_10_60, tally.band_ge60,
    ))


def figures_of(tally: Tally, line: LineConfig, presorted: bool = False) -> dict[str, object]:
    """`tally_figures` as a dict (keys in report column order)."""
    return tally_figures(tally, line, presorted)._asdict()
