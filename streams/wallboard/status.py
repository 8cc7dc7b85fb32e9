"""Green, amber or red for each figure of the board, against the line's own targets and limits (the
settings the alert rules compare with: FlowConfig.line()), with hysteresis so a figure hovering at
a boundary does not flicker. Pure: the previous colour is passed in and the new one returned.

- Red is exactly the alert rules' condition, without their duration and volume: service level
  under its target, abandonment over its target, calls waiting or longest wait over their limit.
- Amber is the last fifth of the allowance before red (`Bands.amber_share`): abandonment at 4 %
  or more of a 5 % target; calls waiting 4 or 5 of a limit of 5; longest wait 24 s to 30 s of a 30 s
  limit; service level 92 % or under of a 90 % target (the target allows 10 % of calls to miss;
  8 % of them have).
- Getting worse shows at once. Getting better needs the figure a margin past the boundary
  (`Bands.margin_share`, a tenth of the allowance: 1 point of service level on a 90 % target,
  0.5 points of a 5 % abandonment target, 3 s of a 30 s limit, and at least one call waiting).
- A figure that is undefined (no calls in the window) is "none" and forgets its previous colour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from streams.domain.config import LineConfig

GREEN: Final = "green"
AMBER: Final = "amber"
RED: Final = "red"
NONE: Final = "none"
_LEVELS: Final = (GREEN, AMBER, RED)


@dataclass(frozen=True, slots=True)
class Scale:
    """How one figure is judged. `limit` is where red starts (the figure beyond it, strictly),
    `amber_from` where amber starts (inclusive), `margin` how far past a boundary a figure must
    come back before a better colour shows."""

    limit: float
    amber_from: float
    margin: float
    higher_is_better: bool

    def level(self, value: float) -> int:
        if self.higher_is_better:
            return 2 if value < self.limit else 1 if value <= self.amber_from else 0
        return 2 if value > self.limit else 1 if value >= self.amber_from else 0

    def worse_by_margin(self, value: float) -> float:
        return _exact(value - self.margin if self.higher_is_better else value + self.margin)


@dataclass(frozen=True, slots=True)
class Bands:
    amber_share: float = 0.2  # amber over the last fifth of the allowance before red
    margin_share: float = 0.1  # a tenth of the allowance, to come back to a better colour

    def _upper(self, limit: float) -> Scale:
        return Scale(limit, _exact(limit * (1 - self.amber_share)), _exact(limit * self.margin_share),
                     higher_is_better=False)

    def service_level(self, line: LineConfig) -> Scale:
        allowance = 1 - line.sl_target  # the share of calls the target lets miss
        return Scale(line.sl_target, _exact(line.sl_target + allowance * self.amber_share),
                     _exact(allowance * self.margin_share), higher_is_better=True)

    def abandonment(self, line: LineConfig) -> Scale:
        return self._upper(line.abandon_target)

    def waiting(self, line: LineConfig) -> Scale:
        # Calls come whole: a margin under one call would let 3 <-> 4 waiting flicker.
        scale = self._upper(float(line.waiting_limit))
        return Scale(scale.limit, scale.amber_from, max(1.0, scale.margin), higher_is_better=False)

    def longest_wait(self, line: LineConfig) -> Scale:
        return self._upper(line.longest_wait_limit_s)


def _exact(value: float) -> float:
    # 0.05 * 0.8 is 0.04000000000000001 in binary: 2 abandoned of 50 must be amber as documented.
    return round(value, 9)


def judge(value: float | None, scale: Scale, previous: str | None) -> str:
    """The colour of `value` given the colour it had before (None: no history)."""
    if value is None:
        return NONE
    now = scale.level(value)
    before = _LEVELS.index(previous) if previous in _LEVELS else None
    if before is None or now >= before:
        return _LEVELS[now]
    return _LEVELS[min(before, scale.level(scale.worse_by_margin(value)))]


class StatusMemory:
    """The colour each figure showed last, keyed by whatever identifies the figure (site, line,
    queue, figure, window): one per board, updated once per snapshot."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, ...], str] = {}

    def judge(self, key: tuple[str, ...], value: float | None, scale: Scale) -> str:
        colour = judge(value, scale, self._last.get(key))
        self._last[key] = colour
        return colour
