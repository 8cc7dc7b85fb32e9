"""`callwatch connect queue-log`: an Asterisk queue_log (the pipe-delimited file, or an export of its
database table: PBXware's CSV, mysql/psql dumps) imported to its end, or followed like `tail -F`
(rotation and truncation handled), with a checkpoint written after every batch so that a restart
neither loses nor repeats an event. The live database table itself is followed by `database.py`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

from connectors.checkpoints import write_checkpoint
from connectors.errors import ConfigurationError, ConnectorError, InvalidRecord
from connectors.errors import IgnoredRecord
from connectors.follow import CHUNK_BYTES, MAX_LINE_BYTES, FileFollower, FilePosition, FollowCounts, OpenFile
from connectors.privacy import Pseudonymiser, pseudonymiser, redact_numbers
from connectors.queue_lines import parse_queue_lines
from connectors.queue_log.database import Database, TableFollower
from connectors.queue_log.exports import EXPORT, PIPE, detect_layout, is_decoration, missing_columns, split_cells
from connectors.queue_log.queue_log_parser import (
    UNKNOWN_EVENT, ParsedItem, ParserConfig, QueueLogParser)
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from streams.options import OptionTarget, UsageError, duration, env_option, secret_file
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.queue-log")

AUTO: Final = "auto"
FORMATS: Final = (PIPE, EXPORT, AUTO)
FORMAT_ALIASES: Final = {"pbxware-csv": EXPORT, "csv": EXPORT}
TABLE_DECORATION: Final = "table ruler, border or row count of a database dump"
CHECKPOINT_VERSION: Final = 1
# When following, an exit held back (could the call be entering another queue?) is released as a
# timeout once the file has been quiet this long: Asterisk writes the next ENTERQUEUE within
# milliseconds, and the live board tolerates only about two seconds of lateness.
QUIET_RELEASE_S: Final = 0.5


# --- checkpoint -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading stopped (the file follower's position: the file, by device, inode and a hash of
    its head, and the offset just after the last line handled; an incomplete last line lies after
    it and is read again on restart), how the file reads, and the parser's memory."""

    file: FilePosition
    format: str | None
    header: tuple[str, ...] | None
    parser: dict[str, Any]
    delimiter: str = ","
    header_line: int = 0
    boxed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, **self.file.to_json(), "format": self.format,
                "header": None if self.header is None else list(self.header), "delimiter": self.delimiter,
                "header_line": self.header_line, "boxed": self.boxed, "parser": self.parser}


