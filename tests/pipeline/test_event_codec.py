"""The one event codec (streams/io/codec.py) on every path that reads events: each kind of
malformed line the validator rejected before msgspec is rejected with the same reason text on
every path, and anything at all, decoded typed or not, gives exactly what `json.loads` and the
validator of decoded objects give (hypothesis, against a reference that reads line by line)."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.file_source import FileConnector
from connectors.sink import JsonLinesSink
from streams.domain.events import AGENT_STATES, EVENT_TYPES, CallEvent, InvalidEvent, parse_event
from streams.io.codec import decode, decode_json
from streams.io.event_lines import decode_block, rejection_reason
from streams.kafka.topic_replay import decode_record

OFFERED = {"v": 1, "event_id": "e1", "call_id": "c1", "type": "offered", "ts": "2024-03-01T09:00:00.250Z",
           "line": "999", "queue": "999-main"}
AGENT = {"v": 1, "event_id": "e4", "type": "agent_state", "ts": "2024-03-01T09:00:00.000Z", "agent": "a17",
         "state": "busy"}
DROP = object()


def line(base: dict[str, Any], **changes: object) -> str:
    obj = dict(base)
    for name, value in changes.items():
        if value is DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return json.dumps(obj, separators=(",", ":"))


# Every kind of line the validator rejected, with the reason it gave (recorded with the code before
# msgspec: `rejection_reason` of commit 26b0536).
REJECTED = [
    ("{",
     'not JSON: Expecting property name enclosed in double quotes: line 2 column 1 (char 2)'),
    ("nope",
     'not JSON: Expecting value: line 1 column 1 (char 0)'),
    ('{"v":1} x',
     'not JSON: Extra data: line 1 column 9 (char 8)'),
    ('{"v":1,}',
     'not JSON: Expecting property name enclosed in double quotes: line 1 column 8 (char 7)'),
    ("{'v': 1}",
     'not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)'),
    ("\ufeff" + line(OFFERED),
     'not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)'),
    ("[" * 100_000,
     'not JSON: maximum recursion depth exceeded while decoding a JSON array from a unicode string'),
    ('{"v":1,"event_id":"e1"',
     "not JSON: Expecting ',' delimiter: line 2 column 1 (char 23)"),
    ("[]",
     'invalid event: must be a JSON object'),
    ('"offered"',
     'invalid event: must be a JSON object'),
    ("null",
     'invalid event: must be a JSON object'),
    ("1",
     'invalid event: must be a JSON object'),
    ("NaN",
     'invalid event: must be a JSON object'),
    (line(OFFERED, v=DROP),
     'invalid v: unsupported schema version None (expected 1)'),
    (line(OFFERED, v=None),
     'invalid v: unsupported schema version None (expected 1)'),
    (line(OFFERED, event_id=DROP),
     'invalid event_id: is required'),
    (line(OFFERED, event_id=None),
     'invalid event_id: is required'),
    (line(OFFERED, call_id=DROP),
     'invalid call_id: is required'),
    (line(OFFERED, call_id=None),
     'invalid call_id: is required'),
    (line(OFFERED, type=DROP),
     'invalid type: unknown event type None'),
    (line(OFFERED, type=None),
     'invalid type: unknown event type None'),
    (line(OFFERED, ts=DROP),
     'invalid ts: must be an RFC 3339 string'),
    (line(OFFERED, ts=None),
     'invalid ts: must be an RFC 3339 string'),
    (line(OFFERED, line=DROP),
     'invalid line: is required'),
    (line(OFFERED, line=None),
     'invalid line: is required'),
    (line(OFFERED, queue=DROP),
     'invalid queue: is required'),
    (line(OFFERED, queue=None),
     'invalid queue: is required'),
    (line(AGENT, event_id=DROP),
     'invalid event_id: is required'),
    (line(AGENT, event_id=None),
     'invalid event_id: is required'),
    (line(AGENT, ts=DROP),
     'invalid ts: must be an RFC 3339 string'),
    (line(AGENT, ts=None),
     'invalid ts: must be an RFC 3339 string'),
    (line(AGENT, agent=DROP),
     'invalid agent: is required on agent_state'),
    (line(AGENT, agent=None),
     'invalid agent: is required on agent_state'),
    (line(AGENT, state=DROP),
     'invalid state: unknown agent state None'),
    (line(AGENT, state=None),
     'invalid state: unknown agent state None'),
    (line(OFFERED, v="1"),
     "invalid v: unsupported schema version '1' (expected 1)"),
    (line(OFFERED, v=True),
     'invalid v: unsupported schema version True (expected 1)'),
    (line(OFFERED, v=1.0),
     'invalid v: unsupported schema version 1.0 (expected 1)'),
    (line(OFFERED, v=2),
     'invalid v: unsupported schema version 2 (expected 1)'),
    (line(OFFERED, v=0),
     'invalid v: unsupported schema version 0 (expected 1)'),
    (line(OFFERED, v=10**30),
     'invalid v: unsupported schema version 1000000000000000000000000000000 (expected 1)'),
    (line(OFFERED, event_id=17),
     'invalid event_id: must be a non-empty string'),
    (line(OFFERED, event_id=""),
     'invalid event_id: must be a non-empty string'),
    (line(OFFERED, event_id=["e1"]),
     'invalid event_id: must be a non-empty string'),
    (line(OFFERED, call_id=5),
     'invalid call_id: must be a non-empty string'),
    (line(OFFERED, call_id=""),
     'invalid call_id: must be a non-empty string'),
    (line(OFFERED, type=3),
     'invalid type: unknown event type 3'),
    (line(OFFERED, type="hangup"),
     "invalid type: unknown event type 'hangup'"),
    (line(OFFERED, type="Offered"),
     "invalid type: unknown event type 'Offered'"),
    (line(OFFERED, type=["offered"]),
     "invalid type: unknown event type ['offered']"),
    (line(OFFERED, ts=1709283600250),
     'invalid ts: must be an RFC 3339 string'),
    (line(OFFERED, ts=""),
     "invalid ts: not RFC 3339: ''"),
    (line(OFFERED, ts="2024-03-01T09:00:00.250"),
     "invalid ts: needs an explicit offset (Z or +hh:mm): '2024-03-01T09:00:00.250'"),
    (line(OFFERED, ts="2024-03-01 09:00:00.250Z"),
     "invalid ts: not RFC 3339: '2024-03-01 09:00:00.250Z'"),
    (line(OFFERED, ts="2024-W09-5T09:00:00Z"),
     "invalid ts: not RFC 3339: '2024-W09-5T09:00:00Z'"),
    (line(OFFERED, ts="2024-03-01T09:00:00+0100"),
     "invalid ts: needs an explicit offset (Z or +hh:mm): '2024-03-01T09:00:00+0100'"),
    (line(OFFERED, ts="2024-03-01T25:00:00.000Z"),
     "invalid ts: not RFC 3339: '2024-03-01T25:00:00.000Z'"),
    (line(OFFERED, ts="2024-02-30T09:00:00.000Z"),
     "invalid ts: not RFC 3339: '2024-02-30T09:00:00.000Z'"),
    (line(OFFERED, ts="2024-03-01T09:00:00.2x0Z"),
     "invalid ts: not RFC 3339: '2024-03-01T09:00:00.2x0Z'"),
    (line(OFFERED, ts="2024-03-01T09:60:00.000Z"),
     "invalid ts: not RFC 3339: '2024-03-01T09:60:00.000Z'"),
    (line(OFFERED, ts="yesterday at nine"),
     "invalid ts: not RFC 3339: 'yesterday at nine'"),
    (line(OFFERED, line=999),
     'invalid line: must be a non-empty string'),
    (line(OFFERED, line=""),
     'invalid line: must be a non-empty string'),
    (line(OFFERED, queue={"name": "q"}),
     'invalid queue: must be a non-empty string'),
    (line(OFFERED, queue=""),
     'invalid queue: must be a non-empty string'),
    (line(OFFERED, queue="*"),
     "invalid queue: '*' is reserved for line totals"),
    (line(OFFERED, site=3),
     'invalid site: must be a non-empty string'),
    (line(OFFERED, site=""),
     'invalid site: must be a non-empty string'),
    (line(OFFERED, agent=17),
     'invalid agent: must be a string or null'),
    (line(OFFERED, caller=447700900123),
     "invalid caller: must be a keyed hash ('h:' + hex), never a raw number"),
    (line(OFFERED, caller="07700900123"),
     "invalid caller: must be a keyed hash ('h:' + hex), never a raw number"),
    (line(OFFERED, source=1),
     'invalid source: must be a string or null'),
    (line(AGENT, state="asleep"),
     "invalid state: unknown agent state 'asleep'"),
    (line(AGENT, state=1),
     'invalid state: unknown agent state 1'),
    (line(AGENT, agent=""),
     'invalid agent: is required on agent_state'),
    (line(AGENT, call_id=5),
     'invalid call_id: must be a non-empty string'),
    (line(AGENT, line=5),
     'invalid line: must be a string or null'),
    (line(AGENT, queue=[]),
     'invalid queue: must be a string or null'),
    (line(OFFERED)[:-1] + ',"v":2}',
     'invalid v: unsupported schema version 2 (expected 1)'),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_replay_rejects_each_kind_of_bad_line_with_the_same_reason(text: str, reason: str) -> None:
    block = decode_block((text + "\n").encode())
    assert block.events == []
    assert block.rejected == [(0, reason, text + "\n")]
    assert rejection_reason(text + "\n") == reason


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_the_worker_and_the_topic_replay_give_the_same_reason(text: str, reason: str) -> None:
    try:  # what the worker does with a message's text (streams/worker/partition.py)
        parse_event(decode(text))
    except InvalidEvent as error:
        worker_reason = f"invalid {error}"
    except (ValueError, RecursionError) as error:
        worker_reason = f"not JSON: {str(error).splitlines()[0]}"
    else:
        pytest.fail("accepted")
    # A message has no line end: where the JSON error is found can differ from the file's line.
    before = reference(text)
    assert before == reason or "line 2 column 1" in reason
    assert worker_reason == before
    rejection = decode_record(text.encode(), "events/0", 7)
    assert (type(rejection).__name__, rejection.reason) == ("Rejection", before)  # type: ignore[union-attr]


def test_the_file_source_dead_letters_each_kind_with_the_same_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(text + "\n" for text, _reason in REJECTED), encoding="utf-8")
    events, dead = io.StringIO(), io.StringIO()
    FileConnector(str(path), follow=False).run(JsonLinesSink(events, dead, "file"), threading.Event())
    reasons = [json.loads(letter)["dead_letter"]["reason"] for letter in dead.getvalue().splitlines()]
    # The file source has always said "not a JSON object" itself, before the sink validates.
    expected = ["not a JSON object" if reason == "invalid event: must be a JSON object" else reason
                for _text, reason in REJECTED]
    assert events.getvalue() == ""
    assert reasons == expected


def test_a_well_typed_line_is_decoded_typed_and_others_as_json() -> None:
    assert type(decode(line(OFFERED))) is CallEvent
    assert type(decode(line(OFFERED).encode())) is CallEvent
    assert decode(line(OFFERED, note=[1, {"x": None}])) == {**OFFERED, "note": [1, {"x": None}]}
    assert decode(b'{"a": "\xff"}') == {"a": "\ufffd"}  # bytes read as text mode reads them


def test_unknown_fields_are_preserved_and_ignored() -> None:
    text = line(OFFERED, note="ünïcode", nested={"a": [1, 2.5, None, True]}, site="north")
    [event] = decode_block(text.encode() + b"\n").events
    assert dict(event.extra) == {"note": "ünïcode", "nested": {"a": [1, 2.5, None, True]}}
    assert replace(event, extra={}) == replace(parse_event(json.loads(line(OFFERED, site="north"))), extra={})


# --- the same results as before, whatever the line --------------------------------------------

def reference(text: str) -> CallEvent | str | None:
    """A line as replay judged it before msgspec: json.loads, then the checks of a decoded object."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as error:
        return f"not JSON: {str(error).splitlines()[0]}" if text.strip() else None
    try:
        return parse_event(obj)
    except InvalidEvent as error:
        return f"invalid {error}"


