"""The webhook endpoint over real HTTP on 127.0.0.1: Standard Webhooks signatures, Twilio's
X-Twilio-Signature, EventBridge API destination credentials (API key, Basic, OAuth client
credentials), replays, size limits and malformed bodies answered with their status and reason,
fixtures from Twilio and Amazon Connect reaching the sink hashed, graceful stop, the OpenAPI
description, and `callwatch connect|run` in a subprocess.

Twilio and Amazon Connect (EventBridge) themselves cannot be had here: no account, no network to
them. The requests are built as their documentation says they send them (the signature schemes are
checked against the vectors Standard Webhooks and Twilio publish, in test_webhook_authentication.py),
and go over real HTTP to the real server. Synchronisation is by readiness: the server's socket is
listening before its thread starts, a subprocess says "webhook listening", a request in the sink
signals it; nothing sleeps."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qsl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.canonical import EventBuilder
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.sink import JsonLinesSink
from connectors.webhook.authentication import ApiDestinationAuth
from connectors.webhook.payloads import FORM_TYPE, MappingContext
from connectors.webhook.webhook_source import (
    OPENAPI_PATH, SPEC, Credentials, WebhookConnector, WebhookOptions, bind, create_app)
from streams.options import Parser, UsageError
from streams.settings import Settings
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "webhook"
SIGNING_KEY = b"test-webhook-secret-0123456789"
SECRET = "whsec_" + base64.b64encode(SIGNING_KEY).decode()   # Standard Webhooks form of the secret
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
API_KEY = "eventbridge-api-key-0123456789"
KEY = b"test-pseudonymisation-key"
HIDE = pseudonymiser(KEY)
NUMBERS = ("447700900123", "447700900456", "447700900789")
OFFERED = {"v": 1, "event_id": "e-1", "call_id": "c-1", "type": "offered", "ts": "2024-03-01T09:00:00.250Z",
           "line": "999", "queue": "emergency"}
FIXTURE_TIME_S = 1_709_283_600  # 2024-03-01T09:00Z, when the Twilio and Amazon Connect fixtures happen


# --- a server on an ephemeral port ---------------------------------------------------------------

@dataclass
class Served:
    url: str
    connector: WebhookConnector
    events_out: io.StringIO
    dead_out: io.StringIO
    stop: threading.Event

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events_out.getvalue().splitlines()]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(line)["dead_letter"] for line in self.dead_out.getvalue().splitlines()]


class GatedSink(JsonLinesSink):
    """Tells when a request reached it (`entered`), and holds it there until `release` is set."""

    entered = threading.Event()
    release = threading.Event()

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        self.entered.set()
        assert self.release.wait(10), "the test never released the sink"
        super().send(event, location)


class BrokerDownOnceSink(JsonLinesSink):
    failed = False

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        if not self.failed:
            self.failed = True
            raise OSError("broker unreachable")
        super().send(event, location)


def credentials(connect: ApiDestinationAuth | None = None) -> Credentials:
    return Credentials(SIGNING_KEY, TWILIO_TOKEN.encode(),
                       connect or ApiDestinationAuth("api-key", "x-api-key", API_KEY.encode()))


@contextmanager
def serving(max_body_bytes: int = 4096, clock: Callable[[], float] = time.time, tolerance_s: float = 300,
            sink_class: type[JsonLinesSink] = JsonLinesSink, auth: Credentials | None = None) -> Iterator[Served]:
    """The endpoint on its own thread. No wait for it to come up: its socket is bound and listening
    before the thread starts, so the kernel holds the first connections until the server takes them."""
    context = MappingContext(EventBuilder("webhook", HIDE, "north"),
                             parse_queue_lines("Emergency=999,Emergency Overflow=999,Non-emergency=101"))
    connector = WebhookConnector(bind("127.0.0.1", 0),
                                 WebhookOptions(context, auth or credentials(), max_body_bytes=max_body_bytes,
                                                tolerance_s=tolerance_s, clock=clock),
                                 shutdown_timeout_s=5)
    events_out, dead_out = io.StringIO(), io.StringIO()
    sink = sink_class(events_out, dead_out, "webhook")
    stop = threading.Event()
    thread = threading.Thread(target=connector.run, args=(sink, stop), daemon=True)
    thread.start()
    host, port = connector.address
    served = Served(f"http://{host}:{port}", connector, events_out, dead_out, stop)
    try:
        yield served
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the webhook did not stop"


def sign(body: bytes, at_s: int | None = None, key: bytes = SIGNING_KEY, message_id: str | None = None,
         ) -> dict[str, str]:
    """Standard Webhooks headers, computed here from the standard independently of the implementation."""
    stamp = str(int(time.time()) if at_s is None else at_s)
    message_id = message_id or "msg_" + hashlib.sha256(stamp.encode() + body).hexdigest()[:24]
    digest = hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": message_id, "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode()}


def twilio_sign(url: str, body: bytes, token: str = TWILIO_TOKEN) -> dict[str, str]:
    """X-Twilio-Signature as Twilio computes it: the URL, then each form field sorted, name + value."""
    pairs = sorted(parse_qsl(body.decode(), keep_blank_values=True))
    signed = url + "".join(name + value for name, value in pairs)
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    return {"X-Twilio-Signature": base64.b64encode(digest).decode()}


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
    """POST with the credentials of the route: Standard Webhooks, Twilio or the EventBridge API key."""
    if url.endswith("/v1/twilio/taskrouter"):
        headers = twilio_sign(url, body)
    elif url.endswith("/v1/amazon-connect"):
        headers = {"x-api-key": API_KEY}
    else:
        headers = sign(body)
    status, answer, _headers = post(url, body, headers, content_type)
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
    assert events[0] == {**OFFERED, "caller": HIDE.caller("+447700900123"), "source": "webhook"}
    assert served.dead_letters() == []


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "unsigned: no webhook-id header"),
    ({"webhook-id": "msg_1", "webhook-timestamp": "1709283600"}, "unsigned: no webhook-signature header"),
    ("wrong secret", "bad signature: does not match the id, timestamp and body"),
    ("stale", "stale timestamp: 600 s behind the server clock (tolerance 300 s)"),
    ("future", "stale timestamp: 600 s ahead of the server clock (tolerance 300 s)"),
])
def test_unsigned_badly_signed_and_stale_requests_get_401(headers: Any, reason: str) -> None:
    body = json.dumps({**OFFERED, "caller": "+447700900123"}).encode()
    now = 1_709_283_600  # the server's clock, fixed
    if headers == "wrong secret":
        headers = sign(body, now, key=b"not-the-shared-secret-at-all")
    elif headers in ("stale", "future"):
        headers = sign(body, now - 600 if headers == "stale" else now + 600)
    with serving(clock=lambda: float(now)) as served:
        status, answer, _headers = post(served.url + "/v1/events", body, headers)
    assert (status, answer) == (401, {"error": reason})
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
            401, {"error": "replayed: this request was already accepted"})
        # The same event sent as a new message is a new request (the pipeline drops the duplicate event_id).
        assert post(served.url + "/v1/events", body, sign(body, message_id="msg_resent"))[0] == 202
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
    # The fixtures span two hours of 2024: the clock stands at their start, the tolerance covers them.
    with serving(clock=lambda: float(FIXTURE_TIME_S), tolerance_s=3 * 3600) as served:
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
        bad = twilio_bodies()[1].replace(b"TimestampMs=", b"TimestampMs=soon&Ignored=").replace(b"&Sid=EV", b"&Sid=EVx")
        assert b"&Sid=EVx" in bad  # a new event (the same Sid would be refused as a replay)
        assert post_signed(served.url + "/v1/twilio/taskrouter", bad, FORM_TYPE) == (
            400, {"error": "TimestampMs is not a Unix time"})
        assert post(served.url + "/v1/twilio/taskrouter", bad, {}, FORM_TYPE)[0] == 401
        forged = twilio_sign(served.url + "/v1/twilio/taskrouter", bad, token="not-the-account-auth-token")
        assert post(served.url + "/v1/twilio/taskrouter", bad, forged, FORM_TYPE)[0] == 401
        assert post(served.url + "/v1/amazon-connect", json.dumps(connect_fixture[0]).encode(),
                    {"x-api-key": "guessed-key"})[0] == 401
        body = json.dumps({**OFFERED, "caller": 447700900789}).encode()
        assert post(served.url + "/v1/events", body, sign(body, FIXTURE_TIME_S))[0] == 400
        with urllib.request.urlopen(served.url + "/healthz", timeout=5) as response:
            health = json.loads(response.read())
    events = served.events()
    assert len(events) == accepted == 14 + 8
    assert {e["type"] for e in events} == {"offered", "answered", "abandoned", "timeout", "ended", "agent_state"}
    assert {e["caller"] for e in events if "caller" in e} == {HIDE.caller(n) for n in (
        "+447700900123", "+447700900456", "+447700900789", "+447700900321")}
    agents = {e["agent"] for e in events if "agent" in e}
    assert agents and all(agent.startswith("a:") for agent in agents), "WorkerSids and agent ARNs are hashed"
    assert health["events_accepted"] == accepted and health["rejected"] == {
        "TimestampMs is not a Unix time": 1, "unsigned": 1, "bad signature": 1, "bad credentials": 1,
        "invalid caller": 1}
    letters = served.dead_letters()
    assert [letter["reason"].split(":")[0] for letter in letters] == [
        "TimestampMs is not a Unix time", "unsigned", "bad signature", "bad credentials", "invalid caller"]
    assert "<number>" in letters[0]["payload"] and "call_sid" in letters[0]["payload"]
    written = served.events_out.getvalue() + served.dead_out.getvalue() + caplog.text
    for number in NUMBERS:
        assert number not in written


# --- the service around it -----------------------------------------------------------------------------

def test_health_unknown_paths_and_methods_answer_json() -> None:
    with serving() as served:
        with urllib.request.urlopen(served.url + "/healthz", timeout=5) as response:
            assert json.loads(response.read()) == {
                "status": "ok", "routes": ["/v1/events", "/v1/twilio/taskrouter", "/v1/amazon-connect"],
                "requests": 0, "events_accepted": 0, "rejected": {}}
        assert post(served.url + "/v2/events", b"{}")[:2] == (404, {"error": "Not Found"})
        status, answer, headers = post(served.url + "/healthz", b"{}")
        assert (status, answer, headers["Allow"]) == (405, {"error": "Method Not Allowed"}, "GET")


def test_the_openapi_description_covers_exactly_the_routes_served() -> None:
    description = yaml.safe_load(OPENAPI_PATH.read_text())
    assert description["openapi"].startswith("3.1")
    described = {(method.upper(), path) for path, item in description["paths"].items() for method in item
                 if method in ("get", "post", "put", "patch", "delete")}
    app = create_app(JsonLinesSink(io.StringIO(), io.StringIO(), "webhook"),
                     WebhookOptions(MappingContext(EventBuilder("webhook", HIDE)), credentials()))
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    assert described == served
    for path, item in description["paths"].items():
        for method, operation in item.items():
            if method == "post" and path != "/v1/oauth/token":
                assert {"202", "400", "401", "413"} <= set(operation["responses"]), (path, method)
    with serving() as running:
        with urllib.request.urlopen(running.url + "/openapi.yaml", timeout=5) as response:
            assert yaml.safe_load(response.read()) == description


def test_stopping_finishes_the_requests_in_flight() -> None:
    body = json.dumps(OFFERED).encode()
    answers: list[tuple[int, dict[str, Any]]] = []
    with serving(sink_class=GatedSink) as served:
        request = threading.Thread(target=lambda: answers.append(post_signed(served.url + "/v1/events", body)))
        request.start()
        assert GatedSink.entered.wait(10), "the request never reached the sink"
        served.stop.set()  # told to stop while the request is in the sink
        GatedSink.release.set()
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


def test_build_reads_each_platforms_secret_from_the_environment_or_a_file(clean_environment: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    clean_environment.setenv("CALLWATCH_WEBHOOK_SECRET", SECRET)
    clean_environment.setenv("CALLWATCH_CONNECT_BASIC", "eventbridge:a-long-enough-password")
    connector = build(["--webhook-port", "0", "--webhook-queue-lines", "Emergency=999,*=101", "--webhook-site",
                       "north", "--webhook-connect-auth", "basic", "--webhook-tolerance", "90s"])
    try:
        options = connector.options
        assert connector.address[0] == "127.0.0.1" and connector.address[1] > 0
        assert options.credentials.enabled() == ["/v1/events", "/v1/amazon-connect"]
        assert options.credentials.standard_webhooks_key == SIGNING_KEY
        assert options.credentials.api_destination is not None and options.credentials.api_destination.kind == "basic"
        assert options.context.queues.line_of("Emergency") == "999" and options.context.queues.line_of("x") == "101"
        assert options.max_body_bytes == 1 << 20 and options.tolerance_s == 90
        assert SECRET not in repr(connector) and "a-long-enough-password" not in repr(connector)
    finally:
        connector.listener.close()
    token_file = tmp_path / "twilio-token"
    token_file.write_text(TWILIO_TOKEN + "\n")
    clean_environment.delenv("CALLWATCH_WEBHOOK_SECRET")
    connector = build(["--webhook-port", "0", "--webhook-twilio-auth-token-file", str(token_file)])
    connector.listener.close()
    assert connector.options.credentials.enabled() == ["/v1/twilio/taskrouter"]
    assert connector.options.credentials.twilio_auth_token == TWILIO_TOKEN.encode()
    assert connector.options.tolerance_s == 300  # the default, 5m


@pytest.mark.parametrize(("argv", "environment", "key", "message"), [
    ([], {}, KEY, "no route to serve: set CALLWATCH_WEBHOOK_SECRET"),
    ([], {"CALLWATCH_WEBHOOK_SECRET": "plain-secret-0123456789"}, KEY, "'whsec_' followed by base64"),
    ([], {"CALLWATCH_TWILIO_AUTH_TOKEN": "short"}, KEY, "too short to be a Twilio Auth Token"),
    (["--webhook-connect-auth", "oauth"], {}, KEY, "needs CALLWATCH_CONNECT_OAUTH_CLIENT"),
    (["--webhook-connect-auth", "basic"], {"CALLWATCH_CONNECT_BASIC": "no-colon-here-0123456789"}, KEY,
     "must be NAME:SECRET"),
    ([], {"CALLWATCH_WEBHOOK_SECRET": SECRET}, None, "CALLWATCH_PSEUDONYMISATION_KEY"),
    (["--webhook-queue-lines", "Emergency"], {"CALLWATCH_WEBHOOK_SECRET": SECRET}, KEY,
     "--webhook-queue-lines: 'Emergency' is not QUEUE=LINE"),
    (["--webhook-max-body", "lots"], {"CALLWATCH_WEBHOOK_SECRET": SECRET}, KEY, "--webhook-max-body must be a whole"),
    (["--webhook-tolerance", "soon"], {"CALLWATCH_WEBHOOK_SECRET": SECRET}, KEY,
     "--webhook-tolerance: not a duration: 'soon'"),
    (["--webhook-port", "70000"], {"CALLWATCH_WEBHOOK_SECRET": SECRET}, KEY, "--webhook-port must be at most 65535"),
    (["--webhook-public-url", "callwatch.example.org"], {"CALLWATCH_WEBHOOK_SECRET": SECRET}, KEY,
     "--webhook-public-url must start with https://"),
    (["--webhook-secret-file", "/nonexistent/secret"], {}, KEY, "cannot read the secret file (CALLWATCH_WEBHOOK_SECRET_FILE) /nonexistent/secret"),
])
def test_build_refuses_bad_options_in_one_line(clean_environment: pytest.MonkeyPatch, argv: list[str],
                                               environment: dict[str, str], key: bytes | None, message: str) -> None:
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    with pytest.raises(UsageError, match=re.escape(message)) as raised:
        build(["--webhook-port", "0", *argv], key)
    assert "\n" not in str(raised.value)


def test_build_refuses_a_port_in_use(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("CALLWATCH_WEBHOOK_SECRET", SECRET)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1:"):
            build(["--webhook-port", str(taken.getsockname()[1])])


# --- Amazon Connect through an EventBridge API destination, each way of authorising -----------------------

def connect_fixture() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((FIXTURES / "amazon_connect_contact_events.json").read_text())
    return events


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_amazon_connect_with_basic_authorisation_and_eventbridge_retries() -> None:
    """EventBridge delivers at least once: a retry of an accepted event (same id) is refused as a
    replay, so it is never counted twice. The cloud platforms cannot be had here: these requests
    are what their documentation says they send, over real HTTP to the real server."""
    auth = credentials(ApiDestinationAuth("basic", "eventbridge", b"a-long-enough-password"))
    queued = next(item for item in connect_fixture() if item["detail"]["eventType"] == "QUEUED")
    body = json.dumps(queued).encode()
    with serving(auth=auth) as served:
        url = served.url + "/v1/amazon-connect"
        good = {"Authorization": basic("eventbridge", "a-long-enough-password")}
        status, answer, headers = post(url, body, {"Authorization": basic("eventbridge", "guess")})
        assert (status, answer["error"]) == (401, "bad credentials: wrong user name or password")
        assert headers["WWW-Authenticate"] == 'Basic realm="callwatch"'
        assert post(url, body, good)[:2] == (202, {"accepted": 1})
        assert post(url, body, good)[:2] == (401, {"error": "replayed: this request was already accepted"})
    assert [e["type"] for e in served.events()] == ["offered"]


def test_amazon_connect_with_oauth_client_credentials() -> None:
    """The token request is the client credentials grant as an EventBridge connection makes it (client
    id and secret in HTTP Basic, grant_type in the body); the events then carry the bearer token."""
    auth = credentials(ApiDestinationAuth("oauth", "eventbridge-client", b"client-secret-0123456789"))
    queued = next(item for item in connect_fixture() if item["detail"]["eventType"] == "QUEUED")
    body = json.dumps(queued).encode()
    with serving(auth=auth) as served:
        token_url, url = served.url + "/v1/oauth/token", served.url + "/v1/amazon-connect"
        grant = b"grant_type=client_credentials"
        status, answer, _ = post(token_url, grant, {"Authorization": basic("eventbridge-client", "wrong")}, FORM_TYPE)
        assert (status, answer["error"]) == (401, "invalid_client: wrong client id or secret")
        status, answer, headers = post(token_url, grant, {"Authorization": basic("eventbridge-client",
                                                                                "client-secret-0123456789")}, FORM_TYPE)
        assert status == 200 and answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
        assert headers["Cache-Control"] == "no-store"
        assert post(url, body)[:2] == (401, {"error": "unauthenticated: no Authorization header"})
        assert post(url, body, {"Authorization": "Bearer cw1.99999999999.forged"})[0] == 401
        assert post(url, body, {"Authorization": f"Bearer {answer['access_token']}"})[:2] == (202, {"accepted": 1})
    assert [e["type"] for e in served.events()] == ["offered"]


def test_routes_without_credentials_are_not_served() -> None:
    with serving(auth=Credentials(standard_webhooks_key=SIGNING_KEY)) as served:
        assert post_signed(served.url + "/v1/twilio/taskrouter", twilio_bodies()[0], FORM_TYPE) == (
            404, {"error": "not enabled on this server"})
        assert post(served.url + "/v1/oauth/token", b"", {}, FORM_TYPE)[0] == 404


def test_twilio_behind_a_proxy_is_checked_against_the_public_url() -> None:
    """Twilio signs the URL it called (the proxy's); --webhook-public-url tells the server which."""
    public = "https://callwatch.example.org"
    body = twilio_bodies()[1]
    context = MappingContext(EventBuilder("webhook", HIDE))
    connector = WebhookConnector(bind("127.0.0.1", 0), WebhookOptions(
        context, credentials(), tolerance_s=3 * 3600, public_url=public, clock=lambda: float(FIXTURE_TIME_S)))
    events_out, dead_out, stop = io.StringIO(), io.StringIO(), threading.Event()
    thread = threading.Thread(target=connector.run, args=(JsonLinesSink(events_out, dead_out, "webhook"), stop))
    thread.start()
    try:
        host, port = connector.address
        local = f"http://{host}:{port}/v1/twilio/taskrouter"
        assert post(local, body, twilio_sign(local, body), FORM_TYPE)[0] == 401
        assert post(local, body, twilio_sign(public + "/v1/twilio/taskrouter", body), FORM_TYPE)[:2] == (
            202, {"accepted": 1})
    finally:
        stop.set()
        thread.join(10)


# --- the command line ------------------------------------------------------------------------------------


def command_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(CALLWATCH_WEBHOOK_SECRET=SECRET, CALLWATCH_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
               CALLWATCH_PSEUDONYMISATION_KEY=KEY.decode())
    return env


def wait_for_listening(process: subprocess.Popen[bytes], lines: list[str], *also: str) -> None:
    """Readiness: the connector logs 'webhook listening' once its server takes requests (and each of
    `also`, e.g. the wallboard's address, which `callwatch run` prints once its server listens)."""
    assert process.stderr is not None
    awaited = {"webhook listening on", *also}
    for raw in process.stderr:
        lines.append(raw.decode())
        awaited = {text for text in awaited if text not in lines[-1]}
        if not awaited:
            return
    raise AssertionError(f"the command never said {sorted(awaited)}:\n" + "".join(lines))


def test_callwatch_connect_webhook_writes_posted_events_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port, out = free_port(), tmp_path / "webhook.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "connect", "webhook", "--webhook-port", str(port),
         "--webhook-queue-lines", "Emergency=999,Non-emergency=101", "--out", str(out),
         "--webhook-tolerance", "10000d"],  # the Twilio fixtures were recorded in 2024
        cwd=REPO, env=command_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        wait_for_listening(process, lines)
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
    assert process.returncode == 0, "".join(lines) + stderr.decode()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["type"], e["queue"]) for e in events] == [("offered", "emergency"), ("offered", "Emergency"),
                                                         ("answered", "Emergency"), ("ended", "Emergency")]
    assert events[1]["caller"] == HIDE.caller("+447700900123") and "447700900123" not in out.read_text()
    assert events[2]["agent"].startswith("a:") and "WK" not in out.read_text()
    assert stderr.decode().splitlines()[-1] == "callwatch connect webhook: 4 events sent, 0 dead-lettered"


