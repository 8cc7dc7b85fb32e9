"""When calls arrive at the simulated control room: hourly arrival profiles per line in local time,
the weekly pattern, scenarios (a major incident), and the non-homogeneous Poisson process that
draws arrival times from them lazily."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Callable, Final, Mapping
from zoneinfo import ZoneInfo

LINE_999: Final = "999"
LINE_101: Final = "101"

HOUR_MS: Final = 3_600_000

# Calls per hour at the start of each local hour (00:00 to 23:00) on an ordinary weekday, for one
# control room of a mid-sized force (about 500 999 calls and 900 101 calls a day). Quietest at
# 04:00-06:00; 999 peaks in the late afternoon and evening, 101 through the working day.
ARRIVALS_PER_HOUR_999: Final = (
    18, 15, 12, 10, 7, 6, 7, 10, 14, 18, 20, 22,
    23, 24, 25, 27, 29, 30, 30, 29, 28, 26, 24, 21,
)
ARRIVALS_PER_HOUR_101: Final = (
    12, 8, 6, 5, 4, 4, 7, 18, 36, 50, 58, 62,
    62, 62, 63, 65, 68, 70, 65, 58, 48, 38, 28, 18,
)
ARRIVALS_PER_HOUR: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {LINE_999: ARRIVALS_PER_HOUR_999, LINE_101: ARRIVALS_PER_HOUR_101})

# Friday and Saturday nights (18:00 to 04:00 the next morning) bring the week's peak of disorder,
# violence and alcohol; 999 feels it most. Weekend daytime has fewer routine 101 enquiries.
NIGHT_OUT_MULTIPLIER: Final[Mapping[str, float]] = MappingProxyType({LINE_999: 1.3, LINE_101: 1.15})
WEEKEND_DAYTIME_101_MULTIPLIER: Final = 0.8

FRIDAY: Final = 4
SATURDAY: Final = 5
SUNDAY: Final = 6


def is_night_out(weekday: int, hour: int) -> bool:
    """Friday or Saturday evening, or the small hours after one (weekday: Monday = 0)."""
    if weekday in (FRIDAY, SATURDAY) and hour >= 18:
        return True
    return weekday in (SATURDAY, SUNDAY) and hour < 4


def hourly_arrivals(line: str, weekday: int, hour: int) -> float:
    """The arrival rate (calls per hour) of `line` at the start of local `hour` on `weekday`."""
    rate = float(ARRIVALS_PER_HOUR[line][hour])
    if is_night_out(weekday, hour):
        rate *= NIGHT_OUT_MULTIPLIER[line]
    elif line == LINE_101 and weekday in (SATURDAY, SUNDAY) and 8 <= hour < 18:
        rate *= WEEKEND_DAYTIME_101_MULTIPLIER
    return rate


def peak_hourly_arrivals(line: str) -> float:
    """The highest rate of the week: the bound the thinning method draws candidates at."""
    return max(hourly_arrivals(line, weekday, hour) for weekday in range(7) for hour in range(24))


def mean_hourly_arrivals(line: str) -> float:
    """The line's rate averaged over the week."""
    return sum(hourly_arrivals(line, weekday, hour) for weekday in range(7) for hour in range(24)) / (7 * 24)


class LocalClock:
    """Reads UTC epoch milliseconds as local weekday and fractional hour. The zone lookup is cached
    per UTC hour, since a simulation moves forward and offsets change only on whole hours."""

    __slots__ = ("_tz", "_cached_hour", "_cached_reading")

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._cached_hour = -1
        self._cached_reading = (0, 0.0)

    def read(self, instant_ms: int) -> tuple[int, float]:
        """(weekday with Monday = 0, local hour of day as a fraction, 0 <= hour < 24)."""
        utc_hour = instant_ms // HOUR_MS
        if utc_hour != self._cached_hour:
            local = datetime.fromtimestamp(utc_hour * 3600, timezone.utc).astimezone(self._tz)
            self._cached_hour = utc_hour
            self._cached_reading = (local.weekday(), local.hour + local.minute / 60)
        weekday, hour = self._cached_reading
        return weekday, hour + (instant_ms - utc_hour * HOUR_MS) / HOUR_MS


