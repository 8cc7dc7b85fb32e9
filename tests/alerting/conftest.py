"""Fixtures of the alerting tests: Debian's Prometheus and Alertmanager (installed by
deploy/prometheus/install.sh when missing, started by deploy/*/start.sh on 127.0.0.1 with a
temporary state directory, a free port and a maximum lifetime, stopped at the end), and a webhook
receiver that records what Alertmanager delivers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "prometheus" / "install.sh"
MAX_LIFETIME_S = "900"  # a service forgotten by a killed test run stops by itself


@pytest.fixture(scope="session")
def monitoring_tools() -> dict[str, str]:
    """Paths of promtool, prometheus, prometheus-alertmanager and amtool; installed by
    deploy/prometheus/install.sh when missing. Skips (outside CI) only when they cannot be had."""
    names = ("promtool", "prometheus", "prometheus-alertmanager", "amtool")
    if not all(shutil.which(name) for name in names):
        done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            message = f"deploy/prometheus/install.sh failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return {name: shutil.which(name) or name for name in names}


def http_json(url: str, data: Any = None, timeout: float = 10) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


@dataclass
class Service:
    name: str
    port: int
    state: Path
    env: dict[str, str]
    stop_script: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.state / self.name / f"{self.name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        subprocess.run([str(self.stop_script)], env=self.env, capture_output=True, text=True, timeout=60)


def start_service(name: str, config: Path, state: Path, extra_opts: str = "") -> Service:
    """deploy/<name>/start.sh with this configuration, a free port and `state` as CALLWATCH_STATE."""
    port = free_port()
    upper = name.upper()
    env = dict(os.environ)
    env.update({"CALLWATCH_STATE": str(state), f"{upper}_PORT": str(port), f"{upper}_CONFIG": str(config),
                f"CALLWATCH_{upper}_MAX_LIFETIME_S": MAX_LIFETIME_S, f"{upper}_OPTS": extra_opts})
    folder = REPO / "deploy" / name
    done = subprocess.run([str(folder / "start.sh")], env=env, capture_output=True, text=True, timeout=120)
    service = Service(name, port, state, env, folder / "stop.sh")
    if done.returncode != 0:
        service.stop()
        pytest.fail(f"deploy/{name}/start.sh failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    assert done.stdout.strip().startswith(f"{name} ready at http://127.0.0.1:{port}"), done.stdout
    return service


@dataclass
class Notification:
    at: float  # time.monotonic() when received
    path: str
    payload: dict[str, Any]


@dataclass
class WebhookReceiver:
    """Records every notification Alertmanager posts (any path: one per receiver)."""

    port: int
    notifications: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{urllib.parse.quote(path)}"

    def snapshot(self) -> list[Notification]:
        with self.lock:
            return list(self.notifications)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            with receiver.lock:
                receiver.notifications.append(Notification(time.monotonic(), self.path, payload))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
