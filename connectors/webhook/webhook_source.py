"""`callwatch connect webhook`: an HTTP endpoint (aiohttp, in its own event loop) taking canonical
events (Standard Webhooks), Twilio TaskRouter event callbacks (X-Twilio-Signature) and Amazon Connect
contact events from an EventBridge API destination (API key, Basic or OAuth client credentials),
each checked by `authentication` and mapped by its platform's module into the sink. A bad request
is answered with its status and reason, counted and dead-lettered, and the server carries on; on
stop it finishes the requests in flight."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Final, Mapping, TypeVar

from aiohttp import web

from connectors.canonical import EventBuilder
from connectors.errors import ConfigurationError, InvalidRecord
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from connectors.webhook.amazon_connect_mapping import connect_events
from connectors.webhook.authentication import (
    STANDARD_ID, STANDARD_SIGNATURE, STANDARD_TIMESTAMP, TWILIO_SIGNATURE, ApiDestinationAuth, ReplayGuard,
    stale_reason, standard_webhooks_secret, verify_standard_webhooks, verify_twilio)
from connectors.webhook.canonical_mapping import canonical_events
from connectors.webhook.payloads import (
    FORM_TYPE, SOURCE, Invalid, Mapped, MappingContext, UnsupportedMedia, form_fields, form_pairs, json_value,
    media_type, readable_body)
from connectors.webhook.twilio_mapping import callback_time_s, twilio_events
from streams.options import OptionTarget, UsageError, duration, env_option, number, secret_file
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.webhook")

OPENAPI_PATH: Final = Path(__file__).with_name("openapi.yaml")
_CHUNK_BYTES: Final = 64 * 1024
_STOP_POLL_S: Final = 0.2

T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    """What each route checks; a route whose credential is None is not served (404)."""

    standard_webhooks_key: bytes | None = field(default=None, repr=False)  # /v1/events
    twilio_auth_token: bytes | None = field(default=None, repr=False)      # /v1/twilio/taskrouter
    api_destination: ApiDestinationAuth | None = None                      # /v1/amazon-connect

    def enabled(self) -> list[str]:
        return [path for path, credential in ((EVENTS_PATH, self.standard_webhooks_key),
                                              (TWILIO_PATH, self.twilio_auth_token),
                                              (CONNECT_PATH, self.api_destination)) if credential]


EVENTS_PATH: Final = "/v1/events"
TWILIO_PATH: Final = "/v1/twilio/taskrouter"
CONNECT_PATH: Final = "/v1/amazon-connect"
TOKEN_PATH: Final = "/v1/oauth/token"


@dataclass(frozen=True)
class WebhookOptions:
    context: MappingContext
    credentials: Credentials
    max_body_bytes: int = 1 << 20
    tolerance_s: float = 300.0
    replay_capacity: int = 100_000
    # The URL Twilio is given, up to the path (https://callwatch.example.org): Twilio signs the URL it
    # called, which a proxy in front of callwatch changes. None: the URL of the request as received.
    public_url: str | None = None
    clock: Callable[[], float] = time.time  # seconds since the epoch; injectable for tests

@dataclass
class WebhookStats:
    """What the endpoint has done; GET /healthz shows it."""

    requests: int = 0
    events_accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason, up to its first ':'

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "events_accepted": self.events_accepted,
                "rejected": dict(sorted(self.rejected.items()))}


class _SinkThread:
    """Calls the sink from one daemon thread, in order: a sink may block (the embedded pipeline's
    queue applies back-pressure, Kafka waits for the broker) and must not stall the event loop.
    A daemon thread, unlike an executor's, cannot hold up the exit of a stopped process."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="webhook-sink", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def call(self, function: Callable[[], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the request was cancelled while waiting (shutdown timed out)
            try:
                future.set_result(function())
            except Exception as error:  # noqa: BLE001 - handed to the awaiting request, not lost
                future.set_exception(error)

        self._jobs.put(job)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._jobs.put(None)


STATS: Final = web.AppKey("stats", WebhookStats)
_SINK_THREAD: Final = web.AppKey("sink_thread", _SinkThread)


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    reason: str


