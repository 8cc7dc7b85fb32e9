"""The queue_log connector end to end: import, following like `tail -F` (appends, partial lines,
rotation, copytruncate), restarts from the checkpoint with nothing lost or repeated, dead letters,
the real PBXware export checked against figures counted straight from its rows, privacy of caller
numbers in events, dead letters, logs and metrics, and the `callwatch` command lines."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import ConfigurationError
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.queue_log.queue_log_parser import ParserConfig, QueueLogParser
from connectors.queue_log.queue_log_source import SPEC, QueueLogConnector
from connectors.sink import JsonLinesSink
from streams.domain import CallFlow, CallTracker, FlowConfig, LegClosed, parse_event
from streams.options import UsageError
from streams.domain.windows import zone
from streams.settings import Settings
from tests.connectors.sinks import CollectingSink
from tests.connectors.following import Following as FollowingHarness
from tests.ports import free_port
from tests.real_data import SHARED, excerpt, whole_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "queue_log"
CALLS = FIXTURES / "calls.queue_log"
MALFORMED = FIXTURES / "malformed.queue_log"
REAL_NAME = "asterisk_queue_log_pbxware.csv"
REAL_CSV = SHARED / REAL_NAME      # the whole export: figures of the whole file (whole_file() checks it is here)
EXCERPT_CSV = excerpt(REAL_NAME)   # committed, every clone has it: tests/fixtures/real/README.md
KEY_BYTES = b"test-key"
KEY = pseudonymiser(KEY_BYTES)
LINES = parse_queue_lines("Q999=999,Q999B=999,Q101=101")
WAIT_S = 10.0


def connector(path: Path, **options: Any) -> QueueLogConnector:
    config = options.pop("config", ParserConfig(LINES))
    return QueueLogConnector(str(path), config, KEY, poll_s=0.02, **options)


def imported(path: Path, **options: Any) -> CollectingSink:
    sink = CollectingSink()
    connector(path, **options).run(sink, threading.Event())
    return sink


def one_shot(lines: list[str]) -> list[str]:
    """Event ids the pure parser gives for these lines, read at once."""
    parser = QueueLogParser(ParserConfig(LINES), KEY)
    items = [item for line in lines for item in parser.parse_line(line)] + parser.flush()
    return [item["event_id"] for item in items if isinstance(item, dict)]


class Following(FollowingHarness):
    """A queue-log connector following a file in a thread, stopped (and joined) on exit."""

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(connector(path, follow=True, **options), CollectingSink())


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()


def fixture_lines() -> list[str]:
    return CALLS.read_text().splitlines()


# --- import -------------------------------------------------------------------------------------------

def test_import_reads_to_the_end_and_gives_the_parsers_events(tmp_path: Path) -> None:
    conn = connector(CALLS)
    assert conn.realtime is False and conn.name == "queue-log"
    sink = CollectingSink()
    conn.run(sink, threading.Event())
    assert sink.ids() == one_shot(fixture_lines())
    assert not sink.dead
    assert conn.counts.lines == len(fixture_lines())
    assert sum(conn.counts.events.values()) == len(sink.events)
    assert conn.counts.ignored["ring attempt (RINGNOANSWER, RINGCANCELED): not a call outcome"] == 1


def test_import_takes_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_text("\n".join(fixture_lines()))
    assert imported(path).ids() == one_shot(fixture_lines())


def test_malformed_lines_are_dead_lettered_with_location_and_reason_and_reading_goes_on(tmp_path: Path) -> None:
    sink = imported(MALFORMED)
    # SALES is not listed: a line of its own name.
    assert [e["type"] for e in sink.events] == ["offered", "offered", "answered", "agent_state"]
    assert [letter.location for letter in sink.dead] == [f"{MALFORMED}:{n}" for n in (2, 3, 4, 5, 7, 8, 11)]
    assert all(letter.reason and letter.source == "queue-log" for letter in sink.dead)
    assert not any("0770090" in letter.payload or "0770090" in letter.reason for letter in sink.dead)
    assert "<number>" in sink.dead[2].payload


def test_a_line_that_never_ends_is_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "queue_log"
    path.write_text(lines[0] + "\n" + "x" * (3 << 20) + "\n" + "\n".join(lines[1:]) + "\n")
    sink = imported(path, chunk_bytes=1 << 16)
    assert [d.reason for d in sink.dead][:1] == [f"line longer than {1 << 20} bytes"]
    assert sink.ids() == one_shot(lines)


@pytest.mark.parametrize("name", ["realtime_psql_aligned.txt", "realtime_mariadb_batch.tsv"])
def test_dumps_of_the_realtime_table_are_told_apart_and_read_like_the_pipe_file(name: str) -> None:
    # Written by psql and mariadb from a table holding calls.queue_log, time as local DATETIME.
    config = ParserConfig(LINES, time_zone=zone("Europe/London"))
    sink = imported(FIXTURES / name, config=config)
    assert sink.dead == [], [(d.location, d.reason) for d in sink.dead]
    assert sink.ids() == one_shot(fixture_lines())


def test_an_export_header_lacking_a_column_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("id,time,callid,queuename,event,data1\n1,2024-03-01 09:00:00,c.1,Q1,ENTERQUEUE,\n")
    with pytest.raises(ConfigurationError, match=r"its header line lacks the column\(s\) agent \("):
        imported(path)


def test_csv_rows_that_do_not_fit_the_header_are_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("uid,date_time,callid,queue_name,type,event,param1,param2,param3\n"
                    "1,1709283610,c.1,Q999,NONE,ENTERQUEUE,07700900001,,\n"
                    "2,1709283611,c.2,Q999,NONE,ENTERQUEUE\n"
                    '3,"1709283612,c.3\n'
                    "4,1709283618,c.1,Q999,SIP/2001,CONNECT,,x,3\n")
    sink = imported(path)
    assert [e["type"] for e in sink.events] == ["offered", "answered", "agent_state"]
    assert [(d.location, d.reason) for d in sink.dead] == [(f"{path}:3", "row has 6 cells, the header 9"),
                                                           (f"{path}:4", "row has 2 cells, the header 9")]


def test_format_is_told_from_the_first_line(tmp_path: Path) -> None:
    weird = tmp_path / "weird.log"
    weird.write_text("hello world\n")
    with pytest.raises(ConfigurationError, match="cannot tell the format"):
        imported(weird)
    with pytest.raises(ConfigurationError, match="no such queue_log file"):
        imported(tmp_path / "missing")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), st.sampled_from([line.encode() for line in CALLS.read_text().splitlines()])),
                max_size=15), st.sampled_from(["pipe", "pbxware-csv"]))
def test_no_file_content_makes_the_import_raise(chunks: list[bytes], file_format: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "queue_log"
        path.write_bytes(b"\n".join(chunks))
        sink = imported(path, format=file_format)
        assert len(sink.events) + len(sink.dead) <= 3 * len(chunks) + 3


# --- following --------------------------------------------------------------------------------------

def test_following_starts_at_the_end_and_emits_what_is_appended(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:10]) + "\n")
    with Following(path) as follower:
        assert follower.connector.realtime is True
        follower.settle()
        assert follower.sink.ids() == []
        append(path, "\n".join(lines[10:]) + "\n")
        follower.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "the appended lines' events")
    assert follower.sink.ids() == one_shot(lines[10:])
    # Line numbers stay true although reading began at the end.
    assert follower.connector.counts.lines == len(lines) - 10


def test_following_from_start_reads_history_then_appends_line_by_line(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:5]) + "\n")
    with Following(path, from_start=True) as follower:
        follower.wait_count(len(one_shot(lines[:5])))
        for line in lines[5:]:
            append(path, line + "\n")
            follower.settle()  # each line read before the next is written
        follower.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "the last line's event")
    assert sorted(follower.sink.ids()) == sorted(one_shot(lines))


def test_a_partial_last_line_is_not_emitted_until_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_text("")
    line = "1709283610|1709283605.1|Q999|NONE|ENTERQUEUE||07700900001|1"
    with Following(path) as follower:
        append(path, line[:30])
        follower.settle()
        assert follower.sink.ids() == [] and not follower.sink.dead
        append(path, line[30:])
        follower.settle()
        assert follower.sink.ids() == []
        append(path, "\n")
        follower.wait_count(1)
    assert follower.sink.events[0]["caller"] == KEY.caller("07700900001")


def test_a_held_exit_becomes_a_timeout_once_the_file_is_quiet(tmp_path: Path) -> None:
    lines = fixture_lines()
    at = lines.index("1709284100|1709283790.4|Q101|NONE|EXITWITHTIMEOUT|1|1|300") + 1
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:at]) + "\n")
    with Following(path, from_start=True, quiet_release_s=0.1) as follower:
        follower.wait_for(lambda ids: ids[-1:] == ["qlog:1709283790.4:1709284100000:EXITWITHTIMEOUT:Q101"],
                          "the held exit")
    assert follower.sink.events[-1]["type"] == "timeout"
    assert follower.sink.ids() == one_shot(lines[:at])


def test_stopping_without_a_checkpoint_releases_held_exits(tmp_path: Path) -> None:
    lines = fixture_lines()
    at = lines.index("1709284100|1709283790.4|Q101|NONE|EXITWITHTIMEOUT|1|1|300") + 1
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:at]) + "\n")
    with Following(path, from_start=True, quiet_release_s=60) as follower:
        follower.wait_count(len(one_shot(lines[:at])) - 1)
    assert follower.sink.ids() == one_shot(lines[:at])


def test_rotation_finishes_the_old_file_then_follows_the_new_one(tmp_path: Path) -> None:
    lines = fixture_lines()
    path, rotated = tmp_path / "queue_log", tmp_path / "queue_log.1"
    path.write_text("\n".join(lines[:10]) + "\n")
    with Following(path, from_start=True) as follower:
        follower.wait_count(len(one_shot(lines[:10])))
        os.rename(path, rotated)
        path.write_text("")  # logrotate's `create`: the writer has not reopened yet...
        append(rotated, "\n".join(lines[10:20]) + "\n")  # ...and still writes to the old file
        follower.settle()
        append(path, "\n".join(lines[20:]) + "\n")  # now it writes to the new file
        follower.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "the new file's events")
    assert follower.sink.ids() == one_shot(lines)
    assert follower.connector.counts.rotations == 1


def test_rotation_keeps_an_unterminated_last_line_of_the_old_file(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:4]))  # the writer's last line, never terminated
    with Following(path, from_start=True) as follower:
        follower.wait_count(len(one_shot(lines[:3])))
        os.rename(path, tmp_path / "queue_log-20240301")
        path.write_text("\n".join(lines[4:]) + "\n")
        follower.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "the new file's events")
    assert follower.sink.ids() == one_shot(lines)


def test_copytruncate_is_read_again_from_the_start(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:10]) + "\n")
    with Following(path, from_start=True) as follower:
        follower.wait_count(len(one_shot(lines[:10])))
        shutil.copy(path, tmp_path / "queue_log.1")
        with path.open("r+") as stream:
            stream.truncate(0)
        follower.settle()
        append(path, "\n".join(lines[10:]) + "\n")
        follower.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "events after the truncation")
    assert follower.sink.ids() == one_shot(lines)
    assert follower.connector.counts.truncations == 1


def test_truncated_and_rewritten_past_the_old_size_is_noticed_by_its_head(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "queue_log"
    path.write_text("\n".join(lines[:3]) + "\n")
    with Following(path, from_start=True) as follower:
        follower.wait_count(len(one_shot(lines[:3])))
        with path.open("r+") as stream:  # in place, between two polls, longer than before
            stream.truncate(0)
            stream.write("\n".join(lines[3:]) + "\n")
        follower.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "events of the rewritten file")
    assert sorted(follower.sink.ids()) == sorted(one_shot(lines))


# --- restarts -----------------------------------------------------------------------------------------

def test_a_restart_from_the_checkpoint_at_any_batch_neither_loses_nor_repeats(tmp_path: Path) -> None:
    expected = one_shot(fixture_lines())
    for stop_after in range(1, len(expected), 3):
        checkpoint = tmp_path / f"ck-{stop_after}.json"
        stop = threading.Event()
        first = CollectingSink(stop_after=stop_after, stop=stop)
        connector(CALLS, checkpoint_path=str(checkpoint), chunk_bytes=150).run(first, stop)
        assert stop.is_set() and len(first.ids()) < len(expected)
        second = imported(CALLS, checkpoint_path=str(checkpoint), chunk_bytes=150)
        assert first.ids() + second.ids() == expected, f"stopped after {stop_after}"
        assert imported(CALLS, checkpoint_path=str(checkpoint)).ids() == []  # nothing new, nothing again


def test_a_followed_restart_keeps_partial_lines_and_held_exits(tmp_path: Path) -> None:
    lines = fixture_lines()
    at = lines.index("1709284630|1709284590.9|Q999|NONE|EXITWITHTIMEOUT|1|1|30") + 1
    path, checkpoint = tmp_path / "queue_log", tmp_path / "ck.json"
    path.write_text("\n".join(lines[:at]) + "\n" + lines[at][:25])
    with Following(path, from_start=True, checkpoint_path=str(checkpoint), quiet_release_s=60) as first:
        first.wait_count(len(one_shot(lines[:at])) - 1)  # all but the held exit
    state = json.loads(checkpoint.read_text())
    assert list(state["parser"]["exits"]) == ["1709284590.9"]
    append(path, lines[at][25:] + "\n" + "\n".join(lines[at + 1:]) + "\n")
    with Following(path, checkpoint_path=str(checkpoint)) as second:
        second.wait_for(lambda ids: ids[-1:] == one_shot(lines)[-1:], "the rest after the restart")
    assert first.sink.ids() + second.sink.ids() == one_shot(lines)
    transferred = [e for e in second.sink.events if e["type"] == "transferred"]
    assert [e["call_id"] for e in transferred] == ["1709284590.9"]


def test_a_file_rotated_while_stopped_is_finished_under_its_new_name(tmp_path: Path) -> None:
    lines = fixture_lines()
    path, checkpoint = tmp_path / "queue_log", tmp_path / "ck.json"
    path.write_text("\n".join(lines[:12]) + "\n")
    first = imported(path, checkpoint_path=str(checkpoint))
    os.rename(path, tmp_path / "queue_log.1")
    append(tmp_path / "queue_log.1", "\n".join(lines[12:25]) + "\n")
    path.write_text("\n".join(lines[25:]) + "\n")
    second = imported(path, checkpoint_path=str(checkpoint))
    assert sorted(first.ids() + second.ids()) == sorted(one_shot(lines))
    assert len(first.ids() + second.ids()) == len(one_shot(lines))


def test_a_file_truncated_while_stopped_is_read_from_its_start(tmp_path: Path) -> None:
    lines = fixture_lines()
    path, checkpoint = tmp_path / "queue_log", tmp_path / "ck.json"
    path.write_text("\n".join(lines[:20]) + "\n")
    first = imported(path, checkpoint_path=str(checkpoint))
    path.write_text("\n".join(lines[20:25]) + "\n")
    second = imported(path, checkpoint_path=str(checkpoint))
    assert second.ids() == [i for i in one_shot(lines[20:25])]
    assert set(first.ids()).isdisjoint(second.ids())


def test_a_damaged_or_foreign_checkpoint_stops_the_connector(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.json"
    checkpoint.write_text("{not json")
    with pytest.raises(ConfigurationError, match="move it away"):
        imported(CALLS, checkpoint_path=str(checkpoint))
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        build("--queue-log-path", str(CALLS), "--queue-log-queue-lines", "Q999=999",
              "--queue-log-checkpoint", str(checkpoint))
    other = tmp_path / "other.log"
    other.write_text(CALLS.read_text())
    checkpoint.unlink()
    imported(other, checkpoint_path=str(checkpoint))
    with pytest.raises(ConfigurationError, match="belongs to"):
        imported(CALLS, checkpoint_path=str(checkpoint))


# --- options ----------------------------------------------------------------------------------------

def build(*argv: str, key: bytes | None = KEY_BYTES) -> QueueLogConnector:
    import argparse

    parser = argparse.ArgumentParser()
    SPEC.add_arguments(parser)
    return SPEC.build(parser.parse_args(list(argv)), Settings(pseudonymisation_key=key))  # type: ignore[return-value]


def test_options_build_the_connector_and_bad_ones_say_what_is_wrong(tmp_path: Path) -> None:
    built = build("--queue-log-path", str(CALLS), "--queue-log-queue-lines", "Q999=999, Q101=101",
                  "--queue-log-default-line", "other", "--queue-log-site", "north", "--queue-log-follow")
    lines = built.config.lines
    assert (lines.line_of("Q999"), lines.line_of("Q101"), lines.line_of("Q7")) == ("999", "101", "other")
    assert built.config.site == "north" and built.follow and built.realtime
    cases = {("--queue-log-queue-lines", "Q999=999"): "give the queue_log file (--queue-log-path) or its database",
             ("--queue-log-path", str(CALLS), "--queue-log-database", "postgresql://u@h/d"): "one of them",
             ("--queue-log-path", str(CALLS), "--queue-log-queue-lines", "Q999"): "QUEUE=LINE",
             ("--queue-log-path", str(CALLS), "--queue-log-format", "xml"): "pipe",
             ("--queue-log-path", str(tmp_path / "nope")): "no such",
             ("--queue-log-path", str(CALLS), "--queue-log-overflow-s", "soon"): "--queue-log-overflow-s",
             ("--queue-log-path", str(CALLS), "--queue-log-time-zone", "Mars/Olympus"): "unknown time zone",
             ("--queue-log-database", "postgresql://u:hunter2@h/d"): "holds a password",
             ("--queue-log-database", "oracle://u@h/d"): "postgresql:// or mysql://",
             ("--queue-log-database", "mysql://u@h/d"): "the database password is missing",
             ("--queue-log-database", "mysql://u@h/d", "--queue-log-table", "x; drop table y"): "plain SQL name"}
    for argv, message in cases.items():
        with pytest.raises(UsageError, match=re.escape(message)):
            build(*argv)
    with pytest.raises(UsageError, match="CALLWATCH_PSEUDONYMISATION_KEY"):
        build("--queue-log-path", str(CALLS), key=None)


# --- the real PBXware export --------------------------------------------------------------------------

def real_rows(path: Path | None = None) -> list[dict[str, str]]:
    with (path or whole_file(REAL_NAME)).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def expected_outcomes(rows: list[dict[str, str]]) -> dict[str, tuple[str | None, int]]:
    """Straight from the rows: callid -> (outcome, wait in s from htime) for calls that entered the queue."""
    by_call: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_call[row["callid"]].append(row)
    outcomes: dict[str, tuple[str | None, int]] = {}
    for callid, call_rows in by_call.items():
        if not any(r["event"] == "ENTERQUEUE" for r in call_rows):
            continue
        outcome: tuple[str | None, int] = (None, 0)
        for row in call_rows:
            kind = {"CONNECT": "answered", "ABANDON": "abandoned", "EXITWITHTIMEOUT": "timed_out",
                    "EXITEMPTY": "timed_out", "EXITWITHKEY": "timed_out"}.get(row["event"])
            if kind:
                outcome = (kind, int(row["htime"]))  # PBXware's own wait for this outcome
                break
        outcomes[callid] = outcome
    return outcomes


def test_real_export_figures_match_what_its_own_rows_say(tmp_path: Path) -> None:
    rows = real_rows()
    expected = expected_outcomes(rows)
    sink = imported(REAL_CSV, config=ParserConfig(parse_queue_lines("IT=101")))
    assert not sink.dead
    events = [parse_event(e) for e in sink.events]

    flow = CallFlow(FlowConfig(allowed_lateness_s=120), interval_s=86400)
    for event in events:
        flow.ingest(event)
    report = flow.advance() + flow.finish()
    totals: Counter[str] = Counter()
    for row in report:
        if row["queue"] == "IT":
            for name in ("arrivals", "answered", "abandoned", "timed_out", "transferred", "lost"):
                totals[name] += int(row[name])  # type: ignore[call-overload]
    counted = Counter(outcome for outcome, _ in expected.values())
    assert totals["arrivals"] == len(expected) == 108
    assert (totals["answered"], totals["abandoned"], totals["timed_out"]) == (
        counted["answered"], counted["abandoned"], counted["timed_out"]) == (93, 12, 1)
    assert totals["transferred"] == totals["lost"] == 0
    assert flow.counts.unmatched == flow.counts.conflicts == 0
    # Calls cut off by the 1,000-row export are still waiting: arrivals only.
    assert len(flow.tracker.open_legs()) == counted[None] == 2

    # Call by call: the same outcome, and the wait PBXware itself recorded (htime).
    tracker, records = CallTracker(3_600_000), []  # type: ignore[var-annotated]
    for event in sorted(events, key=lambda e: e.sort_key):
        tracker.apply(event, records)
    closed = {r.call_id: (r.outcome, r.wait_ms // 1000) for r in records
              if isinstance(r, LegClosed) and r.queue == "IT"}
    assert closed == {callid: outcome for callid, outcome in expected.items() if outcome[0] is not None}


def test_the_real_export_written_as_a_pipe_file_gives_the_same_events(tmp_path: Path) -> None:
    rows = real_rows()
    path = tmp_path / "queue_log"
    path.write_text("".join("|".join([row["date_time"], row["callid"], row["queue_name"], row["type"], row["event"],
                                      row["param1"], row["param2"], row["param3"]]) + "\n" for row in rows))
    config = ParserConfig(parse_queue_lines("IT=101"))
    assert imported(path, config=config).events == imported(REAL_CSV, config=config).events


def caller_numbers(rows: list[dict[str, str]]) -> set[str]:
    """Every number the export holds for a caller or a dialled party (digits only)."""
    numbers = set()
    for row in rows:
        if row["event"] in ("ENTERQUEUE", "ABANDON", "EXITWITHTIMEOUT", "COMPLETECALLER", "COMPLETEAGENT",
                            "BLINDTRANSFER", "ATTENDEDTRANSFER") or row["event"].startswith("OUT"):
            digits = re.sub(r"\D", "", row["param1"])
            if len(digits) >= 7:
                numbers.add(digits)
    return numbers


def assert_no_number(text: str, numbers: set[str], where: str) -> None:
    leaked = sorted(n for n in numbers if n in re.sub(r"[\s.+()-]", "", text) or n in text)
    assert not leaked, f"{len(leaked)} caller numbers in {where}"


def test_no_raw_number_reaches_the_sink_the_dead_letters_the_logs_or_the_metrics(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = real_rows(EXCERPT_CSV)
    numbers = caller_numbers(rows)
    ours = {n for n in numbers if n.startswith("555")}
    assert len(ours) > 50 and len(numbers) >= len(ours)
    # The real export, plus broken rows carrying numbers, that must be dead-lettered masked.
    path = tmp_path / "export.csv"
    text = EXCERPT_CSV.read_text(encoding="utf-8")
    broken = [f"9001,yesterday,1.2,IT,NONE,ENTERQUEUE,{sorted(ours)[0]},,,1,0,0,0,x",
              f"9002,1543942900,1.3,IT,NONE,ENTERQUEUE,{sorted(ours)[1]}",
              f"9003,1543942901,1.4,IT,NONE,Enter {sorted(ours)[2]},{sorted(ours)[2]},,,1,0,0,0,x"]
    path.write_text(text + "\n".join(broken) + "\n", encoding="utf-8")
    caplog.set_level(logging.DEBUG)

    from prometheus_client import CollectorRegistry, generate_latest

    from connectors.sink import QueueSink
    from streams.embedded.runner import EmbeddedPipeline, RunOptions
    from streams.embedded.sources import QueueSource, StreamClock
    from streams.metrics import FigureCollector

    config = FlowConfig()
    source = QueueSource("queue-log")
    queue_sink = QueueSink(source.items, "queue-log")
    conn = connector(path, config=ParserConfig(parse_queue_lines("IT=101")))
    events_out, dead_out = tmp_path / "events.jsonl", tmp_path / "dead.jsonl"

    def read() -> None:
        try:
            conn.run(queue_sink, threading.Event())
        finally:
            queue_sink.close()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    registry = CollectorRegistry()
    pipeline = EmbeddedPipeline(config, [source], StreamClock(source), FigureCollector(config, registry=registry),
                                RunOptions(interval_s=86400, publish_every_s=0.05))
    totals = pipeline.run()
    thread.join(WAIT_S)
    metrics = generate_latest(registry).decode()
    assert "callwatch_calls_offered_total" in metrics and totals.received["queue-log"] > 300
    assert totals.rejected["queue-log"] == 3

    with events_out.open("w") as events_file, dead_out.open("w") as dead_file:
        json_sink = JsonLinesSink(events_file, dead_file, "queue-log")
        connector(path, config=ParserConfig(parse_queue_lines("IT=101"))).run(json_sink, threading.Event())
    assert json_sink.counts.dead_lettered == 3 and json_sink.counts.sent > 300

    assert "lines; events:" in caplog.text and "rejected" in caplog.text  # the logs were captured
    for text_out, where in ((events_out.read_text(), "events"), (dead_out.read_text(), "dead letters"),
                            (caplog.text, "logs"), (metrics, "metrics")):
        assert_no_number(text_out, numbers, where)
    assert "<number>" in dead_out.read_text()


# --- the command line ---------------------------------------------------------------------------------

def callwatch(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, timeout=timeout,
                          env=clean, cwd=Path(__file__).resolve().parents[2])


def test_connect_queue_log_writes_events_and_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    real_rows()
    out = tmp_path / "calls.jsonl"
    argv = ("connect", "queue-log", "--queue-log-path", str(REAL_CSV), "--queue-log-format", "pbxware-csv",
            "--queue-log-queue-lines", "IT=101", "--out", str(out))
    done = callwatch(*argv, env={"CALLWATCH_PSEUDONYMISATION_KEY": "a secret"})
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter(e["type"] for e in events)["offered"] == 108
    assert b"549 events sent, 0 dead-lettered" in done.stderr

    refused = callwatch(*argv)
    assert refused.returncode == 2
    assert refused.stderr.count(b"\n") == 1 and b"CALLWATCH_PSEUDONYMISATION_KEY" in refused.stderr


def test_run_with_the_queue_log_source_reports_the_real_export(tmp_path: Path) -> None:
    real_rows()
    report = tmp_path / "report.jsonl"
    done = callwatch("run", "--source", "queue-log", "--queue-log-path", str(REAL_CSV),
                     "--queue-log-queue-lines", "IT=101", "--window", "1d", "--report", str(report),
                     "--port", str(free_port()), env={"CALLWATCH_PSEUDONYMISATION_KEY": "a secret"})
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    totals = Counter()  # type: ignore[var-annotated]
    for row in rows:
        if row["queue"] == "*":
            totals.update({k: row[k] for k in ("arrivals", "answered", "abandoned", "timed_out")})
    assert totals == {"arrivals": 108, "answered": 93, "abandoned": 12, "timed_out": 1}
