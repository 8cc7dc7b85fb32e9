"""The queue_log parser: every event mapping on hand-written pipe-format fixtures, overflow and agent
transfers, agent states, identities and ids, the memory carried across a restart, the real PBXware
export, and fuzzing (no input makes it raise)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.errors import ConfigurationError, InvalidRecord
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.queue_log.exports import DELIMITERS, EXPORT, detect_layout, is_decoration, split_cells
from connectors.queue_log.queue_log_parser import (
    BLANK_LINE, INFORMATIONAL, OUTBOUND_DIAL, RING_ATTEMPT, SYSTEM_EVENT, UNKNOWN_EVENT,
    IgnoredRecord, ParsedItem, ParserConfig, QueueLogParser, agent_name, record_of_line, record_of_row)
from streams.domain.events import parse_event, parse_ts
from streams.domain.windows import zone
from tests.real_data import whole_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "queue_log"
CALLS = FIXTURES / "calls.queue_log"
MALFORMED = FIXTURES / "malformed.queue_log"
REAL_NAME = "asterisk_queue_log_pbxware.csv"  # the whole export (tests/fixtures/real/README.md)
KEY = pseudonymiser(b"test-key")
LINES = parse_queue_lines("Q999=999,Q999B=999,Q101=101")


def parser(**config: Any) -> QueueLogParser:
    return QueueLogParser(ParserConfig(**{"lines": LINES, **config}), KEY)


def parse_all(lines: list[str], p: QueueLogParser | None = None) -> list[ParsedItem]:
    p = p or parser()
    items: list[ParsedItem] = []
    for number, line in enumerate(lines, 1):
        items.extend(p.parse_line(line, number))
    return items + p.flush()


def events_of(items: list[ParsedItem]) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)]


def calls(items: list[ParsedItem]) -> dict[str, list[tuple[str, str]]]:
    """callid -> [(type, queue)] of its call events, in order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for event in events_of(items):
        if event["type"] != "agent_state":
            out.setdefault(event["call_id"], []).append((event["type"], event["queue"]))
    return out


@pytest.fixture(scope="module")
def fixture_items() -> list[ParsedItem]:
    return parse_all(CALLS.read_text().splitlines())


# --- mapping ------------------------------------------------------------------------------------------

def test_every_event_is_canonical(fixture_items: list[ParsedItem]) -> None:
    events = events_of(fixture_items)
    assert events and not [i for i in fixture_items if isinstance(i, InvalidRecord)]
    for event in events:
        parse_event(event)  # raises if not canonical
        assert event["source"] == "queue-log" and event["site"] == "default"
    assert len({e["event_id"] for e in events}) == len(events)


def test_each_call_outcome(fixture_items: list[ParsedItem]) -> None:
    by_call = calls(fixture_items)
    assert by_call["1709283605.1"] == [("offered", "Q999"), ("answered", "Q999"), ("ended", "Q999")]
    assert by_call["1709283715.3"] == [("offered", "Q101"), ("abandoned", "Q101")]
    # EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY: the system (or the caller's key) took it out unanswered.
    for callid in ("1709283790.4", "1709284190.5", "1709284290.6"):
        assert by_call[callid] == [("offered", "Q101"), ("timeout", "Q101")]
    assert by_call["1709284395.7"] == [("offered", "Q101"), ("answered", "Q101"), ("ended", "Q101")]
    assert by_call["1709285895.19"] == [("offered", "Q101")]


def test_lines_come_from_the_queue_mapping(fixture_items: list[ParsedItem]) -> None:
    for event in events_of(fixture_items):
        if "queue" in event:
            assert event["line"] == LINES.line_of(event["queue"])


def test_times_are_the_line_times_and_answer_time_equals_holdtime() -> None:
    lines = CALLS.read_text().splitlines()
    items = parse_all(lines)
    offered = {e["call_id"] + e["queue"]: parse_ts(e["ts"]) for e in events_of(items) if e["type"] == "offered"}
    connects = [line.split("|") for line in lines if "|CONNECT|" in line]
    answered = {e["call_id"] + e["queue"]: parse_ts(e["ts"]) for e in events_of(items) if e["type"] == "answered"}
    assert len(connects) == len(answered) == 6
    for fields in connects:
        key = fields[1] + fields[2]
        assert answered[key] == int(fields[0]) * 1000
        assert answered[key] - offered[key] == int(fields[5]) * 1000  # data1 = holdtime