class _Endpoint:
    """The request handlers: check size and credentials, map the body, hand events to the sink."""

    def __init__(self, sink: EventSink, options: WebhookOptions, stats: WebhookStats) -> None:
        self._sink = sink
        self._options = options
        self._credentials = options.credentials
        self._stats = stats
        self._replays = ReplayGuard(options.replay_capacity)

    def _thread(self, request: web.Request) -> _SinkThread:
        return request.app[_SINK_THREAD]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "routes": self._credentials.enabled(), **self._stats.to_dict()})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/yaml")

    # -- the three platforms ----------------------------------------------------------------------------

    async def canonical(self, request: web.Request) -> web.Response:
        self._stats.requests += 1
        key = self._credentials.standard_webhooks_key
        if key is None:
            return await self._not_enabled(request, "CALLWATCH_WEBHOOK_SECRET")
        missing = [name for name in (STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE) if not request.headers.get(name)]
        if missing:  # refused before reading: an unsigned sender gets no work out of this server
            return await self._refuse(request, 401, f"unsigned: no {missing[0]} header")
        body = await self._body(request)
        if isinstance(body, _Refusal):
            return await self._refuse(request, body.status, body.reason)
        now_s = self._options.clock()
        verified = verify_standard_webhooks(key, request.headers, body, now_s, self._options.tolerance_s)
        if isinstance(verified, str):
            return await self._refuse(request, 401, verified)
        return await self._accept(request, body, "events:" + verified.request_id, verified.timestamp_s,
                                  lambda: canonical_events(body, request.headers.get("Content-Type"),
                                                           self._options.context))

    async def twilio(self, request: web.Request) -> web.Response:
        self._stats.requests += 1
        token = self._credentials.twilio_auth_token
        if token is None:
            return await self._not_enabled(request, "CALLWATCH_TWILIO_AUTH_TOKEN")
        signature = request.headers.get(TWILIO_SIGNATURE)
        if not signature:
            return await self._refuse(request, 401, f"unsigned: no {TWILIO_SIGNATURE} header")
        if media_type(request.headers.get("Content-Type")) != FORM_TYPE:
            return await self._refuse(request, 415, f"unsupported media type: TaskRouter posts {FORM_TYPE}")
        body = await self._body(request)
        if isinstance(body, _Refusal):
            return await self._refuse(request, body.status, body.reason)
        try:
            pairs = form_pairs(body)
        except Invalid as error:
            return await self._refuse(request, 400, error.reason)
        base = self._options.public_url
        url = base.rstrip("/") + request.path_qs if base else str(request.url)
        reason = verify_twilio(token, signature, url, pairs)
        if reason:
            return await self._refuse(request, 401, reason)
        fields = form_fields(pairs)
        now_s = self._options.clock()
        at_s = callback_time_s(fields)
        stale = stale_reason(at_s, now_s, self._options.tolerance_s) if at_s is not None else ""
        if stale:
            return await self._refuse(request, 401, stale)
        request_id = "twilio:" + (fields.get("Sid") or request.headers.get("I-Twilio-Idempotency-Token") or signature)
        return await self._accept(request, body, request_id, now_s if at_s is None else at_s,
                                  lambda: twilio_events(pairs, self._options.context))

    async def amazon_connect(self, request: web.Request) -> web.Response:
        self._stats.requests += 1
        auth = self._credentials.api_destination
        if auth is None:
            return await self._not_enabled(request, "CALLWATCH_CONNECT_API_KEY, _BASIC or _OAUTH_CLIENT")
        now_s = self._options.clock()
        reason = auth.verify(request.headers, now_s)
        if reason:
            return await self._refuse(request, 401, reason, challenge=auth.kind)
        body = await self._body(request)
        if isinstance(body, _Refusal):
            return await self._refuse(request, body.status, body.reason)
        # EventBridge delivers at least once: its event id recognises a retry of a delivered event.
        event_id, at_s = _eventbridge_id(body)
        request_id = "connect:" + (event_id or hashlib.sha256(body).hexdigest())
        return await self._accept(request, body, request_id, max(at_s or now_s, now_s),
                                  lambda: connect_events(body, request.headers.get("Content-Type"),
                                                         self._options.context))

    async def token(self, request: web.Request) -> web.Response:
        """OAuth 2.0 client credentials grant (RFC 6749 section 4.4), as an EventBridge connection
        asks for a token: client id and secret in HTTP Basic or the form."""
        self._stats.requests += 1
        auth = self._credentials.api_destination
        if auth is None or auth.kind != "oauth":
            return await self._not_enabled(request, "CALLWATCH_CONNECT_OAUTH_CLIENT")
        body = await self._body(request)
        if isinstance(body, _Refusal):
            return await self._refuse(request, body.status, body.reason)
        try:
            fields = (form_fields(form_pairs(body)) if media_type(request.headers.get("Content-Type")) != "application/json"
                      else {k: v for k, v in _json_object(body).items() if isinstance(v, str)})
        except Invalid as error:
            return await self._refuse(request, 400, error.reason)
        grant = fields.get("grant_type", "client_credentials")
        if grant != "client_credentials":
            return await self._refuse(request, 400, f"unsupported_grant_type: {grant[:40]!r}")
        if not auth.client_authentic(request.headers.get("Authorization"), fields):
            return await self._refuse(request, 401, "invalid_client: wrong client id or secret", challenge="basic")
        token, lifetime_s = auth.issue_token(self._options.clock())
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": lifetime_s},
                                 headers={"Cache-Control": "no-store"})

    # -- shared steps ---------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes | _Refusal:
        limit = self._options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _Refusal(413, f"too large: body over {limit} bytes")
        body = await _read_bounded(request, limit)
        return _Refusal(413, f"too large: body over {limit} bytes") if body is None else body

    async def _accept(self, request: web.Request, body: bytes, request_id: str, at_s: float,
                      mapping: Callable[[], Mapped | InvalidRecord]) -> web.Response:
        now_s = self._options.clock()
        if not self._replays.first_use(request_id, at_s + self._options.tolerance_s, now_s):
            return await self._refuse(request, 401, "replayed: this request was already accepted")
        result = mapping()
        if isinstance(result, InvalidRecord):
            self._replays.forget(request_id)  # a corrected resend may reuse the id
            return await self._refuse(request, 415 if isinstance(result, UnsupportedMedia) else 400, result.reason,
                                      readable_body(body, request.headers.get("Content-Type")))
        where = _where(request)
        try:
            await self._thread(request).call(lambda: _send_all(self._sink, result, where))
        except Exception:  # noqa: BLE001 - any sink failure (broker down, ...) is a 503 the sender retries
            log.exception("%s: the sink failed; answered 503", where)
            self._replays.forget(request_id)
            return web.json_response({"error": "sink unavailable: retry later"}, status=503)
        self._stats.events_accepted += len(result.events)
        answer: dict[str, Any] = {"accepted": len(result.events)}
        if result.ignored:
            answer["ignored"] = list(result.ignored)
        return web.json_response(answer, status=202)

    async def _not_enabled(self, request: web.Request, setting: str) -> web.Response:
        log.warning("%s: refused: this route is not enabled (set %s)", _where(request), setting)
        return await self._refuse(request, 404, "not enabled on this server")

    async def _refuse(self, request: web.Request, status: int, reason: str, raw: str = "",
                      challenge: str = "") -> web.Response:
        """Answer, count, log and dead-letter one refused request. Bodies of unauthenticated or
        oversized requests are not kept: only the reason and where the request came from."""
        where = _where(request)
        self._stats.rejected[reason.split(":", 1)[0]] += 1
        log.warning("%s: %d %s", where, status, reason)
        letter = DeadLetter.of(SOURCE, reason, where, raw)
        try:
            await self._thread(request).call(lambda: self._sink.dead_letter(letter))
        except Exception:  # noqa: BLE001 - the sender still gets its answer; the failure is logged
            log.exception("%s: could not dead-letter the refused request", where)
        headers = {"WWW-Authenticate": _CHALLENGES[challenge]} if status == 401 and challenge in _CHALLENGES else None
        return web.json_response({"error": reason}, status=status, headers=headers)