def judged(data: bytes) -> CallEvent | str | None:
    block = decode_block(data)
    assert block.line_count == (1 if data else 0) and len(block.events) + len(block.rejected) <= 1
    if block.events:
        return block.events[0]
    return block.rejected[0][1] if block.rejected else None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)
FIELDS = ("v", "event_id", "call_id", "type", "ts", "line", "queue", "site", "agent", "caller", "state", "source")
# Values near the edges of what each field accepts.
EDGES = [
    None, "", "*", "h", "h:", "h:ab12", "hx:1", "07700900123", "2024-03-01T09:00:00.250Z", "2024-03-01T09:00:00Z",
    "2024-03-01T10:00:00.250+01:00", "2024-03-01t09:00:00.250z", "2024-03-01T09:00:00.250",
    "2024-02-30T09:00:00.000Z", "2024-03-01T09:60:00.000Z", "1999-08-01T03:57:46.000Z", "Offered", "\ud800",
    *EVENT_TYPES, *AGENT_STATES, 1, 0, 2, True, False, 1.0, -1, 10**20, [], {}]
edge_values = st.sampled_from(EDGES)
BASES = [OFFERED, AGENT, {**OFFERED, "type": "answered", "agent": "a1", "caller": "h:1f", "site": "s", "source": "x"}]
field_values = st.one_of(json_values, edge_values)