def test_overflow_to_another_queue_at_once_is_a_transfer(fixture_items: list[ParsedItem]) -> None:
    assert calls(fixture_items)["1709284590.9"] == [
        ("offered", "Q999"), ("transferred", "Q999"), ("offered", "Q999B"), ("answered", "Q999B"),
        ("ended", "Q999B")]


def test_entering_another_queue_later_than_the_overflow_window_follows_a_timeout() -> None:
    lines = ["1709284600|c.9|Q999|NONE|ENTERQUEUE||07700900007|1",
             "1709284630|c.9|Q999|NONE|EXITWITHTIMEOUT|1|1|30",
             "1709284640|c.9|Q999B|NONE|ENTERQUEUE||07700900007|1"]
    assert calls(parse_all(lines))["c.9"] == [("offered", "Q999"), ("timeout", "Q999"), ("offered", "Q999B")]
    assert calls(parse_all(lines, parser(overflow_window_s=10)))["c.9"][1] == ("transferred", "Q999")
    # Back into the same queue at once (a Queue() loop in the dialplan): still waiting, as on AMI.
    same = lines[:2] + ["1709284631|c.9|Q999|NONE|ENTERQUEUE||07700900007|1"]
    assert calls(parse_all(same))["c.9"] == [("offered", "Q999"), ("transferred", "Q999"), ("offered", "Q999")]


def test_a_held_exit_is_released_by_stream_time_not_only_at_the_end() -> None:
    p = parser()
    assert p.parse_line("1709284630|c.1|Q999|NONE|EXITWITHTIMEOUT|1|1|30") == []
    assert p.holding == 1
    assert p.parse_line("1709284632|c.2|Q999|NONE|ENTERQUEUE||07700900007|1")[0]["type"] == "offered"  # type: ignore[index]
    released = p.parse_line("1709284633|c.3|Q999|NONE|ENTERQUEUE||07700900008|1")
    assert [e["type"] for e in events_of(released)] == ["timeout", "offered"]
    assert p.holding == 0


def test_agent_transfers_end_the_answered_leg_and_a_new_queue_is_a_new_leg(fixture_items: list[ParsedItem]) -> None:
    by_call = calls(fixture_items)
    # BLINDTRANSFER after CONNECT: that leg was answered and is over; the call then waits in Q999 afresh.
    assert by_call["1709284790.11"] == [
        ("offered", "Q101"), ("answered", "Q101"), ("ended", "Q101"),
        ("offered", "Q999"), ("answered", "Q999"), ("ended", "Q999")]
    assert by_call["1709284995.15"] == [("offered", "Q101"), ("answered", "Q101"), ("ended", "Q101")]


def test_agent_states(fixture_items: list[ParsedItem]) -> None:
    states: dict[str, list[tuple[str, str | None]]] = {}
    for event in events_of(fixture_items):
        if event["type"] == "agent_state":
            states.setdefault(event["agent"], []).append((event["state"], event.get("queue")))
            assert "call_id" not in event
    handler_2002 = KEY.agent("2002")
    assert states[handler_2002] == [
        ("available", "Q101"),                       # ADDMEMBER
        ("busy", "Q101"), ("available", "Q101"),     # CONNECT, COMPLETEAGENT
        ("busy", "Q101"), ("available", "Q101"),     # CONNECT, BLINDTRANSFER
        ("busy", "Q101"), ("available", "Q101"),     # CONNECT, TRANSFER
        ("away", "Q101"), ("available", "Q101"),     # PAUSE, UNPAUSE
        ("logged_out", "Q101")]                      # REMOVEMEMBER
    assert states[KEY.agent("2003")] == [("available", None), ("logged_out", None)]


def test_pause_during_a_call_shows_busy_then_away() -> None:
    items = parse_all(["1709284400|NONE|Q101|SIP/7|ADDMEMBER|",
                       "1709284405|c.1|Q101|SIP/7|CONNECT|5|x|2",
                       "1709284410|NONE|Q101|SIP/7|PAUSE|break",
                       "1709284500|c.1|Q101|SIP/7|COMPLETECALLER|5|95|1",
                       "1709284600|NONE|NONE|SIP/7|UNPAUSEALL|"])
    assert [e["state"] for e in events_of(items) if e["type"] == "agent_state"] == [
        "available", "busy", "busy", "away", "available"]


