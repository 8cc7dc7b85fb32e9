"""`callwatch connect ami`: a TCP client of the Asterisk Manager Interface. It logs in, keeps the
connection alive with Ping, reconnects with exponential backoff and jitter, and resumes without
sending an event twice (recent event ids are remembered, in a checkpoint file if given). The
mapping itself lives in the pure `ami_parser`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from connectors.ami.ami_framing import AmiFramer, AmiMessage, InvalidFrame
from connectors.ami.ami_mapping import INFERRED, AmiMapping, ParsedItem
from connectors.ami.ami_parser import AmiParser
from connectors.backoff import Backoff
from connectors.checkpoints import write_checkpoint
from connectors.errors import ConfigurationError, ConnectorError, SourceUnavailable
from connectors.privacy import Pseudonymiser, pseudonymiser, redact_numbers
from connectors.queue_lines import parse_queue_lines
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from streams.metrics import AMI_UNANSWERED_EXITS
from streams.options import OptionTarget, UsageError, duration, env_option, number, secret_file
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.ami")

CHECKPOINT_VERSION: Final = 1
# A crash loses at most this much of the checkpoint: those events may be sent again after a
# restart, and the pipeline drops them as duplicates.
CHECKPOINT_EVERY_S: Final = 5.0
READ_TIMEOUT_S: Final = 0.2      # how often the loop looks at `stop`, timers and decision windows
RESPONSE_TIMEOUT_S: Final = 10.0  # greeting and login answer
SECRET_ENV: Final = "CALLWATCH_AMI_SECRET"


class LoginRejected(ConfigurationError):
    """Asterisk refused the username or secret: retrying cannot help."""


class _Secret:
    """A secret that never shows itself in a repr, a log line or an argparse dump."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>" if self.value else "<no secret>"


@dataclass(frozen=True)
class AmiEndpoint:
    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    events: str = "call,agent,dialplan"


class SentIds:
    """The most recent event ids sent, in order, bounded; saved to a checkpoint file (atomically)
    so that a restart which sees the same AMI frames again does not send their events twice."""

    def __init__(self, path: Path | None, limit: int = 20_000) -> None:
        self.path = path
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._dirty = False
        self._saved_at = 0.0
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
                raise ValueError("not a callwatch AMI checkpoint")
            ids = data.get("sent")
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise ValueError("its 'sent' is not a list of event ids")
        except (OSError, ValueError) as error:
            # Starting without it risks duplicates (which the pipeline drops), not losses.
            log.warning("checkpoint %s unusable (%s): starting without it", path, error)
            return
        for event_id in ids[-self.limit:]:
            self._ids[event_id] = None

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        self._dirty = True

    def save(self, now_s: float, every_s: float = CHECKPOINT_EVERY_S) -> None:
        if self.path is None or not self._dirty or now_s - self._saved_at < every_s:
            return
        try:
            write_checkpoint(self.path, {"version": CHECKPOINT_VERSION, "sent": list(self._ids)})
        except ConfigurationError as error:  # the next save tries again; meanwhile ids stay in memory
            log.warning("%s", error)
            return
        self._dirty = False
        self._saved_at = now_s


@dataclass
class AmiStats:
    connections: int = 0
    reconnects: int = 0
    sent: int = 0
    resent_skipped: int = 0  # events already sent before a reconnect or restart
    dead_lettered: int = 0