_CHALLENGES: Final = {"basic": 'Basic realm="callwatch"', "oauth": 'Bearer realm="callwatch"'}


def _where(request: web.Request) -> str:
    return f"{request.method} {request.path} from {request.remote or 'unknown'}"


def _json_object(body: bytes) -> dict[str, Any]:
    value = json_value(body) if body.strip() else {}
    return value if isinstance(value, dict) else {}


def _eventbridge_id(body: bytes) -> tuple[str, float | None]:
    """The EventBridge event id and time of a delivery ('' and None when the body has none)."""
    try:
        value = json_value(body)
    except Invalid:
        return "", None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        return "", None
    moment = value.get("time")
    try:
        at_s = datetime.fromisoformat(moment).timestamp() if isinstance(moment, str) else None
    except ValueError:
        at_s = None
    return value["id"][:256], at_s


def _send_all(sink: EventSink, result: Mapped, where: str) -> None:
    for event in result.events:
        sink.send(event, where)


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past `limit` (a chunked body has no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@web.middleware
async def _json_errors(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Unknown paths and methods answered in the same JSON shape as every other error."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return web.json_response({"error": error.reason}, status=error.status,
                                 headers={k: v for k, v in error.headers.items() if k == "Allow"})


def create_app(sink: EventSink, options: WebhookOptions) -> web.Application:
    """The endpoint as an aiohttp application (the connector serves it; tests may serve it too)."""
    app = web.Application(client_max_size=options.max_body_bytes, middlewares=[_json_errors])
    stats = WebhookStats()
    endpoint = _Endpoint(sink, options, stats)
    app[STATS] = stats
    app.router.add_post(EVENTS_PATH, endpoint.canonical)
    app.router.add_post(TWILIO_PATH, endpoint.twilio)
    app.router.add_post(CONNECT_PATH, endpoint.amazon_connect)
    app.router.add_post(TOKEN_PATH, endpoint.token)
    app.router.add_get("/healthz", endpoint.health, allow_head=False)
    app.router.add_get("/openapi.yaml", endpoint.openapi, allow_head=False)

    async def start_sink_thread(app: web.Application) -> None:
        app[_SINK_THREAD] = _SinkThread()

    async def stop_sink_thread(app: web.Application) -> None:
        app[_SINK_THREAD].close()

    app.on_startup.append(start_sink_thread)
    app.on_cleanup.append(stop_sink_thread)
    return app


@dataclass
class WebhookConnector:
    """Serves the endpoint on a socket bound at build time (so that a taken port is a start-up
    error), until `stop` is set."""

    listener: socket.socket
    options: WebhookOptions
    shutdown_timeout_s: float = 10.0
    name: str = SOURCE
    realtime: bool = True
    stats: WebhookStats | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return str(host), int(port)

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        asyncio.run(self._serve(sink, stop))

    async def _serve(self, sink: EventSink, stop: threading.Event) -> None:
        app = create_app(sink, self.options)
        self.stats = app[STATS]
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout_s)
        await runner.setup()
        try:
            await web.SockSite(runner, self.listener).start()
            host, port = self.address
            log.info("webhook listening on http://%s:%d (POST %s)", host, port,
                     ", ".join(self.options.credentials.enabled()))
            while not stop.is_set():
                await asyncio.sleep(_STOP_POLL_S)
        finally:
            await runner.cleanup()  # stops listening, then waits for requests in flight
            self.listener.close()
        log.info("webhook stopped: %s", json.dumps(self.stats.to_dict()))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port); ConfigurationError if taken."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as error:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


