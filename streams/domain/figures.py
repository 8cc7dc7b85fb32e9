"""The figures of SPEC section 3: a `Tally` accumulates one group's legs for one window, and
`figures_of` turns it into the reported values (ratios with a zero denominator are None)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Final

from .config import LineConfig

REPORT_FIELDS: Final = (
    "window_start", "window_end", "site", "line", "queue", "arrivals", "offered", "answered",
    "abandoned", "short_abandoned", "timed_out", "transferred", "lost", "answered_within_sl",
    "sl_threshold_s", "sl_formula", "service_level", "abandonment_rate",
    "abandonment_rate_excl_short", "asa_s", "answer_p50_s", "answer_p90_s", "answer_p95_s",
    "answer_max_s", "abandon_wait_mean_s", "band_lt10", "band_10_60", "band_ge60",
)


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


def figures_of(tally: Tally, line: LineConfig) -> dict[str, object]:
    """Every figure of the interval report except the window and group columns."""
    answers = sorted(tally.answer_ms)
    offered = tally.offered
    counted = offered - tally.short_abandoned
    return {
        "arrivals": tally.arrivals,
        "offered": offered,
        "answered": tally.answered,
        "abandoned": tally.abandoned,
        "short_abandoned": tally.short_abandoned,
        "timed_out": tally.timed_out,
        "transferred": tally.transferred,
        "lost": tally.lost,
        "answered_within_sl": tally.answered_within_sl,
        "sl_threshold_s": float(line.sl_threshold_s),  # 10.0 in JSON even when configured as 10
        "sl_formula": line.sl_formula,
        "service_level": service_level(tally, line),
        "abandonment_rate": _ratio(tally.abandoned, offered),
        "abandonment_rate_excl_short": _ratio(tally.abandoned - tally.short_abandoned, counted),
        "asa_s": _seconds(sum(answers) / len(answers)) if answers else None,
        "answer_p50_s": _seconds(nearest_rank(answers, 50)) if answers else None,
        "answer_p90_s": _seconds(nearest_rank(answers, 90)) if answers else None,
        "answer_p95_s": _seconds(nearest_rank(answers, 95)) if answers else None,
        "answer_max_s": _seconds(answers[-1]) if answers else None,
        "abandon_wait_mean_s": (_seconds(tally.abandon_wait_ms_total / tally.abandoned)
                                if tally.abandoned else None),
        "band_lt10": tally.band_lt10,
        "band_10_60": tally.band_10_60,
        "band_ge60": tally.band_ge60,
    }
