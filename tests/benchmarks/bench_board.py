"""Benchmark: what one live-board snapshot costs, as the wallboard takes one every second, at a
steady 100 events/s (50 calls/s over two lines of four queues, some transferred, callers drawn from
a pool so some ring back). A script, not a test: it prints its figures (docs/board.md keeps the
table). With --baseline REV the LiveBoard of that revision (git) is timed in the same run on the
same events, for a ratio on a shared machine.

    .venv/bin/python -m tests.benchmarks.bench_board                       # 70 minutes of traffic
    .venv/bin/python -m tests.benchmarks.bench_board --minutes 20 --baseline 26b0536
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from streams.domain import CallFlow, FlowConfig, parse_event, parse_ts
from streams.domain.events import CallEvent, format_ts

REPO = Path(__file__).resolve().parents[2]
START_MS = parse_ts("2024-03-01T08:00:00Z")
QUEUES = {"999": ("999-police", "999-fire", "999-ambulance", "999-coast"),
          "101": ("101-general", "101-crime", "101-traffic", "101-lost")}


def synthetic_events(minutes: int, calls_per_s: float, seed: int = 1) -> list[CallEvent]:
    """Calls arriving at a steady rate: answered after 1-40 s (one in ten transferred first to
    another queue of the line), or abandoned after 1-90 s."""
    rng = random.Random(seed)
    objects: list[dict[str, Any]] = []
    at_ms, number = START_MS, 0
    end_ms = START_MS + minutes * 60_000
    while at_ms < end_ms:
        number += 1
        line = rng.choice(("999", "101"))
        queue = rng.choice(QUEUES[line])
        call = f"c{number}"
        caller = f"h:{rng.randrange(20_000):05x}"

        def add(kind: str, when_ms: int, in_queue: str) -> None:
            objects.append({"v": 1, "event_id": f"{call}-{len(objects)}", "call_id": call, "type": kind,
                            "ts": format_ts(when_ms), "line": line, "queue": in_queue, "caller": caller,
                            **({"agent": "a1"} if kind == "answered" else {})})

        add("offered", at_ms, queue)
        when_ms = at_ms
        if rng.random() < 0.1:
            when_ms += rng.randrange(1_000, 30_000)
            add("transferred", when_ms, queue)
            queue = rng.choice([q for q in QUEUES[line] if q != queue])
            add("offered", when_ms, queue)
        if rng.random() < 0.9:
            add("answered", when_ms + rng.randrange(1_000, 40_000), queue)
        else:
            add("abandoned", when_ms + rng.randrange(1_000, 90_000), queue)
        at_ms += int(rng.expovariate(calls_per_s) * 1000) or 1
    objects.sort(key=lambda o: o["ts"])
    return [parse_event(o) for o in objects]


def _board_module(revision: str) -> Any:
    """streams.domain.live as it was at `revision`, loaded beside today's package."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:streams/domain/live.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"streams.domain.live_{revision}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "streams.domain"
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"live@{revision}", "exec"), module.__dict__)
    return module


def run(events: list[CallEvent], snapshot_of: Callable[[CallFlow, int], object], flow: CallFlow,
        measure_from_ms: int, every_second: bool = True) -> list[float]:
    """Feed the events second by second, as the embedded runner does, taking a snapshot every
    second (or, `every_second` False, only when timed: the old board kept nothing between two),
    and time those taken once `measure_from_ms` is reached (the windows are full by then)."""
    times: list[float] = []
    index, now_ms = 0, START_MS
    end_ms = events[-1].occurred_ms + 1000
    while now_ms <= end_ms:
        while index < len(events) and events[index].occurred_ms <= now_ms:
            flow.ingest(events[index])
            index += 1
        flow.advance(now_ms)
        if now_ms >= measure_from_ms:
            started = time.perf_counter()
            snapshot_of(flow, now_ms)
            times.append(time.perf_counter() - started)
        elif every_second:
            snapshot_of(flow, now_ms)
        now_ms += 1000
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=70, help="minutes of traffic (the last 5 are timed)")
    parser.add_argument("--calls-per-s", type=float, default=50.0, help="about two events a call")
    parser.add_argument("--baseline", help="git revision whose LiveBoard is timed too")
    args = parser.parse_args()
    events = synthetic_events(args.minutes, args.calls_per_s)
    rate = len(events) / (events[-1].occurred_ms - events[0].occurred_ms) * 1000
    print(f"{len(events):,} events over {args.minutes} minutes ({rate:.0f} events/s); "
          f"snapshots timed every second over the last 5 minutes")
    config = FlowConfig(allowed_lateness_s=0.5)
    measure_from = START_MS + max(0, args.minutes - 5) * 60_000
    results = {"this tree": run(events, lambda flow, now: flow.snapshot(now), CallFlow(config, live=True),
                                measure_from)}
    if args.baseline:
        old = _board_module(args.baseline)
        flow = CallFlow(config, live=False)
        board = old.LiveBoard(config)
        flow._board = board  # the old board, fed by today's flow

        def old_snapshot(flow: CallFlow, now_ms: int) -> object:
            return board.snapshot(now_ms, flow.tracker)

        results[args.baseline] = run(events, old_snapshot, flow, measure_from, every_second=False)
    print(f"{'board':<12} {'snapshots':>9} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, times in results.items():
        ms = sorted(t * 1000 for t in times)
        print(f"{name:<12} {len(ms):>9} {statistics.fmean(ms):>8.2f} {ms[len(ms) // 2]:>7.2f} "
              f"{ms[int(len(ms) * 0.99)]:>7.2f} {ms[-1]:>7.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
