"""A test harness for file connectors that follow a file: the connector runs in a thread, tests
wait on readiness (the sink's events, the follower at the end of its file), never on sleeps."""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol

WAIT_S = 10.0


class WatchedSink(Protocol):
    changed: threading.Condition

    def ids(self) -> list[str]: ...


class Following:
    """`connector` (with a `follower` attribute once running) reading into `sink` in a thread,
    stopped and joined on exit; an error the connector raised fails the test."""

    def __init__(self, connector: Any, sink: Any) -> None:
        self.connector = connector
        self.sink = sink
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.connector.run(self.sink, self.stop)
        except BaseException as error:  # noqa: BLE001 - surfaced by the test
            self.error = error

    def __enter__(self) -> Following:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the follower did not stop"
        assert self.error is None, self.error

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> None:
        """Until the event ids sent so far satisfy `predicate` (woken by each event the sink takes)."""
        with self.sink.changed:
            done = self.sink.changed.wait_for(lambda: predicate(self.sink.ids()) or self.error is not None, WAIT_S)
        assert self.error is None, self.error
        assert done, f"timed out waiting for {what}; have {self.sink.ids()}"

    def wait_count(self, count: int) -> None:
        self.wait_for(lambda ids: len(ids) >= count, f"{count} events")

    def settle(self) -> None:
        """Until the follower has twice found nothing more to read: a whole poll after this call, by
        which anything that would (wrongly) be emitted has been. Readiness, not a sleep."""
        started = threading.Event()
        while self.connector.follower is None and self.thread.is_alive() and not started.wait(0.001):
            pass  # the connector's thread has not built its follower yet
        follower = self.connector.follower
        assert follower is not None, self.error
        seen = follower.at_end
        assert follower.wait_at_end(seen + 2, WAIT_S), "the follower did not reach the end of the file"
