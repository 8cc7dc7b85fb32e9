"""The generated artefacts: committed files equal a rebuild, uids are stable, every metric a panel
or rule names is declared, panels name their window (and formula), the Grafana-managed alert rules
agree with the Prometheus ones."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dashboards import alerts as alert_specs
from dashboards import metrics_doc
from dashboards.alerts import PRODUCTION, accelerated, alerts, recorded_names
from dashboards.build import DASHBOARD_DIR, artefacts, dashboards, outdated
from dashboards.queries import metric_names, panel_queries, rule_queries, selectors, substitute, variable_queries
from streams.metrics import ALL_METRICS, CONNECTOR_METRICS, RENAMED, WORKER_METRICS, exported_names

REPO = Path(__file__).resolve().parents[2]
CALLWATCH = [sys.executable, "-m", "streams.cli"]
NOT_OURS = {"up", "ALERTS"}  # Prometheus's own series


def test_committed_files_equal_a_rebuild_byte_for_byte():
    assert outdated(REPO) == [], "run `callwatch dashboards build` and commit the result"
    for relative, text in artefacts().items():
        assert (REPO / relative).read_bytes() == text.encode("utf-8"), relative


def test_build_check_fails_on_a_stale_file_and_build_repairs_it(tmp_path):
    for relative in artefacts():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, tmp_path / relative)
    ok = subprocess.run(CALLWATCH + ["dashboards", "build", "--check", "--root", str(tmp_path)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    board = tmp_path / DASHBOARD_DIR / "callwatch-wallboard.json"
    board.write_text(board.read_text().replace("Calls waiting", "Calls queueing"))
    stale = subprocess.run(CALLWATCH + ["dashboards", "build", "--check", "--root", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert stale.stderr.strip() == ("callwatch dashboards: dashboards/json/callwatch-wallboard.json is out of date: "
                                    "run `callwatch dashboards build`")
    rebuilt = subprocess.run(CALLWATCH + ["dashboards", "build", "--root", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert rebuilt.returncode == 0 and "wrote dashboards/json/callwatch-wallboard.json" in rebuilt.stdout
    assert outdated(tmp_path) == []


def test_build_refuses_a_root_that_is_not_a_checkout(tmp_path):
    done = subprocess.run(CALLWATCH + ["dashboards", "build", "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"callwatch dashboards: error: --root: {tmp_path} is not a callwatch checkout (no dashboards/ folder)"


def test_dashboard_uids_are_stable_and_match_their_files():
    boards = dashboards()
    assert set(boards) == {"callwatch-wallboard", "callwatch-trends", "callwatch-pipeline"}
    for uid, board in boards.items():
        assert board["uid"] == uid and board["id"] is None
        assert (REPO / DASHBOARD_DIR / f"{uid}.json").is_file()
        ids = [panel["id"] for panel in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))
    assert {a.uid for a in alerts()} == {
        "callwatch-sl-below-15m", "callwatch-sl-below-60m", "callwatch-abandon-above-15m",
        "callwatch-abandon-above-60m", "callwatch-longest-wait", "callwatch-calls-waiting", "callwatch-data-stale",
        "callwatch-pipeline-down", "callwatch-not-published", "callwatch-processing-lag", "callwatch-worker-not-reading",
        "callwatch-worker-consumer-lag", "callwatch-dead-letters", "callwatch-events-late"}


def test_every_metric_a_panel_variable_or_rule_names_is_declared():
    declared = exported_names() | recorded_names() | NOT_OURS
    used: dict[str, set[str]] = {}
    all_queries: list[tuple[str, str]] = []
    for board in dashboards().values():
        for query in panel_queries(board):
            used[query.where] = metric_names(query.expr)
            all_queries.append((query.where, query.expr))
        for name, definition in variable_queries(board):
            used[f"{board['uid']} / ${name}"] = metric_names(definition.removeprefix("label_values(").rsplit(",", 1)[0])
    for grafana in (False, True):
        for query in rule_queries(grafana=grafana):
            used[query.where] = metric_names(query.expr)
            all_queries.append((query.where, query.expr))
    undeclared = {where: names - declared for where, names in used.items() if names - declared}
    assert undeclared == {}
    assert all(used.values()), [where for where, names in used.items() if not names]
    # The figures each audience was promised appear somewhere.
    everything = set().union(*used.values())
    assert {"callwatch_service_level_ratio", "callwatch_abandonment_ratio", "callwatch_calls_waiting",
            "callwatch_longest_wait_seconds", "callwatch_agents", "callwatch_data_age_seconds",
            "callwatch_window_calls_answered_band", "callwatch_events_rejected_total", "callwatch_events_late_total",
            "callwatch_processing_lag_seconds"} <= everything
    # Managers' ranges come from the counters and the answer-time histogram (increase() works on them).
    assert {"callwatch_calls_offered_total", "callwatch_calls_abandoned_total", "callwatch_calls_answered_total",
            "callwatch_calls_answered_band_total", "callwatch_answer_time_seconds_sum",
            "callwatch_answer_time_seconds_count", "callwatch_answer_time_seconds_bucket"} <= everything
    # increase() and rate() only ever of counters (and histogram series), never of a gauge.
    counters = {n for n in exported_names() if n.endswith(("_total", "_sum", "_count", "_bucket"))}
    for where, expr in all_queries:
        for inner in re.findall(r"\b(?:increase|rate)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr):
            assert inner in counters, (where, inner)


def test_the_metric_list_in_the_docs_names_every_metric_once():
    listed = [spec.name for _, _, specs in metrics_doc.SECTIONS for spec in specs]
    assert sorted(listed) == sorted(spec.name for spec in ALL_METRICS + WORKER_METRICS + CONNECTOR_METRICS)
    text = artefacts()[metrics_doc.PATH]
    for name in exported_names() | set(RENAMED):
        assert f"`{name}`" in text, name


def test_metric_name_extraction_catches_a_typo_and_ignores_labels_and_functions():
    assert metric_names('sum by (line) (rate(callwatch_calls_waitng{line="callwatch_x"}[5m])) > on(site) '
                        'group_left(formula) up') == {"callwatch_calls_waitng", "up"}
    assert metric_names("time() - callwatch_last_publish_timestamp_seconds > 30") == {
        "callwatch_last_publish_timestamp_seconds"}
    assert metric_names("avg_over_time(callwatch_calls_offered[${__range_s}s]) * ${__range_s} / 900") == {
        "callwatch_calls_offered"}
    assert selectors('a{x="b(c)"} and on(site) rate(d[5m])') == ['a{x="b(c)"}', "d"]
    assert substitute('x{line="$line"}[${__range_s}s]', {"line": "999", "__range_s": "60"}) == 'x{line="999"}[60s]'
    with pytest.raises(KeyError):
        substitute("x{site=\"$site\"}", {})


def test_recording_rules_follow_level_metric_operations_naming():
    for name in recorded_names():
        level, metric, operations = name.split(":")
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", level) and re.fullmatch(r"[a-z0-9_]+", operations), name
        assert metric in {n.removesuffix("_total") for n in exported_names()}, name


def test_wallboard_panels_are_per_line_and_name_their_window_and_formula():
    board = dashboards()["callwatch-wallboard"]
    rows = [p for p in board["panels"] if p["type"] == "row"]
    assert [r["repeat"] for r in rows] == ["line"]
    figures = [p for p in board["panels"] if p["type"] != "row"]
    for panel in figures:
        assert re.search(r"· (rolling \d+ min|now|since last event|SL threshold)$", panel["title"]), panel["title"]
        assert panel["description"]
        for target in panel["targets"]:
            assert 'line="$line"' in target["expr"] and 'site="$site"' in target["expr"], target["expr"]
    by_title = {p["title"]: p for p in figures}
    for window in ("15", "60"):
        panel = by_title[f"Service level · rolling {window} min"]
        assert panel["targets"][0]["legendFormat"] == "{{formula}} formula"
        assert "answered within the threshold ÷ answered" in panel["description"]
        assert panel["transformations"][0]["id"] == "configFromData"  # coloured against the line's target
    assert {"Data age · since last event", "Agents · now", "Longest wait · now", "Calls waiting · now",
            "Abandoned · rolling 15 min"} <= set(by_title)


def test_panels_fit_the_grid_without_overlapping():
    for board in dashboards().values():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not mine & cells, f"{board['uid']}: {panel['title']} overlaps"
            cells |= mine


def test_grafana_alert_rules_agree_with_the_prometheus_rules():
    root = REPO / "deploy"
    prometheus = yaml.safe_load((root / "prometheus/rules/callwatch.yml").read_text())
    grafana = yaml.safe_load((root / "grafana/provisioning/alerting/callwatch-alert-rules.yml").read_text())
    datasources = yaml.safe_load((root / "grafana/provisioning/datasources/callwatch.yml").read_text())
    ours = [r for g in prometheus["groups"] for r in g["rules"] if "alert" in r]
    theirs = [r for g in grafana["groups"] for r in g["rules"]]
    assert len(ours) == len(theirs) == len(alerts())
    uid = datasources["datasources"][0]["uid"]
    for prom, graf in zip(ours, theirs):
        assert graf["labels"] == prom["labels"]
        assert graf["title"] == " ".join([prom["alert"], *([prom["labels"]["window"]] if "window" in prom["labels"] else [])])
        assert graf["for"] == prom.get("for", "0s")
        assert graf.get("keepFiringFor") == prom.get("keep_firing_for")
        assert graf["data"][0]["datasourceUid"] == uid and graf["condition"] == "B"
        query = graf["data"][0]["model"]["expr"]
        assert "ALERTS" not in query
        if "ALERTS" not in prom["expr"]:
            assert query == prom["expr"]
        else:  # the Prometheus rule is the Grafana condition plus its hysteresis latch
            assert prom["expr"].startswith("(\n" + "\n".join("  " + line for line in query.splitlines()))


def test_the_accelerated_variant_only_shortens_for_and_keep_firing_for():
    fast = {(a.name, a.labels.get("window")): a for a in alerts(accelerated(60))}
    for alert in alerts(PRODUCTION):
        twin = fast[(alert.name, alert.labels.get("window"))]
        assert twin.expr == alert.expr and twin.labels == alert.labels
        assert twin.for_s == (0 if alert.for_s == 0 else max(1, round(alert.for_s / 60)))
        assert twin.keep_firing_for_s == (0 if alert.keep_firing_for_s == 0 else max(1, round(alert.keep_firing_for_s / 60)))
    sl = alert_specs.service_level(accelerated(60), "15m")
    assert (sl.for_s, sl.keep_firing_for_s) == (5, 10)
