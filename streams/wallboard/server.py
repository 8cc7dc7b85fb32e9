"""The wallboard's HTTP side (aiohttp): the page, the JSON snapshot, a server-sent-events stream,
marking a caller called back, and for `callwatch run` /metrics on the same server.

The figures come from a `BoardSource`: the latest BoardSnapshot (the pipeline swaps one reference;
nothing here ever blocks it), the FlowConfig and the call-back marks. `add_board_routes` mounts the
board on any aiohttp application (the Faust worker's web server too); `create_app` is the whole
server of `callwatch run`. One task per application turns a new snapshot into the JSON view once
and every stream client is sent the newest frame when it has taken the previous one: a slow or
vanished browser skips frames, it never queues them."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Awaitable, Callable, Protocol

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from dashboards.alerts import PRODUCTION
from streams.domain.config import FlowConfig
from streams.domain.live import BoardSnapshot

from .status import StatusMemory
from .view import UnknownBoard, board_view, select

log = logging.getLogger("callwatch.wallboard")

TOKEN_COOKIE = "callwatch_board_token"
# A browser only sends this header from the board's own page (a cross-site form cannot), so another
# web site open in the control room cannot mark callers done behind the supervisor's back.
MARK_HEADER = "X-Callwatch-Board"
STATIC = resources.files(__package__) / "static"
STREAM_SEND_BUFFER = 256 * 1024
BOARD: web.AppKey[_Board] = web.AppKey("callwatch_board")
_ASSET_TYPES = {"board.js": "text/javascript", "board.css": "text/css"}


class CallbackMarks(Protocol):
    """Which callers a supervisor marked as called back, by (site, line, call id)."""

    def mark_done(self, site: str, line: str, call_id: str) -> None: ...

    def is_done(self, site: str, line: str, call_id: str) -> bool: ...


class BoardSource(Protocol):
    """What the board reads: `latest()` is called from the server's event loop and must return at
    once (None before the first snapshot). An optional `speed` attribute (stream seconds per
    wall-clock second, 1 by default) lets the page tick waits at the stream's pace."""

    config: FlowConfig
    marks: CallbackMarks

    def latest(self) -> BoardSnapshot | None: ...


class MemoryMarks:
    """Marks kept in memory (the embedded pipeline: they go with the process). Bounded: the oldest
    marks go first once `limit` are kept, long after their callers left the list."""

    def __init__(self, limit: int = 100_000) -> None:
        self._done: dict[tuple[str, str, str], None] = {}
        self._limit = limit

    def mark_done(self, site: str, line: str, call_id: str) -> None:
        self._done[(site, line, call_id)] = None
        while len(self._done) > self._limit:
            del self._done[next(iter(self._done))]

    def is_done(self, site: str, line: str, call_id: str) -> bool:
        return (site, line, call_id) in self._done


class LatestBoard:
    """The embedded pipeline's source: `publish` swaps one reference from the pipeline's thread."""

    def __init__(self, config: FlowConfig, speed: float = 1.0) -> None:
        self.config = config
        self.marks: CallbackMarks = MemoryMarks()
        self.speed = speed
        self._latest: BoardSnapshot | None = None

    def publish(self, snapshot: BoardSnapshot) -> None:
        self._latest = snapshot

    def latest(self) -> BoardSnapshot | None:
        return self._latest


@dataclass(frozen=True, slots=True)
class BoardOptions:
    token: str | None = None  # when set, every board route needs it (page, JSON, stream, marks)
    # A line greys out after this long without an event: the stale-data alert's setting.
    stale_after_s: float = PRODUCTION.stale_after_s
    push_every_s: float = 1.0  # a frame at least this often, even when nothing changed
    poll_s: float = 0.05  # how often the server looks for a new snapshot
    write_timeout_s: float = 10.0  # a stream client that takes longer for one frame is dropped


