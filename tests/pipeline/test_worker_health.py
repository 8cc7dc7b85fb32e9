"""The worker's watch on its reading loop (streams/worker/health.py): a stall is reported once, with
where the loop waits."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from streams.worker.health import RoundWatch, where_it_waits


def test_a_stall_is_reported_once_and_again_only_after_the_loop_went_round() -> None:
    watch = RoundWatch(since=1_000, stall_after_s=120)
    watch.finished_round(1_010)
    assert watch.age(1_010) == 0 and watch.stall_to_report(1_129.9) is None
    assert watch.stall_to_report(1_135) == 125
    assert watch.stall_to_report(1_300) is None  # the same stall
    assert watch.age(1_300) == 290
    watch.finished_round(1_301)
    assert watch.age(1_301.5) == 0.5 and watch.stall_to_report(1_301.5) is None
    assert watch.stall_to_report(1_500) == 199  # a new stall
    assert watch.rounds == 2


def test_a_start_that_never_gets_to_reading_is_a_stall_too() -> None:
    watch = RoundWatch(since=1_000, stall_after_s=120)
    assert watch.age(1_060) == 60 and watch.stall_to_report(1_060) is None
    assert watch.stall_to_report(1_121) == 121 and watch.rounds == 0
    assert watch.stall_to_report(1_200) is None


async def _innermost(ready: asyncio.Event, never: asyncio.Event) -> None:
    ready.set()
    await never.wait()


async def _outer(ready: asyncio.Event, never: asyncio.Event) -> None:
    await _innermost(ready, never)


def test_where_it_waits_names_the_chain_of_awaits_innermost_first() -> None:
    async def scenario() -> str:
        ready, never = asyncio.Event(), asyncio.Event()
        task = asyncio.ensure_future(_outer(ready, never))
        await ready.wait()
        await asyncio.sleep(0)
        try:
            return where_it_waits(task)
        finally:
            task.cancel()

    where = asyncio.run(scenario())
    names = [part.split(" in ")[1] for part in where.split(" <- ")]
    assert names[:3] == ["wait", "_innermost", "_outer"], where
    assert where.split(" <- ")[1].startswith("test_worker_health.py:")
    assert where_it_waits(None) == "(not running)"


def test_the_worker_logs_a_stalled_loop_once_with_where_it_waits(caplog: pytest.LogCaptureFixture) -> None:
    from streams.domain.config import FlowConfig
    from streams.worker.ingest import CallIngest, WorkerOptions
    from streams.worker.kafka import Topology

    topology = Topology("t.events", "t.figures", "t.deadletter", "t.repartition", "t.checkpoints", 6)

    async def scenario() -> None:
        ingest = CallIngest(None, None, FlowConfig(), topology, WorkerOptions("t.worker"))
        ready, never = asyncio.Event(), asyncio.Event()
        ingest._loop_task = asyncio.ensure_future(_outer(ready, never))  # stands in for the stuck loop
        await ready.wait()
        try:
            ingest.rounds.finished_round(time.monotonic() - 200)  # one round, 200 s ago
            with caplog.at_level(logging.ERROR, logger="callwatch.worker"):
                ingest.check_rounds()
                ingest.check_rounds()  # the same stall: said once
        finally:
            ingest._loop_task.cancel()

    asyncio.run(scenario())
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "t.events has not gone round for 200 s" in errors[0]
    assert "in _innermost <- " in errors[0] and "in _outer" in errors[0]


def test_the_worker_logs_a_loop_that_never_started(caplog: pytest.LogCaptureFixture) -> None:
    from streams.domain.config import FlowConfig
    from streams.worker.ingest import CallIngest, WorkerOptions
    from streams.worker.kafka import Topology

    topology = Topology("t.events", "t.figures", "t.deadletter", "t.repartition", "t.checkpoints", 6)
    ingest = CallIngest(None, None, FlowConfig(), topology, WorkerOptions("t.worker"))
    ingest.rounds.since -= 150
    with caplog.at_level(logging.ERROR, logger="callwatch.worker"):
        ingest.check_rounds()
    assert [record.getMessage() for record in caplog.records] == [
        "the loop reading t.events has not started 150 s after the worker did: no events are read"]


def test_a_library_line_repeating_is_let_through_once_a_minute_and_says_how_many_were_held() -> None:
    from streams.worker.health import OncePerMinute

    now = [0.0]
    quiet = OncePerMinute(clock=lambda: now[0])

    def line(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)

    passed = []
    for second in range(130):
        now[0] = float(second)
        for _ in range(20):  # 20 a second, as aiokafka wrote them with the broker gone
            record = line("aiokafka.conn", "Unable connect to %s")
            if quiet.filter(record):
                passed.append((second, record.msg))
        assert quiet.filter(line("callwatch.worker", "our own line"))  # never held back
    assert passed == [(0, "Unable connect to %s"),
                      (60, "Unable connect to %s (1199 like it in the last minute not shown)"),
                      (120, "Unable connect to %s (1199 like it in the last minute not shown)")]