def test_callwatch_run_with_the_webhook_source_shows_posted_calls_on_the_metrics(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "run", "--source", "webhook", "--port", str(metrics_port),
         "--webhook-port", str(port)],
        cwd=REPO, env=command_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        wait_for_listening(process, lines, "callwatch wallboard: http://")
        from streams.domain.events import format_ts
        now_ms = time.time_ns() // 1_000_000
        event = {**OFFERED, "event_id": "live-1", "call_id": "live-call", "ts": format_ts(now_ms)}
        assert post_signed(f"http://127.0.0.1:{port}/v1/events", json.dumps(event).encode()) == (
            202, {"accepted": 1})
        # The readiness signal is the figure itself: scraped back to back until it shows (no pause).
        deadline, text = time.monotonic() + 20, ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
            if any(sample.labels.get("queue") == "emergency" and sample.value == 1
                   for family in text_string_to_metric_families(text) if family.name == "callwatch_calls_waiting"
                   for sample in family.samples):
                break
        else:
            raise AssertionError("the posted call never showed as waiting:\n" + text[-2000:])
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + stderr.decode()


def test_the_connector_is_registered_with_its_options_and_example() -> None:
    from connectors.registry import available
    assert available()["webhook"] is SPEC
    parser = argparse.ArgumentParser()
    SPEC.add_arguments(parser)
    help_text = parser.format_help()
    for option in ("--webhook-host", "--webhook-port", "--webhook-secret-file", "--webhook-max-body",
                   "--webhook-tolerance", "--webhook-queue-lines", "--webhook-site", "--webhook-public-url",
                   "--webhook-twilio-auth-token-file", "--webhook-connect-auth"):
        assert option in help_text
    assert "--webhook-secret " not in help_text and "callwatch connect webhook" in SPEC.example
