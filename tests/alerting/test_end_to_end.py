"""End to end, with nothing faked: `callwatch run` replays the surge scenario 120 times faster than
real time; Debian's Prometheus (started here on 127.0.0.1) scrapes it every second and evaluates
the production rules with `for`/`keep_firing_for` divided by the speed; Debian's Alertmanager
routes with the production routing tree to a webhook receiver run by the test. The 999
service-level and 101 abandonment alerts fire during the surge, reach their on-call receivers, and
resolve after it. Meanwhile every PromQL query of every dashboard panel, template variable and
rule is run on that Prometheus and must return data.

Prints a timeline: when each alert fired and resolved, in real seconds and stream time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.alerts import accelerated
from dashboards.build import dashboards
from dashboards.prometheus_rules import rule_file
from dashboards.queries import panel_queries, rule_queries, selectors, substitute, variable_queries
from streams.metrics import WORKER_METRICS
from tests.ports import free_port

from .conftest import REPO, WebhookReceiver, http_json, start_service

pytestmark = pytest.mark.prometheus

SPEED = 120  # two stream minutes a second: still several scrapes within every scaled `for`
WORKER_ONLY = {metric.name for metric in WORKER_METRICS}
START = "2024-03-05T16:00:00Z"  # a Tuesday afternoon; the surge runs 16:30-17:30 stream time
SURGE_START = datetime(2024, 3, 5, 16, 30, tzinfo=timezone.utc).timestamp()
SURGE_END = datetime(2024, 3, 5, 17, 30, tzinfo=timezone.utc).timestamp()
SEED = "1"
QUERY_CHECK_AFTER_S = 75 * 60 / SPEED  # stream 17:15, mid-surge: every figure exists, with history
DEADLINE_S = 230 * 60 / SPEED
LINES = ("999", "101")

# (alertname, line, window): the receiver the production routing sends it to
REQUIRED = {
    ("CallwatchServiceLevelBelowTarget", "999", "15m"): "default-999-oncall",
    ("CallwatchServiceLevelBelowTarget", "999", "60m"): "default-999-oncall",
    ("CallwatchAbandonmentAboveTarget", "101", "15m"): "default-101-manager",
    ("CallwatchAbandonmentAboveTarget", "101", "60m"): "default-101-manager",
}


def test_surge_fires_and_resolves_the_999_and_101_alerts_and_every_query_returns_data(
        monitoring_tools, webhook: WebhookReceiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics_port = free_port()
    alertmanager = start_service("alertmanager", _alertmanager_config(tmp_path, webhook), tmp_path / "state")
    prometheus = None
    run = None
    try:
        prometheus = start_service("prometheus", _prometheus_config(tmp_path, metrics_port, alertmanager.port),
                                   tmp_path / "state", "--rules.alert.resend-delay=1s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
        run_log = tmp_path / "callwatch-run.log"
        with run_log.open("wb") as log:
            run = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "run", "--scenario", "surge", "--speed", str(SPEED), "--start",
                 START, "--seed", SEED, "--port", str(metrics_port)],
                stdout=subprocess.DEVNULL, stderr=log, env=env)
        t0 = time.monotonic()
        problems: list[str] | None = None
        summary = "the query check did not run"
        stream_clock: list[tuple[float, float]] = []  # (monotonic, stream time) samples
        while time.monotonic() - t0 < DEADLINE_S:
            assert run.poll() is None, f"callwatch run died:\n{run_log.read_text()[-3000:]}"
            stream = _instant(prometheus.url, "callwatch_newest_event_timestamp_seconds")
            if stream:
                stream_clock.append((time.monotonic(), float(stream[0]["value"][1])))
            if problems is None and time.monotonic() - t0 >= QUERY_CHECK_AFTER_S:
                problems, summary = _check_every_query(prometheus.url, metrics_port, time.monotonic() - t0)
            timeline = _timeline(webhook)
            if problems is not None and all((key, "resolved") in timeline for key in REQUIRED):
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        timeline = _timeline(webhook)
        with capsys.disabled():  # the timings are the point of a run: shown even when the test passes
            print(f"\n{summary}")
            _print_timeline(timeline, t0, stream_clock, elapsed)
        assert problems == [], "\n".join(problems or ["the query check did not run"])
        for key, receiver in REQUIRED.items():
            assert (key, "firing") in timeline, f"{key} never fired; got {sorted(timeline)}"
            assert (key, "resolved") in timeline, f"{key} did not resolve within {DEADLINE_S} s"
            fired, fired_via = timeline[(key, "firing")]
            resolved, resolved_via = timeline[(key, "resolved")]
            assert fired_via == resolved_via == f"/{receiver}", (key, fired_via, resolved_via)
            assert SURGE_START <= _stream_at(stream_clock, fired) <= SURGE_END, key
            assert _stream_at(stream_clock, resolved) > SURGE_END, key
            assert fired < resolved
            # One page per episode: once resolved, it never fired again (hysteresis, keep_firing_for).
            statuses = _statuses(webhook, key)
            assert "firing" not in statuses[statuses.index("resolved"):], (key, statuses)
    finally:
        if run is not None and run.poll() is None:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=30)
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()


# --- set-up -------------------------------------------------------------------------------------

def _prometheus_config(tmp_path: Path, metrics_port: int, alertmanager_port: int) -> Path:
    """The committed deploy/prometheus/prometheus.yml, pointed at this test's processes, scraping and
    evaluating every second, with the rules accelerated like the pipeline."""
    rules = tmp_path / "rules" / "callwatch.yml"
    rules.parent.mkdir()
    rules.write_text(rule_file(accelerated(SPEED)))
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{alertmanager_port}"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["callwatch-run"].update(scrape_interval="1s")
    jobs["callwatch-run"]["static_configs"][0]["targets"] = [f"127.0.0.1:{metrics_port}"]
    jobs["callwatch-worker"].update(scrape_interval="1s")
    jobs["callwatch-worker"]["file_sd_configs"][0]["files"] = [str(REPO / "deploy/prometheus/targets/workers.yml")]
    config["scrape_configs"] = [jobs["callwatch-run"], jobs["callwatch-worker"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _alertmanager_config(tmp_path: Path, webhook: WebhookReceiver) -> Path:
    """The committed routing tree and inhibition, with every receiver replaced by the test's webhook
    (one path per receiver) and notifications sent within a second."""
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": webhook.url(r["name"]), "send_resolved": True}]}
                           for r in config["receivers"]]
    config["templates"] = [str(REPO / "deploy" / "alertmanager" / "templates" / "*.tmpl")]
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


# --- the query check ----------------------------------------------------------------------------

def _instant(url: str, expr: str) -> list[dict[str, Any]]:
    answer = http_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _check_every_query(url: str, metrics_port: int, elapsed_s: float) -> tuple[list[str], str]:
    """Problems found running each panel, variable and rule query on the real Prometheus ([] if none),
    and a one-line summary."""
    problems = []
    instance = f"127.0.0.1:{metrics_port}"
    values = {"site": "default", "job": "callwatch-run", "instance": instance, "__range_s": str(int(elapsed_s)),
              "__rate_interval": "15s", "datasource": "unused"}

    def run(where: str, expr: str) -> list[dict[str, Any]]:
        answer = http_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if answer["status"] != "success":
            problems.append(f"{where}: {answer.get('error')}: {expr}")
            return []
        return answer["data"]["result"]

    checked = 0
    for board in dashboards().values():
        for query in panel_queries(board):
            for line in (LINES if "$line" in query.expr else ("",)):
                expr = substitute(query.expr, {**values, "line": line})
                result = run(query.where, expr)
                checked += 1
                if not result:
                    problems.append(f"{query.where} (line {line or '-'}): no data: {expr}")
                elif "{{formula}}" in str(board) and "group_left(formula)" in expr and "formula" not in result[0]["metric"]:
                    problems.append(f"{query.where}: no formula label")
        for name, definition in variable_queries(board):
            selector, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
            selector = substitute(selector, {**values, "job": "callwatch-run"})
            answer = http_json(f"{url}/api/v1/label/{label.strip()}/values?" + urllib.parse.urlencode({"match[]": selector}))
            expected = {"site": {"default"}, "line": set(LINES), "job": {"callwatch-run"}, "instance": {instance}}[name]
            if set(answer["data"]) != expected:
                problems.append(f"{board['uid']} variable ${name}: {answer['data']} from {definition}")
    for grafana in (False, True):
        for query in rule_queries(accelerated(SPEED), grafana=grafana):
            result = run(query.where, query.expr)
            if query.where.startswith("record") and not result:
                problems.append(f"{query.where}: no data")
            for selector in selectors(query.expr):
                # `callwatch run` has no loop reading Kafka: the worker's own metric is checked on a real
                # worker's /metrics instead (tests/integration/test_worker.py), by the same name.
                if selector in WORKER_ONLY:
                    continue
                if not selector.startswith("ALERTS") and not run(f"{query.where} selector", selector):
                    problems.append(f"{query.where}: {selector} selects nothing")
    rules = http_json(f"{url}/api/v1/rules")["data"]["groups"]
    for group in rules:
        for rule in group["rules"]:
            if rule["health"] != "ok":
                problems.append(f"rule {rule['name']}: {rule['health']} {rule.get('lastError')}")
    if sum(len(g["rules"]) for g in rules) != 17:
        problems.append(f"Prometheus loaded {sum(len(g['rules']) for g in rules)} rules, not 17")
    summary = (f"query check at {elapsed_s:.0f} s: {checked} panel queries (one per line where the panel has "
               f"$line), every template variable, every rule and rule selector: {len(problems)} problem(s)")
    return problems, summary


# --- the timeline -------------------------------------------------------------------------------

def _timeline(webhook: WebhookReceiver) -> dict[tuple[tuple[str, str, str], str], tuple[float, str]]:
    """((alertname, line, window), status) -> (when first notified, receiver path)."""
    seen: dict[tuple[tuple[str, str, str], str], tuple[float, str]] = {}
    for note in webhook.snapshot():
        for alert in note.payload.get("alerts", []):
            labels = alert["labels"]
            key = (labels["alertname"], labels.get("line", labels.get("instance", "")), labels.get("window", ""))
            seen.setdefault((key, alert["status"]), (note.at, note.path))
    return seen


def _statuses(webhook: WebhookReceiver, key: tuple[str, str, str]) -> list[str]:
    """The status of one alert in each notification that carried it, in order."""
    out = []
    for note in webhook.snapshot():
        for alert in note.payload.get("alerts", []):
            labels = alert["labels"]
            if (labels["alertname"], labels.get("line", ""), labels.get("window", "")) == key:
                out.append(alert["status"])
    return out


def _stream_at(clock: list[tuple[float, float]], at: float) -> float:
    if not clock:
        return float("nan")
    before = [(t, s) for t, s in clock if t <= at] or clock[:1]
    t, s = before[-1]
    return s + (at - t) * SPEED


def _print_timeline(timeline: dict, t0: float, clock: list[tuple[float, float]], elapsed: float) -> None:
    def when(at: float) -> str:
        stream = datetime.fromtimestamp(_stream_at(clock, at), timezone.utc).strftime("%H:%M")
        return f"{at - t0:6.1f} s (stream {stream})"

    print(f"\nend-to-end timeline (speed {SPEED}, surge 16:30-17:30 stream time, {elapsed:.0f} s in all; "
          "times of the first notification of each state):")
    for key in sorted({key for key, _ in timeline}):
        fired = timeline.get((key, "firing"))
        resolved = timeline.get((key, "resolved"))
        name, line, window = key
        print(f"  {name:34} {line:>8} {window:>4}  fired {when(fired[0]) if fired else '-':>26}"
              f"  resolved {when(resolved[0]) if resolved else '-':>26}  via {(fired or resolved)[1]}")
