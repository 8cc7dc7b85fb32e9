"""The board's server without a browser: the stream sends at least once a second and drops a client
that stops reading (no unbounded buffering, nobody held up), marks need the page's header, and
`callwatch run` serves the page, the JSON, the stream and /metrics on one address it prints first."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge

from streams.wallboard.server import BOARD, BoardOptions, BoardServer, create_app

from .conftest import START_MS, FlowSource, call_event, serving


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def read_frames(sock: socket.socket, count: int, timeout_s: float) -> list[bytes]:
    """SSE frames from a raw stream connection, until `count` came or `timeout_s` passed."""
    sock.settimeout(timeout_s)
    buffer = b""
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            if b"event: " in frame:
                frames.append(frame)
    return frames


def open_stream(port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def test_before_the_first_snapshot_the_json_says_so_and_the_stream_still_shows_life():
    source = FlowSource()
    with serving(source) as server:
        status, body = get(f"http://127.0.0.1:{server.port}/api/v1/board")
        assert status == 503 and "no figures yet" in json.loads(body)["error"]
        with open_stream(server.port) as sock:
            started = time.monotonic()
            frames = read_frames(sock, 2, 5)
            assert [f.split(b"\n")[-2] for f in frames] == [b"event: waiting"] * 2
            assert time.monotonic() - started < 2.5


def test_the_stream_sends_at_least_once_a_second_even_when_nothing_changes():
    source = FlowSource()
    source.feed(call_event("offered", "a", START_MS))
    source.publish_at(START_MS + 1000)
    with serving(source) as server, open_stream(server.port) as sock:
        started = time.monotonic()
        frames = read_frames(sock, 4, 6)
        assert len(frames) == 4 and time.monotonic() - started < 4.0
        assert all(b"event: board" in f for f in frames)


def test_a_client_that_stops_reading_is_dropped_while_others_get_every_new_snapshot():
    source = FlowSource()
    source.feed(*[call_event("offered", f"c{i}", START_MS + i, queue=f"999-q{i % 40}") for i in range(400)])
    source.publish_at(START_MS + 5000)
    options = BoardOptions(write_timeout_s=1.0, poll_s=0.01)
    with serving(source, options) as server:
        stuck = open_stream(server.port, receive_buffer=4096)  # never read from again
        reader = open_stream(server.port)
        try:
            frame_size = len(read_frames(reader, 1, 5)[0])
            board = server.app[BOARD]
            assert board.streams_open == 2
            sent, step = 0, 0
            # New snapshots, far more than a stuck client's buffers could hold if the server queued
            # frames for it: the reader keeps up, and the stuck one is dropped.
            deadline = time.monotonic() + 30
            while board.streams_open == 2:
                assert time.monotonic() < deadline, "the stuck client was never dropped"
                step += 1
                source.publish_at(START_MS + 5000 + step * 1000)
                assert read_frames(reader, 1, 5), "the reading client was held up"
                sent += frame_size
            assert board.streams_open == 1 and sent > 1_000_000
            stuck.settimeout(10)
            drained = 0
            while True:  # what was buffered for it, then the end
                try:
                    chunk = stuck.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                drained += len(chunk)
            assert drained < 1_500_000  # bounded by the socket buffers, whatever was published
        finally:
            stuck.close()
            reader.close()


def test_marking_a_caller_done_needs_the_pages_header_and_a_listed_caller():
    source = FlowSource()
    source.feed(call_event("offered", "c1", START_MS, caller="h:1"), call_event("abandoned", "c1", START_MS + 9000, caller="h:1"))
    source.publish_at(START_MS + 10_000)
    with serving(source) as server:
        base = f"http://127.0.0.1:{server.port}/api/v1/callbacks/default/999"
        assert get(base + "/c1/done", "POST")[0] == 403  # a form on another web site cannot send the header
        assert get(base + "/nobody/done", "POST", {"X-Callwatch-Board": "1"})[0] == 404
        assert get(f"http://127.0.0.1:{server.port}/api/v1/callbacks/default/101/c1/done", "POST",
                   {"X-Callwatch-Board": "1"})[0] == 404
        status, body = get(base + "/c1/done", "POST", {"X-Callwatch-Board": "1"})
        assert status == 200 and json.loads(body)["done"] is True
        assert source.marks.is_done("default", "999", "c1")
        assert get(f"http://127.0.0.1:{server.port}/api/v1/board", "POST")[0] == 405


def test_metrics_are_served_from_the_registry_beside_the_board():
    registry = CollectorRegistry()
    Gauge("callwatch_probe", "a probe", registry=registry).set(3)
    server = BoardServer(create_app(FlowSource(), registry), "127.0.0.1", 0)
    server.start()
    try:
        status, body = get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and b"callwatch_probe 3.0" in body
    finally:
        server.stop()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    clean.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True, env=clean)


def test_callwatch_run_prints_the_wallboards_address_first_and_serves_page_json_stream_and_metrics():
    process = _run("--speed", "600", "--start", "2024-03-01T07:00:00Z", "--seed", "5")
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        match = re.match(r"callwatch wallboard: (http://127\.0\.0\.1:\d+/) ", first)
        assert match, first
        base = match.group(1)
        status, page = get(base)
        assert status == 200 and b"/board-assets/board.js" in page
        deadline = time.monotonic() + 30
        while True:
            status, body = get(base + "api/v1/board")
            if status == 200 and {"999", "101"} <= {line["line"] for site in json.loads(body)["sites"]
                                                   for line in site["lines"]}:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        view = json.loads(body)
        assert view["version"] == 1 and view["speed"] == 600.0
        status, metrics = get(base + "metrics")
        assert status == 200 and b"callwatch_calls_waiting" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_callwatch_run_refuses_a_token_on_the_command_line_and_takes_one_from_a_file(tmp_path):
    refused = _run("--board-token", "visible-to-all")
    _, stderr = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert stderr.strip() == ("callwatch run: error: there is no --board-token option: a token on the command line "
                              "is visible to every user of the machine; set CALLWATCH_BOARD_TOKEN or give "
                              "--board-token-file")
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    process = _run("--speed", "60", env={"CALLWATCH_BOARD_TOKEN_FILE": str(token_file)})
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert "access token required" in first
        base = re.search(r"http://\S+/", first).group(0)
        assert get(base + "api/v1/board")[0] == 401
        assert get(base + "api/v1/board", headers={"Authorization": "Bearer from-a-file"})[0] in (200, 503)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


@pytest.mark.parametrize("host", ["127.0.0.1"])
def test_callwatch_run_listens_on_127_0_0_1_by_default(host):
    process = _run("--speed", "60")
    try:
        assert process.stderr is not None
        assert f"http://{host}:" in process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_the_board_mounts_on_another_aiohttp_application_beside_its_own_routes():
    from aiohttp import web

    from streams.wallboard.server import add_board_routes

    async def own(_request: web.Request) -> web.Response:
        return web.Response(text="the worker's own")

    app = web.Application()
    app.router.add_get("/health", own)
    source = FlowSource()
    source.feed(call_event("offered", "a", START_MS))
    source.publish_at(START_MS + 1000)
    add_board_routes(app, source)
    server = BoardServer(app, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert get(base + "/health") == (200, b"the worker's own")
        status, body = get(base + "/api/v1/board/default/999")
        assert status == 200 and json.loads(body)["sites"][0]["lines"][0]["waiting"] == 1
        with open_stream(server.port) as sock:
            assert b"event: board" in read_frames(sock, 1, 5)[0]
    finally:
        server.stop()
