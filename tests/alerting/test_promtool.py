"""promtool on the committed Prometheus files: the rules are lint-clean, pass their unit tests
(deploy/prometheus/tests/*.test.yml) and the configuration is valid; so is the accelerated rule
variant the end-to-end test uses. The counters' unit tests run the manager's dashboard queries
(increase() over the counters), and a test keeps them the dashboard's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.alerts import accelerated
from dashboards.build import dashboards
from dashboards.prometheus_rules import rule_file
from dashboards.queries import panel_queries, substitute

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"

pytestmark = pytest.mark.prometheus


def promtool(tools: dict[str, str], *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tools["promtool"], *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rules_are_lint_clean(monitoring_tools):
    done = promtool(monitoring_tools, "check", "rules", "--lint=all", "--lint-fatal", "deploy/prometheus/rules/callwatch.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 17 rules found" in done.stdout


def test_rule_unit_tests_pass(monitoring_tools):
    tests = sorted(str(p.relative_to(REPO)) for p in (PROMETHEUS / "tests").glob("*.test.yml"))
    assert len(tests) == 4
    done = promtool(monitoring_tools, "test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(tests)


def test_every_alert_has_a_unit_test():
    text = "".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.test.yml"))
    rules = (PROMETHEUS / "rules" / "callwatch.yml").read_text()
    names = {line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")}
    records = {line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- record:")}
    assert len(names) == 12
    for name in names:
        assert f"alertname: {name}" in text, f"no promtool test of {name}"
    for record in records:
        assert f"expr: {record}" in text, f"no promtool test of {record}"


def test_prometheus_config_is_valid(monitoring_tools):
    done = promtool(monitoring_tools, "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_accelerated_rules_are_lint_clean_too(monitoring_tools, tmp_path):
    path = tmp_path / "fast.yml"
    path.write_text(rule_file(accelerated(60)))
    done = promtool(monitoring_tools, "check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_counter_unit_tests_run_every_range_query_of_the_managers_dashboard():
    tested = {" ".join(case["expr"].split())
              for test in yaml.safe_load((PROMETHEUS / "tests" / "counters.test.yml").read_text())["tests"]
              for case in test["promql_expr_test"]}
    values = {"site": "default", "line": "999|101", "__range_s": "7200"}
    ranges = [query for query in panel_queries(dashboards()["callwatch-trends"]) if "increase(" in query.expr]
    assert len(ranges) >= 8
    for query in ranges:
        assert " ".join(substitute(query.expr, values).split()) in tested, f"no promtool test of {query.where}"