def arrival_rate_per_h(line: str, weekday: int, local_hour: float) -> float:
    """The profile interpolated linearly between hours, so demand ramps rather than jumps."""
    hour = int(local_hour) % 24
    fraction = local_hour - int(local_hour)
    next_weekday, next_hour = (weekday, hour + 1) if hour < 23 else ((weekday + 1) % 7, 0)
    return ((1 - fraction) * hourly_arrivals(line, weekday, hour)
            + fraction * hourly_arrivals(line, next_weekday, next_hour))


@dataclass(frozen=True, slots=True)
class Scenario:
    """What happens on top of ordinary demand. A major incident multiplies each line's arrivals
    for `surge_duration_s` from `surge_start_s` after the simulation's start. Witnesses call
    whatever the hour, so at night the extra calls are those of an average hour, not of a quiet one.
    The extra calls form their own arrival stream: a run is the normal one until the surge begins."""

    name: str
    surge_start_s: float = 1800.0
    surge_duration_s: float = 0.0
    surge_multiplier_999: float = 1.0
    surge_multiplier_101: float = 1.0
    # Major-incident procedure: for the surge, every handler answers 999 before 101.
    surge_all_hands_to_999: bool = False

    def __post_init__(self) -> None:
        if not self.surge_start_s >= 0 or not self.surge_duration_s >= 0:
            raise ValueError(f"scenario {self.name!r}: surge start and duration must be zero or more")
        if not self.surge_multiplier_999 >= 1 or not self.surge_multiplier_101 >= 1:
            raise ValueError(f"scenario {self.name!r}: surge multipliers must be at least 1")

    def multiplier(self, line: str) -> float:
        return self.surge_multiplier_999 if line == LINE_999 else self.surge_multiplier_101


SCENARIOS: Final[Mapping[str, Scenario]] = MappingProxyType({
    "normal": Scenario("normal"),
    # A major incident (a large fire, a motorway pile-up, a public-order event): many witnesses
    # call 999 at once, some also try 101, and the staff on duty stay the same.
    "surge": Scenario("surge", surge_start_s=1800.0, surge_duration_s=3600.0,
                      surge_multiplier_999=5.0, surge_multiplier_101=2.0, surge_all_hands_to_999=True),
})


class PoissonArrivals:
    """Arrival times of a non-homogeneous Poisson process with rate `rate_per_h(instant_ms)`,
    drawn one at a time by thinning: candidates at the constant `max_rate_per_h`, each kept with
    probability rate / max_rate. Nothing is drawn ahead, so memory does not grow with duration."""

    __slots__ = ("_rng", "_rate_per_h", "_max_rate_per_h", "_until_ms", "_now_ms")

    def __init__(self, rng: random.Random, rate_per_h: Callable[[int], float], max_rate_per_h: float,
                 from_ms: int, until_ms: int | None = None) -> None:
        self._rng = rng
        self._rate_per_h = rate_per_h
        self._max_rate_per_h = max_rate_per_h
        self._until_ms = until_ms
        self._now_ms = float(from_ms)

    def next_ms(self) -> int | None:
        """The next arrival time, or None when the process has ended (or has no rate)."""
        if self._max_rate_per_h <= 0:
            return None
        rng, max_rate = self._rng, self._max_rate_per_h
        per_ms = max_rate / HOUR_MS
        while True:
            self._now_ms += rng.expovariate(per_ms)
            if self._until_ms is not None and self._now_ms >= self._until_ms:
                return None
            candidate_ms = math.floor(self._now_ms)
            if rng.random() * max_rate < self._rate_per_h(candidate_ms):
                return candidate_ms
