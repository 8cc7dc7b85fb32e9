"""The webhook endpoint over real HTTP on 127.0.0.1: signing, replay, size limits and malformed
bodies answered with their status and reason, fixtures from Twilio and Amazon Connect reaching the
sink hashed, graceful stop, the OpenAPI description, and `callwatch connect|run` in a subprocess."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.privacy import hmac_pseudonymiser
from connectors.sink import JsonLinesSink
from connectors.webhook.webhook_parser import FORM_TYPE, MappingContext, QueueRoute
from connectors.webhook.webhook_source import (
    OPENAPI_PATH, SPEC, WebhookConnector, WebhookOptions, bind, create_app)
from streams.options import Parser, UsageError
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "webhook"
SECRET = b"test-webhook-secret-0123456789"
KEY = b"test-pseudonymisation-key"
HASH = hmac_pseudonymiser(KEY)
NUMBERS = ("447700900123", "447700900456", "447700900789")
OFFERED = {"v": 1, "event_id": "e-1", "call_id": "c-1", "type": "offered", "ts": "2024-03-01T09:00:00.250Z",
           "line": "999", "queue": "emergency"}


# --- a server on an ephemeral port ---------------------------------------------------------------

@dataclass
class Served:
    url: str
    connector: WebhookConnector
    events_out: io.StringIO
    dead_out: io.StringIO

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events_out.getvalue().splitlines()]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(line)["dead_letter"] for line in self.dead_out.getvalue().splitlines()]


class SlowSink(JsonLinesSink):
    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        time.sleep(0.6)
        super().send(event, location)


class BrokerDownOnceSink(JsonLinesSink):
    failed = False

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        if not self.failed:
            self.failed = True
            raise OSError("broker unreachable")
        super().send(event, location)


@contextmanager
def serving(max_body_bytes: int = 4096, slow: bool = False, clock: Callable[[], float] = time.time,
            sink_class: type[JsonLinesSink] | None = None) -> Iterator[Served]:
    context = MappingContext(HASH, "north", {"Emergency": QueueRoute("999"), "Emergency Overflow": QueueRoute("999"),
                                             "Non-emergency": QueueRoute("101")})
    connector = WebhookConnector(bind("127.0.0.1", 0), SECRET,
                                 WebhookOptions(context, max_body_bytes=max_body_bytes, clock=clock),
                                 shutdown_timeout_s=5)
    events_out, dead_out = io.StringIO(), io.StringIO()
    sink = (sink_class or (SlowSink if slow else JsonLinesSink))(events_out, dead_out, "webhook")
    stop = threading.Event()
    thread = threading.Thread(target=connector.run, args=(sink, stop), daemon=True)
    thread.start()
    host, port = connector.address
    served = Served(f"http://{host}:{port}", connector, events_out, dead_out)
    wait_until_healthy(served.url)
    try:
        yield served
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the webhook did not stop"


def wait_until_healthy(url: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def sign(body: bytes, at_s: int | None = None, secret: bytes = SECRET) -> dict[str, str]:
    """The documented scheme, computed independently of the implementation."""
    stamp = str(int(time.time()) if at_s is None else at_s)
    digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Callwatch-Timestamp": stamp, "X-Callwatch-Signature": f"v1={digest}"}


def post(url: str, body: bytes, headers: Mapping[str, str] | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def post_signed(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    status, answer, _headers = post(url, body, sign(body), content_type)
    return status, answer


# --- signing and refusals ------------------------------------------------------------------------

def test_a_signed_canonical_event_is_accepted_and_reaches_the_sink() -> None:
    with serving() as served:
        body = json.dumps({**OFFERED, "caller": "+447700900123"}).encode()
        assert post_signed(served.url + "/v1/events", body) == (202, {"accepted": 1})
        lines = (json.dumps({**OFFERED, "event_id": "e-2"}) + "\n" + json.dumps({**OFFERED, "event_id": "e-3"})).encode()
        assert post_signed(served.url + "/v1/events", lines, "application/x-ndjson") == (202, {"accepted": 2})
    events = served.events()
    assert [e["event_id"] for e in events] == ["e-1", "e-2", "e-3"]
    assert events[0] == {**OFFERED, "caller": HASH("+447700900123"), "source": "webhook"}
    assert served.dead_letters() == []


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "unsigned: no X-Callwatch-Timestamp header"),
    ({"X-Callwatch-Timestamp": "1709283600"}, "unsigned: no X-Callwatch-Signature header"),
    ("wrong secret", "bad signature: does not match the timestamp and body"),
    ("stale", "stale timestamp: 600 s behind the server clock (tolerance 300 s)"),
    ("future", "stale timestamp: 600 s ahead of the server clock (tolerance 300 s)"),
])
def test_unsigned_badly_signed_and_stale_requests_get_401(headers: Any, reason: str) -> None:
    body = json.dumps({**OFFERED, "caller": "+447700900123"}).encode()
    now = 1_709_283_600  # the server's clock, fixed
    if headers == "wrong secret":
        headers = sign(body, now, secret=b"not-the-shared-secret-at-all")
    elif headers in ("stale", "future"):
        headers = sign(body, now - 600 if headers == "stale" else now + 600)
    with serving(clock=lambda: float(now)) as served:
        status, answer, response_headers = post(served.url + "/v1/events", body, headers)
    assert (status, answer) == (401, {"error": reason})
    assert response_headers["WWW-Authenticate"].startswith("Callwatch-HMAC-SHA256")
    assert served.events() == []
    [letter] = served.dead_letters()
    assert letter["reason"] == answer["error"] and letter["payload"] == ""  # an unauthenticated body is not kept
    assert letter["location"].startswith("POST /v1/events from 127.0.0.1")


def test_a_replayed_request_gets_401() -> None:
    body = json.dumps(OFFERED).encode()
    headers = sign(body)
    with serving() as served:
        assert post(served.url + "/v1/events", body, headers)[:2] == (202, {"accepted": 1})
        assert post(served.url + "/v1/events", body, headers)[:2] == (
            401, {"error": "replayed: this signature was already used"})
        # The same event signed afresh is a new request (the pipeline drops the duplicate event_id).
        assert post(served.url + "/v1/events", body, sign(body, int(headers["X-Callwatch-Timestamp"]) + 1))[0] == 202
    assert len(served.events()) == 2


def test_a_sink_failure_is_a_503_and_the_unchanged_retry_is_accepted(caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(OFFERED).encode()
    headers = sign(body)
    with serving(sink_class=BrokerDownOnceSink) as served:
        assert post(served.url + "/v1/events", body, headers)[:2] == (503, {"error": "sink unavailable: retry later"})
        assert post(served.url + "/v1/events", body, headers)[:2] == (202, {"accepted": 1})
        assert post(served.url + "/v1/events", body, headers)[0] == 401  # now it is a replay
    assert [e["event_id"] for e in served.events()] == ["e-1"]
    assert "the sink failed; answered 503" in caplog.text


def test_oversized_bodies_get_413_by_content_length_and_while_streaming() -> None:
    body = json.dumps([OFFERED] * 100).encode()
    assert len(body) > 4096
    with serving(max_body_bytes=4096) as served:
        assert post(served.url + "/v1/events", body, sign(body))[:2] == (413, {"error": "too large: body over 4096 bytes"})
        # Chunked: no Content-Length, so the limit is enforced while reading.
        host, port = served.connector.address
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("POST", "/v1/events", body=iter([body[i:i + 1000] for i in range(0, len(body), 1000)]),
                           headers={"Content-Type": "application/json", **sign(body)}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"].startswith("too large")
        connection.close()
    assert served.events() == [] and [d["reason"] for d in served.dead_letters()] == [
        "too large: body over 4096 bytes"] * 2


@pytest.mark.parametrize(("body", "content_type", "status", "error"), [
    (b"{oops", "application/json", 400, "not JSON: Expecting property name enclosed in double quotes: "
                                        "line 1 column 2 (char 1)"),
    (json.dumps({k: v for k, v in OFFERED.items() if k != "queue"}).encode(), "application/json", 400,
     "invalid queue: is required"),
    (json.dumps([OFFERED, {**OFFERED, "event_id": "e-2", "type": "answered", "agent": 7}]).encode(),
     "application/json", 400, "event 2: invalid agent: must be a string or null"),
    (json.dumps(OFFERED).encode(), "text/plain", 415, "unsupported media type 'text/plain': send application/json "
                                                      "(an event or an array of events) or application/x-ndjson "
                                                      "(JSON Lines)"),
])
def test_malformed_requests_get_400_or_415_with_the_reason_and_are_dead_lettered(
        body: bytes, content_type: str, status: int, error: str) -> None:
    with serving() as served:
        assert post_signed(served.url + "/v1/events", body, content_type) == (status, {"error": error})
        # The server carries on.
        good = json.dumps({**OFFERED, "event_id": "e-good"}).encode()
        assert post_signed(served.url + "/v1/events", good) == (202, {"accepted": 1})
    assert [e["event_id"] for e in served.events()] == ["e-good"]
    [letter] = served.dead_letters()
    assert letter["reason"] == error and letter["payload"]  # kept (numbers masked) to find and fix it


# --- Twilio and Amazon Connect, and privacy ----------------------------------------------------------

def twilio_bodies() -> list[bytes]:
    lines = (FIXTURES / "twilio_taskrouter_callbacks.form").read_text().splitlines()
    return [line.encode() for line in lines if line and not line.startswith("#")]


def test_twilio_and_amazon_connect_fixtures_reach_the_sink_hashed_and_no_number_is_written_or_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connect_fixture = json.loads((FIXTURES / "amazon_connect_contact_events.json").read_text())
    with serving() as served:
        accepted = 0
        for body in twilio_bodies():
            status, answer = post_signed(served.url + "/v1/twilio/taskrouter", body, FORM_TYPE)
            assert status == 202, answer
            accepted += answer["accepted"]
        for item in connect_fixture:
            status, answer = post_signed(served.url + "/v1/amazon-connect", json.dumps(item).encode())
            assert status == 202, answer
            accepted += answer["accepted"]
        # Refused requests that carry numbers: a malformed callback and an unsigned one.
        bad = twilio_bodies()[1].replace(b"TimestampMs=", b"TimestampMs=soon&Ignored=")
        assert post_signed(served.url + "/v1/twilio/taskrouter", bad, FORM_TYPE) == (
            400, {"error": "TimestampMs is not a Unix time"})
        assert post(served.url + "/v1/twilio/taskrouter", bad, {}, FORM_TYPE)[0] == 401
        assert post_signed(served.url + "/v1/events", json.dumps({**OFFERED, "caller": 447700900789}).encode())[0] == 400
        with urllib.request.urlopen(served.url + "/healthz", timeout=5) as response:
            health = json.loads(response.read())
    events = served.events()
    assert len(events) == accepted == 14 + 8
    assert {e["type"] for e in events} == {"offered", "answered", "abandoned", "timeout", "ended", "agent_state"}
    assert {e["caller"] for e in events if "caller" in e} == {HASH("+447700900123"), HASH("+447700900456"),
                                                               HASH("+447700900789"), HASH("+447700900321")}
    assert health["events_accepted"] == accepted and health["rejected"] == {"TimestampMs is not a Unix time": 1,
                                                                          "unsigned": 1, "invalid caller": 1}
    letters = served.dead_letters()
    assert [letter["reason"].split(":")[0] for letter in letters] == [
        "TimestampMs is not a Unix time", "unsigned", "invalid caller"]
    assert "<number>" in letters[0]["payload"] and "call_sid" in letters[0]["payload"]
    written = served.events_out.getvalue() + served.dead_out.getvalue() + caplog.text
    for number in NUMBERS:
        assert number not in written


# --- the service around it -----------------------------------------------------------------------------

def test_health_unknown_paths_and_methods_answer_json() -> None:
    with serving() as served:
        with urllib.request.urlopen(served.url + "/healthz", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok", "requests": 0, "events_accepted": 0,
                                                   "rejected": {}}
        assert post(served.url + "/v2/events", b"{}")[:2] == (404, {"error": "Not Found"})
        status, answer, headers = post(served.url + "/healthz", b"{}")
        assert (status, answer, headers["Allow"]) == (405, {"error": "Method Not Allowed"}, "GET")


def test_the_openapi_description_covers_exactly_the_routes_served() -> None:
    description = yaml.safe_load(OPENAPI_PATH.read_text())
    assert description["openapi"].startswith("3.1")
    described = {(method.upper(), path) for path, item in description["paths"].items() for method in item
                 if method in ("get", "post", "put", "patch", "delete")}
    app = create_app(JsonLinesSink(io.StringIO(), io.StringIO(), "webhook"), SECRET,
                     WebhookOptions(MappingContext(HASH)))
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    assert described == served
    for path, item in description["paths"].items():
        for method, operation in item.items():
            if method == "post":
                assert {"202", "400", "401", "413", "415"} <= set(operation["responses"]), (path, method)
    with serving() as running:
        with urllib.request.urlopen(running.url + "/openapi.yaml", timeout=5) as response:
            assert yaml.safe_load(response.read()) == description


def test_stopping_finishes_the_requests_in_flight() -> None:
    body = json.dumps(OFFERED).encode()
    answers: list[tuple[int, dict[str, Any]]] = []
    with serving(slow=True) as served:
        request = threading.Thread(target=lambda: answers.append(post_signed(served.url + "/v1/events", body)))
        request.start()
        time.sleep(0.2)  # the request is in the (slow) sink when the server is told to stop
    request.join(5)
    assert answers == [(202, {"accepted": 1})] and len(served.events()) == 1


# --- options -------------------------------------------------------------------------------------------

def build(argv: list[str], key: bytes | None = KEY) -> WebhookConnector:
    parser = Parser(prog="test")
    SPEC.add_arguments(parser)
    connector = SPEC.build(parser.parse_args(argv), Settings(pseudonymisation_key=key))
    assert isinstance(connector, WebhookConnector)
    return connector


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("CALLWATCH_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_build_reads_the_secret_from_the_environment_or_a_file(clean_environment: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    clean_environment.setenv("CALLWATCH_WEBHOOK_SECRET", SECRET.decode())
    connector = build(["--webhook-port", "0", "--webhook-queue-lines", "Emergency=999", "--webhook-site", "north"])
    try:
        assert connector.secret == SECRET and connector.address[0] == "127.0.0.1" and connector.address[1] > 0
        assert connector.options.context.queue_routes == {"Emergency": QueueRoute("999")}
        assert connector.options.max_body_bytes == 1 << 20 and connector.options.tolerance_s == 300
        assert SECRET.decode() not in repr(connector)
    finally:
        connector.listener.close()
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"from-a-file-0123456789\n")
    connector = build(["--webhook-port", "0", "--webhook-secret-file", str(secret_file)])
    connector.listener.close()
    assert connector.secret == b"from-a-file-0123456789"


@pytest.mark.parametrize(("argv", "secret", "key", "message"), [
    ([], None, KEY, "CALLWATCH_WEBHOOK_SECRET"),
    ([], "short", KEY, "too short"),
    ([], SECRET.decode(), None, "CALLWATCH_PSEUDONYMISATION_KEY"),
    (["--webhook-queue-lines", "Emergency"], SECRET.decode(), KEY, "queue-lines entry 'Emergency'"),
    (["--webhook-max-body", "lots"], SECRET.decode(), KEY, "--webhook-max-body must be a whole number"),
    (["--webhook-port", "70000"], SECRET.decode(), KEY, "--webhook-port must be at most 65535"),
    (["--webhook-secret-file", "/nonexistent/secret"], None, KEY, "cannot read webhook secret file"),
])
def test_build_refuses_bad_options_in_one_line(clean_environment: pytest.MonkeyPatch, argv: list[str],
                                               secret: str | None, key: bytes | None, message: str) -> None:
    if secret is not None:
        clean_environment.setenv("CALLWATCH_WEBHOOK_SECRET", secret)
    with pytest.raises(UsageError, match=message) as raised:
        build(["--webhook-port", "0", *argv], key)
    assert "\n" not in str(raised.value)


def test_build_refuses_a_port_in_use(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("CALLWATCH_WEBHOOK_SECRET", SECRET.decode())
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1:"):
            build(["--webhook-port", str(taken.getsockname()[1])])


# --- the command line ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(CALLWATCH_WEBHOOK_SECRET=SECRET.decode(), CALLWATCH_PSEUDONYMISATION_KEY=KEY.decode())
    return env


def test_callwatch_connect_webhook_writes_posted_events_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port, out = free_port(), tmp_path / "webhook.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "connect", "webhook", "--webhook-port", str(port),
         "--webhook-queue-lines", "Emergency=999,Non-emergency=101", "--out", str(out)],
        cwd=REPO, env=command_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout_s=20)
        assert post_signed(f"http://127.0.0.1:{port}/v1/events", json.dumps(OFFERED).encode()) == (
            202, {"accepted": 1})
        for body in twilio_bodies()[:6]:  # the answered 999 call
            assert post_signed(f"http://127.0.0.1:{port}/v1/twilio/taskrouter", body, FORM_TYPE)[0] == 202
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["type"], e["queue"]) for e in events] == [("offered", "emergency"), ("offered", "Emergency"),
                                                         ("answered", "Emergency"), ("ended", "Emergency")]
    assert events[1]["caller"] == HASH("+447700900123") and "447700900123" not in out.read_text()
    assert stderr.decode().splitlines()[-1] == "callwatch connect webhook: 4 events sent, 0 dead-lettered"


def test_callwatch_run_with_the_webhook_source_shows_posted_calls_on_the_metrics(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run", "--source", "webhook", "--port", str(metrics_port),
         "--webhook-port", str(port)],
        cwd=REPO, env=command_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", timeout_s=20)
        from streams.domain.events import format_ts
        now_ms = time.time_ns() // 1_000_000
        event = {**OFFERED, "event_id": "live-1", "call_id": "live-call", "ts": format_ts(now_ms)}
        assert post_signed(f"http://127.0.0.1:{port}/v1/events", json.dumps(event).encode()) == (
            202, {"accepted": 1})
        deadline, text = time.monotonic() + 20, ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
            if any(sample.labels.get("queue") == "emergency" and sample.value == 1
                   for family in text_string_to_metric_families(text) if family.name == "callwatch_calls_waiting"
                   for sample in family.samples):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the posted call never showed as waiting:\n" + text[-2000:])
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()


def test_the_connector_is_registered_with_its_options_and_example() -> None:
    from connectors.registry import available
    assert available()["webhook"] is SPEC
    parser = argparse.ArgumentParser()
    SPEC.add_arguments(parser)
    help_text = parser.format_help()
    for option in ("--webhook-host", "--webhook-port", "--webhook-secret-file", "--webhook-max-body",
                   "--webhook-tolerance-s", "--webhook-queue-lines", "--webhook-site"):
        assert option in help_text
    assert "--webhook-secret " not in help_text and "callwatch connect webhook" in SPEC.example
