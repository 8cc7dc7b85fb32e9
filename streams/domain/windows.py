"""Window arithmetic: tumbling interval windows anchored at local midnight (SPEC section 3).

Days start at local midnight in the configured zone, so a day at a clock change lasts 23 or 25
hours; shorter intervals start at whole multiples of their length (in elapsed time) from that
midnight, and the last one of a day is cut at the next midnight when the day is not a multiple."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import InvalidConfig

INTERVALS_S: Final = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86_400}
DAY_S: Final = 86_400
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration_s(text: str) -> float:
    """'90s', '15m', '2h', '1d' (and '500ms') to seconds, a bare number being seconds: the one
    duration grammar of every option and setting; raises InvalidConfig naming the text."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidConfig(f"not a duration: {text!r} (use e.g. 20s, 5m, 1h; a bare number is seconds)")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def interval_s(name: str) -> int:
    """The length of a named interval window; only the SPEC's sizes are allowed."""
    try:
        return INTERVALS_S[name]
    except KeyError:
        raise InvalidConfig(f"window must be one of {', '.join(INTERVALS_S)}, not {name!r}") from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidConfig(f"unknown time zone {name!r}") from None


def local_day_bounds_ms(instant_ms: int, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) in UTC epoch ms of the local day containing the instant."""
    local = (_EPOCH + timedelta(milliseconds=instant_ms)).astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    following = midnight + timedelta(days=1)  # wall-clock arithmetic: next local midnight
    following = datetime(following.year, following.month, following.day, tzinfo=tz)
    return _to_ms(midnight), _to_ms(following)


def _to_ms(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * DAY_S + delta.seconds) * 1000 + delta.microseconds // 1000


class IntervalWindows:
    """Maps instants to their tumbling window. Caches the current local day, since streams move
    forward and a zone lookup per event would dominate the cost."""

    __slots__ = ("size_ms", "_tz", "_day_start", "_day_end")

    def __init__(self, size_s: int, tz: ZoneInfo) -> None:
        if size_s <= 0 or (DAY_S % size_s and size_s != DAY_S):
            raise InvalidConfig(f"interval {size_s}s does not divide a day")
        self.size_ms = size_s * 1000
        self._tz = tz
        self._day_start = 0
        self._day_end = 0

    def window_of(self, instant_ms: int) -> tuple[int, int]:
        if not self._day_start <= instant_ms < self._day_end:
            self._day_start, self._day_end = local_day_bounds_ms(instant_ms, self._tz)
        day_start, day_end = self._day_start, self._day_end
        if self.size_ms >= DAY_S * 1000:
            return day_start, day_end
        start = day_start + (instant_ms - day_start) // self.size_ms * self.size_ms
        end = start + self.size_ms
        return start, (end if end < day_end else day_end)