def test_removal_from_one_of_several_queues_leaves_the_agent_in_the_others() -> None:
    items = parse_all(["1709284400|NONE|Q101|SIP/7|ADDMEMBER|", "1709284401|NONE|Q999|SIP/7|ADDMEMBER|",
                       "1709284500|NONE|Q999|SIP/7|REMOVEMEMBER|", "1709284600|NONE|Q101|SIP/7|REMOVEMEMBER|"])
    assert [(e["state"], e["queue"]) for e in events_of(items)] == [
        ("available", "Q101"), ("available", "Q999"), ("available", "Q101"), ("logged_out", "Q101")]


def test_ignored_events_are_counted_with_a_reason(fixture_items: list[ParsedItem]) -> None:
    reasons = Counter(item.reason for item in fixture_items if isinstance(item, IgnoredRecord))
    assert reasons == {SYSTEM_EVENT: 2, RING_ATTEMPT: 1, OUTBOUND_DIAL: 1, INFORMATIONAL: 1}


def test_malformed_lines_are_rejected_with_reasons_and_good_lines_still_parse() -> None:
    items = parse_all(MALFORMED.read_text().splitlines())
    invalid = {item.location: item.reason for item in items if isinstance(item, InvalidRecord)}
    assert set(invalid) == {2, 3, 4, 5, 7, 8, 11}
    assert invalid[2].startswith("expected at least 5 '|'-separated fields")
    assert invalid[4].startswith("time is neither epoch seconds nor a date and time")
    assert invalid[5].startswith("event is not a queue_log event name")
    assert invalid[7] == "ENTERQUEUE without a callid"
    assert invalid[8] == "ABANDON without a queue"
    ignored = {item.location: (item.reason, item.detail) for item in items if isinstance(item, IgnoredRecord)}
    assert ignored == {6: (BLANK_LINE, ""), 9: (UNKNOWN_EVENT, "SOMETHINGNEW")}
    # SALES is not listed and there is no '*': a line of its own name (the kit's one meaning).
    assert [(e["type"], e["line"]) for e in events_of(items) if e["type"] != "agent_state"] == [
        ("offered", "999"), ("offered", "SALES"), ("answered", "999")]
    for reason in invalid.values():
        assert not re.search(r"\d{5}", reason), reason  # a reason never quotes a number


def test_unlisted_queues_go_to_the_star_line_or_a_line_of_their_own() -> None:
    line = "1709283616|c.6|SALES|NONE|ENTERQUEUE||07700900014|1"
    assert parser().parse_line(line)[0]["line"] == "SALES"  # type: ignore[index]
    other = parse_queue_lines("Q999=999,*=other")
    assert parser(lines=other).parse_line(line)[0]["line"] == "other"  # type: ignore[index]


def test_bad_configuration_is_refused() -> None:
    for config in ({"site": ""}, {"overflow_window_s": -1}, {"overflow_window_s": float("nan")}):
        with pytest.raises(ConfigurationError):
            ParserConfig(**config)  # type: ignore[arg-type]


# --- identities -------------------------------------------------------------------------------------

def test_caller_is_a_keyed_hash_of_the_caller_id(fixture_items: list[ParsedItem]) -> None:
    offered = [e for e in events_of(fixture_items) if e["type"] == "offered"]
    assert offered[0]["caller"] == KEY.caller("07700900001")
    assert all(e["caller"].startswith("h:") for e in offered)
    assert "caller" not in parser().parse_line("1709283610|c|Q999|NONE|ENTERQUEUE||anonymous|1")[0]  # type: ignore[operator]
    assert "07700900001" not in json.dumps(events_of(fixture_items))


@pytest.mark.parametrize("raw,name", [("Agent/1127", "1127"), ("Local/1127@callback-agent", "1127"),
                                      ("Local/1127@from-queue/n", "1127"), ("PJSIP/1127", "1127"),
                                      ("Jane Smith", "Jane Smith"), ("NONE", None), ("", None)])
def test_agent_names_are_the_person_behind_the_interface(raw: str, name: str | None) -> None:
    assert agent_name(raw) == name