@st.composite
def event_lines(draw: st.DrawFn) -> bytes:
    """A canonical event, then some fields changed, dropped, repeated or added, written in some
    JSON spelling, sometimes damaged."""
    obj: dict[str, Any] = dict(draw(st.sampled_from(BASES)))
    obj["type"] = draw(st.sampled_from(EVENT_TYPES)) if draw(st.booleans()) else obj["type"]
    if draw(st.booleans()):  # one field at an edge, the rest valid
        obj[draw(st.sampled_from(FIELDS))] = draw(edge_values)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            obj.pop(name, None)
        else:
            obj[name] = draw(field_values)
    obj.update(draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2)))
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")])))
    if draw(st.booleans()):  # a key repeated at the end: the last one counts
        name = draw(st.sampled_from(FIELDS))
        text = text[:-1] + ("," if len(obj) else "") + f'"{name}":' + json.dumps(draw(field_values)) + "}"
    data = (draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "\t", "\x0c"]))).encode(
        "utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "bytes"]))
    if damage == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b",", b"}", b'"', b"\\", b"\x00", b"0"])) + data[at:]
    elif damage == "bytes":
        data = draw(st.binary(max_size=40))
    return data.replace(b"\n", b" ").replace(b"\r", b" ")


def test_every_field_at_every_edge_is_judged_as_it_was_before() -> None:
    """Each field of each kind of event set to each edge value (or dropped), one at a time."""
    for base in BASES:
        for kind in EVENT_TYPES:
            for name in FIELDS:
                for value in [DROP, *EDGES]:
                    text = line({**base, "type": kind}, **{name: value})
                    assert judged(text.encode() + b"\n") == reference(text + "\n"), text


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_lines(), st.sampled_from([b"\n", b"\r\n", b""]))
def test_every_line_is_judged_as_it_was_before(data: bytes, end: bytes) -> None:
    expected = reference((data + end).decode("utf-8", "replace").replace("\r\n", "\n"))  # as text mode reads it
    assert judged(data + end) == expected
    if type(expected) is CallEvent:
        assert expected.extra == judged(data + end).extra  # type: ignore[union-attr]


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_the_decoder_never_crashes_and_judges_every_line(data: bytes) -> None:
    block = decode_block(data)
    lines = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines[-1]:
        lines.pop()
    assert block.line_count == len(lines)
    blank = sum(1 for text in lines if not text.strip())
    assert len(block.events) + len(block.rejected) + blank == len(lines)
    for index, reason, raw in block.rejected:
        assert reason.startswith(("invalid ", "not JSON: ")) and "\n" not in reason
        assert raw.rstrip("\n") == lines[index]


