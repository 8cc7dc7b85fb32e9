"""Window arithmetic (SPEC section 3, Windows): tumbling windows anchored at local midnight, days of
23 and 25 hours at clock changes, and the names of durations and interval sizes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import InvalidConfig, interval_s, parse_duration_s, parse_ts
from streams.domain.interval_report import format_window_bound
from streams.domain.windows import IntervalWindows, zone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SIZES = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86_400}


def window(size: str, tz: str, ts: str) -> tuple[str, str]:
    start, end = IntervalWindows(interval_s(size), zone(tz)).window_of(parse_ts(ts))
    return format_window_bound(start), format_window_bound(end)


@pytest.mark.parametrize(("size", "start", "end"), [
    ("1m", "2024-01-15T09:07:00Z", "2024-01-15T09:08:00Z"),
    ("5m", "2024-01-15T09:05:00Z", "2024-01-15T09:10:00Z"),
    ("15m", "2024-01-15T09:00:00Z", "2024-01-15T09:15:00Z"),
    ("30m", "2024-01-15T09:00:00Z", "2024-01-15T09:30:00Z"),
    ("1h", "2024-01-15T09:00:00Z", "2024-01-15T10:00:00Z"),
    ("1d", "2024-01-15T00:00:00Z", "2024-01-16T00:00:00Z"),
])
def test_windows_of_a_winter_day_in_london(size: str, start: str, end: str) -> None:
    assert window(size, "Europe/London", "2024-01-15T09:07:30.500Z") == (start, end)


@pytest.mark.parametrize(("size", "start", "end"), [
    ("15m", "2024-07-15T09:00:00Z", "2024-07-15T09:15:00Z"),
    ("1h", "2024-07-15T09:00:00Z", "2024-07-15T10:00:00Z"),
    ("1d", "2024-07-14T23:00:00Z", "2024-07-15T23:00:00Z"),  # summer time: midnight is 23:00 UTC
])
def test_windows_of_a_summer_day_in_london(size: str, start: str, end: str) -> None:
    assert window(size, "Europe/London", "2024-07-15T09:07:30Z") == (start, end)
    assert window(size, "Europe/London", start) == (start, end)


def test_half_hour_zones_shift_hourly_windows() -> None:
    assert window("1h", "Asia/Kolkata", "2024-01-15T09:07:30Z") == ("2024-01-15T08:30:00Z", "2024-01-15T09:30:00Z")
    assert window("1d", "Asia/Kolkata", "2024-01-15T09:07:30Z") == ("2024-01-14T18:30:00Z", "2024-01-15T18:30:00Z")


def windows_of_day(size: str, tz: str, day_start: str, day_end: str) -> list[tuple[str, str]]:
    """Every distinct window met minute by minute through a local day."""
    windows = IntervalWindows(interval_s(size), zone(tz))
    seen: list[tuple[str, str]] = []
    for at_ms in range(parse_ts(day_start), parse_ts(day_end), 60_000):
        bounds = tuple(format_window_bound(bound) for bound in windows.window_of(at_ms))
        if not seen or seen[-1] != bounds:
            seen.append(bounds)  # type: ignore[arg-type]
    return seen


CLOCK_CHANGES = [
    # zone, local day start, next local midnight, hours in the day
    ("Europe/London", "2024-03-31T00:00:00Z", "2024-03-31T23:00:00Z", 23),
    ("Europe/London", "2024-10-26T23:00:00Z", "2024-10-28T00:00:00Z", 25),
    ("America/New_York", "2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z", 23),
    ("America/New_York", "2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z", 25),
]


@pytest.mark.parametrize(("tz", "day_start", "day_end", "hours"), CLOCK_CHANGES)
def test_a_day_at_a_clock_change(tz: str, day_start: str, day_end: str, hours: int) -> None:
    assert windows_of_day("1d", tz, day_start, day_end) == [(day_start, day_end)]
    hourly = windows_of_day("1h", tz, day_start, day_end)
    assert len(hourly) == hours
    assert windows_of_day("15m", tz, day_start, day_end)[-1][1] == day_end
    assert len(windows_of_day("15m", tz, day_start, day_end)) == hours * 4
    # Hours tile the day, each exactly an hour of elapsed time.
    assert hourly[0][0] == day_start and hourly[-1][1] == day_end
    for (_, end), (start, _) in zip(hourly, hourly[1:]):
        assert end == start
    for start, end in hourly:
        assert parse_ts(end) - parse_ts(start) == 3_600_000


def test_the_day_before_and_after_a_clock_change_are_whole_days() -> None:
    assert window("1d", "Europe/London", "2024-03-30T12:00:00Z") == ("2024-03-30T00:00:00Z", "2024-03-31T00:00:00Z")
    assert window("1d", "Europe/London", "2024-04-01T12:00:00Z") == ("2024-03-31T23:00:00Z", "2024-04-01T23:00:00Z")


def test_the_last_window_of_a_day_is_cut_at_midnight() -> None:
    # Lord Howe Island moves its clocks by half an hour: 2024-10-06 lasts 23.5 hours, so its last
    # hourly window (whole hours from local midnight) is only half an hour long.
    hourly = windows_of_day("1h", "Australia/Lord_Howe", "2024-10-05T13:30:00Z", "2024-10-06T13:00:00Z")
    assert len(hourly) == 24
    assert hourly[-1] == ("2024-10-06T12:30:00Z", "2024-10-06T13:00:00Z")
    assert window("1d", "Australia/Lord_Howe", "2024-10-06T00:00:00Z") == (
        "2024-10-05T13:30:00Z", "2024-10-06T13:00:00Z")


@settings(max_examples=300, deadline=None)
@given(st.integers(parse_ts("2023-12-25T00:00:00Z"), parse_ts("2025-01-05T00:00:00Z")),
       st.sampled_from(sorted(SIZES.values())),
       st.sampled_from(["Europe/London", "America/New_York", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]))
def test_every_instant_falls_in_one_aligned_window(at_ms: int, size_s: int, tz: str) -> None:
    windows = IntervalWindows(size_s, zone(tz))
    start, end = windows.window_of(at_ms)
    assert start <= at_ms < end
    assert windows.window_of(start) == (start, end) and windows.window_of(end - 1) == (start, end)
    assert windows.window_of(end)[0] == end
    assert windows.window_of(start - 1)[1] == start
    local_day = (EPOCH + timedelta(milliseconds=at_ms)).astimezone(zone(tz)).date()
    midnight = datetime(local_day.year, local_day.month, local_day.day, tzinfo=zone(tz))
    midnight_ms = (midnight - EPOCH) // timedelta(milliseconds=1)
    if size_s == 86_400:
        assert start == midnight_ms
        assert 22 * 3_600_000 <= end - start <= 26 * 3_600_000
    else:
        assert (start - midnight_ms) % (size_s * 1000) == 0
        assert 0 < end - start <= size_s * 1000


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86_400), ("250ms", 0.25), (" 1.5h ", 5400),
    ("0s", 0), ("120s", 120), ("20", 20), (" 2.5 ", 2.5),  # a bare number is seconds
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5m", "-15", "15 minutes", "1w", "abc", "1h30m", "1,5h", "nan", "inf"])
def test_a_bad_duration_is_named_in_the_error(text: str) -> None:
    with pytest.raises(InvalidConfig, match="not a duration"):
        parse_duration_s(text)


@pytest.mark.parametrize(("name", "seconds"), sorted(SIZES.items()))
def test_interval_sizes(name: str, seconds: int) -> None:
    assert interval_s(name) == seconds


@pytest.mark.parametrize("name", ["2m", "10m", "15", "1h ", "1w", "", "60s"])
def test_only_the_spec_interval_sizes_are_allowed(name: str) -> None:
    with pytest.raises(InvalidConfig, match="window must be one of"):
        interval_s(name)


@pytest.mark.parametrize("size_s", [0, -60, 7, 7 * 3600, 2 * 86_400])
def test_a_window_that_does_not_divide_a_day_is_refused(size_s: int) -> None:
    with pytest.raises(InvalidConfig):
        IntervalWindows(size_s, zone("Europe/London"))


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="Mars/Olympus_Mons"):
        zone("Mars/Olympus_Mons")
