"""`callwatch connect webhook`: an HTTP endpoint (aiohttp, in its own event loop) taking signed
canonical events, Twilio TaskRouter event callbacks and Amazon Connect contact events, mapped by
webhook_parser into the sink. A bad request is answered with its status and reason, counted and
dead-lettered, and the server carries on; on stop it finishes the requests in flight."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import math
import os
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Final, Mapping, TypeVar

from aiohttp import web

from connectors.errors import ConfigurationError
from connectors.privacy import hmac_pseudonymiser
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from connectors.webhook.webhook_parser import (
    SIGNATURE_HEADER, SOURCE, TIMESTAMP_HEADER, MappingContext, Mapped, Rejected, ReplayGuard, canonical_events,
    connect_events, parse_queue_routes, readable_body, signature, twilio_events, verify_signature)
from streams.options import OptionTarget, UsageError, env_option, number
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.webhook")

OPENAPI_PATH: Final = Path(__file__).with_name("openapi.yaml")
SECRET_ENV: Final = "CALLWATCH_WEBHOOK_SECRET"
MIN_SECRET_BYTES: Final = 16
_CHUNK_BYTES: Final = 64 * 1024
_STOP_POLL_S: Final = 0.2

Parse = Callable[[bytes, str | None, MappingContext], Mapped | Rejected]
T = TypeVar("T")


@dataclass(frozen=True)
class WebhookOptions:
    context: MappingContext
    max_body_bytes: int = 1 << 20
    tolerance_s: float = 300.0
    replay_capacity: int = 100_000
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


class _Endpoint:
    """The request handlers: check size and signature, map the body, hand events to the sink."""

    def __init__(self, sink: EventSink, secret: bytes, options: WebhookOptions, stats: WebhookStats) -> None:
        self._sink = sink
        self._secret = secret
        self._options = options
        self._stats = stats
        self._replays = ReplayGuard(options.replay_capacity)

    def _thread(self, request: web.Request) -> _SinkThread:
        return request.app[_SINK_THREAD]

    async def canonical(self, request: web.Request) -> web.Response:
        return await self._ingest(request, canonical_events)

    async def twilio(self, request: web.Request) -> web.Response:
        return await self._ingest(request, twilio_events)

    async def amazon_connect(self, request: web.Request) -> web.Response:
        return await self._ingest(request, connect_events)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self._stats.to_dict()})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/yaml")

    async def _ingest(self, request: web.Request, parse: Parse) -> web.Response:
        self._stats.requests += 1
        where = f"{request.method} {request.path} from {request.remote or 'unknown'}"
        limit = self._options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return await self._refuse(request, 413, f"too large: body over {limit} bytes", where)
        stamp, signed = request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER)
        if not stamp or not signed:
            # Refused before reading: an unsigned sender gets no work out of this server.
            missing = TIMESTAMP_HEADER if not stamp else SIGNATURE_HEADER
            return await self._refuse(request, 401, f"unsigned: no {missing} header", where)
        body = await _read_bounded(request, limit)
        if body is None:
            return await self._refuse(request, 413, f"too large: body over {limit} bytes", where)
        now_s = self._options.clock()
        reason = verify_signature(self._secret, stamp, signed, body, now_s, self._options.tolerance_s)
        digest = signature(self._secret, stamp.strip(), body)
        if reason is None and not self._replays.first_use(digest, int(stamp) + self._options.tolerance_s, now_s):
            reason = "replayed: this signature was already used"
        if reason is not None:
            return await self._refuse(request, 401, reason, where)
        content_type = request.headers.get("Content-Type")
        result = parse(body, content_type, self._options.context)
        if isinstance(result, Rejected):
            return await self._refuse(request, result.status, result.reason, where,
                                      readable_body(body, content_type))
        try:
            await self._thread(request).call(lambda: _send_all(self._sink, result, where))
        except Exception:  # noqa: BLE001 - any sink failure (broker down, ...) is a 503 the sender retries
            log.exception("%s: the sink failed; answered 503", where)
            self._replays.forget(digest)
            return web.json_response({"error": "sink unavailable: retry later"}, status=503)
        self._stats.events_accepted += len(result.events)
        answer: dict[str, Any] = {"accepted": len(result.events)}
        if result.ignored:
            answer["ignored"] = list(result.ignored)
        return web.json_response(answer, status=202)

    async def _refuse(self, request: web.Request, status: int, reason: str, where: str, raw: str = "") -> web.Response:
        """Answer, count, log and dead-letter one refused request. Bodies of unauthenticated or
        oversized requests are not kept: only the reason and where the request came from."""
        self._stats.rejected[reason.split(":", 1)[0]] += 1
        log.warning("%s: %d %s", where, status, reason)
        letter = DeadLetter.of(SOURCE, reason, where, raw)
        try:
            await self._thread(request).call(lambda: self._sink.dead_letter(letter))
        except Exception:  # noqa: BLE001 - the sender still gets its answer; the failure is logged
            log.exception("%s: could not dead-letter the refused request", where)
        headers = {"WWW-Authenticate": 'Callwatch-HMAC-SHA256 realm="callwatch"'} if status == 401 else None
        return web.json_response({"error": reason}, status=status, headers=headers)


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


def create_app(sink: EventSink, secret: bytes, options: WebhookOptions) -> web.Application:
    """The endpoint as an aiohttp application (the connector serves it; tests may serve it too)."""
    app = web.Application(client_max_size=options.max_body_bytes, middlewares=[_json_errors])
    stats = WebhookStats()
    endpoint = _Endpoint(sink, secret, options, stats)
    app[STATS] = stats
    app.router.add_post("/v1/events", endpoint.canonical)
    app.router.add_post("/v1/twilio/taskrouter", endpoint.twilio)
    app.router.add_post("/v1/amazon-connect", endpoint.amazon_connect)
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
    secret: bytes = field(repr=False)
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
        app = create_app(sink, self.secret, self.options)
        self.stats = app[STATS]
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout_s)
        await runner.setup()
        try:
            await web.SockSite(runner, self.listener).start()
            host, port = self.address
            log.info("webhook listening on http://%s:%d (POST /v1/events, /v1/twilio/taskrouter, "
                     "/v1/amazon-connect)", host, port)
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

def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--webhook-host", env="CALLWATCH_WEBHOOK_HOST", default="127.0.0.1",
               help="address to listen on")
    env_option(parser, "--webhook-port", env="CALLWATCH_WEBHOOK_PORT", default="8088",
               help="port to listen on; 0 picks a free one")
    env_option(parser, "--webhook-secret-file", env="CALLWATCH_WEBHOOK_SECRET_FILE",
               help=f"file holding the shared secret that signs requests (or put the secret itself in "
                    f"{SECRET_ENV}); never given on the command line")
    env_option(parser, "--webhook-max-body", env="CALLWATCH_WEBHOOK_MAX_BODY", default=str(1 << 20),
               help="largest request body in bytes; larger ones are refused with 413")
    env_option(parser, "--webhook-tolerance-s", env="CALLWATCH_WEBHOOK_TOLERANCE_S", default="300",
               help="how far a request's signed timestamp may be from this machine's clock, in seconds")
    env_option(parser, "--webhook-queue-lines", env="CALLWATCH_WEBHOOK_QUEUE_LINES",
               help="service line (and shown name) of platform queues: QUEUE=LINE[:NAME],... where QUEUE is a "
                    "queue name, SID, ARN or id; unlisted queues are their own line")
    env_option(parser, "--webhook-site", env="CALLWATCH_WEBHOOK_SITE", default="default",
               help="site (force / control room) of events mapped from Twilio and Amazon Connect")


def read_secret(secret_file: str | None, environ: Mapping[str, str]) -> bytes:
    """The signing secret: from --webhook-secret-file (or CALLWATCH_WEBHOOK_SECRET_FILE) when given,
    else from CALLWATCH_WEBHOOK_SECRET. Raises UsageError naming what to set."""
    if secret_file:
        try:
            secret = Path(secret_file).read_bytes().strip()
        except OSError as error:
            raise UsageError(f"cannot read webhook secret file {secret_file}: {error.strerror}") from None
        origin = f"webhook secret file {secret_file}"
    else:
        secret = environ.get(SECRET_ENV, "").strip().encode("utf-8")
        origin = SECRET_ENV
        if not secret:
            raise UsageError(f"the webhook needs a shared signing secret: set {SECRET_ENV}, or "
                             f"CALLWATCH_WEBHOOK_SECRET_FILE / --webhook-secret-file to a file holding it")
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(f"{origin} is too short: use at least {MIN_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)")
    return secret


def _build(args: argparse.Namespace, settings: Settings) -> WebhookConnector:
    secret = read_secret(args.webhook_secret_file, os.environ)
    try:
        # Twilio and Amazon Connect payloads carry callers' numbers: no key, no start.
        pseudonymise = hmac_pseudonymiser(settings.pseudonymisation_key)
        routes = parse_queue_routes(args.webhook_queue_lines or "")
    except (ConfigurationError, ValueError) as error:
        raise UsageError(str(error)) from None
    site = str(args.webhook_site or "").strip()
    if not site:
        raise UsageError("--webhook-site must not be empty")
    options = WebhookOptions(
        MappingContext(pseudonymise, site, routes),
        max_body_bytes=number(args.webhook_max_body, "--webhook-max-body", int, 1),
        tolerance_s=number(args.webhook_tolerance_s, "--webhook-tolerance-s", float, 1))
    if not math.isfinite(options.tolerance_s):
        raise UsageError(f"--webhook-tolerance-s must be a finite number of seconds, not {args.webhook_tolerance_s!r}")
    port = number(args.webhook_port, "--webhook-port", int, 0)
    if port > 65535:
        raise UsageError(f"--webhook-port must be at most 65535, not {port}")
    try:
        listener = bind(args.webhook_host, port)
    except ConfigurationError as error:
        raise UsageError(str(error)) from None
    return WebhookConnector(listener, secret, options)


SPEC = ConnectorSpec("webhook", "HTTP endpoint for signed canonical events, Twilio TaskRouter and Amazon Connect",
                     _add_arguments, _build,
                     example="CALLWATCH_WEBHOOK_SECRET=... CALLWATCH_PSEUDONYMISATION_KEY=... callwatch connect "
                             "webhook --webhook-port 8088 --webhook-queue-lines 'Emergency=999,Non-emergency=101' "
                             "--out webhook.jsonl")