json_texts = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.sampled_from(["1e400", "-1e400", "NaN", "-Infinity", "1" * 5000, "[" * 5000, '{"a":1,"a":2}', '"\\ud800"',
                     "1.5e-400", "-0", "0.1", "123456789012345678901234567890"]),
)


@settings(max_examples=1000, deadline=None)
@given(json_texts)
def test_decode_json_is_json_loads(text: str) -> None:
    def outcome(decoder: Any) -> object:
        try:
            return ("value", repr(decoder(text)))
        except (ValueError, RecursionError) as error:
            return ("error", type(error).__name__, str(error))
    assert outcome(decode_json) == outcome(json.loads)


VALID_LINES = [line(base).encode() for base in BASES] + [line(OFFERED, type=kind).encode() for kind in EVENT_TYPES[:-1]]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(VALID_LINES), event_lines()), min_size=1, max_size=8))
def test_a_block_of_lines_is_judged_as_each_line_alone(lines: list[bytes]) -> None:
    """A block is decoded in one go when every line is valid and line by line otherwise: either
    way its events and rejections are those of its lines judged one at a time as before msgspec."""
    block = decode_block(b"\n".join(lines) + b"\n")
    events, rejected = [], []
    for index, one in enumerate(lines):
        outcome = reference((one + b"\n").decode("utf-8", "replace"))  # json.loads, then parse_event
        if type(outcome) is CallEvent:
            events.append(outcome)
        elif outcome is not None:
            rejected.append((index, outcome))
    assert block.events == events
    assert [event.extra for event in block.events] == [event.extra for event in events]
    assert [(index, reason) for index, reason, _raw in block.rejected] == rejected
