"""`callwatch worker`: runs the Faust worker of the distributed pipeline against Kafka until Ctrl-C or
SIGTERM. Several workers with the same --app-id share the partitions; a restarted one carries on
from the checkpoints and changelogs."""

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
from streams.settings import SettingsError, load_settings

EXIT_FAILED = 1


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="the Faust worker of the distributed pipeline", formatter_class=formatter,
        description=("Read canonical events from Kafka, track call legs and compute the figures with the same "
                     "domain code as `callwatch run`; interval rows go to the figures topic, the live board to "
                     "the wallboard at http://127.0.0.1:9109/ and to /metrics there. Run several with the same --app-id to share the work.\n\n"
                     "  deploy/kafka/start.sh && deploy/kafka/topics.sh\n"
                     "  callwatch worker --window 15m\n"
                     "  callwatch connect simulate --speed 60"))
    env_option(worker, "--window", env="CALLWATCH_WINDOW", default="15m", help="interval of the report")
    env_option(worker, "--clock", env="CALLWATCH_CLOCK", default="stream",
               help="stream: time moves with the events (history, replays); wall: with the wall clock too, so "
                    "windows close and figures decay while no event arrives (live)")
    env_option(worker, "--metrics-host", env="CALLWATCH_METRICS_HOST", default="127.0.0.1",
               help="metrics listen address")
    env_option(worker, "--metrics-port", env="CALLWATCH_WORKER_METRICS_PORT", default="9109", help="metrics port")
    env_option(worker, "--workdir", env="CALLWATCH_WORKDIR", default="var/worker", help="Faust data directory")
    env_option(worker, "--app-id", env="CALLWATCH_WORKER_APP_ID",
               help="Faust app id, consumer-group and changelog prefix (default: <topic prefix>worker)")
    env_option(worker, "--checkpoint-every", env="CALLWATCH_CHECKPOINT_EVERY", default="2s",
               help="how often each partition's state is checkpointed")
    env_option(worker, "--publish-every", env="CALLWATCH_PUBLISH_EVERY", default="1s",
               help="how often live figures are published to /metrics and the figures topic")
    env_option(worker, "--session-timeout", env="CALLWATCH_WORKER_SESSION_TIMEOUT", default="10s",
               help="how soon the other workers take over the partitions of one that died")
    env_option(worker, "--log-level", env="CALLWATCH_LOG_LEVEL", default="warning",
               help="debug, info, warning or error")
    env_option(worker, "--config", env="CALLWATCH_CONFIG", help="YAML or TOML settings file")
    worker.set_defaults(handler=run_worker)


def _options(args: argparse.Namespace) -> Any:
    from .app import WorkerOptions
    from .ingest import IngestOptions

    window_s = window(args.window)
    if args.clock not in ("stream", "wall"):
        raise UsageError(f"--clock must be stream or wall, not {args.clock!r}")
    durations = {name: duration(getattr(args, name), f"--{name.replace('_', '-')}")
                 for name in ("checkpoint_every", "publish_every", "session_timeout")}
    if not 0.05 <= durations["publish_every"] <= 60:
        raise UsageError(f"--publish-every must be between 50ms and 60s, not {args.publish_every!r}")
    session_s = durations["session_timeout"]
    if not 6 <= session_s <= 300:
        raise UsageError(f"--session-timeout must be between 6s and 300s, not {args.session_timeout!r}")
    if args.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise UsageError(f"--log-level must be debug, info, warning or error, not {args.log_level!r}")
    return WorkerOptions(app_id=args.app_id or "", workdir=args.workdir, session_timeout_s=session_s,
                         publish_every_s=durations["publish_every"], metrics_host=args.metrics_host,
                         metrics_port=number(args.metrics_port, "--metrics-port", int, 1),
                         ingest=IngestOptions(window_s=window_s, wall_clock=args.clock == "wall",
                                              checkpoint_every_s=durations["checkpoint_every"],
                                              session_timeout_s=session_s))


STOP_GRACE_S = 5.0  # after Ctrl-C or SIGTERM: then the process ends anyway (nothing is lost, see below)