# --- command line -----------------------------------------------------------------------------

SECRET_ENV: Final = "CALLWATCH_WEBHOOK_SECRET"
TWILIO_TOKEN_ENV: Final = "CALLWATCH_TWILIO_AUTH_TOKEN"
CONNECT_API_KEY_ENV: Final = "CALLWATCH_CONNECT_API_KEY"
CONNECT_BASIC_ENV: Final = "CALLWATCH_CONNECT_BASIC"
CONNECT_OAUTH_ENV: Final = "CALLWATCH_CONNECT_OAUTH_CLIENT"


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--webhook-host", env="CALLWATCH_WEBHOOK_HOST", default="127.0.0.1",
               help="address to listen on")
    env_option(parser, "--webhook-port", env="CALLWATCH_WEBHOOK_PORT", default="8088",
               help="port to listen on; 0 picks a free one")
    env_option(parser, "--webhook-secret-file", env=SECRET_ENV + "_FILE",
               help=f"file holding the Standard Webhooks secret (whsec_...) that signs POST /v1/events (or put "
                    f"the secret itself in {SECRET_ENV}); secrets are never given on the command line")
    env_option(parser, "--webhook-twilio-auth-token-file", env=TWILIO_TOKEN_ENV + "_FILE",
               help=f"file holding the Twilio account's Auth Token, which signs TaskRouter callbacks to POST "
                    f"/v1/twilio/taskrouter (or {TWILIO_TOKEN_ENV})")
    env_option(parser, "--webhook-public-url", env="CALLWATCH_WEBHOOK_PUBLIC_URL",
               help="the URL Twilio calls, up to the path (e.g. https://callwatch.example.org), when a proxy "
                    "stands in front: Twilio signs the URL it called")
    env_option(parser, "--webhook-connect-auth", env="CALLWATCH_CONNECT_AUTH", choices=("api-key", "basic", "oauth"),
               help=f"how the EventBridge connection posting to /v1/amazon-connect authorises: api-key (header "
                    f"--webhook-connect-api-key-header = {CONNECT_API_KEY_ENV}), basic ({CONNECT_BASIC_ENV} = "
                    f"user:password) or oauth ({CONNECT_OAUTH_ENV} = client_id:client_secret; tokens from POST "
                    f"/v1/oauth/token); each secret also from a file named by the variable + _FILE")
    env_option(parser, "--webhook-connect-api-key-header", env="CALLWATCH_CONNECT_API_KEY_HEADER", default="x-api-key",
               help="the API key header name of the EventBridge connection")
    env_option(parser, "--webhook-max-body", env="CALLWATCH_WEBHOOK_MAX_BODY", default=str(1 << 20),
               help="largest request body in bytes; larger ones are refused with 413")
    env_option(parser, "--webhook-tolerance", "--webhook-tolerance-s", dest="webhook_tolerance",
               env="CALLWATCH_WEBHOOK_TOLERANCE", default="5m",
               help="how far a request's signed time may be from this machine's clock (e.g. 90s, 5m)")
    env_option(parser, "--webhook-queue-lines", env="CALLWATCH_WEBHOOK_QUEUE_LINES",
               help="service line (and shown name) of platform queues: QUEUE=LINE[:NAME],... where QUEUE is a "
                    "queue name, SID, ARN or id, and *=LINE takes every queue not listed; unlisted queues are "
                    "otherwise their own line")
    env_option(parser, "--webhook-site", env="CALLWATCH_WEBHOOK_SITE", default="default",
               help="site (force / control room) of events mapped from Twilio and Amazon Connect")