def test_event_ids_come_from_the_record_so_rereading_gives_the_same_ids() -> None:
    lines = CALLS.read_text().splitlines()
    first = [e["event_id"] for e in events_of(parse_all(lines))]
    assert first == [e["event_id"] for e in events_of(parse_all(lines))]
    # The same record from the pipe file and from a database export has the same id.
    it = parse_queue_lines("IT=101")
    row = parser(lines=it).parse_row(
        {"uid": "13", "date_time": "1543602677", "callid": "1543602660.197", "queue_name": "IT", "type": "NONE",
         "event": "ENTERQUEUE", "param1": "55505090232", "param2": "", "param3": ""})
    pipe = parser(lines=it).parse_line("1543602677|1543602660.197|IT|NONE|ENTERQUEUE||55505090232|1")
    assert pipe == row
    # And from Asterisk's realtime table, its time a DATETIME in the PBX's zone (here UTC+0 in
    # winter), or a TIMESTAMP WITH TIME ZONE, as a driver or a dump gives them.
    realtime = {"id": "13", "callid": "1543602660.197", "queuename": "IT", "agent": "NONE", "event": "ENTERQUEUE",
                "data1": "", "data2": "55505090232", "data3": "1", "data4": "NULL", "data5": None}
    london = ParserConfig(it, time_zone=zone("Europe/London"))
    for time_value in ("2018-11-30 18:31:17", "2018-11-30T18:31:17.000000", "2018-11-30 19:31:17+01",
                       "2018-11-30 18:31:17+00:00", datetime(2018, 11, 30, 18, 31, 17),
                       datetime(2018, 11, 30, 13, 31, 17, tzinfo=timezone(timedelta(hours=-5))), 1543602677):
        assert QueueLogParser(london, KEY).parse_row({**realtime, "time": time_value}) == row, time_value


# --- memory across a restart ------------------------------------------------------------------------

def test_state_round_trip_at_every_line_gives_the_one_shot_events() -> None:
    lines = CALLS.read_text().splitlines()
    whole = events_of(parse_all(lines))
    for cut in range(len(lines) + 1):
        first = parser()
        items = [item for n, line in enumerate(lines[:cut], 1) for item in first.parse_line(line, n)]
        state = json.loads(json.dumps(first.state()))
        second = parser()
        second.restore(state)
        items += [item for n, line in enumerate(lines[cut:], cut + 1) for item in second.parse_line(line, n)]
        items += second.flush()
        assert events_of(items) == whole, f"cut after line {cut}"


def test_state_holds_no_number() -> None:
    p = parser()
    for line in CALLS.read_text().splitlines()[:20]:
        p.parse_line(line)
    assert not re.search(r"07700", json.dumps(p.state()))


@pytest.mark.parametrize("state", [None, [], {}, {"version": 2}, {"version": 1, "exits": []},
                                   {"version": 1, "exits": {"c": {"event": {}, "queue": 1, "at_ms": 0}}},
                                   {"version": 1, "agents": {"a": {"queues": "Q"}}}])
def test_a_damaged_state_is_refused(state: object) -> None:
    with pytest.raises(ConfigurationError):
        parser().restore(state)


# --- the real PBXware export --------------------------------------------------------------------------

def real_rows() -> list[dict[str, str]]:
    with whole_file(REAL_NAME).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_real_pbxware_rows_map_as_documented() -> None:
    rows = real_rows()
    p = parser(lines=parse_queue_lines("IT=101"))
    items: list[ParsedItem] = []
    for number, row in enumerate(rows, 2):
        items.extend(p.parse_row(row, number))
    items.extend(p.flush())
    assert not [i for i in items if isinstance(i, InvalidRecord)]
    events = events_of(items)
    types = Counter(e["type"] for e in events)
    source = Counter(row["event"] for row in rows)
    assert types["offered"] == source["ENTERQUEUE"] == 108
    assert types["answered"] == source["CONNECT"] == 93
    assert types["abandoned"] == source["ABANDON"] == 12
    assert types["timeout"] == source["EXITWITHTIMEOUT"] == 1
    assert types["ended"] == (source["COMPLETECALLER"] + source["COMPLETEAGENT"] + source["BLINDTRANSFER"]
                              + source["ATTENDEDTRANSFER"]) == 91
    ignored = Counter(i.reason for i in items if isinstance(i, IgnoredRecord))
    assert ignored[RING_ATTEMPT] == source["RINGNOANSWER"] == 360
    assert ignored[OUTBOUND_DIAL] == sum(n for name, n in source.items() if name.startswith("OUT")) == 257
    assert ignored[SYSTEM_EVENT] == source["QUEUESTART"] + source["CONFIGRELOAD"] == 18
    # PBXware writes the ENTERQUEUE caller id in param1.
    first = next(row for row in rows if row["event"] == "ENTERQUEUE")
    assert next(e for e in events if e["type"] == "offered")["caller"] == KEY.caller(first["param1"])


# --- fuzz ---------------------------------------------------------------------------------------------

