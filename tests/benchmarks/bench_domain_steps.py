"""Benchmark: what each step of the worker's domain costs per event, beside decoding, in one process
without Kafka. A script, not a test: it prints its figures (docs/worker.md keeps the table and the
bound on the worker's rate it gives).

The events of a simulated stream go through each step in turn, each timed over all of them: decode
and validate (the pipeline's codec, `codec.decode`, one message at a time as the worker reads
them: msgspec's typed decode into CallEvent, then `validate_decoded`), of which msgspec's typed
decode alone (as one raw consumer of bench_worker does), order (offer and release, the exact
flow's lateness), track call legs, tally windows, and the wallboard's tallies (and, apart, the
share of those that is its counters since the start).
The cyclic collector is off while timing, so each figure is the step's own cost.

    .venv/bin/python -m tests.benchmarks.bench_domain_steps              # 24 simulated days
    .venv/bin/python -m tests.benchmarks.bench_domain_steps --days 6 --repeat 1
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any, Callable

from streams.domain import FlowConfig, parse_ts
from streams.domain.call_legs import CallTracker, Record
from streams.domain.events import CallEvent, parse_event
from streams.domain.ordering import EventOrderer
from streams.domain.records import LiveTallies, WindowTallies
from streams.domain.totals import RunningTotals
from streams.io.codec import decode, decode_fields
from streams.simulator import simulate

START_MS = parse_ts("2023-01-01T00:00:00Z")


def _timed(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = step()
    return time.perf_counter() - started, result


def _once(lines: list[bytes], config: FlowConfig) -> dict[str, float]:
    seconds: dict[str, float] = {}
    seconds["decode and validate (parse_event(codec.decode))"], events = _timed(
        lambda: [parse_event(decode(line)) for line in lines])
    seconds["of which: msgspec's typed decode alone"], _ = _timed(lambda: [decode_fields(line) for line in lines])
    orderer = EventOrderer(config.allowed_lateness_ms)

    def order() -> list[CallEvent]:
        orderer.offer_all(events)
        return orderer.drain()

    seconds["order (offer and release)"], ordered = _timed(order)
    tracker = CallTracker(config.max_wait_ms)

    def track() -> list[Record]:
        records: list[Record] = []
        apply = tracker.apply
        for event in ordered:
            apply(event, records)
        return records

    seconds["track call legs (CallTracker.apply)"], records = _timed(track)
    windows = WindowTallies(900, config)
    seconds["tally windows (WindowTallies.add)"], _ = _timed(lambda: windows.add(records))
    live = LiveTallies(config)

    def board() -> None:
        live.observe_all(ordered)
        live.add(records)

    seconds["wallboard (LiveTallies.observe_all, add)"], _ = _timed(board)
    totals = RunningTotals(config)  # the counters since the start: a part of the wallboard's add, alone
    seconds["of which: counters since the start (RunningTotals.add)"], _ = _timed(lambda: totals.add(records))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=24.0, help="simulated days of events")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the fastest of each step counts")
    args = parser.parse_args()
    lines = [json.dumps(event).encode() for event in simulate(1, START_MS, args.days * 86_400)]
    config = FlowConfig()
    best: dict[str, float] = {}
    gc.disable()
    try:
        for _ in range(args.repeat):
            for step, seconds in _once(lines, config).items():
                best[step] = min(seconds, best.get(step, seconds))
            gc.collect()
    finally:
        gc.enable()
    print(f"\n{len(lines):,} simulated events, fastest of {args.repeat} runs, collector off:\n")
    print("| step | us per event |")
    print("|---|---:|")
    for step, seconds in best.items():
        print(f"| {step} | {seconds / len(lines) * 1e6:.2f} |")
    domain = sum(seconds for step, seconds in best.items() if not step.startswith(("decode", "of which")))
    print(f"| every step but decoding and validating | {domain / len(lines) * 1e6:.2f} |")


if __name__ == "__main__":
    main()