def run_worker(args: argparse.Namespace) -> int:
    import socket

    from faust import Worker

    from .app import create_app
    from .health import quiet_repeats
    from .kafka import discover

    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        raise UsageError(str(error)) from None
    options = _options(args)
    with socket.socket() as probe:  # a busy port is a usage error now, not a crash of Faust's web server later
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((options.metrics_host, options.metrics_port))
        except OSError as error:
            raise UsageError(f"cannot listen on {options.metrics_host}:{options.metrics_port}: "
                             f"{error.strerror}") from None
    topology = asyncio.run(discover(settings.kafka, options.resolved_app_id(settings)))
    worker_app = create_app(settings, options, topology)
    log = logging.getLogger("callwatch.worker")
    sys.stderr.write(f"callwatch worker: {options.resolved_app_id(settings)} on {topology.events} "
                     f"({topology.partitions} partitions); metrics at "
                     f"http://{options.metrics_host}:{options.metrics_port}/metrics\n")

    class StoppingWorker(Worker):  # type: ignore[misc]
        """Stops within STOP_GRACE_S whatever the broker does: a worker that cannot flush or commit
        (broker gone) would otherwise wait for it. Ending without a last checkpoint loses nothing:
        the next owner reads again from the previous one."""

        def _schedule_shutdown(self, signal: Any) -> None:
            if not self._signal_stop_time:
                timer = threading.Timer(STOP_GRACE_S, _exit_now, args=(log,))
                timer.daemon = True
                timer.start()
            super()._schedule_shutdown(signal)

        def on_setup_root_logger(self, logger: Any, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            quiet_repeats(logger)

    worker = StoppingWorker(worker_app.app, loglevel=args.log_level.lower(), quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner turns the root logger down to DEBUG so that it can spin on every log
    # record: every debug line of aiokafka and Faust was then built and handed to it.
    worker.spinner = None
    _collect_rarely()
    _release_freed_memory()
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else EXIT_FAILED
    else:
        code = EXIT_OK
    ingest = worker_app.ingest
    if ingest.fatal is not None:
        sys.stderr.write(f"callwatch worker: error: {ingest.fatal}: the state saved by app id "
                         f"{options.resolved_app_id(settings)} cannot be used; start with another --app-id\n")
        return EXIT_USAGE
    log.warning("stopped: %d partitions held, %d dead-lettered, %d rows, %d checkpoints", len(ingest.parts),
                ingest.dead_lettered, ingest.rows, ingest.checkpoints)
    return code


def _exit_now(log: logging.Logger) -> None:
    log.warning("not stopped %.0f s after the signal (is the broker gone?): ending now; the next start "
                "reads again from the last checkpoint", STOP_GRACE_S)
    logging.shutdown()
    os._exit(EXIT_OK)


def _collect_rarely() -> None:
    """The worker holds hundreds of thousands of long-lived objects (calls remembered, ordering
    buffers, Faust and aiokafka) and each event allocates a few short-lived ones that reference
    counting frees. With the cyclic collector's default thresholds (a pass every 700 allocations,
    and passes over ever more of the heap as it grows) collection took about 40 % of the worker's
    time: 26,000 events/s against 45,000 with the thresholds below (docs/worker.md). Collection
    still runs, so the cycles asyncio and Faust make now and then are still freed."""
    gc.collect()
    gc.set_threshold(100_000, 50, 100)


M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
RELEASE_ABOVE_BYTES = 128 * 1024


def _release_freed_memory() -> None:
    """glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so after the
    first big fetch every fetched batch comes from the heap, and the heap, interleaved with
    long-lived state, only grows: the worker's resident memory went from 257 MiB at 1 M events to
    350 MiB at 5 M. Fixed thresholds keep large blocks in their own mappings, returned when freed,
    and let the heap shrink (docs/worker.md). Other C libraries: nothing to do."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, RELEASE_ABOVE_BYTES)
        mallopt(M_TRIM_THRESHOLD, RELEASE_ABOVE_BYTES)
