"""The canonical event (SPEC section 2): validation names the bad field, extras survive, and
timestamps round-trip through any UTC offset."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import InvalidEvent, event_to_dict, format_ts, parse_event, parse_ts

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

VALID: dict[str, dict[str, Any]] = {
    "offered": {"v": 1, "event_id": "e1", "call_id": "c1", "type": "offered",
                "ts": "2024-03-01T09:00:00.250Z", "line": "999", "queue": "999-main"},
    "answered": {"v": 1, "event_id": "e2", "call_id": "c1", "type": "answered",
                 "ts": "2024-03-01T09:00:04.000Z", "line": "999", "queue": "999-main", "agent": "a17"},
    "ended": {"v": 1, "event_id": "e3", "call_id": "c1", "type": "ended",
              "ts": "2024-03-01T09:03:00.000Z", "line": "999", "queue": "999-main"},
    "agent_state": {"v": 1, "event_id": "e4", "type": "agent_state", "ts": "2024-03-01T09:00:00.000Z",
                    "agent": "a17", "state": "busy"},
}


def without(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != name}


def rejected_field(obj: object) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(obj)
    assert caught.value.reason and caught.value.field in str(caught.value)
    return caught.value.field


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_events_parse(kind: str) -> None:
    event = parse_event(VALID[kind])
    assert event.type == kind
    assert event.site == "default"
    assert event.occurred_at.tzinfo is not None


REQUIRED = [
    ("offered", "v"), ("offered", "event_id"), ("offered", "call_id"), ("offered", "type"),
    ("offered", "ts"), ("offered", "line"), ("offered", "queue"),
    ("ended", "call_id"), ("ended", "line"), ("ended", "queue"),
    ("agent_state", "event_id"), ("agent_state", "ts"), ("agent_state", "agent"), ("agent_state", "state"),
]


@pytest.mark.parametrize(("kind", "name"), REQUIRED)
def test_a_missing_required_field_is_named(kind: str, name: str) -> None:
    assert rejected_field(without(VALID[kind], name)) == name


@pytest.mark.parametrize(("kind", "name"), REQUIRED)
def test_a_null_required_field_is_named(kind: str, name: str) -> None:
    assert rejected_field({**VALID[kind], name: None}) == name


WRONG_TYPES = [
    ("offered", "v", "1"), ("offered", "v", True), ("offered", "v", 1.0), ("offered", "v", 2),
    ("offered", "event_id", 17), ("offered", "event_id", ""), ("offered", "event_id", ["e1"]),
    ("offered", "call_id", 5), ("offered", "call_id", ""),
    ("offered", "type", 3), ("offered", "type", "hangup"), ("offered", "type", "Offered"),
    ("offered", "ts", 1709283600250), ("offered", "ts", ""),
    ("offered", "line", 999), ("offered", "line", ""),
    ("offered", "queue", {"name": "q"}), ("offered", "queue", ""), ("offered", "queue", "*"),
    ("offered", "site", 3), ("offered", "site", ""),
    ("answered", "agent", 17),
    ("offered", "caller", 447700900123), ("offered", "source", 1),
    ("agent_state", "state", "asleep"), ("agent_state", "state", 1), ("agent_state", "agent", ""),
    ("agent_state", "call_id", 5),
]


@pytest.mark.parametrize(("kind", "name", "value"), WRONG_TYPES)
def test_a_field_of_the_wrong_type_is_named(kind: str, name: str, value: object) -> None:
    assert rejected_field({**VALID[kind], name: value}) == name


@pytest.mark.parametrize("obj", [[], "offered", None, 1])
def test_an_event_must_be_an_object(obj: object) -> None:
    assert rejected_field(obj) == "event"


@pytest.mark.parametrize("ts", [
    "2024-03-01T09:00:00.250",          # no offset
    "2024-03-01T09:00:00",              # no offset
    "2024-03-01 09:00:00.250Z",         # space, not T
    "2024-03-01",                       # a date
    "09:00:00Z",                        # a time
    "2024-W09-5T09:00:00Z",             # ISO 8601 week date
    "2024-061T09:00:00.000Z",           # ISO 8601 ordinal date
    "2024-03-01T09:00:00+0100",         # offset without a colon
    "2024-03-01T09:00:00+01",           # offset without minutes
    "2024-03-01T09:00:00,250Z",         # comma fraction
    "2024-03-01T09:00:00.250+01:00:30",  # seconds in the offset
    "2024-03-01T25:00:00Z",             # no such hour
    "2024-02-30T09:00:00Z",             # no such day
    "2024-03-01T09:00:00.2x0Z",
    "yesterday at nine",
    "1709283600250",
])
def test_a_bad_timestamp_is_rejected(ts: str) -> None:
    assert rejected_field({**VALID["offered"], "ts": ts}) == "ts"


@pytest.mark.parametrize(("ts", "same_as"), [
    ("2024-03-01T10:00:00.250+01:00", "2024-03-01T09:00:00.250Z"),
    ("2024-03-01T04:00:00.250-05:00", "2024-03-01T09:00:00.250Z"),
    ("2024-03-01T09:00:00.250+00:00", "2024-03-01T09:00:00.250Z"),
    ("2024-03-01t09:00:00.250z", "2024-03-01T09:00:00.250Z"),  # RFC 3339 allows lower case
    ("2024-03-01T09:00:00Z", "2024-03-01T09:00:00.000Z"),       # fraction is optional
    ("2024-03-01T09:00:00.25Z", "2024-03-01T09:00:00.250Z"),
    ("2024-03-01T09:00:00.250999Z", "2024-03-01T09:00:00.250Z"),  # kept to the millisecond
    ("2024-03-01T14:30:00.000+05:30", "2024-03-01T09:00:00.000Z"),
])
def test_equivalent_timestamps(ts: str, same_as: str) -> None:
    assert parse_ts(ts) == parse_ts(same_as)


@pytest.mark.parametrize("caller", ["07700900123", "+447700900123", "447700900123", "tel:999"])
def test_a_raw_caller_number_is_rejected(caller: str) -> None:
    assert rejected_field({**VALID["offered"], "caller": caller}) == "caller"


def test_a_hashed_caller_and_optional_fields_are_kept() -> None:
    obj = {**VALID["offered"], "caller": "h:9f86d081884c7d65", "site": "north", "source": "ami"}
    event = parse_event(obj)
    assert (event.caller, event.site, event.source) == ("h:9f86d081884c7d65", "north", "ami")
    assert event_to_dict(event) == obj


def test_agent_state_needs_no_call_line_or_queue() -> None:
    event = parse_event(VALID["agent_state"])
    assert (event.call_id, event.line, event.queue, event.state) == ("", "", "", "busy")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
KNOWN = {"v", "event_id", "call_id", "type", "ts", "line", "queue", "site", "agent", "caller", "state",
         "source"}
extras = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in KNOWN), json_values,
                         max_size=4)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(VALID)), extras, st.integers(-2**41, 2**42))
def test_extra_fields_survive_a_round_trip(kind: str, extra: dict[str, Any], at_ms: int) -> None:
    obj = {**VALID[kind], "ts": format_ts(at_ms), "site": "north", **extra}
    event = parse_event(obj)
    assert dict(event.extra) == extra
    again = event_to_dict(event)
    if kind == "agent_state":
        again.pop("call_id")  # written back as "" for an agent not on a call
    assert again == obj
    assert parse_event(event_to_dict(event)) == event


@settings(max_examples=200, deadline=None)
@given(st.integers(-2_208_988_800_000, 4_102_444_800_000))  # 1900 to 2100
def test_format_and_parse_round_trip(at_ms: int) -> None:
    text = format_ts(at_ms)
    assert len(text) == 24 and text.endswith("Z") and text[19] == "."
    assert parse_ts(text) == at_ms


@settings(max_examples=200, deadline=None)
@given(st.integers(-2_208_988_800_000, 4_102_444_800_000), st.integers(-(24 * 60 - 1), 24 * 60 - 1))
def test_any_utc_offset_gives_the_same_instant(at_ms: int, offset_min: int) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    local = (EPOCH + timedelta(milliseconds=at_ms)).astimezone(zone).isoformat(timespec="milliseconds")
    assert parse_ts(local) == at_ms
    assert format_ts(parse_ts(local)) == format_ts(at_ms)
