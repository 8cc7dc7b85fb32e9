"""`callwatch run`: the embedded pipeline serving real Prometheus metrics over HTTP."""

import os
import signal
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import exported_names
from tests.ports import free_port

from .helpers import CALLWATCH


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    families: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            families.setdefault(sample.name, []).append(sample)
    return families


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError as error:  # not listening yet
            last_error = error
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def test_run_serves_figures_live_figures_and_pipeline_health_then_stops_gracefully(tmp_path):
    port = free_port()
    report = tmp_path / "live-report.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen(
        CALLWATCH + ["run", "--port", str(port), "--speed", "600", "--start", "2024-03-01T07:00:00Z",
                     "--seed", "5", "--window", "5m", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        def figures_present():
            families = scrape(port)
            return families if any(s.labels.get("window") == "15m" and s.labels["queue"] == "*"
                                   for s in families.get("callwatch_window_calls_offered", [])) else None

        families = wait_for(figures_present, 60, "15-minute figures on /metrics")
        assert set(families) <= exported_names() | {n + "_created" for n in exported_names()}
        windows = {s.labels["window"] for s in families["callwatch_window_calls_offered"]}
        assert windows == {"15m", "60m", "today"}
        lines = {s.labels["line"] for s in families["callwatch_window_calls_offered"]}
        assert {"999", "101"} <= lines
        assert families["callwatch_calls_waiting"] and families["callwatch_longest_wait_seconds"]
        assert families["callwatch_agents"] and families["callwatch_data_age_seconds"]
        assert families["callwatch_events_received_total"][0].value > 0
        # Counters since the start and the answer-time histogram, per group (line totals too).
        assert any(s.labels["queue"] == "*" and s.value > 0 for s in families["callwatch_calls_offered_total"])
        assert {s.labels["le"] for s in families["callwatch_answer_time_seconds_bucket"]} >= {"10.0", "30.0", "60.0", "+Inf"}
        assert all(0 <= s.value <= 1 for s in families.get("callwatch_service_level_ratio", []))
        # Stream time moves on as the process runs (600x): figures are recomputed, not frozen.
        first = families["callwatch_newest_event_timestamp_seconds"][0].value
        wait_for(lambda: scrape(port)["callwatch_newest_event_timestamp_seconds"][0].value > first + 60, 30, "stream time to advance")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"SIGTERM received: stopping" in stderr and b"stopped:" in stderr
    assert b"Task was destroyed" not in stderr, stderr.decode()  # the wallboard's tasks end before its loop
    assert report.read_text().count("\n") > 0  # open windows were flushed on the way out


def test_run_refuses_a_bad_option_in_one_line():
    done = subprocess.run(CALLWATCH + ["run", "--speed", "-3"], capture_output=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "callwatch run: error: --speed must be positive, not -3.0"


def test_run_from_a_file_source_reports_exactly_what_replay_reports(tmp_path):
    from .helpers import callwatch, simulated_events

    events = simulated_events(tmp_path, duration="3h", seed=4)
    report = tmp_path / "run-report.jsonl"
    done = callwatch("run", "--source", "file", "--file-path", str(events), "--port", str(free_port()),
                     "--report", str(report), "--window", "15m")
    assert done.returncode == 0, done.stderr.decode()
    # The wallboard's server stops cleanly: its board task is awaited, not left pending for the GC.
    assert b"Task was destroyed" not in done.stderr and b"Traceback" not in done.stderr, done.stderr.decode()
    replayed = callwatch("replay", str(events), "--window", "15m")
    assert report.read_bytes() == replayed.stdout and replayed.stdout