class _Board:
    """One application's board: the current view and its stream frame, rebuilt once per snapshot."""

    def __init__(self, source: BoardSource, options: BoardOptions) -> None:
        self.source = source
        self.options = options
        self._memory = StatusMemory()
        self._snapshot: BoardSnapshot | None = None
        self.view: dict[str, Any] | None = None
        self.frame = b"event: waiting\ndata: {}\n\n"  # until the first snapshot: still a sign of life
        self.seq = 0
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        self.streams_open = 0

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._changed = asyncio.Condition()
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        self.closing = True
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            # Awaited, so the task has ended before the loop stops: a task left pending is reported
            # ("Task was destroyed but it is pending") when the collector finds it. `wait` does not
            # raise the task's cancellation, and still lets this coroutine itself be cancelled.
            await asyncio.wait({self._task})

    def refresh(self, force: bool = False) -> bool:
        snapshot = self.source.latest()
        if snapshot is None or (snapshot is self._snapshot and not force):
            return False
        self._snapshot = snapshot
        self.view = board_view(snapshot, self.source.config, self.source.marks.is_done, self._memory,
                               self.options.stale_after_s, float(getattr(self.source, "speed", 1.0)))
        self.frame = f"event: board\ndata: {json.dumps(self.view, separators=(',', ':'))}\n\n".encode()
        return True

    async def _follow(self) -> None:
        assert self._changed is not None
        last_push = 0.0
        while not self.closing:
            try:
                changed = self.refresh()
            except Exception:  # noqa: BLE001 - a bad snapshot must not end the stream for good
                log.exception("cannot build the board view")
                changed = False
            if changed or time.monotonic() - last_push >= self.options.push_every_s:
                last_push = time.monotonic()
                await self.push()
            await asyncio.sleep(self.options.poll_s)

    async def push(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self.seq += 1
            self._changed.notify_all()

    async def next_frame(self, after: int) -> tuple[int, bytes] | None:
        self.ensure_running()
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self.seq > after or self.closing)
            return None if self.closing else (self.seq, self.frame)


def add_board_routes(app: web.Application, source: BoardSource, options: BoardOptions = BoardOptions()) -> None:
    """Mount the board (page, assets, JSON, stream, marks) on `app`; the stream task starts with
    the application (or with the first request) and stops on its shutdown."""
    board = _Board(source, options)
    app[BOARD] = board
    guard = _guard(options.token)

    async def start(_app: web.Application) -> None:
        board.ensure_running()

    async def stop(_app: web.Application) -> None:
        await board.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    handlers = _Handlers(board)
    app.router.add_get("/", guard(handlers.page))
    app.router.add_get("/board/{site}", guard(handlers.page))
    app.router.add_get("/board/{site}/{line}", guard(handlers.page))
    app.router.add_get("/board-assets/{name}", guard(handlers.asset))
    app.router.add_get("/api/v1/board", guard(handlers.snapshot))
    app.router.add_get("/api/v1/board/{site}", guard(handlers.snapshot))
    app.router.add_get("/api/v1/board/{site}/{line}", guard(handlers.snapshot))
    app.router.add_get("/api/v1/stream", guard(handlers.stream))
    app.router.add_post("/api/v1/callbacks/{site}/{line}/{call_id}/done", guard(handlers.mark_done))


def create_app(source: BoardSource, registry: CollectorRegistry | None = None,
               options: BoardOptions = BoardOptions()) -> web.Application:
    """The whole server of `callwatch run`: the board, /metrics from `registry`, and a clear page
    for any address that does not exist."""
    app = web.Application(middlewares=[_not_found_page])
    add_board_routes(app, source, options)
    if registry is not None:
        async def metrics(request: web.Request) -> web.Response:
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            return web.Response(body=encoder(registry), headers={"Content-Type": content_type})
        app.router.add_get("/metrics", metrics)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guard(token: str | None) -> Callable[[Handler], Handler]:
    """With a token, a request must carry it: `Authorization: Bearer`, the cookie the page gets, or
    `?token=` (which sets the cookie, so a kiosk's address can carry it once)."""

    def wrap(handler: Handler) -> Handler:
        if token is None:
            return handler
        expected = token.encode()

        async def guarded(request: web.Request) -> web.StreamResponse:
            offered = request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
            authorization = request.headers.get("Authorization", "")
            if authorization.startswith("Bearer "):
                offered = authorization[len("Bearer "):]
            if offered is None or not hmac.compare_digest(offered.encode(), expected):
                return _message_page(401, "This wallboard needs its access token",
                                     "Open it with <code>?token=…</code> at the end of its address (once: the "
                                     "browser keeps it), or send <code>Authorization: Bearer …</code>. Ask the "
                                     "engineer who runs callwatch for the token.")
            response = await handler(request)
            if "token" in request.query and not response.prepared:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
            return response

        return guarded

    return wrap


