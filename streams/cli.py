"""The `callwatch` command (SPEC section 4). The only place that reads the environment: every option
can come from a CALLWATCH_* variable named in its help. Exit status: 0 all good, 1 some input was
rejected or late, 2 bad options or configuration (one line on stderr saying what is wrong) and 130
it was interrupted: its report is then incomplete."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from datetime import datetime, timezone
from typing import Callable, Sequence, TextIO

from streams.domain.config import InvalidConfig
from streams.options import (EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, Parser,
                             UsageError, duration, env_option, formatter, instant_ms, number, secret_file, window)
from streams.settings import Settings, SettingsError, load_settings

_Parser = Parser
_option = env_option
_formatter = formatter


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
    start_ms = instant_ms(args.start, "--start") if args.start else _midnight_utc_today_ms()
    duration_s = duration(args.duration, "--duration")
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

    from streams.io.event_lines import read_event_batches, total_size
    from streams.io.progress import Progress
    from streams.replay import replay_batches, replay_events, report_rejection

    settings = _settings(args)
    window_s = window(args.window)
    flow_config = settings.flow
    if args.tz:
        try:
            flow_config = dataclasses.replace(flow_config, tz=args.tz)
            from streams.domain.windows import zone
            zone(args.tz)
        except InvalidConfig as error:
            raise UsageError(f"--tz: {error}") from None
    if args.from_kafka:
        items = _kafka_events(args, settings)
        out = _open_output(args.report)
        try:
            summary = replay_events(items, flow_config, window_s, out.write, report_rejection(sys.stderr))
        finally:
            if out is not sys.stdout:
                out.close()
    else:
        paths = args.files or ["-"]
        for path in paths:
            if path != "-" and not os.path.isfile(path):
                raise UsageError(f"no such input file: {path}")
        out = _open_output(args.report)
        progress = Progress(total_size(paths), "replay")
        try:
            batches = read_event_batches(paths, progress.update)
            summary = replay_batches(batches, flow_config, window_s, out.write, report_rejection(sys.stderr))
        except KeyboardInterrupt:
            sys.stderr.write("callwatch replay: interrupted; the report is incomplete\n")
            return EXIT_INTERRUPTED
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


# --- board ------------------------------------------------------------------------------------

BOARD_AT_ENV = "CALLWATCH_BOARD_AT"


def _cmd_board(args: argparse.Namespace) -> int:
    from streams.board import board_snapshots, jsonl, snapshot_rows, table
    from streams.io.event_lines import read_event_batches
    from streams.replay import report_rejection

    settings = _settings(args)
    texts = args.at or os.environ.get(BOARD_AT_ENV, "").replace(",", " ").split()
    if not texts:
        raise UsageError(f"give at least one --at instant (RFC 3339), or {BOARD_AT_ENV}")
    instants = [instant_ms(text, "--at") for text in texts]
    if args.format not in ("jsonl", "table"):
        raise UsageError(f"--format must be jsonl or table, not {args.format!r}")
    flow_config = settings.flow
    if args.tz:
        import dataclasses

        from streams.domain.windows import zone
        try:
            zone(args.tz)
        except InvalidConfig as error:
            raise UsageError(f"--tz: {error}") from None
        flow_config = dataclasses.replace(flow_config, tz=args.tz)
    paths = args.files or ["-"]
    for path in paths:
        if path != "-" and not os.path.isfile(path):
            raise UsageError(f"no such input file: {path}")
    out = _open_output(args.out)
    show = table if args.format == "table" else jsonl
    try:
        snapshots, summary_of = board_snapshots(read_event_batches(paths), flow_config, instants,
                                                report_rejection(sys.stderr, command="board"))
        for snapshot in snapshots:
            out.write(show(snapshot_rows(snapshot)))
    except OSError as error:  # an input that cannot be read after all (permissions, a device error)
        raise UsageError(f"cannot read {error.filename or 'the input'}: {error.strerror}") from None
    finally:
        if out is not sys.stdout:
            out.close()
    summary = summary_of()
    sys.stderr.write(
        f"callwatch board: {summary.lines:,} events read{'' if summary.read_to_end else ' (up to the last instant)'}, "
        f"{summary.rejected:,} rejected, {summary.late:,} late, {summary.duplicates:,} duplicates; "
        f"{len(set(instants))} instant{'' if len(set(instants)) == 1 else 's'}\n")
    return EXIT_REJECTED if summary.rejected or summary.late else EXIT_OK


def _kafka_events(args: argparse.Namespace, settings: Settings):  # type: ignore[no-untyped-def]
    """Events of the call-events topic between --start and --end (by event time)."""
    if args.files:
        raise UsageError("give either FILE arguments or --from-kafka, not both")
    if not args.start or not args.end:
        raise UsageError("--from-kafka needs --start and --end (RFC 3339)")
    start_ms, end_ms = instant_ms(args.start, "--start"), instant_ms(args.end, "--end")
    if end_ms <= start_ms:
        raise UsageError("--end must be after --start")
    from streams.kafka.topic_replay import read_topic_events

    return read_topic_events(settings, start_ms, end_ms, args.topic)


# --- run --------------------------------------------------------------------------------------

SOURCE_STOP_GRACE_S = 10.0  # how long a stopping connector may take to hand over what it still holds


def _cmd_run(args: argparse.Namespace) -> int:
    import threading

    from prometheus_client import CollectorRegistry

    from streams.embedded.runner import EmbeddedPipeline, RunOptions
    from streams.metrics import FigureCollector
    from streams.wallboard.server import BoardOptions, BoardServer, LatestBoard, create_app

    settings = _settings(args)
    port = number(args.port, "--port", int, 0)
    window_s = window(args.window)
    token = _board_token(args)
    # Before any connector thread starts, so its first lines are formatted too.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    registry = CollectorRegistry()
    if args.source == "simulate":
        sources, clock, stop_connector, failures = _simulated_source(args, settings)
    else:
        sources, clock, stop_connector, failures = _connector_source(args, settings, registry)
    collector = FigureCollector(settings.flow, registry=registry)
    # The page ticks waits between updates at the stream's pace.
    board = LatestBoard(settings.flow, speed=getattr(clock, "speed", 1.0))
    server = BoardServer(create_app(board, registry, BoardOptions(token=token)), args.host, port)
    try:
        server.start()
    except OSError as error:
        stop_connector()
        raise UsageError(f"cannot listen on {args.host}:{port}: {error.strerror}") from None
    # The first thing a supervisor reads: where the board is.
    sys.stderr.write(f"callwatch wallboard: http://{args.host}:{server.port}/  (figures as JSON at "
                     f"/api/v1/board, Prometheus metrics at /metrics{'; access token required' if token else ''})\n")
    sys.stderr.flush()
    report = _open_output(args.report) if args.report else None
    record = _open_output(args.record) if args.record else None
    pipeline = EmbeddedPipeline(
        settings.flow, sources, clock, collector,
        RunOptions(interval_s=window_s, write_row=report.write if report else None,
                   record_event=record.write if record else None, publish_board=board.publish))
    log = logging.getLogger("callwatch.run")
    stop_requested = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if args.source == "simulate" or stop_requested.is_set():  # a second signal insists
            log.info("%s received: stopping", signal.Signals(signum).name)
            pipeline.stopping.set()
            return
        # A connector still hands over what it held back (and logs its own accounting) when told to
        # stop: the pipeline takes all of it and ends when the connector closes its side.
        log.info("%s received: stopping the %s source, then the pipeline (a second signal stops at once)",
                 signal.Signals(signum).name, args.source)
        stop_requested.set()
        stop_connector()
        grace = threading.Timer(SOURCE_STOP_GRACE_S, pipeline.stopping.set)
        grace.daemon = True
        grace.start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("running: source=%s; wallboard at http://%s:%d/, metrics at /metrics", args.source, args.host, server.port)
    try:
        totals = pipeline.run()
    finally:
        stop_connector()
        for stream in (report, record):
            if stream is not None and stream is not sys.stdout:
                stream.close()
        server.stop()
    log.info("stopped: %s events received, %s rejected, %s report rows",
             sum(totals.received.values()), sum(totals.rejected.values()), totals.rows)
    if failures:
        from connectors.errors import ConnectorError
        failure = failures[0]
        if isinstance(failure, ConnectorError):
            raise UsageError(f"source {args.source} stopped: {failure}")
        raise failure
    return EXIT_REJECTED if sum(totals.rejected.values()) else EXIT_OK


def _board_token(args: argparse.Namespace) -> str | None:
    """The wallboard's access token: CALLWATCH_BOARD_TOKEN, or a file (never the command line, where
    every user of the machine could read it)."""
    if args.board_token_refused is not None:
        raise UsageError("there is no --board-token option: a token on the command line is visible to every "
                         "user of the machine; set CALLWATCH_BOARD_TOKEN or give --board-token-file")
    if args.board_token_file:
        return secret_file(args.board_token_file, "--board-token-file")
    return os.environ.get("CALLWATCH_BOARD_TOKEN", "").strip() or None


def _simulated_source(args: argparse.Namespace,
                      settings: Settings) -> tuple[list, object, Callable[[], None], list[BaseException]]:
    """The simulator's events paced by the pipeline's accelerated clock (no thread of their own)."""
    from connectors.simulate_source import SPEC as SIMULATE
    from streams.embedded.sources import AcceleratedClock, PacedEvents

    speed = number(args.speed, "--speed", float)
    if speed <= 0:  # `connect simulate` takes 0 (as fast as the sink takes them); a clock cannot
        raise UsageError(f"--speed must be positive, not {speed}")
    simulation = SIMULATE.build(args, settings)  # the options read as `callwatch connect simulate` reads them
    return [PacedEvents("simulate", simulation.events())], AcceleratedClock(simulation.start_ms, speed), lambda: None, []


def _connector_source(args: argparse.Namespace, settings: Settings,
                      registry: object) -> tuple[list, object, Callable[[], None], list[BaseException]]:
    """A connector in its own thread, writing through a QueueSink into the pipeline."""
    import threading

    from connectors.registry import available
    from connectors.sink import QueueSink
    from streams.embedded.sources import QueueSource, StreamClock, WallClock

    specs = available()
    if args.source not in specs:
        raise UsageError(f"--source must be one of {', '.join(['simulate', *specs])}, not {args.source!r}")
    connector = specs[args.source].build(args, settings)
    register = getattr(connector, "register_metrics", None)
    if register is not None:  # a connector's own figures (AMI: what decided unanswered exits)
        register(registry)
    source = QueueSource(args.source)
    sink = QueueSink(source.items, args.source)
    stop = threading.Event()
    failures: list[BaseException] = []  # an error that ended the connector thread

    def read() -> None:
        try:
            connector.run(sink, stop)
        except Exception as error:  # noqa: BLE001 - a dying connector must still end its source
            failures.append(error)
            logging.getLogger("callwatch.run").exception("connector %s failed", args.source)
        finally:
            sink.close()

    threading.Thread(target=read, name=f"connector-{args.source}", daemon=True).start()
    return [source], (WallClock() if connector.realtime else StreamClock(source)), stop.set, failures


# --- connect ----------------------------------------------------------------------------------

def _cmd_connect(args: argparse.Namespace) -> int:
    import threading

    from connectors.errors import ConnectorError
    from connectors.sink import JsonLinesSink

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the sink reports the broker's state itself
    connector = args.connector_spec.build(args, settings)
    out = dead = None
    if args.out:
        out = _open_output(args.out)
        dead = _open_output(args.dead_letters) if args.dead_letters else sys.stderr
        sink = JsonLinesSink(out, dead, connector.name)
    else:
        from connectors.kafka_sink import open_kafka_sink

        sink = open_kafka_sink(settings, connector.name)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        # A graceful stop waits for the broker to take what is buffered; a second signal insists.
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        connector.run(sink, stop)
    except ConnectorError as error:
        raise UsageError(str(error)) from None
    finally:
        sink.close()
        for stream in (out, dead):
            if stream is not None and stream not in (sys.stdout, sys.stderr):
                stream.close()
    counts = sink.counts
    sys.stderr.write(f"callwatch connect {connector.name}: {counts.sent:,} events sent, "
                     f"{counts.dead_lettered:,} dead-lettered\n")
    return EXIT_REJECTED if counts.dead_lettered else EXIT_OK


def _register(commands: argparse._SubParsersAction, module_name: str) -> None:  # type: ignore[type-arg]
    """Subcommands that live with their own package register themselves: `module.register(commands)`
    adds the parser and sets `handler` (taking the parsed args, returning an exit status)."""
    import importlib

    importlib.import_module(module_name).register(commands)


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
                                  "Exit status: 0, 1 if a line was rejected or an event late, 2 bad options and "
                                  "130 on Ctrl-C (the report is then incomplete).\n\n"
                                  "  callwatch replay day.jsonl --window 15m --report day-report.jsonl\n"
                                  "  cat a.jsonl b.jsonl | callwatch replay - --window 1h"))
    rep.add_argument("files", nargs="*", metavar="FILE", help="event files; - for stdin (default)")
    _option(rep, "--window", env="CALLWATCH_WINDOW", default="15m",
            help="interval of the report: 1m, 5m, 15m, 30m, 1h or 1d (a duration; 900 = 15m)")
    _option(rep, "--tz", env="CALLWATCH_TZ", help="time zone days start in (default: config, else Europe/London)")
    _option(rep, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
    _option(rep, "--report", env="CALLWATCH_REPORT", help="report file; - or absent for stdout")
    rep.add_argument("--from-kafka", action="store_true",
                     help="replay the call-events topic (events whose time is in [--start, --end)) instead of files")
    _option(rep, "--start", env="CALLWATCH_REPLAY_START", help="with --from-kafka: first event time, RFC 3339")
    _option(rep, "--end", env="CALLWATCH_REPLAY_END", help="with --from-kafka: end of the time range (exclusive)")
    _option(rep, "--topic", env="CALLWATCH_EVENTS_TOPIC",
            help="with --from-kafka: topic to read (default: <topic_prefix>events)")
    rep.set_defaults(handler=_cmd_replay)

    board = commands.add_parser("board", help="what the live board showed at given instants of recorded events",
                                formatter_class=_formatter, description=(
                                    "Replay canonical JSON Lines events and write what the live wallboard showed "
                                    "at each --at instant T, as if every event up to T had arrived on time and none "
                                    "after: per site, line and queue (line totals as queue '*'), the rolling windows "
                                    "(outcomes in T - W < time <= T), today (from local midnight to T) and now "
                                    "(calls waiting, longest wait, data age). An event exactly at T is in. Same "
                                    "domain code as the live board (docs/board.md).\n\n"
                                    "Exit status: 0, 1 if a line was rejected or an event late, 2 bad options.\n\n"
                                    "  callwatch board incident.jsonl --at 2024-03-01T09:15:00Z --at 2024-03-01T09:30:00Z\n"
                                    "  callwatch board day.jsonl --at 2024-03-01T12:00:00+00:00 --format table\n"
                                    "  cat a.jsonl | callwatch board - --at 2024-03-01T09:00:00.250Z --out board.jsonl"))
    board.add_argument("files", nargs="*", metavar="FILE", help="event files; - for stdin (default)")
    board.add_argument("--at", action="append", metavar="ISO",
                       help=f"an instant, RFC 3339 with offset; repeat for more (shown in time order) "
                            f"[env: {BOARD_AT_ENV}, instants separated by commas or spaces]")
    _option(board, "--format", env="CALLWATCH_BOARD_FORMAT", default="jsonl",
            help="jsonl (one object per instant, group and window) or table (aligned, for people)")
    _option(board, "--out", env="CALLWATCH_OUT", help="output file; - or absent for stdout")
    _option(board, "--tz", env="CALLWATCH_TZ", help="time zone 'today' starts in (default: config, else Europe/London)")
    _option(board, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
    board.set_defaults(handler=_cmd_board)

    run = commands.add_parser("run", help="the whole pipeline in one process: the wallboard, metrics for Prometheus",
                              formatter_class=_formatter, description=(
                                  "Run the embedded pipeline: a source (the simulator by default) feeding the "
                                  "domain. One server at http://127.0.0.1:9108/ has the wallboard page (kiosk "
                                  "mode: /?kiosk=1), its figures as JSON (/api/v1/board) and the Prometheus "
                                  "metrics (/metrics). Stops on Ctrl-C/SIGTERM.\n\n"
                                  "  callwatch run\n"
                                  "  callwatch run --scenario surge --speed 60 --report live-report.jsonl"))
    _option(run, "--source", env="CALLWATCH_SOURCE", default="simulate",
            help="event source: simulate, or a connector (its options below)")
    _option(run, "--window", env="CALLWATCH_WINDOW", default="15m",
            help="interval of the report: 1m, 5m, 15m, 30m, 1h or 1d (a duration; 900 = 15m)")
    _option(run, "--host", env="CALLWATCH_METRICS_HOST", default="127.0.0.1",
            help="listen address of the wallboard and /metrics (another address than 127.0.0.1 lets other "
                 "machines in: consider an access token)")
    _option(run, "--port", env="CALLWATCH_METRICS_PORT", default="9108", help="port of the wallboard and /metrics")
    _option(run, "--board-token-file", env="CALLWATCH_BOARD_TOKEN_FILE",
            help="file holding an access token the wallboard then requires (open it once as /?token=...); "
                 "or set CALLWATCH_BOARD_TOKEN. /metrics stays open, as Prometheus scrapes it")
    # Not an option: here so that `--board-token VALUE` is refused with a reason.
    run.add_argument("--board-token", dest="board_token_refused", nargs="?", const="", default=None,
                     help=argparse.SUPPRESS)
    _option(run, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
    _option(run, "--report", env="CALLWATCH_REPORT", help="also write interval rows to this file")
    _option(run, "--record", env="CALLWATCH_RECORD", help="also record accepted events here, for replay")
    from connectors.registry import available
    specs = available()
    simulation = run.add_argument_group("simulator (--source simulate)")
    from connectors.simulate_source import add_arguments as add_simulation_arguments
    add_simulation_arguments(simulation, default_speed="1")  # live by default: real time
    for name, spec in specs.items():
        if name != "simulate":
            spec.add_arguments(run.add_argument_group(f"{spec.help} (--source {name})"))
    run.set_defaults(handler=_cmd_run)

    _register(commands, "streams.worker.command")
    connect = commands.add_parser("connect", help="run one connector", formatter_class=_formatter,
                                  description=("Read one telephony source and write canonical events: to "
                                               "Kafka, or with --out to a JSON Lines file for replay.\n\n" +
                                               "\n".join(f"  {s.example}" for s in specs.values() if s.example)))
    sources = connect.add_subparsers(dest="connector", metavar="SOURCE", parser_class=_Parser)
    sources.required = True
    for name, spec in specs.items():
        one = sources.add_parser(name, help=spec.help, formatter_class=_formatter,
                                 description=f"{spec.help}.\n\n  {spec.example}" if spec.example else spec.help)
        if spec.path_help:
            one.add_argument("path", nargs="?", metavar="PATH", help=spec.path_help)
        spec.add_arguments(one)
        _option(one, "--out", env="CALLWATCH_OUT", help="JSON Lines output file (- for stdout) instead of Kafka")
        _option(one, "--dead-letters", env="CALLWATCH_DEAD_LETTERS",
                help="where rejected records go (JSON Lines) when writing to --out; stderr by default")
        _option(one, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
        one.set_defaults(handler=_cmd_connect, connector_spec=spec)
    _register(commands, "dashboards.command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (UsageError, SettingsError) as error:  # a setting is named in its message, as an option is
        sys.stderr.write(f"callwatch {args.command}: error: {error}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        # `callwatch simulate | head` is fine: stop quietly.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
