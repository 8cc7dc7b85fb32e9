"""`callwatch worker`: the Faust worker of the distributed pipeline, until Ctrl-C or SIGTERM
(docs/worker.md)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import threading
from typing import Any

from streams.options import EXIT_OK, EXIT_USAGE, UsageError, duration, env_option, formatter, number, window
from streams.settings import load_settings

EXIT_FAILED = 1
STOP_GRACE_S = 5.0  # after Ctrl-C or SIGTERM: then the process ends anyway


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="the Faust worker of the distributed pipeline", formatter_class=formatter,
        description=("Read canonical events from Kafka, track call legs and compute the figures with the same "
                     "domain code as `callwatch run`; interval rows go to the figures topic, the live board to "
                     "the wallboard at http://127.0.0.1:9109/ and to /metrics there. Run several with the same --app-id to share the work.\n\n"
                     "  deploy/kafka/start.sh && deploy/kafka/topics.sh\n"
                     "  callwatch worker --window 15m\n"
                     "  callwatch connect simulate --speed 60"))
    for flag, env, default, text in (
            ("--window", "CALLWATCH_WINDOW", "15m", "interval of the report"),
            ("--clock", "CALLWATCH_CLOCK", "stream", "stream: time moves with the events (history, replays); wall: "
             "with the wall clock too, so windows close and figures decay while no event arrives (live)"),
            ("--metrics-host", "CALLWATCH_METRICS_HOST", "127.0.0.1", "listen address of the wallboard and /metrics"),
            ("--metrics-port", "CALLWATCH_WORKER_METRICS_PORT", "9109", "port of the wallboard and /metrics"),
            ("--workdir", "CALLWATCH_WORKDIR", "var/worker", "Faust data directory"),
            ("--app-id", "CALLWATCH_WORKER_APP_ID", None,
             "Faust app id, consumer-group and internal topics' prefix (default: <topic prefix>worker)"),
            ("--checkpoint-every", "CALLWATCH_CHECKPOINT_EVERY", "2s", "how often each partition's state is saved"),
            ("--publish-every", "CALLWATCH_PUBLISH_EVERY", "1s",
             "how often the live board goes to /metrics and the figures topic"),
            ("--session-timeout", "CALLWATCH_WORKER_SESSION_TIMEOUT", "10s",
             "how soon the other workers take over the partitions of one that died"),
            ("--log-level", "CALLWATCH_LOG_LEVEL", "warning", "debug, info, warning or error"),
            ("--config", "CALLWATCH_CONFIG", None, "YAML or TOML settings file")):
        env_option(worker, flag, env=env, default=default, help=text)
    worker.set_defaults(handler=run_worker)


def _options(args: argparse.Namespace, topic_prefix: str) -> Any:
    from .ingest import WorkerOptions

    every = {name: duration(getattr(args, name), f"--{name.replace('_', '-')}")
             for name in ("checkpoint_every", "publish_every", "session_timeout")}
    if args.clock not in ("stream", "wall"):
        raise UsageError(f"--clock must be stream or wall, not {args.clock!r}")
    if not 0.05 <= every["publish_every"] <= 60:
        raise UsageError(f"--publish-every must be between 50ms and 60s, not {args.publish_every!r}")
    if not 6 <= every["session_timeout"] <= 300:
        raise UsageError(f"--session-timeout must be between 6s and 300s, not {args.session_timeout!r}")
    if args.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise UsageError(f"--log-level must be debug, info, warning or error, not {args.log_level!r}")
    return WorkerOptions(
        app_id=args.app_id or f"{topic_prefix}worker", workdir=args.workdir, publish_every_s=every["publish_every"],
        metrics_host=args.metrics_host, metrics_port=number(args.metrics_port, "--metrics-port", int, 1),
        window_s=window(args.window), wall_clock=args.clock == "wall",
        checkpoint_every_s=every["checkpoint_every"], session_timeout_s=every["session_timeout"])


def run_worker(args: argparse.Namespace) -> int:
    import socket

    from faust import Worker

    from .app import create_app
    from .health import OncePerMinute
    from .kafka import discover

    settings = load_settings(args.config)  # a SettingsError is a usage error (streams/cli.py)
    options = _options(args, settings.kafka.topic_prefix)
    address = f"{options.metrics_host}:{options.metrics_port}"
    with socket.socket() as probe:  # a busy port is a usage error now, not a crash of Faust's web server later
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((options.metrics_host, options.metrics_port))
        except OSError as error:
            raise UsageError(f"cannot listen on {address}: {error.strerror}") from None
    topology = asyncio.run(discover(settings.kafka, options.app_id))
    app, ingest = create_app(settings, options, topology)
    log = logging.getLogger("callwatch.worker")
    sys.stderr.write(f"callwatch worker: {options.app_id} on {topology.events} ({topology.partitions} partitions); "
                     f"wallboard at http://{address}/, metrics at http://{address}/metrics\n")

    class StoppingWorker(Worker):
        """Stops within STOP_GRACE_S whatever the broker does (without a last checkpoint, nothing is lost)."""

        def _schedule_shutdown(self, signal: Any) -> None:
            if not self._signal_stop_time:
                timer = threading.Timer(STOP_GRACE_S, self._exit_now)
                timer.daemon = True
                timer.start()
            super()._schedule_shutdown(signal)

        def _exit_now(self) -> None:
            log.warning("not stopped %.0f s after the signal (is the broker gone?): ending now; the next start "
                        "reads again from the last checkpoint", STOP_GRACE_S)
            logging.shutdown()
            os._exit(EXIT_OK)

        def on_setup_root_logger(self, logger: Any, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            for handler in logger.handlers:
                handler.addFilter(OncePerMinute())

    worker = StoppingWorker(app, loglevel=args.log_level.lower(), quiet=True, redirect_stdouts=False)
    worker.spinner = None  # it turned the root logger to DEBUG to spin on every record, built for nothing
    _tune_memory()
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else EXIT_FAILED
    else:
        code = EXIT_OK
    if ingest.fatal is not None:
        sys.stderr.write(f"callwatch worker: error: {ingest.fatal}: the state saved by app id "
                         f"{options.app_id} cannot be used; start with another --app-id\n")
        return EXIT_USAGE
    log.warning("stopped: %d dead-lettered, %d rows, %d checkpoints", ingest.dead_lettered, ingest.rows,
                ingest.checkpoints)
    return code


def _tune_memory() -> None:
    """Cyclic garbage collection at the default thresholds took 40 % of the worker's time (hundreds of
    thousands of long-lived objects): 26,000 events/s against 45,000 with these. glibc: big blocks in
    mappings of their own, returned when freed, and a heap that shrinks (resident memory grew from 257
    MiB at 1 M events to 350 at 5 M without). Other C libraries: nothing to do."""
    import ctypes
    import ctypes.util

    gc.collect()
    gc.set_threshold(100_000, 50, 100)
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return
    for parameter in (-3, -1):  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
        mallopt(parameter, 128 * 1024)