class _Handlers:
    def __init__(self, board: _Board) -> None:
        self._board = board

    def _current(self) -> dict[str, Any] | None:
        self._board.ensure_running()
        if self._board.view is None:
            self._board.refresh()
        return self._board.view

    async def page(self, request: web.Request) -> web.StreamResponse:
        view = self._current()
        site, line = request.match_info.get("site"), request.match_info.get("line")
        if view is not None and site is not None:
            try:
                select(view, site, line)
            except UnknownBoard as error:
                return _unknown_page(error)
        text = (STATIC / "index.html").read_text(encoding="utf-8")
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _ASSET_TYPES:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=_ASSET_TYPES[name],
                            headers={"Cache-Control": "no-cache"})

    async def snapshot(self, request: web.Request) -> web.StreamResponse:
        view = self._current()
        if view is None:
            return web.json_response({"error": "no figures yet: the pipeline has not published a snapshot"},
                                     status=503, headers={"Retry-After": "1"})
        try:
            return web.json_response(select(view, request.match_info.get("site"), request.match_info.get("line")),
                                     headers={"Cache-Control": "no-store"})
        except UnknownBoard as error:
            return web.json_response({"error": error.what, "known": error.known}, status=404)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        connection = request.transport.get_extra_info("socket") if request.transport is not None else None
        if connection is not None:
            # What a client has not taken yet stays within this (the kernel's autotuning would let
            # megabytes pile up for a browser that stopped reading).
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)
        await response.write(b"retry: 1000\n\n")
        self._board.streams_open += 1
        try:
            await self._send_frames(request, response)
        finally:
            self._board.streams_open -= 1
        return response

    async def _send_frames(self, request: web.Request, response: web.StreamResponse) -> None:
        sent = 0
        timeout_s = self._board.options.write_timeout_s
        while True:
            frame = await self._board.next_frame(sent)
            if frame is None:  # the server is stopping
                break
            sent, body = frame
            try:
                # aiohttp waits for the socket to drain past its buffer limit: memory per client is
                # bounded, and a client that cannot take one frame in time is dropped.
                await asyncio.wait_for(response.write(f"id: {sent}\n".encode() + body), timeout_s)
            except (ConnectionError, asyncio.TimeoutError):
                # Dropped, with whatever it had not taken: finishing the response politely would
                # wait on the same full socket.
                if request.transport is not None:
                    request.transport.abort()
                break

    async def mark_done(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get(MARK_HEADER) != "1":
            return web.json_response({"error": f"marking needs the {MARK_HEADER}: 1 header (the board's page sends it)"},
                                     status=403)
        view = self._current()
        site, line, call_id = (request.match_info[k] for k in ("site", "line", "call_id"))
        try:
            chosen = select(view, site, line) if view is not None else None
        except UnknownBoard as error:
            return web.json_response({"error": error.what, "known": error.known}, status=404)
        listed = chosen is not None and any(c["call_id"] == call_id for c in chosen["sites"][0]["lines"][0]["callbacks"])
        if not listed:
            return web.json_response({"error": f"no caller to call back with call id {call_id!r} on line {line!r} "
                                               f"at site {site!r}"}, status=404)
        self._board.source.marks.mark_done(site, line, call_id)
        self._board.refresh(force=True)  # the list drops the caller at once, on every page
        await self._board.push()
        return web.json_response({"site": site, "line": line, "call_id": call_id, "done": True})


# Inline, so the page shows even where the token guards the board's own style sheet.
_MESSAGE_STYLE = ("body{background:#101418;color:#eef2f5;font:20px/1.5 system-ui,sans-serif;margin:3em}"
                  "a{color:#8cc8ff}h1{font-size:1.6em}code,i{color:#ffd479}")


def _message_page(status: int, title: str, body_html: str) -> web.Response:
    text = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_MESSAGE_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{body_html}</p></body></html>")
    return web.Response(status=status, text=text, content_type="text/html")


def _unknown_page(error: UnknownBoard) -> web.Response:
    items = "".join(
        f"<li><a href=/board/{html.escape(site)}>{html.escape(site)}</a>: "
        + ", ".join(f"<a href=/board/{html.escape(site)}/{html.escape(line)}>{html.escape(line)}</a>" for line in lines)
        + "</li>" for site, lines in error.known.items())
    return _message_page(404, f"This wallboard has {error.what}",
                         f"It shows these sites and lines (or <a href=/>all of them</a>):</p><ul>{items or '<li>none yet</li>'}</ul><p>")


@web.middleware
async def _not_found_page(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _message_page(404, "No such page on this wallboard",
                             "The board is at <a href=/>/</a>; one site at /board/<i>site</i>, one line at "
                             "/board/<i>site</i>/<i>line</i>; its figures as JSON at "
                             "<a href=/api/v1/board>/api/v1/board</a>; metrics at <a href=/metrics>/metrics</a>.")
    except web.HTTPMethodNotAllowed as error:
        return _message_page(405, "Not allowed here", f"{html.escape(request.method)} is not allowed on this address; "
                             f"allowed: {html.escape(', '.join(sorted(error.allowed_methods)))}.")


class BoardServer:
    """Runs an aiohttp application in a thread of its own (`callwatch run`: the pipeline keeps the
    main thread). `start` returns once it listens, or raises OSError if it cannot."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="wallboard", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
        except BaseException as error:  # noqa: BLE001 - handed to the thread that called start()
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _listen(self) -> None:
        self._runner = web.AppRunner(self.app, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    @property
    def port(self) -> int:
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        runner = self._runner

        async def close() -> None:
            if runner is not None:
                await runner.cleanup()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self._loop)
        self._thread.join(timeout=10)