def load_checkpoint(path: str) -> Checkpoint | None:
    """The checkpoint in `path`, None if there is none yet; ConfigurationError if it is damaged."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read checkpoint {path}: {error}; move it away to start over") from None
    try:
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise ValueError("not a version 1 queue-log checkpoint")
        file = FilePosition.from_json(data)
        header, fmt = data.get("header"), data.get("format")
        fmt = FORMAT_ALIASES.get(fmt, fmt) if isinstance(fmt, str) else fmt
        delimiter, header_line = data.get("delimiter", ","), data.get("header_line", 0)
        if fmt not in (None, PIPE, EXPORT) or not isinstance(delimiter, str) or type(header_line) is not int:
            raise ValueError("unknown format, delimiter or header line")
        if header is not None and not (isinstance(header, list) and all(isinstance(h, str) for h in header)):
            raise ValueError("header must be a list of column names")
        if not isinstance(data["parser"], dict):
            raise ValueError("parser state malformed")
        return Checkpoint(file, fmt, None if header is None else tuple(header), data["parser"], delimiter,
                          header_line, data.get("boxed") is True)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(f"checkpoint {path} is damaged ({error}); move it away to start over") from None


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    write_checkpoint(path, checkpoint.to_json())


@dataclass
class QueueLogCounts:
    events: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    following: FollowCounts = field(default_factory=FollowCounts)  # lines, rotations, truncations

    @property
    def lines(self) -> int:
        return self.following.lines

    @property
    def rotations(self) -> int:
        return self.following.rotations

    @property
    def truncations(self) -> int:
        return self.following.truncations


# --- the connector ----------------------------------------------------------------------------------

@dataclass
class QueueLogConnector:
    path: str
    config: ParserConfig
    pseudonymiser: Pseudonymiser
    format: str = AUTO
    follow: bool = False
    from_start: bool = False
    checkpoint_path: str | None = None
    poll_s: float = 0.2
    chunk_bytes: int = CHUNK_BYTES
    quiet_release_s: float = QUIET_RELEASE_S
    name: str = "queue-log"
    realtime: bool = False
    counts: QueueLogCounts = field(default_factory=QueueLogCounts)
    follower: FileFollower | None = field(default=None, repr=False)  # of the current run (readiness)

    def __post_init__(self) -> None:
        self.realtime = self.follow

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        reading = _Reading(self, sink)
        try:
            reading.start()
            while not stop.is_set():
                if reading.pump():
                    continue
                if not self.follow:
                    if not reading.finish_import():
                        break
                    continue
                reading.idle()
                stop.wait(self.poll_s)
        finally:
            reading.close()


class _Reading:
    """One run of the connector: the file being read, the parser, and the checkpoint."""

    def __init__(self, connector: QueueLogConnector, sink: EventSink) -> None:
        self.connector = connector
        self.sink = sink
        self.parser = QueueLogParser(connector.config, connector.pseudonymiser)
        self.path = connector.path
        self.format: str | None = None if connector.format == AUTO else connector.format
        self.header: tuple[str, ...] | None = None
        self.delimiter = "," if self.format != PIPE else "|"
        self.header_line = 0            # line number of an export's header
        self.boxed = False              # an export in mysql's boxed table
        self.dirty = False              # emitted something since the last checkpoint
        self.last_data = time.monotonic()
        self.warned: set[str] = set()
        self.counts = connector.counts
        self.follower = connector.follower = FileFollower(
            self.path, self._handle, connector.follow, connector.from_start, connector.chunk_bytes,
            on_open=self._learn_format, on_switch=self._commit, on_lost=self._lost, log=log,
            counts=self.counts.following)

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        connector = self.connector
        checkpoint = load_checkpoint(connector.checkpoint_path) if connector.checkpoint_path else None
        if checkpoint is None:
            if not connector.follow and not os.path.exists(self.path):
                raise ConfigurationError(f"no such queue_log file: {self.path}")
            self.follower.start()
            return
        if self.format is not None and checkpoint.format not in (None, self.format):
            raise ConfigurationError(f"checkpoint {connector.checkpoint_path} was written reading "
                                     f"{checkpoint.format}, not {self.format}")
        self.parser.restore(checkpoint.parser)
        self.format = self.format or checkpoint.format
        self.header = checkpoint.header
        self.delimiter = checkpoint.delimiter
        self.header_line = checkpoint.header_line
        self.boxed = checkpoint.boxed
        try:
            self.follower.start(checkpoint.file)
        except ConfigurationError as error:
            raise ConfigurationError(f"checkpoint {connector.checkpoint_path}: {error}") from None

    # -- reading -------------------------------------------------------------------------------

    def pump(self) -> bool:
        """Read and handle one chunk; False at the end of the file."""
        if not self.follower.pump():
            return False
        self.last_data = time.monotonic()
        self._commit()
        return True

    def finish_import(self) -> bool:
        """End of a file in import mode: its last line even without a newline; then the next file
        (True), or the end of the import (False)."""
        if self.follower.finish():
            return True
        self._emit(self.parser.flush(), "")
        self._commit()
        self.follower.close()
        self._report()
        return False

    def idle(self) -> None:
        """At the end of a followed file: truncation, rotation, and held exits once all is quiet."""
        self.follower.idle()
        if self.parser.holding and time.monotonic() - self.last_data >= self.connector.quiet_release_s:
            self._emit(self.parser.flush(), "")
        if self.dirty:
            self._commit()

    def _lost(self, location: str, reason: str, raw: bytes) -> None:
        self._dead(location, reason, raw)

    def _learn_format(self, current: OpenFile) -> None:
        for number, line in enumerate(current.first_lines(), 1):  # none yet: the first line read will tell
            if not self._learning:
                return
            if self._take_first_line(line):
                self.header_line = number

    @property
    def _learning(self) -> bool:
        return self.format is None or (self.format == EXPORT and self.header is None)

    def _take_first_line(self, first: str) -> bool:
        """Learn the format and (export) header from a file's first lines; True if `first` was a
        header or a border before it."""
        if not first.strip() or is_decoration(first):
            return self.format is None or self.header is None
        if self.format is None:
            layout = detect_layout(first)
            missing = missing_columns(first) if layout is None else []
            if missing:
                raise ConfigurationError(f"{self.path}: its header line lacks the column(s) {', '.join(missing)} "
                                         f"(a queue_log export needs time, callid, queuename, agent and event)")
            if layout is None:
                raise ConfigurationError(
                    f"cannot tell the format of {self.path} from its first line: it is neither "
                    f"time|callid|queue|agent|event|... nor a header naming the columns "
                    f"{', '.join(sorted({'time', 'callid', 'queuename', 'agent', 'event'}))}; give "
                    f"--queue-log-format {PIPE} or {EXPORT}")
            self.format, self.delimiter = layout.format, layout.delimiter
        if self.format == EXPORT:
            layout = detect_layout(first)
            if layout is not None and layout.format == EXPORT:
                cells = split_cells(first, layout.delimiter, layout.boxed) or []
                self.delimiter, self.boxed = layout.delimiter, layout.boxed
                self.header = tuple(cell.lower() for cell in cells)
                return True
        return False

    def _handle(self, raw: bytes, number: int, path: str) -> None:
        location = f"{path}:{number}"
        if len(raw) > MAX_LINE_BYTES:
            self._dead(location, f"line longer than {MAX_LINE_BYTES} bytes", raw[:200])
            return
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        if self._learning:
            if self._take_first_line(text):
                self.header_line = number
                return
        elif number <= self.header_line:
            return  # the header (or a border above it), learnt before reading began
        if self.format == PIPE:
            items = self.parser.parse_line(text, number)
        else:
            items = self._csv_items(text, number, location)
        self._emit(items, location, text)

    def _csv_items(self, text: str, number: int, location: str) -> list[ParsedItem]:
        if not text.strip():
            return [IgnoredRecord("blank line", number)]
        if is_decoration(text):
            return [IgnoredRecord(TABLE_DECORATION, number)]
        if self.header is None:
            return [InvalidRecord("no header line naming the queue_log columns before this row", number)]
        cells = split_cells(text, self.delimiter, self.boxed)
        if cells is None:
            return [InvalidRecord("not a row: a quote that does not close", number)]
        if len(cells) != len(self.header):
            return [InvalidRecord(f"row has {len(cells)} cells, the header {len(self.header)}", number)]
        return self.parser.parse_row(dict(zip(self.header, cells)), number)

    def _emit(self, items: list[ParsedItem], location: str, text: str = "") -> None:
        counts = self.counts
        for item in items:
            if isinstance(item, dict):
                self.sink.send(item, location)
                counts.events[item["type"]] = counts.events.get(item["type"], 0) + 1
                self.dirty = True
            elif isinstance(item, InvalidRecord):
                self._dead(location, item.reason, text)
            else:
                counts.ignored[item.reason] = counts.ignored.get(item.reason, 0) + 1
                if item.reason == UNKNOWN_EVENT:
                    self._warn_once(item.detail)

    def _dead(self, location: str, reason: str, raw: str | bytes) -> None:
        self.sink.dead_letter(DeadLetter.of(self.connector.name, reason, location, raw))
        self.counts.dead_lettered += 1
        self.dirty = True

    def _warn_once(self, detail: str) -> None:
        if detail in self.warned or len(self.warned) >= 100:
            return
        self.warned.add(detail)
        log.warning("unknown queue_log event %r: ignored", redact_numbers(detail))

    # -- checkpoint ----------------------------------------------------------------------------

    def _commit(self) -> None:
        """After each batch: events out of the sink's buffers first, then the checkpoint."""
        self.sink.flush()
        self.dirty = False
        path = self.connector.checkpoint_path
        position = self.follower.position()
        if path is None or position is None:
            return
        save_checkpoint(path, Checkpoint(position, self.format, self.header, self.parser.state(), self.delimiter,
                                         self.header_line, self.boxed))

    def close(self) -> None:
        if self.connector.checkpoint_path is None and self.parser.holding:
            # Stopping with nothing to carry held exits over a restart: they are timeouts now.
            self._emit(self.parser.flush(), "")
        if self.follower.current is not None:
            try:
                self._commit()
            finally:
                self.follower.close()
            self._report()

    def _report(self) -> None:
        counts = self.counts
        events = ", ".join(f"{k} {v}" for k, v in sorted(counts.events.items())) or "none"
        ignored = "; ".join(f"{k}: {v}" for k, v in sorted(counts.ignored.items())) or "none"
        log.info("%s: %d lines; events: %s; ignored: %s; dead-lettered %d; rotations %d, truncations %d",
                 self.path, counts.lines, events, ignored, counts.dead_lettered, counts.following.rotations,
                 counts.following.truncations)