def read_secret(variable: str, path: str | None, environ: Mapping[str, str]) -> str | None:
    """A secret from the file `path` (the option's, or `variable`_FILE's) when given, else from the
    environment variable itself; None when neither is set. UsageError when the file is unreadable."""
    path = path or environ.get(variable + "_FILE")
    if path:
        return secret_file(path, f"the secret file ({variable}_FILE)")
    return environ.get(variable, "").strip() or None


def _credentials(args: argparse.Namespace, environ: Mapping[str, str], token_lifetime_s: float) -> Credentials:
    standard = read_secret(SECRET_ENV, args.webhook_secret_file, environ)
    try:
        key = standard_webhooks_secret(standard) if standard else None
    except ValueError as error:
        raise UsageError(f"{SECRET_ENV} {error}") from None
    twilio = read_secret(TWILIO_TOKEN_ENV, args.webhook_twilio_auth_token_file, environ)
    if twilio is not None and len(twilio) < MIN_TOKEN_CHARS:
        raise UsageError(f"{TWILIO_TOKEN_ENV} is too short to be a Twilio Auth Token")
    connect = None
    if args.webhook_connect_auth:
        variable = {"api-key": CONNECT_API_KEY_ENV, "basic": CONNECT_BASIC_ENV, "oauth": CONNECT_OAUTH_ENV}[
            args.webhook_connect_auth]
        secret = read_secret(variable, None, environ)
        if not secret:
            raise UsageError(f"--webhook-connect-auth {args.webhook_connect_auth} needs {variable} (or {variable}_FILE)")
        if args.webhook_connect_auth == "api-key":
            name, value = str(args.webhook_connect_api_key_header).strip(), secret
        else:
            name, colon, value = secret.partition(":")
            if not colon or not name or not value:
                raise UsageError(f"{variable} must be NAME:SECRET ({'user:password' if variable == CONNECT_BASIC_ENV else 'client_id:client_secret'})")
        if len(value) < MIN_TOKEN_CHARS:
            raise UsageError(f"{variable}: the secret is too short: use at least {MIN_TOKEN_CHARS} characters")
        connect = ApiDestinationAuth(args.webhook_connect_auth, name, value.encode("utf-8"), token_lifetime_s)
    credentials = Credentials(key, twilio.encode("utf-8") if twilio else None, connect)
    if not credentials.enabled():
        raise UsageError(f"the webhook has no route to serve: set {SECRET_ENV} (canonical events), "
                         f"{TWILIO_TOKEN_ENV} (Twilio) and/or --webhook-connect-auth (Amazon Connect)")
    return credentials