EVENT_NAMES = ["ENTERQUEUE", "CONNECT", "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY", "COMPLETECALLER",
               "COMPLETEAGENT", "TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER", "RINGNOANSWER", "ADDMEMBER",
               "REMOVEMEMBER", "AGENTLOGIN", "AGENTLOGOFF", "AGENTCALLBACKLOGIN", "AGENTCALLBACKLOGOFF", "PAUSE",
               "UNPAUSE", "PAUSEALL", "UNPAUSEALL", "OUTDIAL", "QUEUESTART", "NONE", "DID", "X"]
field_text = st.text(st.characters(blacklist_characters="|\n"), max_size=12)
plausible_line = st.tuples(
    st.one_of(st.integers(1_700_000_000, 1_700_000_100).map(str), field_text),
    st.sampled_from(["c.1", "c.2", "NONE", ""]) | field_text,
    st.sampled_from(["Q999", "Q101", "Q999B", "NONE", "SALES", ""]),
    st.sampled_from(["SIP/1", "Agent/1", "NONE", ""]) | field_text,
    st.sampled_from(EVENT_NAMES) | field_text,
    st.lists(field_text, max_size=5),
).map(lambda t: "|".join([*t[:5], *t[5]]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=80), plausible_line), max_size=30))
def test_no_line_makes_the_parser_raise(lines: list[str]) -> None:
    p = parser()
    for line in lines:
        for item in p.parse_line(line, 1):
            assert isinstance(item, (dict, InvalidRecord, IgnoredRecord))
            if isinstance(item, dict):
                parse_event(item)
    for item in p.flush():
        parse_event(item)
    p.restore(json.loads(json.dumps(p.state())))


cell = st.one_of(st.none(), st.text(max_size=15), st.sampled_from(EVENT_NAMES), st.just("1700000000"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["uid", "date_time", "callid", "queue_name", "type", "event",
                                                 "param1", "param2", "param3", "agent", "junk"]) | st.text(max_size=5),
                                cell, max_size=12), max_size=20))
def test_no_row_makes_the_parser_raise(rows: list[dict[str, str | None]]) -> None:
    p = parser()
    for row in rows:
        for item in p.parse_row(row, 1):
            if isinstance(item, dict):
                parse_event(item)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_record_readers_never_raise(text: str) -> None:
    record_of_line(text)
    record_of_row({"date_time": text, "callid": text, "queue_name": text, "type": text, "event": text})


# --- exports of the database table -----------------------------------------------------------------

REALTIME_HEADER = ["id", "time", "callid", "queuename", "agent", "event", "data1", "data2", "data3", "data4", "data5"]
CELL = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="|\t\r\n"),
               max_size=12).map(str.strip)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CELL, min_size=11, max_size=11), min_size=1, max_size=6),
       st.sampled_from(["csv", "tsv", "psql-unaligned", "psql-aligned", "mysql-table"]))
def test_fuzz_every_dump_layout_gives_back_the_cells_written(rows: list[list[str]], layout: str) -> None:
    # The reference is the rows themselves, written out the way each client writes them.
    if layout == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([REALTIME_HEADER, *rows])
        text = buffer.getvalue()
    elif layout == "tsv":
        text = "".join("\t".join(row) + "\n" for row in [REALTIME_HEADER, *rows])
    elif layout == "psql-unaligned":
        text = "".join("|".join(row) + "\n" for row in [REALTIME_HEADER, *rows]) + f"({len(rows)} rows)\n"
    else:
        widths = [max(len(row[i]) for row in [REALTIME_HEADER, *rows]) for i in range(11)]
        cells = [" " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " "
                 for row in [REALTIME_HEADER, *rows]]
        ruler = "-+-".join("-" * width for width in widths)
        if layout == "psql-aligned":
            text = cells[0] + "\n-" + ruler + "-\n" + "".join(c + "\n" for c in cells[1:]) + f"({len(rows)} rows)\n"
        else:
            border = "+-" + ruler.replace("-+-", "-+-") + "-+\n"
            text = border + "|" + cells[0] + "|\n" + border + "".join("|" + c + "|\n" for c in cells[1:]) + border
    lines = text.splitlines()
    header_at = next(i for i, line in enumerate(lines) if not is_decoration(line))
    layout_found = detect_layout(lines[header_at])
    assert layout_found is not None and layout_found.format == EXPORT
    body = [line for line in lines[header_at + 1:] if not is_decoration(line)]
    assert [split_cells(line, layout_found.delimiter, layout_found.boxed) for line in body] == rows


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_no_line_makes_layout_detection_or_splitting_raise(text: str) -> None:
    for line in text.splitlines() or [text]:
        detect_layout(line)
        is_decoration(line)
        for delimiter in DELIMITERS:
            split_cells(line, delimiter)
