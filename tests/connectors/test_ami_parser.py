"""The AMI parser on recorded transcripts: the real Asterisk 13 console capture (one call through
queue Q1) and synthetic fixtures for each outcome; frames split across any reads; console noise,
duplicates and malformed frames; and fuzzing (hypothesis): no input makes it raise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.ami import AmiFramer, AmiMapping, AmiMessage, AmiParser, InvalidFrame, OverlapFilter, parse_transcript
from connectors.errors import ConfigurationError
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from streams.domain.events import parse_event, parse_ts
from tests.real_data import excerpt, whole_file

REPO = Path(__file__).resolve().parents[2]
CAPTURE = excerpt("asterisk_ami_capture_queue_call.txt")  # tests/fixtures/real/README.md
FIXTURES = Path(__file__).parent / "fixtures" / "ami"
KEY = pseudonymiser(b"test-key")
MAPPING = AmiMapping(parse_queue_lines("999-emergency=999,Q1=101,*=101"))
T0 = 1_709_290_000_000  # the receiving clock, for frames without a Timestamp header
# Caller numbers in the fixtures (fictitious: Ofcom's drama range) and their names.
FIXTURE_NUMBERS = ("07700900123", "07700900456", "07700900789", "07700900321")
FIXTURE_NAMES = ("A Caller", "Another Caller", "Third Caller", "Fourth Caller")


def capture_text() -> str:
    return CAPTURE.read_text(encoding="utf-8")


def whole_capture_text() -> str:
    """The whole console capture: its console noise and doubly printed frames are what some tests
    are about (the excerpt keeps the frames that matter to the mapping, not all that noise)."""
    return whole_file("asterisk_ami_capture_queue_call.txt").read_text(encoding="utf-8")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def parse(text: str | bytes, mapping: AmiMapping = MAPPING, chunk_size: int | None = None) -> list[Any]:
    return parse_transcript(text, mapping, KEY, T0, chunk_size)


def events(items: list[Any]) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)]


def rejected(items: list[Any]) -> list[InvalidFrame]:
    return [item for item in items if isinstance(item, InvalidFrame)]


def ms(event: dict[str, Any]) -> int:
    return parse_ts(event["ts"])


def call_events(items: list[Any]) -> list[tuple[str, str]]:
    return [(e["type"], e["queue"]) for e in events(items) if e["type"] != "agent_state"]


def frames_of(text: str) -> list[str]:
    """A wire transcript split into its frames (each with its blank line)."""
    return [block + "\n\n" for block in text.strip("\n").split("\n\n")]


# --- the real capture ---------------------------------------------------------------------------

def test_real_capture_is_one_call_offered_on_q1_answered_after_its_hold_time_then_ended() -> None:
    items = parse(capture_text())
    assert rejected(items) == []
    calls = [e for e in events(items) if e["type"] != "agent_state"]
    assert [e["type"] for e in calls] == ["offered", "answered", "ended"]
    offered, answered, ended = calls
    assert {e["call_id"] for e in calls} == {"1514295827.372"}
    assert {(e["queue"], e["line"], e["site"], e["source"]) for e in calls} == {("Q1", "101", "default", "ami")}
    # No Timestamp headers in the capture: the offer is when it arrived, the answer HoldTime 9 s
    # later and the end TalkTime 3 s after that, as Asterisk itself measured them.
    assert ms(offered) == T0
    assert ms(answered) - ms(offered) == 9_000
    assert ms(ended) - ms(answered) == 3_000
    assert offered["caller"] == KEY.caller("123")
    assert answered["agent"] == ended["agent"] == KEY.agent("SIP/777")
    for event in events(items):
        parse_event(dict(event))  # every one is a valid canonical event


def test_real_capture_agent_states_follow_the_handler_through_the_call() -> None:
    states = [e for e in events(parse(capture_text())) if e["type"] == "agent_state"]
    # QueueMemberStatus 1 (not in use), 6 (ringing), 2 (in use), 1: reserved while rung.
    assert [e["state"] for e in states] == ["available", "busy", "busy", "available"]
    assert {(e["agent"], e["queue"], e["line"]) for e in states} == {(KEY.agent("SIP/777"), "Q1", "101")}
    assert all("call_id" not in e for e in states)


@pytest.mark.parametrize("chunk_size", [1, 2, 61, 4096])
def test_real_capture_read_in_any_pieces_gives_the_same_events(chunk_size: int) -> None:
    text = capture_text()
    whole = events(parse(text))
    assert events(parse(text.encode("utf-8"), chunk_size=chunk_size)) == whole
    assert events(parse(text.replace("\n", "\r\n").encode("utf-8"), chunk_size=chunk_size)) == whole


def test_real_capture_console_noise_is_skipped_not_counted_as_errors() -> None:
    text = whole_capture_text()
    framer = AmiFramer()
    messages = framer.feed(text) + framer.flush()
    assert framer.counts.invalid_frames == 0
    assert framer.counts.noise_lines > 100  # verbose lines, log lines, DumpChan output, the prompt
    frames = [m for m in messages if isinstance(m, AmiMessage)]
    sequences = [m.get("SequenceNumber") for m in frames]
    # Frames whose last header was empty got the next console marker glued to that line...
    for number in range(7703, 7709):
        assert str(number) in sequences
    assert next(m for m in frames if m.get("SequenceNumber") == "7703").get("Value") == ""
    assert all(m.event for m in frames)
    # DumpChan output ("Info:", "Name=  ...") and log lines between frames are noise, not frames.
    assert not any(m.get("Info") or m.get("Variables") for m in frames)


def test_an_event_printed_over_by_the_next_one_is_two_frames() -> None:
    framer = AmiFramer()
    messages = framer.feed("<-- Examining AMI event: -->\nEvent: RTCPReceived\nEvent: Newexten\nPrivilege: call,all\n\n")
    assert [m.headers for m in messages if isinstance(m, AmiMessage)] == [
        (("Event", "RTCPReceived"),), (("Event", "Newexten"), ("Privilege", "call,all"))]


def test_real_capture_printed_twice_still_gives_one_event_each() -> None:
    text = whole_capture_text()
    sequences = re.findall(r"^SequenceNumber: (\d+)$", text, re.M)
    printed_twice = {s for s in sequences if sequences.count(s) == 2}
    assert len(printed_twice) == 16  # the console printed these frames twice, identically
    framer = AmiFramer()
    frames = [m for m in framer.feed(text) + framer.flush() if isinstance(m, AmiMessage)]
    for sequence in printed_twice:
        first, second = [m.headers for m in frames if m.get("SequenceNumber") == sequence]
        assert first == second
    once = events(parse(text))
    # The same happening to the frames the mapping reads: each queue frame printed twice in place.
    doubled = re.sub(r"(<-- Examining AMI event: -->\nEvent: (?:Queue|Agent)[^\n]*\n(?:[^\n]+\n)*\n)", r"\1\1", text)
    assert doubled.count("Event: QueueCallerJoin") == 2
    parser = AmiParser(MAPPING, KEY)
    twice = events(parser.feed(doubled, T0) + parser.finish(T0))
    assert twice == once
    # Each SequenceNumber maps once: the capture's own 16 repeats and the 8 queue frames doubled here.
    numbered = re.findall(r"^SequenceNumber: (\d+)$", doubled, re.M)
    assert len(numbered) - len(set(numbered)) >= 16 + 8
    assert parser.overlap.counts.console_repeats == len(numbered) - len(set(numbered))
    # A whole replay of the stream after a reconnect: the same frames, no new events.
    parser.new_connection()
    parser.feed(text, T0)
    assert events(parser.finish(T0)) == []


# --- one fixture per outcome --------------------------------------------------------------------

def test_answered_call_with_timestamps_measures_answer_and_talk_time_exactly() -> None:
    items = parse(fixture("answered_call.txt"))
    calls = [e for e in events(items) if e["type"] != "agent_state"]
    assert [e["type"] for e in calls] == ["offered", "answered", "ended"]
    offered, answered, ended = calls
    assert offered["ts"] == "2024-03-01T09:00:00.250Z" and offered["line"] == "999"
    assert ms(answered) - ms(offered) == 4_500  # Timestamp headers beat the whole-second HoldTime
    assert ms(ended) - ms(answered) == 95_200
    assert answered["agent"] == KEY.agent("PJSIP/handler-01")
    # The QueueCallerLeave before AgentConnect is the leave on answer, never a timeout.
    assert "timeout" not in [e["type"] for e in events(items)]
    states = [(e["state"], e["ts"]) for e in events(items) if e["type"] == "agent_state"]
    assert states == [("available", "2024-03-01T08:59:55.000Z"), ("busy", "2024-03-01T09:00:00.310Z"),
                      ("busy", "2024-03-01T09:00:04.760Z"), ("available", "2024-03-01T09:01:40.050Z")]


def test_abandoned_call_is_the_callers_own_hang_up() -> None:
    items = parse(fixture("abandoned_call.txt"))
    assert call_events(items) == [("offered", "101-general"), ("abandoned", "101-general")]
    offered, abandoned = events(items)
    assert ms(abandoned) - ms(offered) == 12_420
    assert offered["line"] == "101"  # not listed: the default line


def test_queue_timeout_is_a_timeout_although_asterisk_calls_it_an_abandon() -> None:
    # Queue() timing out sends QueueCallerAbandon, then QUEUESTATUS=TIMEOUT; the caller hanging up
    # later, in voicemail, does not make it an abandon.
    items = parse(fixture("timeout_call.txt"))
    assert call_events(items) == [("offered", "101-general"), ("timeout", "101-general")]
    offered, timeout = events(items)
    assert ms(timeout) - ms(offered) == 60_000  # HoldTime 60, no Timestamp headers


def test_timeout_without_dialplan_events_is_decided_when_the_window_passes() -> None:
    frames = [f for f in frames_of(fixture("timeout_call.txt")) if "QUEUESTATUS" not in f]
    arrivals_s = [0, 15, 60, 60, 61, 95, 95]  # voicemail; the caller hangs up 35 s later
    parser = AmiParser(MAPPING, KEY)
    timeline = []
    for frame, at_s in zip(frames, arrivals_s, strict=True):
        timeline += [(at_s, e["type"]) for e in events(parser.feed(frame, T0 + at_s * 1000))]
    assert timeline == [(0, "offered"), (95, "timeout")]
    # Live, a quiet stream is decided by the clock alone.
    parser = AmiParser(MAPPING, KEY)
    for frame, at_s in zip(frames[:4], arrivals_s[:4], strict=True):
        parser.feed(frame, T0 + at_s * 1000)
    assert parser.tick(T0 + 65_000) == []
    assert [e["type"] for e in events(parser.tick(T0 + 65_001))] == ["timeout"]


def test_hang_up_just_after_the_exit_is_an_abandon_unless_the_queue_let_go_first() -> None:
    frames = frames_of(fixture("abandoned_call.txt"))
    join, request, abandon, leave, hangup = frames
    assert call_events(parse(join + abandon + leave + request + hangup))[-1] == ("abandoned", "101-general")
    status = ("Event: VarSet\nPrivilege: dialplan,all\nTimestamp: 1709283672.450000\nUniqueid: 1709283660.201\n"
              "Variable: QUEUESTATUS\nValue: LEAVEEMPTY\n\n")
    assert call_events(parse(join + abandon + leave + status + request + hangup))[-1] == ("timeout", "101-general")


def test_transfer_between_queues_is_a_transferred_leg_then_a_new_offer() -> None:
    items = parse(fixture("transfer_between_queues.txt"))
    assert call_events(items) == [("offered", "101-general"), ("transferred", "101-general"),
                                  ("offered", "101-overflow"), ("answered", "101-overflow"),
                                  ("ended", "101-overflow")]
    offered, transferred, offered_again, answered, _ended = events(items)
    assert {e["call_id"] for e in events(items)} == {"1709290000.401"}
    assert ms(transferred) - ms(offered) == 30_000
    assert ms(answered) - ms(offered_again) == 8_150
    assert offered_again["caller"] == offered["caller"] == KEY.caller("07700900321")


def test_a_join_after_the_window_is_a_new_call_not_a_transfer() -> None:
    text = fixture("transfer_between_queues.txt").replace("Timestamp: 1709290031.500000", "Timestamp: 1709290036.500000")
    assert call_events(parse(text))[:3] == [("offered", "101-general"), ("timeout", "101-general"),
                                            ("offered", "101-overflow")]


def test_agent_states_from_member_status_pause_added_and_removed() -> None:
    states = [(e["queue"], e["state"]) for e in events(parse(fixture("agent_status.txt")))]
    assert states == [("101-general", "available"), ("101-general", "away"), ("101-general", "available"),
                      ("101-general", "busy"), ("101-general", "wrapup"), ("101-general", "logged_out"),
                      ("101-general", "logged_out"), ("999-emergency", "away")]  # the last: Asterisk 1.8 names
    agents = {e["agent"] for e in events(parse(fixture("agent_status.txt")))}
    assert agents == {KEY.agent("Local/2009@agents/n"), KEY.agent("SIP/2010")}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.txt")))
def test_every_fixture_gives_valid_events_with_stable_ids_and_no_personal_data(name: str) -> None:
    text = fixture(name)
    first, again = parse(text), parse(text.replace("\n", "\r\n"), chunk_size=7)
    assert rejected(first) == []
    assert [e["event_id"] for e in events(first)] == [e["event_id"] for e in events(again)]
    assert len({e["event_id"] for e in events(first)}) == len(events(first))
    for event in events(first):
        parse_event(dict(event))
    dumped = json.dumps(first)
    for secret in FIXTURE_NUMBERS + FIXTURE_NAMES + ("handler-01", "Call handler"):
        assert secret not in dumped


def test_join_and_leave_of_asterisk_1_8_are_understood() -> None:
    text = ("Event: Join\nPrivilege: call,all\nChannel: SIP/trunk-01\nCallerIDNum: 07700900555\nQueue: Q1\n"
            "Position: 1\nCount: 1\nUniqueid: 1300000000.1\n\n"
            "Event: Leave\nPrivilege: call,all\nChannel: SIP/trunk-01\nQueue: Q1\nCount: 0\nUniqueid: 1300000000.1\n\n")
    assert call_events(parse(text)) == [("offered", "Q1"), ("timeout", "Q1")]


# --- a caller looping through a queue (default Asterisk: no Timestamp, no SequenceNumber) -------

LOOPS = {
    # fixture: (its call events, what decided the unanswered exits)
    "loop_asterisk13.txt": (
        ["offered", "transferred", "offered", "transferred", "offered", "answered", "ended"],
        {"transferred: the call joined a queue again": 2}),
    "loop_asterisk13_timestamps.txt": (
        ["offered", "transferred"] * 3 + ["offered", "abandoned"],
        {"transferred: the call joined a queue again": 3, "abandoned: the caller's HangupRequest": 1}),
    "loop_asterisk18.txt": (
        ["offered", "transferred"] * 3 + ["offered", "abandoned"],
        {"transferred: the call joined a queue again": 3,
         "abandoned: inferred: Hangup without a request, normal clearing cause": 1}),
    "loop_asterisk18_timestamps.txt": (
        ["offered", "transferred", "offered", "answered", "ended"],
        {"transferred: the call joined a queue again": 1}),
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_every_visit_of_a_queue_loop_is_its_own_leg(name: str) -> None:
    text = fixture(name)
    kinds, decided = LOOPS[name]
    parser = AmiParser(MAPPING, KEY)
    items = parser.feed(text, T0) + parser.finish(T0)
    calls = [e for e in events(items) if e["type"] != "agent_state"]
    assert [e["type"] for e in calls] == kinds
    assert parser.mapper.counts.decided == decided
    assert len({e["event_id"] for e in calls}) == len(calls)  # nothing a pipeline would drop as a repeat
    assert len({e["call_id"] for e in calls}) == 1
    times = [ms(e) for e in calls]
    assert times == sorted(times)  # each offer after the exit it follows, even replayed in an instant
    for event in calls:
        parse_event(dict(event))
    assert rejected(items) == [] and parser.overlap.counts == type(parser.overlap.counts)()


def test_without_timestamps_the_visits_send_byte_identical_frames() -> None:
    # What makes the loop hard: the fixture's frames of the three visits are the same bytes.
    frames = frames_of(fixture("loop_asterisk13.txt"))
    joins = [f for f in frames if f.startswith("Event: QueueCallerJoin")]
    exits = [f for f in frames if f.startswith("Event: QueueCallerAbandon")]
    assert len(joins) == 3 and len(set(joins)) == 1 and len(exits) == 2 and len(set(exits)) == 1
    assert "Timestamp:" not in fixture("loop_asterisk13.txt") and "SequenceNumber:" not in fixture("loop_asterisk13.txt")
    calls = [e for e in events(parse(fixture("loop_asterisk13.txt"))) if e["type"] != "agent_state"]
    offered = [e for e in calls if e["type"] == "offered"]
    assert [ms(e) - ms(offered[0]) for e in offered] == [0, 20_000, 40_000]  # placed by each HoldTime
    answered = next(e for e in calls if e["type"] == "answered")
    assert ms(answered) - ms(offered[-1]) == 7_000 and answered["agent"] == KEY.agent("PJSIP/handler-02")


def test_a_loop_replayed_in_real_time_decides_each_visit_as_it_goes() -> None:
    # Frames arriving as on the wire: the re-join comes 3 s after the exit, inside the window.
    frames = frames_of(fixture("loop_asterisk18.txt"))
    parser = AmiParser(MAPPING, KEY)
    clock, timeline = T0, []
    for frame in frames:
        clock += 20_000 if frame.startswith("Event: QueueCallerAbandon") else 1_000
        timeline += [e["type"] for e in events(parser.feed(frame, clock) + parser.tick(clock))]
    assert timeline == ["offered", "transferred"] * 3 + ["offered", "abandoned"]


def test_after_a_reconnection_a_replay_of_the_whole_earlier_connection_is_dropped() -> None:
    text = fixture("loop_asterisk13.txt")
    frames = frames_of(text)
    parser = AmiParser(MAPPING, KEY)
    first = events(parser.feed("".join(frames[:9]), T0))   # the connection is lost after visit 2's join
    parser.framer.reset()
    parser.new_connection()
    again = events(parser.feed(text, T0) + parser.finish(T0))  # a recorder replays from its start
    expected = events(parse(text))
    assert [e["event_id"] for e in first + again] == [e["event_id"] for e in expected]
    assert parser.overlap.counts.replayed == 9


def test_after_a_reconnection_frames_like_earlier_ones_but_not_a_replay_are_kept() -> None:
    # A live Asterisk never replays: the new connection starts like the old one (the same agent
    # status), then differs. The held frames are new after all, in order.
    status = frames_of(fixture("agent_status.txt"))[0]
    join = frames_of(fixture("loop_asterisk13.txt"))[0]
    parser = AmiParser(MAPPING, KEY)
    first = events(parser.feed(status + join + status, T0))
    parser.new_connection()
    assert parser.feed(status + join, T0 + 1_000) == []  # held: could be the start of a replay
    second = events(parser.feed(status.replace("Paused: 0", "Paused: 1"), T0 + 2_000))
    assert [e["type"] for e in first] == ["agent_state", "offered", "agent_state"]
    assert [e["type"] for e in second] == ["agent_state", "offered", "agent_state"]
    assert len({e["event_id"] for e in first + second}) == 6
    assert parser.overlap.counts.held_then_new == 2 and parser.overlap.counts.replayed == 0
    # Held frames also go on when nothing follows them for a while.
    parser.new_connection()
    assert parser.feed(status, T0 + 3_000) == []
    assert parser.tick(T0 + 4_000) == []
    assert [e["type"] for e in events(parser.tick(T0 + 5_001))] == ["agent_state"]


def test_exits_without_hang_up_requests_are_decided_by_the_best_signal_and_counted() -> None:
    join, abandon, leave = (frames_of(fixture("loop_asterisk18.txt"))[i] for i in (0, 1, 2))
    hangup = frames_of(fixture("loop_asterisk18.txt"))[-1]
    status = next(f for f in frames_of(fixture("loop_asterisk18.txt")) if "QUEUESTATUS" in f)
    cases = [
        (join + abandon + leave + status + hangup, "timeout", "timeout: QUEUESTATUS set to a system exit"),
        (join + leave + hangup, "timeout", "timeout: QueueCallerLeave without QueueCallerAbandon"),
        (join + abandon + leave + hangup, "abandoned",
         "abandoned: inferred: Hangup without a request, normal clearing cause"),
        (join + abandon + leave + hangup.replace("Cause: 16", "Cause: 38"), "timeout",
         "timeout: inferred: Hangup without a request, cause not normal clearing"),
        (join + abandon + leave, "timeout", "timeout: inferred: the recording ended within the decision window"),
    ]
    for text, outcome, evidence in cases:
        parser = AmiParser(MAPPING, KEY)
        items = parser.feed(text, T0) + parser.finish(T0)
        assert [e["type"] for e in events(items)] == ["offered", outcome], evidence
        assert parser.mapper.counts.decided == {evidence: 1}
        assert parser.mapper.counts.inferred == ({evidence: 1} if "inferred" in evidence else {})


# --- bad input ----------------------------------------------------------------------------------

GOOD_JOIN = ("Event: QueueCallerJoin\nPrivilege: agent,all\nCallerIDNum: 07700900999\nCallerIDName: Jo Bloggs\n"
             "Uniqueid: 1709290500.9\nLinkedid: 1709290500.9\nQueue: Q1\nPosition: 1\nCount: 1\n\n")


def test_malformed_frames_are_rejected_with_a_reason_and_the_stream_goes_on() -> None:
    text = (
        "Asterisk Call Manager/5.0.1\n"
        "Event: QueueCallerJoin\nPrivilege: agent,all\nCallerIDNum 07700900999\nUniqueid: 1.1\nQueue: Q1\n\n"
        "Event: QueueCallerJoin\nCallerIDNum: 07700900999\nQueue: Q1\n\n"
        "Event: AgentConnect\nUniqueid: 1.2\nQueue: Q1\nHoldTime: soon\nInterface: SIP/2001\n\n"
        "Event: QueueCallerAbandon\nTimestamp: yesterday\nUniqueid: 1.3\nQueue: Q1\n\n"
        "Event: QueueMemberStatus\nQueue: Q1\nStatus: 1\n\n"
        "Privilege: agent,all\nCallerIDNum: 07700900999\nQueue: Q1\n\n"
        "Event: Newexten\nAppData: " + "x" * 20_000 + "\nUniqueid: 1.4\n\n"
        "    -- Executing [101@from-101:1] Queue(\"SIP/trunk-01\", \"Q1\") in new stack\n"
        + GOOD_JOIN)
    items = parse(text, chunk_size=500)
    reasons = [(item.location, item.reason) for item in rejected(items)]
    assert reasons == [
        ("frame 1", "line without a colon inside a frame: 'CallerIDNum <number>'"),
        ("frame 2", "QueueCallerJoin frame without Uniqueid"),
        ("frame 3", "bad HoldTime 'soon' in AgentConnect (whole seconds expected)"),
        ("frame 4", "bad Timestamp 'yesterday' (epoch seconds expected)"),
        ("frame 5", "QueueMemberStatus frame without Interface or MemberName"),
        ("frame 6", "header lines without an Event or Response line"),
        ("frame 7", "line longer than 16384 characters"),
    ]
    assert call_events(items) == [("offered", "Q1")]  # the good frame after them all
    payloads = "\n".join(item.payload for item in rejected(items))
    assert "07700900999" not in payloads and "Jo Bloggs" not in payloads
    assert "CallerIDNum: <redacted>" in payloads and "Queue: Q1" in payloads


def test_greeting_command_output_and_blank_lines_are_not_frames() -> None:
    framer = AmiFramer()
    messages = framer.feed("Asterisk Call Manager/5.0.1\r\n\r\n\r\nResponse: Follows\r\nPrivilege: Command\r\n"
                           "Name/username  Host  Dyn\r\n2001/2001  (Unspecified)  D\r\n--END COMMAND--\r\n\r\n"
                           "Response: Success\r\nActionID: 7\r\nPing: Pong\r\n\r\n")
    assert [m.get("Response") for m in messages if isinstance(m, AmiMessage)] == ["Follows", "Success"]
    assert all(isinstance(m, AmiMessage) and m.is_response and not m.is_event for m in messages)
    assert framer.counts.invalid_frames == 0 and framer.counts.noise_lines == 1


def test_a_connection_lost_mid_frame_drops_the_partial_frame_only() -> None:
    framer = AmiFramer()
    assert framer.feed("Event: QueueCallerJoin\r\nQueue: Q1\r\nUnique") == []
    assert framer.reset() == 3
    messages = framer.feed(GOOD_JOIN.encode("utf-8"))
    assert [m.get("Uniqueid") for m in messages if isinstance(m, AmiMessage)] == ["1709290500.9"]


def test_a_utf8_character_split_between_reads_survives() -> None:
    frame = "Event: QueueMemberStatus\r\nQueue: Q1\r\nInterface: PJSIP/ana\u00efs\r\nStatus: 1\r\n\r\n".encode("utf-8")
    split_at = frame.index("\u00ef".encode("utf-8")) + 1
    framer = AmiFramer()
    messages = framer.feed(frame[:split_at]) + framer.feed(frame[split_at:])
    assert [m.get("Interface") for m in messages if isinstance(m, AmiMessage)] == ["PJSIP/ana\u00efs"]


# --- fuzzing --------------------------------------------------------------------------------------

MAPPED_EVENTS = ("QueueCallerJoin", "AgentConnect", "QueueCallerAbandon", "QueueCallerLeave", "AgentComplete",
                 "QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved", "Hangup",
                 "HangupRequest", "SoftHangupRequest", "VarSet", "Join", "Leave", "Newexten")
HEADER_NAMES = ("Uniqueid", "Linkedid", "Queue", "HoldTime", "TalkTime", "Timestamp", "SequenceNumber",
                "CallerIDNum", "Interface", "MemberName", "Status", "Paused", "PausedReason", "InCall",
                "Variable", "Value", "Location", "X-Odd")
VALUES = st.one_of(st.sampled_from(["", "1", "0", "5", "Q1", "1.1", "1.2", "QUEUESTATUS", "TIMEOUT", "1709290000.5",
                                    "99999999999", "-3", "NaN", "1e9", "\u0663", "<unknown>", "SIP/1"]),
                   st.text(max_size=12))


def _check(items: list[Any]) -> None:
    for item in items:
        if isinstance(item, dict):
            parse_event(dict(item))  # whatever it makes is canonical
        else:
            assert isinstance(item, InvalidFrame) and item.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_fuzz_no_bytes_make_the_parser_raise(data: bytes, chunk: int) -> None:
    _check(parse(data, chunk_size=chunk))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["Event", "Response", *HEADER_NAMES, "", "<-- Examining AMI event: -->"]),
                          st.text(max_size=20), st.sampled_from([": ", ":", " ", "\n", "\r\n\r\n", "\n\n"])),
                max_size=60))
def test_fuzz_no_text_made_of_ami_pieces_makes_the_parser_raise(pieces: list[tuple[str, str, str]]) -> None:
    _check(parse("".join(name + sep + value + "\r\n" for name, value, sep in pieces)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(MAPPED_EVENTS), st.sampled_from(["1.1", "1.2", "2.1", ""]),
                          st.sampled_from(["Q1", "Q2", ""]),
                          st.lists(st.tuples(st.sampled_from(HEADER_NAMES), VALUES), max_size=6),
                          st.integers(min_value=0, max_value=2_500)),
                max_size=30))
def test_fuzz_no_sequence_of_queue_frames_makes_the_mapper_raise(
        frames: list[tuple[str, str, str, list[tuple[str, str]], int]]) -> None:
    parser = AmiParser(AmiMapping(decision_window_ms=1_000), KEY, memory=8)
    out: list[Any] = []
    clock = T0
    for name, uid, queue, headers, gap_ms in frames:
        clock += gap_ms
        lines = [f"Event: {name}"] + [f"{key}: {value}" for key, value in
                                      [("Uniqueid", uid), ("Queue", queue), ("Interface", "SIP/" + uid)] if value]
        lines += [f"{key}: {value}".replace("\n", " ").replace("\r", " ") for key, value in headers]
        out += parser.feed("\r\n".join(lines) + "\r\n\r\n", clock)
        out += parser.tick(clock)
    out += parser.finish(clock)
    _check(out)


# The overlap filter against a brute-force reference that shares no code with it: on one connection
# every frame is new; a later connection's frames are dropped only when they begin by repeating, in
# order, every frame that was new before it, and then only those.
LOOP_FRAMES = [AmiMessage((("Event", "QueueCallerJoin"), ("Uniqueid", "7.1"), ("Queue", "Q1"))),
               AmiMessage((("Event", "QueueCallerAbandon"), ("Uniqueid", "7.1"), ("Queue", "Q1"))),
               AmiMessage((("Event", "QueueMemberStatus"), ("Queue", "Q1"), ("Interface", "SIP/1")))]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 2), max_size=8)), min_size=1, max_size=4))
def test_fuzz_the_overlap_filter_drops_only_a_whole_replay(connections: list[tuple[bool, list[int]]]) -> None:
    overlap = OverlapFilter()
    delivered: list[int] = []  # the reference's stream of new frames (indexes into LOOP_FRAMES)
    for number, (replays, tail) in enumerate(connections):
        frames = (delivered + tail) if replays and number else tail
        if number:
            assert overlap.new_connection() == []  # nothing held across a clean boundary here
        got: list[tuple[int, int]] = []
        for index in frames:
            got += [(LOOP_FRAMES.index(f.message), f.occurrence) for f in overlap.admit(LOOP_FRAMES[index], T0)]
        got += [(LOOP_FRAMES.index(f.message), f.occurrence) for f in overlap.new_connection()]
        whole_replay = number > 0 and len(delivered) > 0 and frames[:len(delivered)] == delivered
        expected_new = frames[len(delivered):] if whole_replay else frames
        expected = []
        for index in expected_new:
            delivered.append(index)
            expected.append((index, delivered.count(index)))
        assert got == expected
