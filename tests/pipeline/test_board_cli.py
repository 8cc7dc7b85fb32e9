"""`callwatch board` end to end through the real command: what the live board showed at given
instants, equal to the brute-force reference of SPEC section 4; the table; bad input and options."""

from __future__ import annotations

import json
from pathlib import Path

from streams.domain.figures import Figures

from tests.domain import board_reference

from .helpers import callwatch, shuffled_within, simulated_events

NOW_FIELDS = ("waiting", "longest_wait_s", "data_age_s")
INSTANTS = ("2024-03-01T07:00:00Z", "2024-03-01T08:30:00.500Z")


def _rows(done) -> list[dict]:
    assert done.returncode == 0, done.stderr.decode()
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def test_rows_are_what_the_reference_board_shows_at_each_instant(tmp_path: Path) -> None:
    events = simulated_events(tmp_path, duration="3h", scenario="surge")
    objects = [json.loads(line) for line in events.read_text().splitlines()]
    event_time = objects[len(objects) // 2]["ts"]  # an instant equal to an event's time
    instants = [*INSTANTS, event_time]
    rows = _rows(callwatch("board", str(events), *(f"--at={t}" for t in instants)))
    assert rows
    for row in rows:
        head = ("at", "site", "line", "queue", "window")
        assert tuple(row) == head + (NOW_FIELDS if row["window"] == "now" else Figures._fields)
    by_instant: dict[str, list[dict]] = {}
    for row in rows:
        by_instant.setdefault(row["at"], []).append(row)
    assert len(by_instant) == 3 and list(by_instant) == sorted(by_instant)
    for at, mine in by_instant.items():
        expected = board_reference.board(objects, board_reference.millis(at))
        assert {(r["site"], r["line"], r["queue"]) for r in mine} == set(expected.data_age_s)
        for row in mine:
            group = (row["site"], row["line"], row["queue"])
            if row["window"] == "now":
                waiting, longest = expected.waiting[group]
                assert (row["waiting"], row["longest_wait_s"], row["data_age_s"]) == \
                    (waiting, round(longest, 3), round(expected.data_age_s[group], 3))
            else:
                figures = {k: v for k, v in row.items() if k not in ("at", "site", "line", "queue", "window")}
                assert figures == expected.figures[row["window"]][group], (at, group, row["window"])
    assert any(row["window"] == "now" and row["waiting"] > 0 for row in rows), "a surge keeps callers waiting"
    assert {row["window"] for row in rows} == {"15m", "60m", "today", "now"}


def test_same_rows_whatever_the_order_within_the_lateness_from_stdin_or_files(tmp_path: Path) -> None:
    events = simulated_events(tmp_path, duration="2h")
    lines = events.read_text().splitlines()
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(shuffled_within(lines, 120, seed=3)) + "\n")
    at = ["--at", INSTANTS[1], "--at", INSTANTS[0]]
    first = callwatch("board", str(events), *at)
    reordered = callwatch("board", str(shuffled), *at)
    piped = callwatch("board", "-", *at, stdin=shuffled.read_bytes())
    from_env = callwatch("board", str(events), env={"CALLWATCH_BOARD_AT": ",".join(INSTANTS)})
    assert first.returncode == reordered.returncode == piped.returncode == from_env.returncode == 0
    assert first.stdout == reordered.stdout == piped.stdout == from_env.stdout and first.stdout
    out = tmp_path / "board.jsonl"
    assert callwatch("board", str(events), *at, "--out", str(out)).returncode == 0
    assert out.read_bytes() == first.stdout


def test_table_is_aligned_and_shows_each_instant(tmp_path: Path) -> None:
    events = simulated_events(tmp_path, duration="2h")
    done = callwatch("board", str(events), "--at", INSTANTS[0], "--at", INSTANTS[1], "--format", "table")
    assert done.returncode == 0, done.stderr.decode()
    blocks = done.stdout.decode().strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["at 2024-03-01T07:00:00.000Z", "at 2024-03-01T08:30:00.500Z"]
    rows = _rows(callwatch("board", str(events), "--at", INSTANTS[0]))
    table = blocks[0].splitlines()[1:]
    assert table[0].split()[:5] == ["site", "line", "queue", "window", "arrivals"]
    assert len(table) == len(rows) + 1
    # Aligned: each column's heading ends where its numbers end.
    offered_end = table[0].index("offered") + len("offered")
    for line, row in zip(table[1:], rows):
        if row["window"] != "now":
            assert line[:offered_end].endswith(str(row["offered"])), line
    assert any("* (line)" in line for line in table)


def test_bad_options_are_one_line_errors_with_status_2(tmp_path: Path) -> None:
    events = simulated_events(tmp_path, duration="30m")
    cases = {
        ("board", str(events)): "give at least one --at",
        ("board", str(events), "--at", "yesterday"): "--at: not an RFC 3339 time",
        ("board", str(events), "--at", "2024-13-01T00:00:00Z"): "--at: not an RFC 3339 time",
        ("board", str(tmp_path / "missing.jsonl"), "--at", INSTANTS[0]): "no such input file",
        ("board", str(tmp_path), "--at", INSTANTS[0]): "no such input file",
        ("board", str(events), "--at", INSTANTS[0], "--format", "csv"): "--format must be jsonl or table",
        ("board", str(events), "--at", INSTANTS[0], "--tz", "Mars/Base"): "--tz: unknown time zone",
    }
    for args, message in cases.items():
        done = callwatch(*args)
        err = done.stderr.decode()
        assert done.returncode == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not done.stdout


def test_rejected_lines_are_reported_and_give_status_1(tmp_path: Path) -> None:
    events = simulated_events(tmp_path, duration="30m")
    lines = events.read_text().splitlines()
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines[:5] + ["{not json"] + lines[5:]) + "\n")
    clean = callwatch("board", str(events), "--at", "2024-03-01T06:20:00Z")
    done = callwatch("board", str(path), "--at", "2024-03-01T06:20:00Z")
    assert done.returncode == 1
    err = done.stderr.decode()
    assert f"callwatch board: rejected {path}:6: not JSON" in err and "1 rejected" in err
    assert done.stdout == clean.stdout


def test_help_teaches_with_examples_and_names_every_variable() -> None:
    done = callwatch("board", "--help")
    text = done.stdout.decode()
    assert done.returncode == 0
    assert "callwatch board incident.jsonl --at" in text and "--format table" in text
    for variable in ("CALLWATCH_BOARD_AT", "CALLWATCH_BOARD_FORMAT", "CALLWATCH_OUT", "CALLWATCH_TZ", "CALLWATCH_CONFIG"):
        assert variable in text
