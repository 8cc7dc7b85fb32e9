"""The `callwatch` command (SPEC section 4). The only place that reads the environment: every option
can come from a CALLWATCH_* variable named in its help. Exit status: 0 all good, 1 some input was
rejected or late, 2 bad options or configuration (one line on stderr saying what is wrong)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from datetime import datetime, timezone
from typing import Any, Callable, NoReturn, Sequence, TextIO

from streams.domain.config import InvalidConfig
from streams.domain.events import InvalidEvent, parse_ts
from streams.domain.windows import interval_s, parse_duration_s
from streams.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad options or configuration: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line that says what is wrong (argparse would print the whole usage first).
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _option(parser: argparse.ArgumentParser, *flags: str, env: str, help: str, **kwargs: Any) -> None:
    """An option whose default comes from the environment variable `env`, named in its help."""
    default = os.environ.get(env, kwargs.pop("default", None))
    shown = f" (default: {default})" if default not in (None, "", False) else ""
    parser.add_argument(*flags, default=default, help=f"{help}{shown} [env: {env}]", **kwargs)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _duration(text: str, name: str) -> float:
    try:
        return parse_duration_s(text)
    except InvalidConfig as error:
        raise UsageError(f"{name}: {error}") from None


def _instant_ms(text: str, name: str) -> int:
    candidate = text if "T" in text else text + "T00:00:00Z"
    if len(candidate) == 19:
        candidate += "Z"
    try:
        return parse_ts(candidate)
    except InvalidEvent:
        raise UsageError(f"{name}: not an RFC 3339 time with offset: {text!r}") from None


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(getattr(args, "config", None))
    except SettingsError as error:
        raise UsageError(str(error)) from None


def _open_output(path: str | None) -> TextIO:
    if path in (None, "-"):
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None


# --- simulate ---------------------------------------------------------------------------------

def _cmd_simulate(args: argparse.Namespace) -> int:
    from streams.io.codec import encode
    from streams.simulator import SCENARIOS, simulate

    if args.scenario not in SCENARIOS:
        raise UsageError(f"--scenario must be one of {', '.join(SCENARIOS)}, not {args.scenario!r}")
    try:
        seed = int(args.seed)
    except ValueError:
        raise UsageError(f"--seed must be a whole number, not {args.seed!r}") from None
    start_ms = _instant_ms(args.start, "--start") if args.start else _midnight_utc_today_ms()
    duration_s = _duration(args.duration, "--duration")
    out = _open_output(args.out)
    try:
        for obj in simulate(seed=seed, start_ms=start_ms, duration_s=duration_s, scenario=args.scenario,
                            site=args.site):
            out.write(encode(obj) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def _midnight_utc_today_ms() -> int:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(today.timestamp() * 1000)


# --- replay -----------------------------------------------------------------------------------

def _cmd_replay(args: argparse.Namespace) -> int:
    import dataclasses

    from streams.io.event_lines import read_events, total_size
    from streams.io.progress import Progress
    from streams.replay import replay_events, report_rejection

    settings = _settings(args)
    try:
        window_s = interval_s(args.window)
    except InvalidConfig as error:
        raise UsageError(f"--window: {error}") from None
    flow_config = settings.flow
    if args.tz:
        try:
            flow_config = dataclasses.replace(flow_config, tz=args.tz)
            from streams.domain.windows import zone
            zone(args.tz)
        except InvalidConfig as error:
            raise UsageError(f"--tz: {error}") from None
    if args.from_kafka:
        raise UsageError("--from-kafka needs the distributed pipeline, which is not built yet")
    paths = args.files or ["-"]
    for path in paths:
        if path != "-" and not os.path.isfile(path):
            raise UsageError(f"no such input file: {path}")
    out = _open_output(args.report)
    progress = Progress(total_size(paths), "replay")
    try:
        summary = replay_events(read_events(paths, progress.update), flow_config, window_s,
                                out.write, report_rejection(sys.stderr))
    finally:
        progress.close()
        if out is not sys.stdout:
            out.close()
    counts = summary.counts
    sys.stderr.write(
        f"callwatch replay: {summary.lines:,} events read, {summary.rejected:,} rejected, "
        f"{counts.late:,} late, {counts.duplicates:,} duplicates, {counts.conflicts:,} conflicts, "
        f"{counts.unmatched:,} unmatched, {counts.lost:,} lost legs; {summary.rows:,} report rows\n")
    return EXIT_REJECTED if summary.rejected or counts.late else EXIT_OK


# --- run --------------------------------------------------------------------------------------

def _cmd_run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from streams.embedded.runner import EmbeddedPipeline, RunOptions
    from streams.embedded.sources import AcceleratedClock, PacedEvents
    from streams.metrics import FigureCollector
    from streams.simulator import SCENARIOS, simulate

    settings = _settings(args)
    if args.source != "simulate":
        raise UsageError(f"--source {args.source!r} is not available yet (only: simulate)")
    if args.scenario not in SCENARIOS:
        raise UsageError(f"--scenario must be one of {', '.join(SCENARIOS)}, not {args.scenario!r}")
    try:
        speed = float(args.speed)
        port = int(args.port)
        seed = int(args.seed)
    except ValueError as error:
        raise UsageError(f"bad number: {error}") from None
    if speed <= 0:
        raise UsageError(f"--speed must be positive, not {speed}")
    try:
        window_s = interval_s(args.window)
    except InvalidConfig as error:
        raise UsageError(f"--window: {error}") from None
    start_ms = _instant_ms(args.start, "--start") if args.start else int(datetime.now(timezone.utc).timestamp() * 1000)
    duration_s = _duration(args.duration, "--duration") if args.duration else 100 * 365 * 86_400.0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    registry = CollectorRegistry()
    collector = FigureCollector(settings.flow, registry=registry)
    report = _open_output(args.report) if args.report else None
    record = _open_output(args.record) if args.record else None
    source = PacedEvents("simulate", simulate(seed=seed, start_ms=start_ms, duration_s=duration_s,
                                              scenario=args.scenario, site=args.site))
    pipeline = EmbeddedPipeline(
        settings.flow, [source], AcceleratedClock(start_ms, speed), collector,
        RunOptions(interval_s=window_s, write_row=report.write if report else None,
                   record_event=record.write if record else None))
    try:
        server, thread = start_http_server(port, addr=args.host, registry=registry)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{port}: {error.strerror}") from None

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("callwatch.run").info("%s received: stopping", signal.Signals(signum).name)
        pipeline.stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    logging.getLogger("callwatch.run").info(
        "running: source=simulate scenario=%s speed=%gx; metrics at http://%s:%d/metrics",
        args.scenario, speed, args.host, port)
    try:
        totals = pipeline.run()
    finally:
        for stream in (report, record):
            if stream is not None and stream is not sys.stdout:
                stream.close()
        server.shutdown()
    logging.getLogger("callwatch.run").info(
        "stopped: %s events received, %s rejected, %s report rows",
        sum(totals.received.values()), sum(totals.rejected.values()), totals.rows)
    return EXIT_REJECTED if sum(totals.rejected.values()) else EXIT_OK


def _not_yet(what: str) -> Callable[[argparse.Namespace], int]:
    def command(_args: argparse.Namespace) -> int:
        raise UsageError(f"{what} is not built yet")
    return command


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="callwatch", formatter_class=_formatter, description=(
        "Live 999/101 call-handling figures: service level, abandonment, waits.\n\n"
        "  callwatch simulate --duration 2h > day.jsonl     realistic events of a control room\n"
        "  callwatch replay day.jsonl --window 15m          the interval report of those events\n"
        "  callwatch run                                    live pipeline, metrics on :9108\n"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    sim = commands.add_parser("simulate", help="write simulated canonical events (JSON Lines)",
                              formatter_class=_formatter, description=(
                                  "Write the events of a simulated 999/101 control room: arrivals by time of "
                                  "day, call handlers on shifts, callers who give up when kept waiting.\n\n"
                                  "  callwatch simulate --seed 7 --start 2024-03-01 --duration 1d --out day.jsonl\n"
                                  "  callwatch simulate --scenario surge --duration 3h | callwatch replay -"))
    _option(sim, "--seed", env="CALLWATCH_SEED", default="1", help="random seed; same seed, same events")
    _option(sim, "--start", env="CALLWATCH_START", help="first instant, RFC 3339 or a date (default: today 00:00 UTC)")
    _option(sim, "--duration", env="CALLWATCH_DURATION", default="2h", help="how long to simulate (e.g. 90m, 2h, 7d)")
    _option(sim, "--scenario", env="CALLWATCH_SCENARIO", default="normal",
            help="normal, or surge (a major incident: 999 calls several times normal for an hour)")
    _option(sim, "--site", env="CALLWATCH_SITE", default="default", help="site (force / control room) name")
    _option(sim, "--out", env="CALLWATCH_OUT", help="output file; - or absent for stdout")
    sim.set_defaults(handler=_cmd_simulate)

    rep = commands.add_parser("replay", help="the interval report of canonical events",
                              formatter_class=_formatter, description=(
                                  "Read canonical JSON Lines events and write the interval report (one row per "
                                  "window and site/line/queue, line totals as queue '*'). Same input, same bytes "
                                  "out, whatever the order of events within the allowed lateness.\n\n"
                                  "  callwatch replay day.jsonl --window 15m --report day-report.jsonl\n"
                                  "  cat a.jsonl b.jsonl | callwatch replay - --window 1h"))
    rep.add_argument("files", nargs="*", metavar="FILE", help="event files; - for stdin (default)")
    _option(rep, "--window", env="CALLWATCH_WINDOW", default="15m", help="interval: 1m, 5m, 15m, 30m, 1h or 1d")
    _option(rep, "--tz", env="CALLWATCH_TZ", help="time zone days start in (default: config, else Europe/London)")
    _option(rep, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
    _option(rep, "--report", env="CALLWATCH_REPORT", help="report file; - or absent for stdout")
    rep.add_argument("--from-kafka", action="store_true", help="replay a Kafka topic instead of files")
    rep.set_defaults(handler=_cmd_replay)

    run = commands.add_parser("run", help="the whole pipeline in one process, metrics for Prometheus",
                              formatter_class=_formatter, description=(
                                  "Run the embedded pipeline: a source (the simulator by default) feeding the "
                                  "domain, figures at http://127.0.0.1:9108/metrics. Stops on Ctrl-C/SIGTERM.\n\n"
                                  "  callwatch run\n"
                                  "  callwatch run --scenario surge --speed 60 --report live-report.jsonl"))
    _option(run, "--source", env="CALLWATCH_SOURCE", default="simulate", help="event source")
    _option(run, "--scenario", env="CALLWATCH_SCENARIO", default="normal", help="simulator scenario: normal or surge")
    _option(run, "--seed", env="CALLWATCH_SEED", default="1", help="simulator seed")
    _option(run, "--start", env="CALLWATCH_START", help="simulated start time (default: now)")
    _option(run, "--duration", env="CALLWATCH_DURATION", help="stop after this much stream time (default: never)")
    _option(run, "--speed", env="CALLWATCH_SPEED", default="1", help="simulated seconds per real second")
    _option(run, "--site", env="CALLWATCH_SITE", default="default", help="site name for simulated events")
    _option(run, "--window", env="CALLWATCH_WINDOW", default="15m", help="interval of the report")
    _option(run, "--host", env="CALLWATCH_METRICS_HOST", default="127.0.0.1", help="metrics listen address")
    _option(run, "--port", env="CALLWATCH_METRICS_PORT", default="9108", help="metrics port")
    _option(run, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
    _option(run, "--report", env="CALLWATCH_REPORT", help="also write interval rows to this file")
    _option(run, "--record", env="CALLWATCH_RECORD", help="also record accepted events here, for replay")
    run.set_defaults(handler=_cmd_run)

    worker = commands.add_parser("worker", help="the Faust worker of the distributed pipeline")
    worker.set_defaults(handler=_not_yet("callwatch worker (the distributed pipeline)"))
    connect = commands.add_parser("connect", help="run one connector")
    connect.add_argument("source", nargs="?", help="simulate, file, ami, queue-log, webhook, csv")
    connect.set_defaults(handler=_not_yet("callwatch connect"))
    dashboards = commands.add_parser("dashboards", help="build and push Grafana dashboards")
    dashboards.set_defaults(handler=_not_yet("callwatch dashboards"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as error:
        sys.stderr.write(f"callwatch {args.command}: error: {error}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `callwatch simulate | head` is fine: stop quietly.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
