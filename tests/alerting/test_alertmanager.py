"""deploy/alertmanager: the configuration is valid (amtool check-config), alerts are routed per site
and line to the right on-call receivers (amtool config routes test), and inhibition works on a real
Alertmanager: stale data silences the figure alerts of its line only, a pipeline that is down
silences its own tickets."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from .conftest import http_json, start_service

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"

pytestmark = pytest.mark.prometheus

RUN = {"job": "callwatch-run", "instance": "127.0.0.1:9108"}
FIGURE = {"severity": "page", "team": "control-room", "queue": "*"}

ROUTES = [
    # (labels, receivers in order)
    ({"alertname": "CallwatchServiceLevelBelowTarget", "site": "default", "line": "999", "window": "15m", **FIGURE},
     "default-999-oncall"),
    ({"alertname": "CallwatchAbandonmentAboveTarget", "site": "default", "line": "101", "window": "15m", **FIGURE},
     "default-101-manager"),
    ({"alertname": "CallwatchLongestWaitOverLimit", "site": "default", "line": "101", **FIGURE}, "default-101-manager"),
    ({"alertname": "CallwatchCallsWaitingOverLimit", "site": "default", "line": "999", "severity": "warning",
      "team": "control-room"}, "default-duty-manager"),
    ({"alertname": "CallwatchDataStale", "site": "default", "line": "999", "severity": "page", "team": "platform"},
     "platform-oncall,default-999-oncall"),
    ({"alertname": "CallwatchPipelineDown", "job": "callwatch-worker", "instance": "w1:9108", "severity": "page",
      "team": "platform"}, "platform-oncall"),
    ({"alertname": "CallwatchDeadLettersRising", "source": "csv", "severity": "ticket", "team": "platform"},
     "platform-tickets"),
    ({"alertname": "CallwatchServiceLevelBelowTarget", "site": "force-b", "line": "999", "window": "60m", **FIGURE},
     "force-999-oncall"),
    ({"alertname": "CallwatchAbandonmentAboveTarget", "site": "force-b", "line": "101", "window": "15m", **FIGURE},
     "duty-manager"),
]


def test_config_is_valid(monitoring_tools):
    done = subprocess.run([monitoring_tools["amtool"], "check-config", str(CONFIG)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "3 inhibit rules" in done.stdout


@pytest.mark.parametrize(("labels", "receivers"), ROUTES, ids=[f"{r[0]['alertname']}-{r[0].get('site', '')}-"
                                                                f"{r[0].get('line', r[0].get('severity'))}" for r in ROUTES])
def test_routing(monitoring_tools, labels, receivers):
    args = [f"{key}={value}" for key, value in labels.items()]
    done = subprocess.run([monitoring_tools["amtool"], "config", "routes", "test", f"--config.file={CONFIG}",
                           f"--verify.receivers={receivers}", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{labels} went to {done.stdout.strip()}, not {receivers}"
    assert done.stdout.strip() == receivers


def _alert(**labels: str) -> dict:
    now = datetime.now(timezone.utc)
    return {"labels": labels, "annotations": {"summary": "test"},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}


def test_inhibition_on_a_real_alertmanager(monitoring_tools, tmp_path):
    service = start_service("alertmanager", CONFIG, tmp_path / "state")
    try:
        stale = _alert(alertname="CallwatchDataStale", site="default", line="999", queue="*", severity="page",
                       team="platform", **RUN)
        sl_999 = _alert(alertname="CallwatchServiceLevelBelowTarget", site="default", line="999", window="15m", **FIGURE, **RUN)
        wait_999 = _alert(alertname="CallwatchLongestWaitOverLimit", site="default", line="999", **FIGURE, **RUN)
        sl_101 = _alert(alertname="CallwatchServiceLevelBelowTarget", site="default", line="101", window="15m", **FIGURE, **RUN)
        down = _alert(alertname="CallwatchPipelineDown", job="callwatch-worker", instance="w1:9108", severity="page",
                      team="platform")
        its_ticket = _alert(alertname="CallwatchDeadLettersRising", job="callwatch-worker", instance="w1:9108",
                            source="kafka", severity="ticket", team="platform")
        other_ticket = _alert(alertname="CallwatchDeadLettersRising", job="callwatch-worker", instance="w2:9108",
                              source="kafka", severity="ticket", team="platform")
        http_json(f"{service.url}/api/v2/alerts", [stale, sl_999, wait_999, sl_101, down, its_ticket, other_ticket])

        def states() -> dict[tuple[str, str], str]:
            out = {}
            for alert in http_json(f"{service.url}/api/v2/alerts"):
                labels = alert["labels"]
                out[(labels["alertname"], labels.get("line") or labels["instance"])] = alert["status"]["state"]
            return out

        expected = {
            ("CallwatchDataStale", "999"): "active",
            ("CallwatchServiceLevelBelowTarget", "999"): "suppressed",  # meaningless while 999 is stale
            ("CallwatchLongestWaitOverLimit", "999"): "suppressed",
            ("CallwatchServiceLevelBelowTarget", "101"): "active",  # 101 is not stale
            ("CallwatchPipelineDown", "w1:9108"): "active",
            ("CallwatchDeadLettersRising", "w1:9108"): "suppressed",  # explained by its worker being down
            ("CallwatchDeadLettersRising", "w2:9108"): "active",
        }
        # Alertmanager lists an alert as soon as it has it and marks it suppressed when its
        # inhibitor has seen the inhibiting one: a moment later, so wait for the states to settle.
        deadline = time.monotonic() + 10
        while (found := states()) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found == expected, service.log()
    finally:
        service.stop()