# --- options ----------------------------------------------------------------------------------------

PASSWORD_ENV: Final = "CALLWATCH_QUEUE_LOG_DATABASE_PASSWORD"


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--queue-log-path", env="CALLWATCH_QUEUE_LOG_PATH",
               help="the queue_log file (e.g. /var/log/asterisk/queue_log) or an export of its database table")
    env_option(parser, "--queue-log-database", env="CALLWATCH_QUEUE_LOG_DATABASE",
               help="instead of a file, the realtime queue_log table: postgresql://USER@HOST[:PORT]/DB or "
                    f"mysql://USER@HOST[:PORT]/DB (MariaDB too); the password in {PASSWORD_ENV} or "
                    "--queue-log-database-password-file, never in the URL")
    env_option(parser, "--queue-log-database-password-file", env="CALLWATCH_QUEUE_LOG_DATABASE_PASSWORD_FILE",
               help="file holding the database password")
    env_option(parser, "--queue-log-table", env="CALLWATCH_QUEUE_LOG_TABLE", default="queue_log",
               help="the table's name (schema.table allowed)")
    env_option(parser, "--queue-log-format", env="CALLWATCH_QUEUE_LOG_FORMAT", default=AUTO,
               help=f"of a file: {PIPE} (time|callid|queue|agent|event|data...), {EXPORT} (a database export "
                    f"with a header line: CSV, mysql -B, psql; pbxware-csv is the same), or {AUTO} (from the "
                    f"first line)")
    env_option(parser, "--queue-log-follow", env="CALLWATCH_QUEUE_LOG_FOLLOW", action="store_true",
               help="keep following the file as it grows, like tail -F (rotation and truncation handled), or "
                    "the table as rows are added; without it the file or table is imported to its end")
    env_option(parser, "--queue-log-from-start", env="CALLWATCH_QUEUE_LOG_FROM_START", action="store_true",
               help="when following with no checkpoint yet, read what is already there first (default: only "
                    "what is written from now on)")
    env_option(parser, "--queue-log-checkpoint", env="CALLWATCH_QUEUE_LOG_CHECKPOINT",
               help="file recording how far the log has been read; a restart resumes there")
    env_option(parser, "--queue-log-queue-lines", env="CALLWATCH_QUEUE_LOG_QUEUE_LINES",
               help="which line each queue serves, e.g. 'Q999=999,Q101=101,*=101' (*: every other queue; "
                    "without it a queue not listed is a line of its own name)")
    env_option(parser, "--queue-log-default-line", env="CALLWATCH_QUEUE_LOG_DEFAULT_LINE",
               help="the same as '*=LINE' in --queue-log-queue-lines")
    env_option(parser, "--queue-log-site", env="CALLWATCH_QUEUE_LOG_SITE", default="default",
               help="site (force / control room) of every event")
    env_option(parser, "--queue-log-overflow-s", env="CALLWATCH_QUEUE_LOG_OVERFLOW_S", default="2",
               help="a call leaving a queue unanswered and entering a queue within this time (2s; a bare "
                    "number is seconds) was transferred, not timed out")
    env_option(parser, "--queue-log-time-zone", env="CALLWATCH_QUEUE_LOG_TIME_ZONE",
               help="time zone of a database's `time` column written without an offset (Asterisk writes the "
                    "PBX's local time; default: the configured tz)")
    env_option(parser, "--queue-log-poll", env="CALLWATCH_QUEUE_LOG_POLL", default="0.5s",
               help="how often a followed table is asked for new rows (0.5s)")