MIN_TOKEN_CHARS: Final = 16
TOKEN_LIFETIME_S: Final = 3600.0


def _build(args: argparse.Namespace, settings: Settings) -> WebhookConnector:
    credentials = _credentials(args, os.environ, TOKEN_LIFETIME_S)
    try:
        # Twilio and Amazon Connect payloads carry callers' numbers and agents: no key, no start.
        hide = pseudonymiser(settings.pseudonymisation_key)
        queues = parse_queue_lines(args.webhook_queue_lines, "--webhook-queue-lines")
    except ConfigurationError as error:
        raise UsageError(str(error)) from None
    site = str(args.webhook_site or "").strip()
    if not site:
        raise UsageError("--webhook-site must not be empty")
    public_url = (args.webhook_public_url or "").strip() or None
    if public_url and not public_url.startswith(("https://", "http://")):
        raise UsageError(f"--webhook-public-url must start with https:// (or http://), not {public_url!r}")
    options = WebhookOptions(
        MappingContext(EventBuilder(SOURCE, hide, site), queues), credentials,
        max_body_bytes=number(args.webhook_max_body, "--webhook-max-body", int, 1),
        tolerance_s=duration(args.webhook_tolerance, "--webhook-tolerance", minimum_s=1),
        public_url=public_url)
    port = number(args.webhook_port, "--webhook-port", int, 0)
    if port > 65535:
        raise UsageError(f"--webhook-port must be at most 65535, not {port}")
    try:
        listener = bind(args.webhook_host, port)
    except ConfigurationError as error:
        raise UsageError(str(error)) from None
    return WebhookConnector(listener, options)


SPEC = ConnectorSpec("webhook", "HTTP endpoint for canonical events (Standard Webhooks), Twilio TaskRouter and "
                                "Amazon Connect (EventBridge API destinations)",
                     _add_arguments, _build,
                     example="CALLWATCH_WEBHOOK_SECRET=whsec_... CALLWATCH_TWILIO_AUTH_TOKEN=... "
                             "CALLWATCH_PSEUDONYMISATION_KEY=... callwatch connect webhook --webhook-port 8088 "
                             "--webhook-queue-lines 'Emergency=999,Non-emergency=101' --out webhook.jsonl")
