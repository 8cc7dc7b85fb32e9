"""The call-detail parser and the Anonymous Bank mapping: synthetic rows for each rule, the real
month of bank data checked against figures computed independently from the CSV, and fuzzing."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.call_detail.call_detail_mapping import load_mapping, mapping_from_dict
from connectors.call_detail.call_detail_parser import LevelledRecord, iter_events_sorted, parse_rows
from connectors.call_detail.call_detail_source import read_rows
from connectors.errors import ConfigurationError, ConnectorError, IgnoredRecord, InvalidRecord
from connectors.privacy import pseudonymiser
from streams.cli import main
from tests.real_data import excerpt, whole_file
from streams.domain.events import event_to_dict, parse_event, parse_ts

REPO = Path(__file__).resolve().parents[2]
BANK_MAPPING = REPO / "connectors" / "call_detail" / "mappings" / "anonymous_bank.yaml"
BANK_NAME = "anonymous_bank_1999_08.csv"  # real data: tests/fixtures/real/README.md
COLUMNS = ("vru+line,call_id,customer_id,priority,type,date,vru_entry,vru_exit,vru_time,q_start,q_exit,"
           "q_time,outcome,ser_start,ser_exit,ser_time,server").split(",")
NA = "0:00:00"
KEY = pseudonymiser(b"test-key")


@pytest.fixture(scope="module")
def bank() -> Any:
    return load_mapping(BANK_MAPPING)


def row(**cells: str) -> dict[str, str]:
    """A queued, answered bank call on 2010-08-01 (really 1999-08-01, IDT = UTC+3) unless overridden."""
    base = {"vru+line": "AA0101", "call_id": "100", "customer_id": "12345", "priority": "1", "type": "PS",
            "date": "2010-08-01", "vru_entry": "10:00:00", "vru_exit": "10:00:06", "vru_time": "6",
            "q_start": "10:00:06", "q_exit": "10:00:36", "q_time": "30", "outcome": "AGENT",
            "ser_start": "10:00:35", "ser_exit": "10:03:35", "ser_time": "180", "server": "SHARON"}
    base.update(cells)
    return base


def events_of(items: list[Any]) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)]


def by_type(items: list[Any]) -> dict[str, dict[str, Any]]:
    return {event["type"]: event for event in events_of(items)}


# --- one row at a time ------------------------------------------------------------------------------

def test_queued_answered_call(bank: Any) -> None:
    items = list(parse_rows([row()], bank, KEY))
    assert [e["type"] for e in items] == ["offered", "answered", "ended"]
    events = by_type(items)
    assert events["offered"]["ts"] == "1999-08-01T07:00:06.000Z"   # q_start, 10:00:06 IDT
    assert events["answered"]["ts"] == "1999-08-01T07:00:36.000Z"  # q_exit: the wait is q_time
    assert events["ended"]["ts"] == "1999-08-01T07:03:35.000Z"     # ser_exit
    offered = events["offered"]
    assert offered["call_id"] == "1999-08-01:AA0101:100"
    assert offered["event_id"] == "csv:anonymous_bank:1999-08-01:AA0101:100:offered"
    assert (offered["line"], offered["queue"], offered["site"], offered["source"]) == (
        "bank", "PS", "anonymous-bank", "csv:anonymous_bank")
    assert offered["caller"] == KEY.caller("12345") and offered["caller"].startswith("h:")
    assert events["answered"]["agent"] == KEY.agent("SHARON")
    assert "agent" not in offered
    for event in items:
        assert event_to_dict(parse_event(event)) == event


def test_call_straight_to_an_agent_is_answered_with_zero_wait(bank: Any) -> None:
    direct = row(q_start=NA, q_exit=NA, q_time="0", vru_exit="10:00:09", ser_start="10:00:08",
                 ser_exit="10:02:08", customer_id="0")
    events = by_type(list(parse_rows([direct], bank, KEY)))
    assert events["offered"]["ts"] == events["answered"]["ts"] == "1999-08-01T07:00:08.000Z"
    assert events["ended"]["ts"] == "1999-08-01T07:02:08.000Z"
    assert "caller" not in events["offered"]  # customer_id 0: not identified


def test_served_call_without_service_times_is_answered_at_vru_exit_without_ended(bank: Any) -> None:
    odd = row(q_start=NA, q_exit=NA, q_time="0", ser_start=NA, ser_exit=NA, ser_time="0")
    items = list(parse_rows([odd], bank, KEY))
    assert [e["type"] for e in items] == ["offered", "answered"]
    assert items[1]["ts"] == "1999-08-01T07:00:06.000Z"


def test_hang_in_queue_is_abandoned(bank: Any) -> None:
    items = list(parse_rows([row(outcome="HANG", ser_start=NA, ser_exit=NA, server="NO_SERVER")], bank, KEY))
    assert [e["type"] for e in items] == ["offered", "abandoned"]
    assert items[1]["ts"] == "1999-08-01T07:00:36.000Z"
    assert all("agent" not in e for e in items)


def test_phantom_is_a_timeout_at_queue_exit(bank: Any) -> None:
    items = list(parse_rows([row(outcome="PHANTOM", server="NO_SERVER")], bank, KEY))
    assert [(e["type"], e["ts"]) for e in items] == [
        ("offered", "1999-08-01T07:00:06.000Z"), ("timeout", "1999-08-01T07:00:36.000Z")]


def test_hang_in_the_vru_is_skipped_not_rejected(bank: Any) -> None:
    vru_only = row(q_start=NA, q_exit=NA, q_time="0", outcome="HANG", ser_start=NA, ser_exit=NA,
                   server="NO_SERVER")
    items = list(parse_rows([row(), vru_only], bank, KEY))
    assert items[-1] == IgnoredRecord("left in the VRU (never queued, never reached an agent)", 3)


def test_times_after_midnight_belong_to_the_next_day(bank: Any) -> None:
    late = row(vru_entry="23:59:40", vru_exit="23:59:46", q_start="23:59:46", q_exit="0:00:20",
               ser_start="0:00:19", ser_exit="0:05:00")
    events = by_type(list(parse_rows([late], bank, KEY)))
    assert events["offered"]["ts"] == "1999-08-01T20:59:46.000Z"
    assert events["answered"]["ts"] == "1999-08-01T21:00:20.000Z"  # 00:00:20 IDT on 2 August
    assert events["ended"]["ts"] == "1999-08-01T21:05:00.000Z"
    assert events["offered"]["call_id"].startswith("1999-08-01:")


def test_times_slightly_before_the_entry_stay_on_the_same_day(bank: Any) -> None:
    # Real rows have vru_exit up to 362 s before vru_entry (two clocks), even just after midnight.
    skewed = row(vru_entry="0:02:00", vru_exit="23:58:00", q_start="23:58:00", q_exit="0:03:00",
                 ser_start="0:03:00", ser_exit="0:04:00")
    events = by_type(list(parse_rows([skewed], bank, KEY)))
    assert events["offered"]["ts"] == "1999-07-31T20:58:00.000Z"  # 23:58 IDT the evening before
    assert events["answered"]["ts"] == "1999-07-31T21:03:00.000Z"


def test_small_clock_disagreement_is_levelled_large_is_rejected(bank: Any) -> None:
    small = row(q_exit="10:00:36", ser_start="10:00:34", ser_exit="10:00:35")
    items = list(parse_rows([small], bank, KEY))
    events = by_type(items)
    assert events["ended"]["ts"] == events["answered"]["ts"]
    assert [item for item in items if not isinstance(item, dict)] == [
        LevelledRecord("ended time before the answered time: levelled to it", 2)]
    large = row(q_exit="10:30:00", ser_start="10:00:34", ser_exit="10:01:00")
    [rejection] = list(parse_rows([large], bank, KEY))
    assert rejection == InvalidRecord("ended time is 1740 s before the answered time", 2)


@pytest.mark.parametrize("cells, reason", [
    ({"q_exit": "10:61:00"}, "column q_exit: '10:61:00' is not a time of day like %H:%M:%S"),
    ({"q_start": "ten"}, "column q_start: 'ten' is not a time of day like %H:%M:%S"),
    ({"date": "2010-13-01"}, "column date: '2010-13-01' is not a date like %Y-%m-%d"),
    ({"outcome": "TRANSFER"}, "unknown outcome 'TRANSFER' in column outcome (known: AGENT, HANG, PHANTOM)"),
    ({"type": ""}, "no queue: column type is ''"),
    ({"call_id": " "}, "column call_id is empty"),
    ({"q_start": NA, "q_exit": NA, "ser_start": NA, "vru_exit": NA},
     "no time for offered: q_start, ser_start, vru_exit are all not applicable"),
])
def test_bad_cells_are_rejected_with_reason_and_line(bank: Any, cells: dict[str, str], reason: str) -> None:
    items = list(parse_rows([row(), row(**{"call_id": "99", **cells}), row(call_id="101")], bank, KEY))
    [problem] = [item for item in items if not isinstance(item, dict)]
    assert len(events_of(items)) == 6
    assert problem == InvalidRecord(reason, 3)
    assert str(problem) == f"line 3: {reason}"


def test_missing_column_is_rejected_with_its_line(bank: Any) -> None:
    broken = row()
    del broken["q_exit"]
    items = list(parse_rows([row(), row(call_id="2"), broken], bank, KEY, first_line=10))
    assert items[-1] == InvalidRecord("missing column q_exit", 12)


def test_extra_fields_are_rejected(bank: Any) -> None:
    extra: dict[Any, Any] = row()
    extra[None] = ["x", "y"]  # what csv.DictReader gives for a row longer than the header
    assert list(parse_rows([extra], bank, KEY)) == [InvalidRecord("2 more field(s) than the header", 2)]


def test_a_caller_column_without_a_key_function_is_a_configuration_error(bank: Any) -> None:
    with pytest.raises(ConfigurationError, match="CALLWATCH_PSEUDONYMISATION_KEY"):
        parse_rows([row()], bank)  # raised at once, not on iteration
    with pytest.raises(ConfigurationError, match="keyed hashes"):
        iter_events_sorted([row()], bank)


def test_without_caller_and_agent_rules_no_key_is_needed() -> None:
    mapping = mapping_from_dict(generic_mapping())
    items = list(parse_rows([{"id": "c1", "day": "01/03/2024", "start": "09:00:00", "answer": "09:00:12",
                              "finish": "09:05:00", "result": "ok", "q": "Q1"}], mapping))
    assert [(e["type"], e["ts"]) for e in items] == [
        ("offered", "2024-03-01T09:00:00.000Z"), ("answered", "2024-03-01T09:00:12.000Z"),
        ("ended", "2024-03-01T09:05:00.000Z")]
    assert items[0]["line"] == "101" and items[0]["site"] == "default"


def test_the_source_zone_decides_the_offset() -> None:
    mapping = mapping_from_dict(generic_mapping())
    summer = list(parse_rows([{"id": "c2", "day": "01/07/2024", "start": "09:00:00", "answer": "",
                               "finish": "", "result": "gone", "q": "Q1"}], mapping))
    assert summer[0]["ts"] == "2024-07-01T08:00:00.000Z"  # BST
    assert summer[1]["type"] == "abandoned" and summer[1]["ts"] == "2024-07-01T08:00:00.000Z"


def generic_mapping(**overrides: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "source": "csv:example", "call_id": {"columns": ["id"]},
        "time": {"zone": "Europe/London", "date_column": "day", "date_format": "%d/%m/%Y", "anchor": "start"},
        "outcome": {"column": "result", "values": {"ok": "answered", "gone": "abandoned"}},
        "times": {"offered": ["start"], "answered": ["answer"], "abandoned": ["finish", "start"],
                  "ended": ["finish"]},
        "line": {"value": "101"}, "queue": {"column": "q"},
    }
    mapping.update(overrides)
    return mapping


@pytest.mark.parametrize("overrides, message", [
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"time": {"zone": "Mars/Olympus", "date_column": "d", "anchor": "a"}}, "unknown time zone"),
    ({"time": {"zone": "UTC", "date_column": "d", "anchor": "a", "not_applicable": [0]}}, "quoted string"),
    ({"outcome": {"column": "r", "values": {"ok": "picked-up"}}}, "'picked-up' is not one of"),
    ({"times": {"answered": ["a"], "abandoned": ["b"]}}, "times.offered is required"),
    ({"queue": {"column": "q", "value": "Q"}}, "exactly one of 'column' or 'value'"),
    ({"caller": {"value": "x"}}, "caller must name a column"),
    ({"rows_sorted_by": "time"}, "rows_sorted_by"),
])
def test_bad_mappings_say_what_is_wrong(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mapping_from_dict(generic_mapping(**overrides))


def test_mapping_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(ConfigurationError, match="bad.yaml is not valid YAML"):
        load_mapping(bad)
    with pytest.raises(ConfigurationError, match="cannot read mapping"):
        load_mapping(tmp_path / "absent.yaml")


# --- ordering -----------------------------------------------------------------------------------

def day_of_calls(count: int, day: str = "2010-08-02", seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        entry = rng.randrange(7 * 3600, 86_000)
        wait, talk = rng.randrange(0, 900), rng.randrange(0, 4000)
        clock = lambda s: f"{s // 3600 % 24}:{s // 60 % 60:02d}:{s % 60:02d}"  # noqa: E731
        rows.append(row(call_id=str(number), date=day, vru_entry=clock(entry), vru_exit=clock(entry + 5),
                        q_start=clock(entry + 5), q_exit=clock(entry + 5 + wait),
                        ser_start=clock(entry + 5 + wait), ser_exit=clock(entry + 5 + wait + talk)))
    return rows


def test_sorted_events_from_rows_shuffled_within_each_day(bank: Any) -> None:
    rows = day_of_calls(300, "2010-08-02") + day_of_calls(300, "2010-08-03", seed=8)
    random.Random(1).shuffle(rows[:300])
    random.Random(2).shuffle(rows[300:])
    items = list(iter_events_sorted(rows, bank, KEY))
    times = [parse_ts(e["ts"]) for e in items]
    assert len(items) == 1800 and times == sorted(times)
    assert sorted(e["event_id"] for e in items) == sorted(e["event_id"] for e in parse_rows(rows, bank, KEY))


def test_a_row_breaking_the_declared_order_is_rejected_not_misplaced(bank: Any) -> None:
    # A day-1 row after day-3 rows is still in time (nothing of day 3 is out yet); after day-4 rows
    # (day 3 has been written) it is not.
    rows = (day_of_calls(50, "2010-08-03") + [row(call_id="early", date="2010-08-01")]
            + day_of_calls(5, "2010-08-04") + [row(call_id="late", date="2010-08-01")])
    items = list(iter_events_sorted(rows, bank, KEY))
    [rejection] = [item for item in items if isinstance(item, InvalidRecord)]
    assert rejection.location == 58 and rejection.reason.startswith("row out of order")
    times = [parse_ts(e["ts"]) for e in events_of(items)]
    assert times == sorted(times) and len(times) == 56 * 3


def test_unsorted_files_can_be_sorted_whole() -> None:
    mapping = mapping_from_dict(generic_mapping(rows_sorted_by="none"))
    rows = [{"id": f"c{n}", "day": f"{28 - n:02d}/02/2024", "start": "09:00:00", "answer": "09:00:05",
             "finish": "09:01:00", "result": "ok", "q": "Q"} for n in range(20)]
    times = [parse_ts(e["ts"]) for e in iter_events_sorted(rows, mapping)]
    assert len(times) == 60 and times == sorted(times)


# --- files and the command ---------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass
class Converted:
    rows: int
    events: list[dict[str, Any]]
    skipped: Counter[str]
    levelled: list[LevelledRecord]
    rejected: list[InvalidRecord]


def convert(path: Path, mapping: Any) -> Converted:
    count = [0]
    items = list(read_rows(path, mapping, KEY, count))
    return Converted(count[0], events_of(items), Counter(i.reason for i in items if isinstance(i, IgnoredRecord)),
                     [i for i in items if isinstance(i, LevelledRecord)],
                     [i for i in items if isinstance(i, InvalidRecord)])


def test_read_rows_gives_events_in_time_order_skips_and_rejections(tmp_path: Path, bank: Any) -> None:
    rows = [row(), row(call_id="2", outcome="HANG", ser_start=NA, ser_exit=NA, server="NO_SERVER"),
            row(call_id="3", q_start=NA, q_exit=NA, outcome="HANG", ser_start=NA, ser_exit=NA),
            row(call_id="4", q_exit="bad")]
    result = convert(write_csv(tmp_path / "calls.csv", rows), bank)
    assert [event["type"] for event in result.events] == ["offered", "offered", "answered", "abandoned", "ended"]
    assert result.rows == 4
    assert result.skipped == {"left in the VRU (never queued, never reached an agent)": 1}
    assert result.rejected == [InvalidRecord("column q_exit: 'bad' is not a time of day like %H:%M:%S", 5)]


def test_a_repeated_call_id_is_rejected_with_both_lines(tmp_path: Path, bank: Any) -> None:
    """Before, the second row's events had the first's event ids and vanished as duplicates."""
    rows = [row(), row(call_id="7"), row(q_start="11:00:00", q_exit="11:00:30", ser_start="11:00:31",
                                           ser_exit="11:02:00", vru_entry="10:59:00", vru_exit="11:00:00")]
    result = convert(write_csv(tmp_path / "calls.csv", rows), bank)
    assert result.rejected == [InvalidRecord(
        "call id '1999-08-01:AA0101:100' repeats the row at line 2: this row is not a call of its own", 4)]
    assert len(result.events) == 6


def test_an_answer_before_the_offer_is_levelled_and_reported_with_its_line(tmp_path: Path, bank: Any) -> None:
    """Before, the wait became 0 s without a word."""
    rows = [row(), row(call_id="8", q_start="10:00:40", q_exit="10:00:36", ser_start="10:00:36")]
    result = convert(write_csv(tmp_path / "calls.csv", rows), bank)
    assert result.levelled == [LevelledRecord("answered time before the offered time: levelled to it", 3)]
    answered = [e for e in result.events if e["call_id"].endswith(":8")]
    assert answered[0]["ts"] == answered[1]["ts"]


def test_a_file_without_the_mapped_columns_names_them(tmp_path: Path, bank: Any) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigurationError, match="has no column"):
        list(read_rows(path, bank, KEY))


def test_connect_csv_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    good = write_csv(tmp_path / "good.csv", [row()])
    bad = write_csv(tmp_path / "bad.csv", [row(), row(call_id="9", outcome="??")])
    monkeypatch.delenv("CALLWATCH_PSEUDONYMISATION_KEY", raising=False)
    monkeypatch.delenv("CALLWATCH_PSEUDONYMISATION_KEY_FILE", raising=False)
    connect = ["connect", "csv", "--mapping", str(BANK_MAPPING), "--out", "-"]
    assert main([*connect, str(good)]) == 2
    assert "CALLWATCH_PSEUDONYMISATION_KEY" in capsys.readouterr().err
    monkeypatch.setenv("CALLWATCH_PSEUDONYMISATION_KEY", "test-key")
    assert main([*connect, str(good)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3 and "3 events sent, 0 dead-lettered" in captured.err
    assert main([*connect, str(bad)]) == 1
    assert "bad.csv:3" in capsys.readouterr().err
    assert main([*connect, str(tmp_path / "absent.csv")]) == 2
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert main([*connect, str(other)]) == 2
    [error] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "has no column(s)" in error and "q_exit" in error


# --- the real month ------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["excerpt", "whole month"])
def real_month(request: pytest.FixtureRequest, bank: Any) -> tuple[list[dict[str, str]], list[dict[str, Any]], Any]:
    """The first 400 rows (committed), and the whole month (../shared/data/real)."""
    path = excerpt(BANK_NAME) if request.param == "excerpt" else whole_file(BANK_NAME)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    result = convert(path, bank)
    return rows, result.events, result


def whole_month(rows: list[dict[str, str]]) -> bool:
    return len(rows) == 42_078


def test_real_month_converts_cleanly_in_time_order(real_month: Any) -> None:
    rows, events, summary = real_month
    assert summary.rows == len(rows) and summary.rejected == []
    assert len(summary.levelled) < 100, "the bank's clocks disagree now and then, not on most calls"
    for event in events:
        assert event_to_dict(parse_event(event)) == event
    times = [parse_ts(e["ts"]) for e in events]
    assert all(a <= b for a, b in zip(times, times[1:]))
    assert len({e["event_id"] for e in events}) == len(events)


def test_real_month_counts_match_the_csv(real_month: Any) -> None:
    rows, events, summary = real_month
    never_queued = [r for r in rows if r["q_start"] == NA and r["outcome"] == "HANG"]
    calls = [r for r in rows if not (r["q_start"] == NA and r["outcome"] == "HANG")]
    outcomes = Counter(r["outcome"] for r in calls)
    counts = Counter(e["type"] for e in events)
    assert summary.skipped == {"left in the VRU (never queued, never reached an agent)": len(never_queued)}
    assert counts["offered"] == len(calls) == len(rows) - len(never_queued)
    assert (counts["answered"], counts["abandoned"], counts["timeout"]) == (
        outcomes["AGENT"], outcomes["HANG"], outcomes["PHANTOM"])
    assert counts["ended"] == sum(1 for r in calls if r["outcome"] == "AGENT" and r["ser_exit"] != NA)
    queued = {f"1999-08-{r['date'][-2:]}:{r['vru+line']}:{r['call_id']}" for r in rows if r["q_start"] != NA}
    assert len(queued) == 26_011 or not whole_month(rows)  # README: 26,011 calls queued in the month
    assert queued <= {e["call_id"] for e in events if e["type"] == "offered"}


def test_real_month_waits_are_the_recorded_queue_times(real_month: Any) -> None:
    """Each queued call's wait (outcome - offered) is its q_time column, and its offer is q_start read
    as Israel summer time (UTC+3) on the corrected date, a day later if before vru_entry by hours."""
    rows, events, _ = real_month
    times: dict[str, dict[str, int]] = {}
    for event in events:
        times.setdefault(event["call_id"], {})[event["type"]] = parse_ts(event["ts"])
    checked = 0
    for r in rows:
        if r["q_start"] == NA:
            continue
        call = times[f"1999-08-{r['date'][-2:]}:{r['vru+line']}:{r['call_id']}"]
        outcome = next(call[t] for t in ("answered", "abandoned", "timeout") if t in call)
        assert outcome - call["offered"] == int(r["q_time"]) * 1000
        h, m, s = map(int, r["q_start"].split(":"))
        eh, em, es = map(int, r["vru_entry"].split(":"))
        local = datetime(1999, 8, int(r["date"][-2:]), h, m, s)
        if (h, m, s) < (eh, em, es) and (eh * 3600 + em * 60 + es) - (h * 3600 + m * 60 + s) > 900:
            local += timedelta(days=1)
        expected = (local - timedelta(hours=3)).replace(tzinfo=timezone.utc)
        assert call["offered"] == int(expected.timestamp() * 1000)
        checked += 1
    assert checked == sum(1 for r in rows if r["q_start"] != NA) and (checked == 26_011 or not whole_month(rows))


# --- fuzzing ---------------------------------------------------------------------------------------

PLAUSIBLE = st.sampled_from(["", " ", NA, "23:59:59", "0:00:01", "24:00:00", "9:5:7", "2010-08-01",
                             "2010-02-29", "0999-01-01", "AGENT", "HANG", "PHANTOM", "0", "NO_SERVER", "*",
                             "PS", "١٢:٠٠:٠٠", "12:00:00.5", "-1:00:00"])
CELL = st.one_of(PLAUSIBLE, st.text(max_size=12))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.dictionaries(st.sampled_from(COLUMNS), CELL),
    st.fixed_dictionaries({column: CELL for column in COLUMNS}),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8)),
), max_size=6))
def test_arbitrary_rows_never_raise(rows: list[dict[str, str]]) -> None:
    bank = load_mapping(BANK_MAPPING)
    for items in (list(parse_rows(rows, bank, KEY)), list(iter_events_sorted(rows, bank, KEY))):
        for item in items:
            if isinstance(item, dict):
                parse_event(item)
            else:
                assert isinstance(item, (InvalidRecord, IgnoredRecord)) and item.reason
        per_row = Counter(item.location for item in items if not isinstance(item, dict))
        assert all(count == 1 for count in per_row.values())


def test_the_example_mapping_reads_its_own_example_row() -> None:
    mapping = load_mapping(BANK_MAPPING.with_name("example.yaml"))
    sample = {"call_ref": "A17", "date": "01/03/2024", "arrived": "08:59:50", "queued": "09:00:00",
              "picked_up": "09:00:12", "left": "09:05:00", "disposition": "ANSWERED", "split": "999-A",
              "cli": "07700900123", "handler": "agent-4"}
    items = list(parse_rows([sample, {**sample, "split": "TEST"}], mapping, KEY))
    assert [(e["type"], e["ts"], e["line"]) for e in events_of(items)] == [
        ("offered", "2024-03-01T09:00:00.000Z", "999"), ("answered", "2024-03-01T09:00:12.000Z", "999"),
        ("ended", "2024-03-01T09:05:00.000Z", "999")]
    assert items[-1] == IgnoredRecord("internal test calls", 3)
    assert "07700900123" not in json.dumps(items[:3])


HEADER = ",".join(COLUMNS).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=400), st.lists(st.lists(CELL, min_size=1, max_size=20), max_size=5).map(
    lambda rows: HEADER + b"\n" + b"\n".join(",".join(row).encode("utf-8", "replace") for row in rows))))
def test_any_file_gives_items_or_one_connector_error_naming_what_is_wrong(tmp_path: Path, content: bytes) -> None:
    """What the file source does with any bytes: rows become events, rejections or skips, and a
    file it cannot read at all raises one ConnectorError (the command's one line and exit 2)."""
    path = tmp_path / "any.csv"
    path.write_bytes(content)
    try:
        items = list(read_rows(path, load_mapping(BANK_MAPPING), KEY))
    except ConnectorError as error:
        assert str(error) and "\n" not in str(error)
        return
    for item in items:
        if isinstance(item, dict):
            parse_event(item)
        else:
            assert isinstance(item, (InvalidRecord, IgnoredRecord, LevelledRecord)) and item.reason
