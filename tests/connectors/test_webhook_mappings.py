"""The webhook's per-platform mappings: canonical JSON, Twilio TaskRouter callbacks and Amazon
Connect contact events (recorded-style fixtures run through the real mappings), and fuzzing: no
input makes a mapping raise, and whatever comes out is a valid canonical event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.canonical import EventBuilder
from connectors.errors import InvalidRecord
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.webhook.amazon_connect_mapping import connect_events, from_amazon_connect
from connectors.webhook.canonical_mapping import canonical_events, from_canonical
from connectors.webhook.payloads import FORM_TYPE, Mapped, MappingContext, UnsupportedMedia, readable_body
from connectors.webhook.twilio_mapping import from_twilio_taskrouter, twilio_events
from streams.domain.events import parse_event

FIXTURES = Path(__file__).parent / "fixtures" / "webhook"
HIDE = pseudonymiser(b"test-pseudonymisation-key")
CONNECT_Q999 = "arn:aws:connect:eu-west-2:111122223333:instance/9d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6/queue/" \
               "3b4c5d6e-7f80-4192-a3b4-c5d6e7f80912"
CONTEXT = MappingContext(EventBuilder("webhook", HIDE, "north"), parse_queue_lines(
    f"Emergency=999,Emergency Overflow=999,Non-emergency=101,{CONNECT_Q999}=999:emergency,"
    "8e9f0a1b-2c3d-4e5f-8a7b-9c0d1e2f3a4b=101:general"))
NOW_S = 1_709_283_600.0
NUMBERS = ("+447700900123", "+447700900456", "+447700900789", "+447700900321", "+447700900654")


def twilio_bodies() -> list[bytes]:
    lines = (FIXTURES / "twilio_taskrouter_callbacks.form").read_text().splitlines()
    return [line.encode() for line in lines if line and not line.startswith("#")]


def connect_events_fixture() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((FIXTURES / "amazon_connect_contact_events.json").read_text())
    return events


def form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


def mapped(result: Mapped | InvalidRecord) -> Mapped:
    assert isinstance(result, Mapped), result
    return result


def brief(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["type"], event.get("call_id"), event["ts"], event.get("line"), event.get("queue"), event.get("agent"))


def assert_no_number(text: str) -> None:
    for number in NUMBERS:
        assert number not in text and number[1:] not in text and number[3:] not in text


# --- canonical events -------------------------------------------------------------------------------

OFFERED = {"v": 1, "event_id": "e-1", "call_id": "c-1", "type": "offered", "ts": "2024-03-01T09:00:00.250Z",
           "line": "999", "queue": "emergency"}


def test_canonical_event_array_and_json_lines_are_taken_as_sent() -> None:
    one = mapped(canonical_events(json.dumps(OFFERED).encode(), "application/json; charset=utf-8", CONTEXT))
    assert one.events == ({**OFFERED, "source": "webhook"},)
    second = {**OFFERED, "event_id": "e-2", "type": "answered", "agent": "a:0123456789abcdef", "source": "pbx"}
    array = mapped(canonical_events(json.dumps([OFFERED, second]).encode(), "application/json", CONTEXT))
    assert [e["event_id"] for e in array.events] == ["e-1", "e-2"] and array.events[1]["source"] == "pbx"
    assert array.events[1]["agent"] == "a:0123456789abcdef"
    lines = (json.dumps(OFFERED) + "\n\n" + json.dumps(second) + "\n").encode()
    assert mapped(canonical_events(lines, "application/x-ndjson", CONTEXT)).events == array.events
    assert mapped(canonical_events(b"[]", "application/json", CONTEXT)).events == ()


def test_a_raw_caller_number_or_agent_is_hashed_and_a_hash_is_kept() -> None:
    raw = mapped(from_canonical({**OFFERED, "caller": "+447700900123"}, CONTEXT)).events[0]
    assert raw["caller"] == HIDE.caller("+447700900123") and raw["caller"].startswith("h:")
    agent = mapped(from_canonical({**OFFERED, "type": "answered", "agent": "SIP/1001"}, CONTEXT)).events[0]
    assert agent["agent"] == HIDE.agent("SIP/1001")
    kept = mapped(from_canonical({**OFFERED, "caller": "h:0011223344556677"}, CONTEXT)).events[0]
    assert kept["caller"] == "h:0011223344556677"


@pytest.mark.parametrize(("body", "content_type", "reason", "status"), [
    (b"{oops", "application/json", "not JSON: Expecting property name", 400),
    (b'{"v": NaN}', "application/json", "not JSON: NaN is not a JSON number", 400),
    (b"[" * 100_000, "application/json", "not JSON", 400),
    (b"\xff\xfe\x00", "application/json", "not JSON", 400),
    (b"42", "application/json", "a canonical event must be a JSON object", 400),
    (json.dumps({k: v for k, v in OFFERED.items() if k != "queue"}).encode(), "application/json",
     "invalid queue: is required", 400),
    (json.dumps([OFFERED, {**OFFERED, "ts": "2024-03-01 09:00"}]).encode(), "application/json",
     "event 2: invalid ts:", 400),
    (json.dumps([OFFERED, 7]).encode(), "application/json", "event 2: not a JSON object", 400),
    (json.dumps({**OFFERED, "caller": 447700900123}).encode(), "application/json", "invalid caller:", 400),
    (json.dumps(OFFERED).encode() + b"\n{oops\n", "application/x-ndjson", "line 2: not JSON", 400),
    (json.dumps(OFFERED).encode(), "text/plain", "unsupported media type 'text/plain'", 415),
    (json.dumps(OFFERED).encode(), None, "unsupported media type 'none'", 415),
])
def test_malformed_canonical_requests_are_refused_naming_what_is_wrong(
        body: bytes, content_type: str | None, reason: str, status: int) -> None:
    result = canonical_events(body, content_type, CONTEXT)
    assert isinstance(result, InvalidRecord), result
    assert result.reason.startswith(reason) and isinstance(result, UnsupportedMedia) == (status == 415)
    assert "447700900123" not in result.reason


# --- Twilio TaskRouter --------------------------------------------------------------------------------

def test_twilio_fixture_callbacks_map_to_call_legs() -> None:
    events: list[dict[str, Any]] = []
    ignored: list[str] = []
    for body in twilio_bodies():
        result = mapped(twilio_events(form(body), CONTEXT))
        events.extend(result.events)
        ignored.extend(result.ignored)
    call1, call2, call3, call4 = (f"CA{n * 32}" for n in "1234")
    worker = HIDE.agent("WK0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a")
    assert [brief(e) for e in events] == [
        ("offered", call1, "2024-03-01T09:00:00.050Z", "999", "Emergency", None),
        ("answered", call1, "2024-03-01T09:00:07.550Z", "999", "Emergency", worker),
        ("ended", call1, "2024-03-01T09:02:07.600Z", "999", "Emergency", None),
        ("offered", call2, "2024-03-01T09:01:00.040Z", "101", "Non-emergency", None),
        ("abandoned", call2, "2024-03-01T09:02:35.040Z", "101", "Non-emergency", None),
        ("offered", call3, "2024-03-01T09:02:00.000Z", "999", "Emergency", None),
        ("timeout", call3, "2024-03-01T09:02:30.000Z", "999", "Emergency", None),
        ("offered", call3, "2024-03-01T09:02:30.010Z", "999", "Emergency Overflow", None),
        ("answered", call3, "2024-03-01T09:02:34.000Z", "999", "Emergency Overflow", worker),
        ("offered", call4, "2024-03-01T09:03:00.000Z", "101", "Non-emergency", None),
        ("timeout", call4, "2024-03-01T09:13:00.000Z", "101", "Non-emergency", None),
        ("agent_state", None, "2024-03-01T08:59:00.000Z", None, None, worker),
        ("agent_state", None, "2024-03-01T10:00:00.000Z", None, None, worker),
        ("agent_state", None, "2024-03-01T11:00:00.000Z", None, None, worker),
    ]
    assert [e["state"] for e in events if e["type"] == "agent_state"] == ["available", "away", "logged_out"]
    assert {e["caller"] for e in events if e.get("call_id") == call1} == {HIDE.caller("+447700900123")}
    assert all(e["site"] == "north" and e["source"] == "webhook" for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    for event in events:
        parse_event(event)
    assert "task.created is not a call-leg event" in ignored
    assert "task-queue.entered: channel 'sms' is not a call" in ignored
    assert_no_number(json.dumps(events))
    assert "WK0a0a" not in json.dumps(events), "a WorkerSid is hashed like every agent id"


def test_twilio_mapping_is_deterministic() -> None:
    bodies = twilio_bodies()
    assert [mapped(twilio_events(form(body), CONTEXT)).events for body in bodies] == [
        mapped(twilio_events(form(body), CONTEXT)).events for body in bodies]


def test_twilio_without_queue_routes_uses_the_task_line_attribute_or_the_queue_itself() -> None:
    plain = MappingContext(EventBuilder("webhook", HIDE))
    fields = {"EventType": "task-queue.entered", "TimestampMs": "1709283600000", "TaskSid": "WT1",
              "TaskQueueName": "Emergency", "TaskQueueSid": "WQ1"}
    assert mapped(from_twilio_taskrouter(fields, plain)).events[0]["line"] == "Emergency"
    with_line = {**fields, "TaskAttributes": '{"line": "999"}'}
    event = mapped(from_twilio_taskrouter(with_line, plain)).events[0]
    assert (event["line"], event["call_id"], event["site"]) == ("999", "WT1", "default")
    seconds_only = {k: v for k, v in fields.items() if k != "TimestampMs"} | {"Timestamp": "1709283600"}
    assert mapped(from_twilio_taskrouter(seconds_only, plain)).events[0]["ts"] == "2024-03-01T09:00:00.000Z"
    # '*' takes every unlisted queue, but the workflow's own line attribute still wins.
    star = MappingContext(EventBuilder("webhook", HIDE), parse_queue_lines("*=101"))
    assert mapped(from_twilio_taskrouter(fields, star)).events[0]["line"] == "101"
    assert mapped(from_twilio_taskrouter(with_line, star)).events[0]["line"] == "999"


@pytest.mark.parametrize(("fields", "reason"), [
    ({}, "EventType is missing"),
    ({"EventType": "task-queue.entered", "TaskSid": "WT1", "TaskQueueName": "Q"}, "Timestamp is missing"),
    ({"EventType": "task-queue.entered", "Timestamp": "soon", "TaskSid": "WT1", "TaskQueueName": "Q"},
     "Timestamp is not a Unix time"),
    ({"EventType": "task.canceled", "TimestampMs": "1709283600000", "TaskQueueName": "Q"},
     "task.canceled: TaskSid is missing"),
    ({"EventType": "task.completed", "TimestampMs": "1709283600000", "TaskSid": "WT1"},
     "task.completed: TaskQueueName and TaskQueueSid are both missing"),
    ({"EventType": "reservation.accepted", "TimestampMs": "1709283600000", "TaskSid": "WT1", "TaskQueueName": "Q"},
     "reservation.accepted: WorkerSid is missing"),
    ({"EventType": "task-queue.entered", "TimestampMs": "1709283600000", "TaskSid": "WT1", "TaskQueueName": "Q",
      "TaskAttributes": "{not json"}, "TaskAttributes: not JSON"),
    ({"EventType": "task-queue.entered", "TimestampMs": "9999999999999999", "TaskSid": "WT1", "TaskQueueName": "Q"},
     "TimestampMs is out of range"),
    ({"EventType": "worker.activity.update", "TimestampMs": "1709283600000", "WorkerSid": "WK1"},
     "worker.activity.update: WorkerActivityName is missing"),
])
def test_malformed_twilio_callbacks_are_refused_with_the_field_named(fields: dict[str, str], reason: str) -> None:
    result = from_twilio_taskrouter(fields, CONTEXT)
    assert isinstance(result, InvalidRecord) and result.reason.startswith(reason), result


def test_twilio_activity_names_map_to_agent_states() -> None:
    def state(name: str) -> str:
        fields = {"EventType": "worker.activity.update", "TimestampMs": "1709283600000", "WorkerSid": "WK1",
                  "WorkerActivityName": name}
        return str(mapped(from_twilio_taskrouter(fields, CONTEXT)).events[0]["state"])

    assert [state(n) for n in ("Available", "Idle", "Busy", "Wrap-Up", "WrapUp", "Offline", "Lunch", "Briefing")] == [
        "available", "available", "busy", "wrapup", "wrapup", "logged_out", "away", "away"]


def test_form_bodies_are_decoded_for_dead_letters_so_numbers_can_be_masked() -> None:
    body = twilio_bodies()[1]
    assert "%2B447700900123" in body.decode()
    assert '"from":"+447700900123"' in readable_body(body, FORM_TYPE)


# --- Amazon Connect -----------------------------------------------------------------------------------

def test_amazon_connect_fixture_events_map_to_call_legs() -> None:
    events: list[dict[str, Any]] = []
    ignored: list[str] = []
    for item in connect_events_fixture():
        result = mapped(connect_events(json.dumps(item).encode(), "application/json", CONTEXT))
        events.extend(result.events)
        ignored.extend(result.ignored)
    first, third = "a1b2c3d4-1111-4a5b-8c6d-111111111111", "a1b2c3d4-3333-4a5b-8c6d-333333333333"
    agent1, agent2 = (HIDE.agent(agent) for agent in ("5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b8c",
                                                       "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"))
    assert [brief(e) for e in events] == [
        ("offered", first, "2024-03-01T09:00:12.000Z", "999", "emergency", None),
        ("answered", first, "2024-03-01T09:00:18.250Z", "999", "emergency", agent1),
        ("ended", first, "2024-03-01T09:03:20.000Z", "999", "emergency", None),
        # The handler transferred the call to 101: a new contact of the same call (initialContactId).
        ("offered", first, "2024-03-01T09:03:20.500Z", "101", "general", None),
        ("answered", first, "2024-03-01T09:04:20.000Z", "101", "general", agent2),
        ("ended", first, "2024-03-01T09:06:40.000Z", "101", "general", None),
        ("offered", third, "2024-03-01T09:05:20.000Z", "101", "general", None),
        ("abandoned", third, "2024-03-01T09:07:20.750Z", "101", "general", None),
    ]
    assert events[0]["caller"] == HIDE.caller("+447700900123") and events[-1]["caller"] == HIDE.caller("+447700900456")
    assert len({e["event_id"] for e in events}) == len(events)
    assert "INITIATED is not a call-leg event" in ignored and "COMPLETED is not a call-leg event" in ignored
    assert "DISCONNECTED: contact never queued (no queueInfo.queueArn)" in ignored
    assert "QUEUED: channel CHAT is not a call" in ignored
    assert_no_number(json.dumps(events))
    assert "5f6a7b8c-9d0e" not in json.dumps(events), "an agent ARN's id is hashed like every agent id"


def test_amazon_connect_takes_arrays_bare_details_and_varied_capitalisation() -> None:
    fixture = connect_events_fixture()
    together = mapped(from_amazon_connect(fixture, CONTEXT)).events
    one_by_one = [e for item in fixture for e in mapped(from_amazon_connect(item, CONTEXT)).events]
    assert list(together) == one_by_one
    answered = next(item for item in fixture if item["detail"]["eventType"] == "CONNECTED_TO_AGENT")
    detail = dict(answered["detail"])
    detail["AgentInfo"] = {"AgentARN": detail.pop("agentInfo")["agentArn"],
                           "ConnectedToAgentTimestamp": "2024-03-01T09:00:18.250Z"}
    bare = mapped(from_amazon_connect(detail, CONTEXT)).events
    assert bare == mapped(from_amazon_connect(answered, CONTEXT)).events


@pytest.mark.parametrize(("reason_code", "expected"), [
    ("CUSTOMER_DISCONNECT", "abandoned"), ("TELECOM_PROBLEM", "abandoned"), (None, "abandoned"),
    ("CONTACT_FLOW_DISCONNECT", "timeout"), ("EXPIRED", "timeout"), ("QUEUE_TRANSFER", "transferred"),
])
def test_amazon_connect_disconnect_before_an_agent_by_reason(reason_code: str | None, expected: str) -> None:
    detail = {"eventType": "DISCONNECTED", "contactId": "c-9", "channel": "VOICE",
              "queueInfo": {"queueArn": CONNECT_Q999, "enqueueTimestamp": "2024-03-01T09:00:00.000Z"},
              "disconnectTimestamp": "2024-03-01T09:00:40.000Z"}
    if reason_code:
        detail["disconnectReason"] = reason_code
    assert mapped(from_amazon_connect(detail, CONTEXT)).events[0]["type"] == expected


@pytest.mark.parametrize(("value", "reason"), [
    ({"hello": "world"}, "not an Amazon Connect contact event"),
    ({"detail-type": "Amazon Connect Contact Event", "detail": []}, "detail must be a JSON object"),
    ({"detail": {"eventType": "QUEUED"}}, "detail.contactId is missing"),
    ({"detail": {"contactId": "c", "eventType": "QUEUED", "queueInfo": {"queueArn": "arn/queue/q"}}},
     "QUEUED: detail.queueInfo.enqueueTimestamp is missing"),
    ({"detail": {"contactId": "c", "eventType": "QUEUED",
                 "queueInfo": {"queueArn": "arn/queue/q", "enqueueTimestamp": "2024-03-01 09:00"}}},
     "detail.queueInfo.enqueueTimestamp has no UTC offset"),
    ({"detail": {"contactId": "c", "eventType": "CONNECTED_TO_AGENT",
                 "queueInfo": {"queueArn": "arn/queue/q"}, "agentInfo": {}}, "time": "2024-03-01T09:00:00Z"},
     "CONNECTED_TO_AGENT: detail.agentInfo.agentArn is missing"),
    ([{"detail": {"contactId": "c", "eventType": "QUEUED"}}, 5], "record 2: an Amazon Connect event must be"),
])
def test_malformed_amazon_connect_events_are_refused_with_the_field_named(value: object, reason: str) -> None:
    result = from_amazon_connect(value, CONTEXT)
    assert isinstance(result, InvalidRecord) and result.reason.startswith(reason), result


def test_other_detail_types_are_ignored_not_refused() -> None:
    result = mapped(from_amazon_connect({"detail-type": "Contact Lens Realtime Rules Matched", "detail": {}}, CONTEXT))
    assert result.events == () and result.ignored


# --- fuzzing: no input makes a parser raise --------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=12), inner, max_size=4), max_leaves=12)
TWILIO_KEYS = ("EventType", "Timestamp", "TimestampMs", "EventDate", "TaskSid", "TaskQueueName", "TaskQueueSid",
               "TaskAttributes", "TaskChannelUniqueName", "TaskCanceledReason", "ReservationSid", "WorkerSid",
               "WorkerActivityName")
TWILIO_TYPES = st.sampled_from(["task-queue.entered", "reservation.accepted", "task.canceled", "task-queue.timeout",
                                "task-queue.moved", "task.completed", "worker.activity.update", "task.created"])
TWILIO_VALUES = (JSON_VALUES | TWILIO_TYPES | st.sampled_from(["1709283600000", "1709283600", "2024-03-01T09:00:00Z",
                                                               '{"from": "+447700900123", "call_sid": 5}', "voice"]))
CONNECT_DETAIL_KEYS = ("eventType", "contactId", "initialContactId", "channel", "queueInfo", "agentInfo",
                       "disconnectTimestamp", "disconnectReason", "customerEndpoint")
CONNECT_VALUES = JSON_VALUES | st.sampled_from(["QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED", "VOICE",
                                                "2024-03-01T09:00:00.000Z", "0001-01-01T00:00:00+14:00"]) | \
    st.fixed_dictionaries({}, optional={"queueArn": JSON_VALUES | st.just("arn/queue/q"),
                                        "enqueueTimestamp": st.text(max_size=30),
                                        "agentArn": JSON_VALUES, "connectedToAgentTimestamp": JSON_VALUES,
                                        "address": JSON_VALUES})
CONTENT_TYPES = st.sampled_from(["application/json", "application/x-ndjson", FORM_TYPE, "text/plain", "", None,
                                 "application/cloudevents+json; charset=utf-8"]) | st.text(max_size=20)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_result(result: object) -> None:
    assert isinstance(result, (Mapped, InvalidRecord))
    if isinstance(result, Mapped):
        for event in result.events:
            parse_event(event)  # whatever comes out is a valid canonical event


@FUZZ
@given(st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode()), CONTENT_TYPES)
def test_fuzz_body_parsers_never_raise(body: bytes, content_type: str | None) -> None:
    for parse in (canonical_events, connect_events):
        assert_result(parse(body, content_type, CONTEXT))
    assert isinstance(readable_body(body, content_type), str)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TWILIO_KEYS) | st.text(max_size=8), st.text(max_size=40)), max_size=8))
def test_fuzz_twilio_form_pairs_never_raise(pairs: list[tuple[str, str]]) -> None:
    assert_result(twilio_events(pairs, CONTEXT))


@FUZZ
@given(JSON_VALUES)
def test_fuzz_object_mappers_never_raise_on_any_json(value: object) -> None:
    for mapper in (from_canonical, from_twilio_taskrouter, from_amazon_connect):
        assert_result(mapper(value, CONTEXT))


@FUZZ
@given(st.fixed_dictionaries({}, optional={key: TWILIO_VALUES for key in TWILIO_KEYS}))
def test_fuzz_twilio_fields_never_raise(fields: dict[str, Any]) -> None:
    assert_result(from_twilio_taskrouter(fields, CONTEXT))
    assert_result(from_twilio_taskrouter([fields, fields], CONTEXT))


@FUZZ
@given(st.fixed_dictionaries({}, optional={key: CONNECT_VALUES for key in CONNECT_DETAIL_KEYS}),
       st.none() | JSON_VALUES | st.just("2024-03-01T09:00:00Z"))
def test_fuzz_amazon_connect_details_never_raise(detail: dict[str, Any], sent_at: object) -> None:
    assert_result(from_amazon_connect(detail, CONTEXT))
    assert_result(from_amazon_connect({"detail-type": "Amazon Connect Contact Event", "time": sent_at,
                                       "detail": detail}, CONTEXT))


@FUZZ
@given(st.data())
def test_fuzz_fixture_records_with_one_field_replaced_never_raise(data: st.DataObject) -> None:
    fields: dict[str, Any] = dict(parse_qsl(data.draw(st.sampled_from(twilio_bodies())).decode(),
                                            keep_blank_values=True))
    fields[data.draw(st.sampled_from(sorted(fields)))] = data.draw(TWILIO_VALUES)
    assert_result(from_twilio_taskrouter(fields, CONTEXT))
    event = json.loads(json.dumps(data.draw(st.sampled_from(connect_events_fixture()))))
    event["detail"][data.draw(st.sampled_from(sorted(event["detail"])))] = data.draw(CONNECT_VALUES)
    assert_result(from_amazon_connect(event, CONTEXT))