@dataclass
class AmiConnector:
    endpoint: AmiEndpoint
    mapping: AmiMapping
    pseudonymiser: Pseudonymiser
    checkpoint: Path | None = None
    ping_interval_s: float = 20.0
    backoff: Backoff = field(default_factory=Backoff)
    connect_timeout_s: float = 5.0
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    name: str = "ami"
    realtime: bool = True
    stats: AmiStats = field(default_factory=AmiStats)
    # Readiness: notified after every batch of events and every read that found nothing waiting;
    # `quiet_reads` counts the latter (all that had arrived was handled).
    progress: threading.Condition = field(default_factory=threading.Condition, repr=False)
    quiet_reads: int = 0
    _unflushed: bool = field(default=False, repr=False)
    parser: AmiParser | None = field(default=None, repr=False)  # of the current run, for its counts

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        parser = self.parser = AmiParser(self.mapping, self.pseudonymiser)
        sent = SentIds(self.checkpoint)
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        attempt = 0
        try:
            while not stop.is_set():
                started = self.clock()
                delay = 0.0
                try:
                    self._session(parser, sent, sink, stop)
                except LoginRejected:
                    raise
                except (SourceUnavailable, OSError) as error:
                    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                    if stop.is_set():
                        break
                    if self.clock() - started >= 10 * self.backoff.initial_s:
                        attempt = 0  # it was up for a while: start the backoff again from the bottom
                    delay = self.backoff.delay_s(attempt, self.rng)
                    attempt += 1
                    self.stats.reconnects += 1
                    log.warning("AMI %s: %s; reconnecting in %.1f s", where, redact_numbers(reason), delay)
                finally:
                    dropped = parser.framer.reset()
                    if dropped:
                        log.info("AMI %s: %d lines of an unfinished frame dropped with the connection", where, dropped)
                    self._emit(parser.tick(self._now_ms()), sink, sent, where)
                    sent.save(self.clock(), every_s=0)
                if stop.wait(delay):
                    break
        finally:
            held = parser.overlap.held()
            undecided = parser.mapper.drop_undecided()
            if self._unflushed:
                sink.flush()
                self._unflushed = False
            sent.save(self.clock(), every_s=0)
            counts, overlap = parser.mapper.counts, parser.overlap.counts
            log.info("AMI %s: %d connections, %d event frames (%d ignored, %d repeated by a console, %d replayed "
                     "after a reconnection, %d held then new, %d held at the end), %d events sent, %d already sent "
                     "before, %d dead-lettered, %d console lines ignored, %d exits undecided",
                     where, self.stats.connections, counts.event_frames, counts.ignored, overlap.console_repeats,
                     overlap.replayed, overlap.held_then_new, held, self.stats.sent, self.stats.resent_skipped,
                     self.stats.dead_lettered, parser.framer.counts.noise_lines, undecided)
            if counts.decided:
                log.info("AMI %s: unanswered exits decided by: %s", where,
                         "; ".join(f"{key} {value}" for key, value in sorted(counts.decided.items())))

    def wait_quiet(self, after: int, timeout_s: float) -> bool:
        """Until more than `after` reads have found nothing waiting (everything sent so far handled)."""
        with self.progress:
            return self.progress.wait_for(lambda: self.quiet_reads > after, timeout_s)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """`callwatch run` shows what decided each unanswered exit, inferences apart."""
        registry.register(_DecisionCollector(self))

    # -- one connection ----------------------------------------------------------------------

    def _session(self, parser: AmiParser, sent: SentIds, sink: EventSink, stop: threading.Event) -> None:
        endpoint = self.endpoint
        where = f"{endpoint.host}:{endpoint.port}"
        try:
            connection = socket.create_connection((endpoint.host, endpoint.port), timeout=self.connect_timeout_s)
        except OSError as error:
            raise SourceUnavailable(f"cannot connect: {error.strerror or error}") from None
        with connection:
            connection.settimeout(READ_TIMEOUT_S)
            greeting, rest = self._greeting(connection, stop)
            if not greeting.startswith("Asterisk Call Manager"):
                raise SourceUnavailable(f"not an Asterisk Manager Interface (it said {redact_numbers(greeting[:60])!r})")
            self.stats.connections += 1
            log.info("AMI %s: connected (%s); logging in as %r", where, redact_numbers(greeting[:80]),
                     endpoint.username)
            pending = self._login(connection, parser.framer, rest, stop)
            log.info("AMI %s: logged in; receiving events", where)
            # From here on the frames may repeat what earlier connections delivered (a replay).
            self._emit(parser.new_connection(), sink, sent, where)
            self._emit(parser.map(pending, self._now_ms()), sink, sent, where)
            self._receive(connection, parser, sent, sink, stop, where)

    def _greeting(self, connection: socket.socket, stop: threading.Event) -> tuple[str, bytes]:
        buffer = b""
        deadline = self.clock() + RESPONSE_TIMEOUT_S
        while b"\n" not in buffer:
            if stop.is_set():
                raise SourceUnavailable("stopped")
            if self.clock() > deadline or len(buffer) > 1024:
                raise SourceUnavailable("no AMI greeting")
            try:
                data = connection.recv(1024)
            except TimeoutError:
                continue
            if not data:
                raise SourceUnavailable("connection closed before the greeting")
            buffer += data
        line, _, rest = buffer.partition(b"\n")
        return line.decode("utf-8", "replace").strip(), rest

    def _login(self, connection: socket.socket, framer: AmiFramer, rest: bytes,
               stop: threading.Event) -> list[AmiMessage | InvalidFrame]:
        endpoint = self.endpoint
        action_id = f"callwatch-login-{self.stats.connections}"
        self._send(connection, [("Action", "Login"), ("ActionID", action_id), ("Username", endpoint.username),
                                ("Secret", endpoint.secret), ("Events", endpoint.events)])
        held: list[AmiMessage | InvalidFrame] = []
        answered = False
        data = rest
        deadline = self.clock() + RESPONSE_TIMEOUT_S
        while True:
            for message in framer.feed(data):
                if (not answered and isinstance(message, AmiMessage) and message.is_response
                        and message.get("ActionID") in ("", action_id)):
                    if message.get("Response").lower() != "success":
                        reason = message.get("Message") or message.get("Response")
                        raise LoginRejected(f"AMI login as {endpoint.username!r} refused by "
                                            f"{endpoint.host}:{endpoint.port}: {redact_numbers(reason)}")
                    answered = True
                else:
                    held.append(message)  # events that came in the same read are kept, in order
            if answered:
                return held
            if stop.is_set():
                raise SourceUnavailable("stopped")
            if self.clock() > deadline:
                raise SourceUnavailable("no answer to Login")
            try:
                data = connection.recv(65536)
            except TimeoutError:
                data = b""
                continue
            if not data:
                raise SourceUnavailable("connection closed during login")

    def _receive(self, connection: socket.socket, parser: AmiParser, sent: SentIds, sink: EventSink,
                 stop: threading.Event, where: str) -> None:
        last_heard = last_ping = last_flush = self.clock()
        pings = 0
        while not stop.is_set():
            try:
                data: bytes | None = connection.recv(65536)
            except TimeoutError:
                data = None
                with self.progress:
                    self.quiet_reads += 1
                    self.progress.notify_all()
            now = self.clock()
            if data == b"":
                raise SourceUnavailable("connection closed by Asterisk")
            if data:
                last_heard = now
                self._emit(parser.feed(data, self._now_ms()), sink, sent, where)
            self._emit(parser.tick(self._now_ms()), sink, sent, where)
            if self._unflushed and (data is None or now - last_flush >= 0.5):
                # A live source: what arrived is passed on when the stream pauses, or every half second.
                sink.flush()
                self._unflushed = False
                last_flush = now
            sent.save(now)
            if now - last_ping >= self.ping_interval_s:
                pings += 1
                self._send(connection, [("Action", "Ping"), ("ActionID", f"callwatch-ping-{pings}")])
                last_ping = now
            if now - last_heard > 2 * self.ping_interval_s + 1:
                raise SourceUnavailable(f"nothing heard for {now - last_heard:.0f} s, not even an answer to Ping")
        try:
            self._send(connection, [("Action", "Logoff"), ("ActionID", "callwatch-logoff")])
        except OSError:
            pass  # leaving anyway

    # -- helpers -------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _emit(self, items: list[ParsedItem], sink: EventSink, sent: SentIds, where: str) -> None:
        for item in items:
            if isinstance(item, InvalidFrame):
                self.stats.dead_lettered += 1
                log.debug("AMI %s: %s dead-lettered: %s", where, item.location, item.reason)
                sink.dead_letter(DeadLetter.of(self.name, item.reason, f"{where} {item.location}", item.payload))
                self._unflushed = True
                continue
            event_id = item["event_id"]
            if event_id in sent:
                self.stats.resent_skipped += 1
                continue
            sink.send(item, f"{where} {event_id}")
            sent.add(event_id)
            self.stats.sent += 1
            self._unflushed = True
        if items:
            with self.progress:
                self.progress.notify_all()

    @staticmethod
    def _send(connection: socket.socket, headers: list[tuple[str, str]]) -> None:
        connection.sendall("".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8") + b"\r\n")


class _DecisionCollector(Collector):
    """callwatch_ami_unanswered_exits_total{outcome, evidence, inferred}: how the connector decided
    the exits Asterisk left open (a leave or abandon frame says neither abandoned nor timeout)."""

    def __init__(self, connector: AmiConnector) -> None:
        self._connector = connector

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(AMI_UNANSWERED_EXITS.name, AMI_UNANSWERED_EXITS.help,
                                     labels=list(AMI_UNANSWERED_EXITS.labels))
        parser = self._connector.parser
        for key, count in (dict(parser.mapper.counts.decided) if parser is not None else {}).items():
            outcome, _, evidence = key.partition(": ")
            inferred = evidence.startswith(INFERRED)
            family.add_metric([outcome, evidence.removeprefix(INFERRED), "true" if inferred else "false"], count)
        yield family


# --- command line -------------------------------------------------------------------------------

def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--ami-host", env="CALLWATCH_AMI_HOST", default="127.0.0.1", help="Asterisk host")
    env_option(parser, "--ami-port", env="CALLWATCH_AMI_PORT", default="5038", help="AMI port")
    env_option(parser, "--ami-username", env="CALLWATCH_AMI_USERNAME",
               help="AMI user (a section of manager.conf with read=call,agent,dialplan)")
    env_option(parser, "--ami-secret-file", env="CALLWATCH_AMI_SECRET_FILE",
               help=f"file holding the AMI secret (or put the secret itself in {SECRET_ENV}; never on the command line)")
    env_option(parser, "--ami-queue-lines", env="CALLWATCH_AMI_QUEUE_LINES",
               help="service line of each queue, e.g. Q1=999,101-general=101; *=LINE for the others "
                    "(default: a queue not listed is a line of its own name)")
    env_option(parser, "--ami-site", env="CALLWATCH_AMI_SITE", default="default",
               help="site (force / control room) of this Asterisk")
    env_option(parser, "--ami-checkpoint", env="CALLWATCH_AMI_CHECKPOINT",
               help="file remembering the event ids already sent, so a restart sends none twice")
    env_option(parser, "--ami-events", env="CALLWATCH_AMI_EVENTS", default="call,agent,dialplan",
               help="event classes to ask for at login (agent: queues; call: hang-ups; dialplan: QUEUESTATUS)")
    env_option(parser, "--ami-ping-interval", env="CALLWATCH_AMI_PING_INTERVAL", default="20",
               help="time between keep-alive Pings (20s, 1m; a bare number is seconds); silence for two intervals "
                    "means the link is dead")
    env_option(parser, "--ami-decision-window", env="CALLWATCH_AMI_DECISION_WINDOW", default="5",
               help="time to wait after a caller leaves a queue unanswered for a join (transferred), "
                    "QUEUESTATUS or a hang-up before deciding on what came (5s; a bare number is seconds)")
    env_option(parser, "--ami-backoff-max", env="CALLWATCH_AMI_BACKOFF_MAX", default="30",
               help="longest wait between reconnection attempts (30s, 2m; a bare number is seconds)")
    # Not an option: it is here so that `--ami-secret VALUE` is refused with a reason instead of
    # being taken, abbreviated, for --ami-secret-file (and its value echoed in an error).
    parser.add_argument("--ami-secret", dest="ami_secret_refused", nargs="?", const="", default=None,
                        help=argparse.SUPPRESS)
    # The secret from the environment is read with the other options, when the command line is
    # built, and kept in a wrapper that never prints it.
    parser.set_defaults(ami_secret_env=_Secret(os.environ.get(SECRET_ENV) or None))


def _secret(args: argparse.Namespace) -> str:
    if getattr(args, "ami_secret_refused", None) is not None:
        raise UsageError(f"there is no --ami-secret option: a secret on the command line is visible to every "
                         f"user of the machine; set {SECRET_ENV} or give --ami-secret-file")
    path = getattr(args, "ami_secret_file", None)
    if path:
        return secret_file(path, "--ami-secret-file")
    from_env = getattr(args, "ami_secret_env", None)
    if isinstance(from_env, _Secret) and from_env.value:
        return from_env.value
    raise UsageError(f"the AMI secret is missing: set {SECRET_ENV} or give --ami-secret-file")


def _build(args: argparse.Namespace, settings: Settings) -> AmiConnector:
    if not args.ami_username:
        raise UsageError("--ami-username is required (the manager.conf user to log in as)")
    port = number(args.ami_port, "--ami-port", int, 1)
    if port > 65535:
        raise UsageError(f"--ami-port must be at most 65535, not {port}")
    ping_s = duration(args.ami_ping_interval, "--ami-ping-interval", 1)
    window_s = duration(args.ami_decision_window, "--ami-decision-window")
    backoff_max_s = duration(args.ami_backoff_max, "--ami-backoff-max", 0.5)
    if not (args.ami_site or "").strip():
        raise UsageError("--ami-site must not be empty")
    try:
        lines = parse_queue_lines(args.ami_queue_lines, "--ami-queue-lines")
        hashing = pseudonymiser(settings.pseudonymisation_key)
    except ConnectorError as error:
        raise UsageError(str(error)) from None
    endpoint = AmiEndpoint(args.ami_host, port, args.ami_username, _secret(args), args.ami_events or "on")
    mapping = AmiMapping(lines, args.ami_site.strip(), int(window_s * 1000))
    return AmiConnector(endpoint, mapping, hashing,
                        checkpoint=Path(args.ami_checkpoint) if args.ami_checkpoint else None,
                        ping_interval_s=ping_s, backoff=Backoff(max_s=backoff_max_s))


SPEC = ConnectorSpec("ami", "Asterisk Manager Interface (queue events over TCP)", _add_arguments, _build,
                     example="CALLWATCH_PSEUDONYMISATION_KEY=... CALLWATCH_AMI_SECRET=... callwatch connect ami "
                             "--ami-host 127.0.0.1 --ami-username callwatch --ami-queue-lines Q1=101 --out -")
