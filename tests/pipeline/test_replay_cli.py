"""`callwatch replay` end to end through the real command: determinism, input order, bad input."""

import json

from streams.domain.figures import REPORT_FIELDS

from .helpers import callwatch, shuffled_within, simulated_events


def test_report_rows_have_exactly_the_spec_fields_in_report_order(tmp_path):
    events = simulated_events(tmp_path)
    done = callwatch("replay", str(events), "--window", "15m")
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert rows, "a 4-hour simulation must produce report rows"
    assert all(tuple(row) == REPORT_FIELDS for row in rows)
    keys = [(r["window_start"], r["site"], r["line"], r["queue"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert {r["queue"] for r in rows} >= {"*"}


def test_byte_identical_across_runs_and_input_orders_within_the_lateness(tmp_path):
    events = simulated_events(tmp_path)
    lines = events.read_text().splitlines()
    first = callwatch("replay", str(events), "--window", "5m")
    again = callwatch("replay", str(events), "--window", "5m")
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(shuffled_within(lines, 120, seed=11)) + "\n")
    assert shuffled.read_text() != events.read_text()
    reordered = callwatch("replay", str(shuffled), "--window", "5m")
    assert first.returncode == again.returncode == reordered.returncode == 0, reordered.stderr.decode()
    assert first.stdout == again.stdout == reordered.stdout
    assert b" 0 late" in reordered.stderr


def test_stdin_and_several_files_give_the_same_report(tmp_path):
    events = simulated_events(tmp_path)
    lines = events.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "a.jsonl").write_text("".join(lines[:half]))
    (tmp_path / "b.jsonl").write_text("".join(lines[half:]))
    whole = callwatch("replay", str(events))
    split = callwatch("replay", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"))
    piped = callwatch("replay", "-", stdin=events.read_bytes())
    assert whole.stdout == split.stdout == piped.stdout and whole.stdout


def test_malformed_lines_are_counted_reported_with_line_numbers_and_processing_goes_on(tmp_path):
    events = simulated_events(tmp_path)
    lines = events.read_text().splitlines()
    broken = lines[:10] + ["{not json", '{"v": 1, "type": "answered"}', ""] + lines[10:]
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(broken) + "\n")
    clean = callwatch("replay", str(events))
    done = callwatch("replay", str(path))
    assert done.returncode == 1
    err = done.stderr.decode()
    assert f"{path}:11: not JSON" in err
    assert f"{path}:12: invalid event_id: is required" in err
    assert "2 rejected" in err
    assert done.stdout == clean.stdout  # the valid events still give the full report


def test_late_events_are_counted_not_silently_dropped(tmp_path):
    events = simulated_events(tmp_path)
    lines = events.read_text().splitlines()
    moved = lines[5]
    late = lines[:5] + lines[6:] + [moved]  # arrives hours after its time
    path = tmp_path / "late.jsonl"
    path.write_text("\n".join(late) + "\n")
    done = callwatch("replay", str(path))
    assert done.returncode == 1
    assert b" 1 late" in done.stderr


def test_bad_options_are_one_line_and_exit_2(tmp_path):
    for args, message in [
        (["replay", "--window", "7m"], b"--window: window must be one of"),
        (["replay", str(tmp_path / "missing.jsonl")], b"no such input file"),
        (["replay", "--tz", "Nowhere/Special", "-"], b"unknown time zone"),
        (["simulate", "--duration", "forever"], b"not a duration"),
        (["simulate", "--scenario", "zombies"], b"--scenario must be one of"),
        (["replay", "--bogus"], b"unrecognized arguments"),
    ]:
        done = callwatch(*args, stdin=b"")
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert done.stderr.count(b"\n") == 1, done.stderr


def test_options_can_come_from_the_environment(tmp_path):
    events = simulated_events(tmp_path)
    by_flag = callwatch("replay", str(events), "--window", "1h")
    by_env = callwatch("replay", str(events), env={"CALLWATCH_WINDOW": "1h"})
    assert by_flag.stdout == by_env.stdout
    help_text = b" ".join(callwatch("replay", "--help").stdout.split())
    assert b"[env: CALLWATCH_WINDOW]" in help_text


def test_progress_bar_on_a_terminal_not_in_pipes(tmp_path):
    import os
    import pty
    import subprocess

    from .helpers import CALLWATCH

    events = simulated_events(tmp_path, duration="2d")
    main, secondary = pty.openpty()
    try:
        done = subprocess.run(CALLWATCH + ["replay", str(events), "--report", str(tmp_path / "r.jsonl")],
                              stderr=secondary, stdout=subprocess.DEVNULL, timeout=120)
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    assert done.returncode == 0
    assert b"replay [" in shown and b"%" in shown
    piped = callwatch("replay", str(events))
    assert b"replay [" not in piped.stderr
