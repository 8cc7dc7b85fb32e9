"""A real board server on 127.0.0.1 fed by a real CallFlow with a test clock (the test says what
time it is and when a snapshot is published), and Debian's chromium for the page."""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from typing import Iterator

import pytest

from streams.domain.config import FlowConfig
from streams.domain.events import format_ts, parse_event
from streams.domain.flow import CallFlow
from streams.wallboard.server import BoardOptions, BoardServer, LatestBoard, create_app

from . import browser as chromium_browser

START_MS = 1_709_280_000_000  # 2024-03-01T08:00:00Z
_ids = itertools.count()


def call_event(kind: str, call_id: str, at_ms: int, line: str = "999", queue: str = "999-police",
               caller: str | None = None, site: str = "default", **extra: object):
    obj = {"v": 1, "event_id": f"e{next(_ids)}", "call_id": call_id, "type": kind, "ts": format_ts(at_ms),
           "line": line, "queue": queue, "site": site, **extra}
    if caller is not None:
        obj["caller"] = caller
    if kind == "answered":
        obj.setdefault("agent", "a1")
    return parse_event(obj)


class FlowSource(LatestBoard):
    """The board source of `callwatch run`, its snapshots from a CallFlow the test drives."""

    def __init__(self, config: FlowConfig | None = None, speed: float = 0.0) -> None:
        config = config or FlowConfig(allowed_lateness_s=0)
        super().__init__(config, speed=speed)
        self.flow = CallFlow(config, live=True)
        self.now_ms = START_MS

    def feed(self, *events) -> None:
        for event in sorted(events, key=lambda e: e.occurred_ms):  # lateness 0: in time order
            self.flow.ingest(event)

    def publish_at(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.flow.advance(now_ms)
        self.publish(self.flow.snapshot(now_ms))


@contextmanager
def serving(source, options: BoardOptions = BoardOptions(), port: int = 0) -> Iterator[BoardServer]:
    server = BoardServer(create_app(source, None, options), "127.0.0.1", port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    reason = chromium_browser.missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the wallboard's browser tests need chromium: {reason}")
        pytest.skip(reason)
    with chromium_browser.chromium() as launched:
        yield launched


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    one = context.new_page()
    yield one
    context.close()
