"""parse_ts's memo of hours must give exactly what the strict parser gives, and must not let a
malformed minute, second or millisecond through once its hour is known."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.events import InvalidEvent, format_ts, parse_ts

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # 1970 to 2100
def test_canonical_timestamps_round_trip_through_the_memo(occurred_ms):
    text = format_ts(occurred_ms)
    assert parse_ts(text) == occurred_ms  # first: strict parse, fills the memo
    assert parse_ts(text) == occurred_ms  # then: from the memo
    expected = (datetime.fromisoformat(text.replace("Z", "+00:00")) - EPOCH) // timedelta(milliseconds=1)
    assert expected == occurred_ms


@pytest.mark.parametrize("second_and_ms", ["60.000", "0x.000", "0\u0663.000", "+1.000", " 1.000", "01.0_0",
                                           "01.0a0", "01.00\u0663", "01.-10", "01:000", "1.0000"])
def test_a_known_hour_does_not_let_bad_seconds_through(second_and_ms):
    parse_ts("2024-03-01T09:00:01.000Z")  # the hour is now memoised
    with pytest.raises(InvalidEvent) as error:
        parse_ts(f"2024-03-01T09:00:{second_and_ms}Z")
    assert error.value.field == "ts"


@pytest.mark.parametrize("minute", ["60", "6x", "0\u0663", "+1", " 1", "1:", "-1"])
def test_a_known_hour_does_not_let_bad_minutes_through(minute):
    parse_ts("2024-03-01T09:00:01.000Z")  # the hour is now memoised
    with pytest.raises(InvalidEvent) as error:
        parse_ts(f"2024-03-01T09:{minute}:01.000Z")
    assert error.value.field == "ts"


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=3_599_999))
def test_every_instant_of_a_known_hour_is_read_as_the_strict_parse_reads_it(into_hour_ms):
    parse_ts("2024-03-01T09:00:00.000Z")  # the hour is now memoised
    text = format_ts(parse_ts("2024-03-01T09:00:00.000Z") + into_hour_ms)
    expected = (datetime.fromisoformat(text.replace("Z", "+00:00")) - EPOCH) // timedelta(milliseconds=1)
    assert parse_ts(text) == expected


def test_a_known_hour_with_a_lower_case_z_gives_the_strict_parse() -> None:
    parse_ts("2024-03-01T09:00:01.000Z")  # the hour is now memoised
    assert parse_ts("2024-03-01T09:00:02.345z") == parse_ts("2024-03-01T09:00:02.345Z")


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))  # years 1 to 9999
def test_format_ts_writes_what_strftime_writes(occurred_ms):
    moment = EPOCH + timedelta(milliseconds=occurred_ms)
    assert format_ts(occurred_ms) == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{occurred_ms % 1000:03d}Z"
