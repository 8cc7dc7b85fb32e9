"""deploy/prometheus/start.sh with CALLWATCH_PROMETHEUS_MAX_LIFETIME_S: a forgotten Prometheus stops
by itself (the watchdog of deploy/local/lifetime.sh, which Kafka, Alertmanager and the databases
share), and stop.sh ends the watchdog with the service."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.ports import free_port

from .conftest import REPO

pytestmark = pytest.mark.prometheus
PROMETHEUS = REPO / "deploy" / "prometheus"


def start(state: Path, lifetime_s: int) -> tuple[dict[str, str], int, int]:
    """Prometheus on a free port; the env to stop it with, its pid and its watchdog's pid."""
    env = dict(os.environ, CALLWATCH_STATE=str(state), PROMETHEUS_PORT=str(free_port()),
               CALLWATCH_PROMETHEUS_MAX_LIFETIME_S=str(lifetime_s))
    done = subprocess.run([str(PROMETHEUS / "start.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"stops by itself after {lifetime_s} s" in done.stdout, done.stdout
    pid_file = state / "prometheus" / "prometheus.pid"
    return env, int(pid_file.read_text()), int(Path(f"{pid_file}.watchdog").read_text())


def gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    return not os.path.exists(f"/proc/{pid}")


def test_prometheus_stops_by_itself_after_its_maximum_lifetime(monitoring_tools, tmp_path) -> None:
    env, pid, watchdog = start(tmp_path, lifetime_s=2)
    try:
        assert os.path.exists(f"/proc/{watchdog}")
        assert gone_within(pid, 2 + 20), "Prometheus outlived its maximum lifetime"
        log = (tmp_path / "prometheus" / "prometheus.log").read_text()
        assert f"maximum lifetime of 2 s reached, stopping pid {pid}" in log
        assert gone_within(watchdog, 5)
        assert not (tmp_path / "prometheus" / "prometheus.pid").exists()
        assert not (tmp_path / "prometheus" / "prometheus.pid.watchdog").exists()
    finally:
        subprocess.run([str(PROMETHEUS / "stop.sh")], env=env, capture_output=True, timeout=60)


def test_stopping_prometheus_ends_its_watchdog_too(monitoring_tools, tmp_path) -> None:
    env, pid, watchdog = start(tmp_path, lifetime_s=600)
    done = subprocess.run([str(PROMETHEUS / "stop.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"prometheus: stopped pid {pid}", done.stdout + done.stderr
    assert gone_within(pid, 1) and gone_within(watchdog, 5)
