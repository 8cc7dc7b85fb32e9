"""`callwatch dashboards push` against a fake Grafana HTTP API on 127.0.0.1 (Grafana itself cannot
be installed where the suite runs): the requests' paths, payloads and bearer token, the folder
created once, a refusal reported in one line, and the token never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from dashboards.build import dashboards

CALLWATCH = [sys.executable, "-m", "streams.cli"]
TOKEN = "glsa_s3cret-token-for-tests"


class FakeGrafana:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.folders: set[str] = set()
        self.refuse_dashboards = False
        self.versions: dict[str, int] = {}
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, headers, body))
            if headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, {"message": "invalid API key"}
            if method == "GET" and path.startswith("/api/folders/"):
                uid = path.rsplit("/", 1)[1]
                return (200, {"uid": uid, "title": "callwatch"}) if uid in self.folders else (404, {"message": "folder not found"})
            if method == "POST" and path == "/api/folders":
                self.folders.add(body["uid"])
                return 200, {"uid": body["uid"], "title": body["title"]}
            if method == "POST" and path == "/api/dashboards/db":
                if self.refuse_dashboards:
                    return 403, {"message": "Access denied to save dashboard"}
                uid = body["dashboard"]["uid"]
                self.versions[uid] = self.versions.get(uid, 0) + 1
                return 200, {"uid": uid, "status": "success", "version": self.versions[uid], "url": f"/d/{uid}/x"}
            return 404, {"message": "not found"}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = fake.handle(self.command, self.path, dict(self.headers), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815 - http.server's naming

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def push(url: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    if url:
        clean["CALLWATCH_GRAFANA_URL"] = url
    clean.update(env)
    return subprocess.run(CALLWATCH + ["dashboards", "push"], capture_output=True, text=True, timeout=60, env=clean)


def test_push_creates_the_folder_once_and_uploads_every_dashboard_with_overwrite(grafana):
    fake, url = grafana
    done = push(url, CALLWATCH_GRAFANA_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "pushed callwatch-wallboard (callwatch · Control-room wallboard) version 1: /d/callwatch-wallboard/x",
        "pushed callwatch-trends (callwatch · Manager's trends) version 1: /d/callwatch-trends/x",
        "pushed callwatch-pipeline (callwatch · Pipeline) version 1: /d/callwatch-pipeline/x"]
    calls = [(method, path) for method, path, _, _ in fake.requests]
    assert calls == [("GET", "/api/folders/callwatch"), ("POST", "/api/folders")] + [("POST", "/api/dashboards/db")] * 3
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, _, headers, _ in fake.requests)
    assert fake.requests[1][3] == {"title": "callwatch", "uid": "callwatch"}
    built = dashboards()
    for _, _, _, body in fake.requests[2:]:
        assert body["folderUid"] == "callwatch" and body["overwrite"] is True
        assert body["dashboard"] == {**built[body["dashboard"]["uid"]], "id": None}

    again = push(url, CALLWATCH_GRAFANA_TOKEN=TOKEN)
    assert again.returncode == 0 and "version 2" in again.stdout
    assert [(m, p) for m, p, _, _ in fake.requests[5:]] == [("GET", "/api/folders/callwatch")] + [("POST", "/api/dashboards/db")] * 3


def test_push_reads_the_token_from_a_file(grafana, tmp_path):
    fake, url = grafana
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    done = push(url, CALLWATCH_GRAFANA_TOKEN_FILE=str(token_file), CALLWATCH_GRAFANA_FOLDER="control-room")
    assert done.returncode == 0, done.stderr
    assert fake.requests[0][1] == "/api/folders/control-room"
    assert all(body["folderUid"] == "control-room" for m, p, _, body in fake.requests if p == "/api/dashboards/db")


def test_a_refusal_is_one_line_with_exit_status_1_and_no_token(grafana):
    fake, url = grafana
    fake.refuse_dashboards = True
    done = push(url, CALLWATCH_GRAFANA_TOKEN=TOKEN)
    assert done.returncode == 1
    assert done.stderr.strip() == f"callwatch dashboards: Grafana at {url} answered: 403 Client Error 403: Access denied to save dashboard"
    assert TOKEN not in done.stdout + done.stderr

    wrong = push(url, CALLWATCH_GRAFANA_TOKEN="wrong")
    assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1 and "wrong" not in wrong.stderr


@pytest.mark.parametrize(("url", "env", "message"), [
    (None, {"CALLWATCH_GRAFANA_TOKEN": TOKEN}, "no Grafana URL: give --url or set CALLWATCH_GRAFANA_URL"),
    ("http://127.0.0.1:3000", {}, "no Grafana token: set CALLWATCH_GRAFANA_TOKEN or CALLWATCH_GRAFANA_TOKEN_FILE"),
    ("grafana.example.org", {"CALLWATCH_GRAFANA_TOKEN": TOKEN}, "--url must be an http(s) URL, not 'grafana.example.org'"),
    ("http://admin:pw@127.0.0.1:3000", {"CALLWATCH_GRAFANA_TOKEN": TOKEN},
     "--url must not carry a password: use CALLWATCH_GRAFANA_TOKEN"),
    ("http://127.0.0.1:3000", {"CALLWATCH_GRAFANA_TOKEN_FILE": "/nonexistent/token"},
     "cannot read --token-file /nonexistent/token: No such file or directory"),
    ("http://127.0.0.1:3000", {"CALLWATCH_GRAFANA_TOKEN_FILE": "{empty}"}, "--token-file {empty} is empty"),
])
def test_bad_settings_get_one_line_and_exit_status_2(url, env, message, tmp_path):
    # The token file is read by the helper every secret file goes through (streams.options.secret_file).
    empty = tmp_path / "empty-token"
    empty.write_text(" \n")
    env = {name: value.replace("{empty}", str(empty)) for name, value in env.items()}
    message = message.replace("{empty}", str(empty))
    done = push(url, **env)
    assert done.returncode == 2
    assert done.stderr.strip() == f"callwatch dashboards: error: {message}"
