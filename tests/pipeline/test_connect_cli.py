"""`callwatch connect SOURCE --out FILE`: connectors write canonical events; bad records are
dead-lettered with a reason and their location, never with a raw number."""

import json

from .helpers import callwatch, simulated_events


def test_connect_simulate_writes_what_simulate_writes(tmp_path):
    out = tmp_path / "connected.jsonl"
    done = callwatch("connect", "simulate", "--seed", "3", "--start", "2024-03-01T08:00:00Z", "--duration", "1h",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()
    simulated = callwatch("simulate", "--seed", "3", "--start", "2024-03-01T08:00:00Z", "--duration", "1h")
    assert out.read_bytes() == simulated.stdout and simulated.stdout


def test_connect_file_dead_letters_bad_lines_with_location_and_masked_numbers(tmp_path):
    events = simulated_events(tmp_path, duration="1h")
    lines = events.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:3] + ["{oops", '{"v": 1, "type": "offered", "caller": "07700 900123"}'] + lines[3:]) + "\n")
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    done = callwatch("connect", "file", str(broken), "--out", str(out), "--dead-letters", str(dead))
    assert done.returncode == 1
    assert out.read_text().splitlines() == lines
    letters = [json.loads(line)["dead_letter"] for line in dead.read_text().splitlines()]
    assert [letter["location"] for letter in letters] == [f"{broken}:4", f"{broken}:5"]
    assert letters[0]["reason"].startswith("not JSON")
    assert letters[1]["reason"] == "invalid event_id: is required"
    assert "900123" not in dead.read_text()
    assert b"2 dead-lettered" in done.stderr


def test_connect_refuses_a_source_with_numbers_but_no_key(tmp_path):
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    csv_file = tmp_path / "calls.csv"
    csv_file.write_text("vru+line,call_id,customer_id,priority,type,date,vru_entry,vru_exit,vru_time,q_start,q_exit,"
                        "q_time,outcome,ser_start,ser_exit,ser_time,server\n")
    done = callwatch("connect", "csv", str(csv_file), "--mapping",
                     str(repo / "connectors/call_detail/mappings/anonymous_bank.yaml"), "--out", "-")
    assert done.returncode == 2
    assert b"CALLWATCH_PSEUDONYMISATION_KEY" in done.stderr and done.stderr.count(b"\n") == 1


def test_paths_are_positional_and_the_prefixed_options_stay_as_aliases(tmp_path):
    events = simulated_events(tmp_path, duration="1h")
    positional = callwatch("connect", "file", str(events), "--out", "-")
    prefixed = callwatch("connect", "file", "--file-path", str(events), "--out", "-")
    assert positional.returncode == prefixed.returncode == 0, positional.stderr.decode()
    assert positional.stdout == prefixed.stdout == events.read_bytes()
    for source in ("file", "queue-log", "csv"):
        usage = callwatch("connect", source, "--help").stdout.decode()
        assert "PATH" in usage.split("\n\n")[0], f"connect {source}: no positional PATH in {usage[:300]}"


def test_a_missing_or_unreadable_file_is_one_line_and_exit_2(tmp_path):
    from pathlib import Path
    mapping = str(Path(__file__).resolve().parents[2] / "connectors/call_detail/mappings/anonymous_bank.yaml")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    for argv, wrong in ((["file", str(tmp_path / "absent.jsonl")], "no such file"),
                        (["csv", str(tmp_path / "absent.csv"), "--mapping", mapping], "no such CSV file"),
                        (["csv", str(other), "--mapping", mapping], "has no column(s)")):
        done = callwatch("connect", *argv, "--out", "-", env={"CALLWATCH_PSEUDONYMISATION_KEY": "test-key"})
        assert done.returncode == 2, (argv, done.stderr.decode())
        assert done.stderr.count(b"\n") == 1 and wrong in done.stderr.decode(), done.stderr.decode()


def test_every_time_option_takes_one_duration_grammar(tmp_path):
    """20s, 5m, 1h, and a bare number as seconds, through streams.options.duration everywhere."""
    for duration in ("3600", "60m", "1h", "3600s"):
        done = callwatch("simulate", "--seed", "3", "--start", "2024-03-01T08:00:00Z", "--duration", duration)
        assert done.returncode == 0 and done.stdout, done.stderr.decode()
        if duration == "3600":
            first = done.stdout
        assert done.stdout == first
    bad = callwatch("simulate", "--duration", "an hour")
    assert bad.returncode == 2 and b"--duration: not a duration: 'an hour'" in bad.stderr
    bad = callwatch("connect", "simulate", "--duration", "soon", "--out", "-")
    assert bad.returncode == 2 and b"--duration: not a duration" in bad.stderr


def test_the_report_window_is_a_duration_of_the_same_grammar(tmp_path):
    events = simulated_events(tmp_path, duration="1h")
    reports = {window: callwatch("replay", str(events), "--window", window) for window in ("15m", "900", "900s", "0.25h")}
    assert all(done.returncode == 0 for done in reports.values()), {w: d.stderr for w, d in reports.items()}
    assert len({done.stdout for done in reports.values()}) == 1 and reports["15m"].stdout
    for command in ("replay", "run"):
        bad = callwatch(command, "--window", "soon", stdin=b"")
        assert bad.returncode == 2 and b"--window: not a duration: 'soon'" in bad.stderr, bad.stderr
    bad = callwatch("run", "--window", "420")
    assert bad.returncode == 2 and b"--window: window must be one of 1m, 5m, 15m, 30m, 1h, 1d, not '420'" in bad.stderr


def test_run_and_connect_read_the_simulators_options_alike(tmp_path):
    """`run --source simulate` builds its simulation with `connect simulate`'s own builder: the same
    events for the same options (a date is a --start for both), the same one-line refusals."""
    options = ["--seed", "5", "--start", "2024-03-01", "--duration", "30m"]
    connected = callwatch("connect", "simulate", *options, "--out", "-")
    assert connected.returncode == 0, connected.stderr.decode()
    recorded = tmp_path / "recorded.jsonl"
    ran = callwatch("run", *options, "--speed", "100000", "--port", "0", "--record", str(recorded))
    assert ran.returncode == 0, ran.stderr.decode()
    # The record is the events as accepted (normalised: an agent event gets an empty call_id).
    identity = lambda text: [(e["event_id"], e["type"], e["ts"]) for e in map(json.loads, text.splitlines())]  # noqa: E731
    assert identity(recorded.read_text()) == identity(connected.stdout.decode()) and connected.stdout
    assert connected.stdout == callwatch("simulate", *options).stdout
    for command in (["connect", "simulate", "--out", "-"], ["run", "--port", "0"]):
        for option, wrong in ((["--start", "March"], b"--start: not an RFC 3339 time with offset: 'March'"),
                              (["--scenario", "zombies"], b"--scenario must be one of normal, surge, not 'zombies'")):
            bad = callwatch(*command, *option)
            assert bad.returncode == 2 and bad.stderr.count(b"\n") == 1 and wrong in bad.stderr, (command, bad.stderr)
