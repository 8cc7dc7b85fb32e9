"""`callwatch connect simulate`: the simulator as a connector, paced in (accelerated) real time or
as fast as the sink takes it."""

from __future__ import annotations

import argparse
import math
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from connectors.registry import ConnectorSpec
from connectors.sink import EventSink
from streams.domain.events import parse_ts
from streams.options import OptionTarget, UsageError, duration, env_option, instant_ms, number
from streams.settings import Settings
from streams.simulator import SCENARIOS, simulate


@dataclass
class SimulateConnector:
    seed: int
    start_ms: int
    duration_s: float
    scenario: str
    site: str
    speed: float  # simulated seconds per real second; 0 = unpaced
    name: str = "simulate"
    realtime: bool = False

    def events(self) -> Iterator[dict[str, object]]:
        """The simulated events, in event-time order, unpaced."""
        return simulate(self.seed, self.start_ms, self.duration_s, self.scenario, self.site)

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        origin = time.monotonic()
        for number_sent, event in enumerate(self.events()):
            if self.speed > 0:
                due = origin + (parse_ts(event["ts"]) - self.start_ms) / 1000 / self.speed
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
            elif not number_sent & 0x3FF and stop.is_set():
                return
            sink.send(event)


def add_arguments(parser: OptionTarget, default_speed: str = "0") -> None:
    env_option(parser, "--seed", env="CALLWATCH_SEED", default="1", help="random seed; same seed, same events")
    env_option(parser, "--start", env="CALLWATCH_START", help="first instant, RFC 3339 or a date (default: now)")
    env_option(parser, "--duration", env="CALLWATCH_DURATION", help="stream time to simulate, e.g. 2h (default: forever)")
    env_option(parser, "--scenario", env="CALLWATCH_SCENARIO", default="normal", help="normal or surge")
    env_option(parser, "--site", env="CALLWATCH_SITE", default="default", help="site (force / control room) name")
    env_option(parser, "--speed", env="CALLWATCH_SPEED", default=default_speed,
               help="simulated seconds per real second" + ("; 0 sends as fast as the sink takes them"
                                                           if default_speed == "0" else ""))


def _build(args: argparse.Namespace, settings: Settings) -> SimulateConnector:
    if args.scenario not in SCENARIOS:
        raise UsageError(f"--scenario must be one of {', '.join(SCENARIOS)}, not {args.scenario!r}")
    start_ms = instant_ms(args.start, "--start") if args.start else time.time_ns() // 1_000_000
    duration_s = duration(args.duration, "--duration") if args.duration else math.inf
    return SimulateConnector(number(args.seed, "--seed", int), start_ms, duration_s, args.scenario, args.site,
                             number(args.speed, "--speed", float, 0))


SPEC = ConnectorSpec("simulate", "simulated 999/101 control room", add_arguments, _build,
                     example="callwatch connect simulate --seed 7 --duration 1d --out day.jsonl")