def _database_password(args: argparse.Namespace) -> str:
    path = getattr(args, "queue_log_database_password_file", None)
    if path:
        return secret_file(path, "--queue-log-database-password-file")
    return os.environ.get(PASSWORD_ENV, "")


def _build(args: argparse.Namespace, settings: Settings) -> QueueLogConnector | TableFollower:
    from streams.domain.config import InvalidConfig
    from streams.domain.windows import zone

    path = getattr(args, "path", None) or args.queue_log_path
    if bool(path) == bool(args.queue_log_database):
        raise UsageError("give the queue_log file (--queue-log-path) or its database table (--queue-log-database), "
                         "one of them")
    fmt = FORMAT_ALIASES.get(args.queue_log_format, args.queue_log_format)
    if fmt not in FORMATS:
        raise UsageError(f"--queue-log-format must be one of {', '.join(FORMATS)}, not {args.queue_log_format!r}")
    overflow_s = duration(args.queue_log_overflow_s, "--queue-log-overflow-s")
    follow = bool(args.queue_log_follow)
    if path and not follow and not os.path.isfile(path):
        raise UsageError(f"no such queue_log file: {path}")
    lines_text = args.queue_log_queue_lines or ""
    if args.queue_log_default_line:
        lines_text += f",*={args.queue_log_default_line}"
    try:
        time_zone = zone(args.queue_log_time_zone or settings.flow.tz)
    except InvalidConfig as error:
        raise UsageError(f"--queue-log-time-zone: {error}") from None
    try:
        lines = parse_queue_lines(lines_text, "--queue-log-queue-lines")
        config = ParserConfig(lines, args.queue_log_site or "default", overflow_s, time_zone)
        # The ENTERQUEUE caller id is a phone number: no key, no start.
        hashing = pseudonymiser(settings.pseudonymisation_key)
        if args.queue_log_database:
            database = Database.parse(args.queue_log_database, _database_password(args), args.queue_log_table)
            follower = TableFollower(database, config, hashing, follow, bool(args.queue_log_from_start),
                                     args.queue_log_checkpoint or None,
                                     duration(args.queue_log_poll, "--queue-log-poll", 0.01))
            follower.resume_point(QueueLogParser(config, hashing))  # a damaged checkpoint stops us here, not mid-run
            return follower
        if args.queue_log_checkpoint:
            load_checkpoint(args.queue_log_checkpoint)  # a damaged one stops us here, not mid-run
    except ConnectorError as error:
        raise UsageError(str(error)) from None
    return QueueLogConnector(path, config, hashing, fmt, follow, bool(args.queue_log_from_start),
                             args.queue_log_checkpoint or None)


SPEC = ConnectorSpec(
    "queue-log", "Asterisk queue_log: the file (pipe-delimited) or an export of its table, imported or followed; "
                 "or the realtime table in PostgreSQL/MariaDB itself",
    _add_arguments, _build,
    example="CALLWATCH_PSEUDONYMISATION_KEY=... callwatch connect queue-log "
            "../shared/data/real/asterisk_queue_log_pbxware.csv --queue-log-queue-lines IT=101 --out calls.jsonl",
    path_help="the queue_log file or an export of its table (or --queue-log-path); none with --queue-log-database")
