"""`callwatch connect queue-log`: an Asterisk queue_log (the pipe-delimited file, or an export of its
database table: PBXware's CSV, mysql/psql dumps) imported to its end, or followed like `tail -F`
(rotation and truncation handled), with a checkpoint written after every batch so that a restart
neither loses nor repeats an event. The live database table itself is followed by `database.py`."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from connectors.errors import ConfigurationError, ConnectorError, InvalidRecord
from connectors.errors import IgnoredRecord
from connectors.privacy import Pseudonymiser, pseudonymiser, redact_numbers
from connectors.queue_lines import parse_queue_lines
from connectors.queue_log.database import Database, TableFollower
from connectors.queue_log.exports import EXPORT, PIPE, detect_layout, is_decoration, split_cells
from connectors.queue_log.queue_log_parser import (
    UNKNOWN_EVENT, ParsedItem, ParserConfig, QueueLogParser)
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from streams.options import OptionTarget, UsageError, duration, env_option
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.queue-log")

AUTO: Final = "auto"
FORMATS: Final = (PIPE, EXPORT, AUTO)
FORMAT_ALIASES: Final = {"pbxware-csv": EXPORT, "csv": EXPORT}
TABLE_DECORATION: Final = "table ruler, border or row count of a database dump"
CHECKPOINT_VERSION: Final = 1
CHUNK_BYTES: Final = 1 << 20
MAX_LINE_BYTES: Final = 1 << 20       # a "line" longer than this is garbage, not a record
FINGERPRINT_BYTES: Final = 1024       # the head of a file, to tell it from another with the same inode
# When following, an exit held back (could the call be entering another queue?) is released as a
# timeout once the file has been quiet this long: Asterisk writes the next ENTERQUEUE within
# milliseconds, and the live board tolerates only about two seconds of lateness.
QUIET_RELEASE_S: Final = 0.5


# --- checkpoint -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading stopped: the file (device, inode and a hash of its head, since inodes are reused
    after rotation), the offset just after the last line handled, and the parser's memory. An
    incomplete last line is not stored: it lies after `position` and is read again on restart."""

    path: str
    device: int
    inode: int
    position: int
    line: int
    head_length: int
    head_sha256: str
    format: str | None
    header: tuple[str, ...] | None
    parser: dict[str, Any]
    delimiter: str = ","

    def to_json(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "path": self.path, "device": self.device, "inode": self.inode,
                "position": self.position, "line": self.line,
                "head": {"length": self.head_length, "sha256": self.head_sha256},
                "format": self.format, "header": None if self.header is None else list(self.header),
                "delimiter": self.delimiter, "parser": self.parser}


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
        head, header, fmt = data["head"], data.get("header"), data.get("format")
        ints = [data["device"], data["inode"], data["position"], data["line"], head["length"]]
        if not all(type(v) is int and v >= 0 for v in ints):
            raise ValueError("offsets must be whole numbers")
        fmt = FORMAT_ALIASES.get(fmt, fmt)
        delimiter = data.get("delimiter", ",")
        if fmt not in (None, PIPE, EXPORT) or not isinstance(data["path"], str) or not isinstance(delimiter, str):
            raise ValueError("unknown format or path")
        if header is not None and not (isinstance(header, list) and all(isinstance(h, str) for h in header)):
            raise ValueError("header must be a list of column names")
        if not isinstance(head["sha256"], str) or not isinstance(data["parser"], dict):
            raise ValueError("head hash or parser state malformed")
        return Checkpoint(data["path"], data["device"], data["inode"], data["position"], data["line"],
                          head["length"], head["sha256"], fmt, None if header is None else tuple(header),
                          data["parser"], delimiter)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(f"checkpoint {path} is damaged ({error}); move it away to start over") from None


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    """Atomically: a reader (or a crash) sees the old checkpoint or the new one, never half of one."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(checkpoint.to_json(), stream, separators=(",", ":"))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise ConfigurationError(f"cannot write checkpoint {path}: {error.strerror}") from None


# --- one open file ----------------------------------------------------------------------------------

class _OpenFile:
    """A file read line by line from an offset. `position` is just after the last complete line handed
    out; bytes read beyond it (an incomplete line) wait in `partial`."""

    def __init__(self, path: str, handle: BinaryIO, position: int = 0, line: int = 0) -> None:
        self.path = path
        self.handle = handle
        stat = os.fstat(handle.fileno())
        self.device, self.inode = stat.st_dev, stat.st_ino
        self.position = position
        self.line = line
        self.partial = b""
        # The first bytes of the file as read: if they change, the file was truncated and rewritten.
        self.head_bytes = os.pread(handle.fileno(), min(FINGERPRINT_BYTES, position), 0) if position else b""
        handle.seek(position)

    @classmethod
    def open(cls, path: str, position: int = 0, line: int = 0) -> _OpenFile:
        return cls(path, open(path, "rb"), position, line)

    def read_lines(self, size: int = CHUNK_BYTES) -> tuple[bool, list[tuple[bytes, int]]]:
        """(whether anything was read, the complete lines now available with their line numbers)."""
        data = self.handle.read(size)
        if not data:
            return False, []
        if len(self.head_bytes) < FINGERPRINT_BYTES:
            self.head_bytes = (self.head_bytes + data)[:FINGERPRINT_BYTES]
        *complete, self.partial = (self.partial + data).split(b"\n")
        lines = []
        for raw in complete:
            self.line += 1
            self.position += len(raw) + 1
            lines.append((raw, self.line))
        if len(self.partial) > MAX_LINE_BYTES:  # never ends: hand it over to be rejected
            raw, self.partial = self.partial, b""
            self.line += 1
            self.position += len(raw)
            lines.append((raw, self.line))
        return True, lines

    def take_partial(self) -> tuple[bytes, int] | None:
        """The incomplete last line, as a line (the writer has finished with this file)."""
        if not self.partial:
            return None
        raw, self.partial = self.partial, b""
        self.line += 1
        self.position += len(raw)
        return raw, self.line

    def restart(self) -> None:
        self.handle.seek(0)
        self.position, self.line, self.partial, self.head_bytes = 0, 0, b"", b""

    def skip_to(self, position: int, line: int) -> None:
        self.handle.seek(position)
        self.position, self.line, self.partial = position, line, b""
        self.head_bytes = os.pread(self.handle.fileno(), min(FINGERPRINT_BYTES, position), 0)

    @property
    def rewritten(self) -> bool:
        """The file shrank below what was read, or its head is no longer what was read there."""
        if self.size < self.read_to:
            return True
        return bool(self.head_bytes) and os.pread(self.handle.fileno(), len(self.head_bytes), 0) != self.head_bytes

    @property
    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    @property
    def read_to(self) -> int:
        return self.position + len(self.partial)

    def head(self, length: int) -> str:
        return hashlib.sha256(os.pread(self.handle.fileno(), length, 0)).hexdigest()

    def first_lines(self) -> list[str]:
        """The file's first complete lines (a half-written one could mislead)."""
        data = os.pread(self.handle.fileno(), 65536, 0)
        return [line.rstrip(b"\r").decode("utf-8", "replace") for line in data.split(b"\n")[:-1][:3]]

    def close(self) -> None:
        self.handle.close()


@dataclass
class QueueLogCounts:
    lines: int = 0
    events: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    rotations: int = 0
    truncations: int = 0


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
                    if reading.current is not None:
                        reading.finish_import()
                    if reading.current is None:
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
        self.current: _OpenFile | None = None
        self.then_path = False          # after draining a rotated file, go on with `path` from its start
        self.dirty = False              # emitted something since the last checkpoint
        self.last_data = time.monotonic()
        self.warned: set[str] = set()
        self.warned_open: str | None = None
        self.counts = connector.counts

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        connector = self.connector
        checkpoint = load_checkpoint(connector.checkpoint_path) if connector.checkpoint_path else None
        if checkpoint is not None:
            self._resume(checkpoint)
        elif not os.path.exists(self.path):
            if not connector.follow:
                raise ConfigurationError(f"no such queue_log file: {self.path}")
            log.warning("%s does not exist yet: waiting for it", self.path)
        else:
            self.current = self._open(self.path)
            if connector.follow and not connector.from_start:
                self._skip_to_end(self.current)
        if self.current is not None:
            self._learn_format(self.current)

    def _resume(self, checkpoint: Checkpoint) -> None:
        if os.path.abspath(checkpoint.path) != os.path.abspath(self.path):
            raise ConfigurationError(f"checkpoint {self.connector.checkpoint_path} belongs to {checkpoint.path}, "
                                     f"not {self.path}")
        if self.format is not None and checkpoint.format not in (None, self.format):
            raise ConfigurationError(f"checkpoint {self.connector.checkpoint_path} was written reading "
                                     f"{checkpoint.format}, not {self.format}")
        self.parser.restore(checkpoint.parser)
        self.format = self.format or checkpoint.format
        self.header = checkpoint.header
        self.delimiter = checkpoint.delimiter
        same = self._open(self.path) if os.path.exists(self.path) else None
        if same is not None and self._is(same, checkpoint):
            if same.size < checkpoint.position:
                log.warning("%s was truncated while we were away: reading it from its start", self.path)
                self.counts.truncations += 1
            else:
                same.skip_to(checkpoint.position, checkpoint.line)
            self.current = same
            return
        rotated = self._find_rotated(checkpoint)
        if rotated is not None:
            log.info("%s was rotated while we were away: finishing %s first", self.path, rotated.path)
            if same is not None:
                same.close()
            self.current, self.then_path = rotated, True
            return
        if same is not None:
            log.warning("the file checkpointed in %s is gone: reading %s from its start",
                        self.connector.checkpoint_path, self.path)
        self.current = same

    @staticmethod
    def _is(candidate: _OpenFile, checkpoint: Checkpoint) -> bool:
        return ((candidate.device, candidate.inode) == (checkpoint.device, checkpoint.inode)
                and candidate.size >= checkpoint.head_length
                and candidate.head(checkpoint.head_length) == checkpoint.head_sha256)

    def _find_rotated(self, checkpoint: Checkpoint) -> _OpenFile | None:
        """The checkpointed file under its rotated name (queue_log.1, queue_log-20240301, ...)."""
        directory, base = os.path.split(os.path.abspath(self.path))
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return None
        for entry in entries:
            if entry.name == base or not entry.name.startswith(base):
                continue
            try:
                stat = entry.stat()
                if (stat.st_dev, stat.st_ino) != (checkpoint.device, checkpoint.inode) or \
                        stat.st_size < checkpoint.position:
                    continue
                candidate = self._open(entry.path)
            except OSError:
                continue
            if self._is(candidate, checkpoint):
                candidate.skip_to(checkpoint.position, checkpoint.line)
                return candidate
            candidate.close()
        return None

    def _open(self, path: str) -> _OpenFile:
        try:
            return _OpenFile.open(path)
        except OSError as error:
            raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None

    def _try_open(self, path: str) -> _OpenFile | None:
        """While following, a file that cannot be opened yet (logrotate may create it before setting
        its permissions) is tried again at the next poll rather than stopping the connector."""
        try:
            return _OpenFile.open(path)
        except OSError as error:
            if self.warned_open != error.strerror:
                log.warning("cannot read %s yet: %s (retrying)", path, error.strerror)
                self.warned_open = error.strerror
            return None

    def _skip_to_end(self, current: _OpenFile) -> None:
        """Follow from now on (like tail -F): after the last complete line, counting lines on the way
        so that locations stay true."""
        lines, position, last_newline = 0, 0, 0
        while True:
            block = current.handle.read(CHUNK_BYTES)
            if not block:
                break
            lines += block.count(b"\n")
            at = block.rfind(b"\n")
            if at >= 0:
                last_newline = position + at + 1
            position += len(block)
        current.skip_to(last_newline, lines)

    def _learn_format(self, current: _OpenFile) -> None:
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
                cells = split_cells(first, layout.delimiter) or []
                self.delimiter = layout.delimiter
                self.header = tuple(cell.lower() for cell in cells)
                return True
        return False

    # -- reading -------------------------------------------------------------------------------

    def pump(self) -> bool:
        """Read and handle one chunk; False at the end of the file."""
        current = self.current
        if current is None:
            return False
        if self.connector.follow and current.rewritten:
            # Truncated and written again since the last read: new data is not where we were.
            self._truncated(current)
        got, lines = current.read_lines(self.connector.chunk_bytes)
        if not got:
            return False
        self.last_data = time.monotonic()
        for raw, number in lines:
            self._handle(raw, number, current.path)
        self._commit()
        return True

    def finish_import(self) -> None:
        """End of a file in import mode: its last line even without a newline; then the next file."""
        current = self.current
        assert current is not None
        last = current.take_partial()
        if last is not None:
            self._handle(last[0], last[1], current.path)
        if self.then_path and os.path.exists(self.path):
            current.close()
            self.current, self.then_path = self._open(self.path), False
            self._commit()
            return
        self._emit(self.parser.flush(), "")
        self._commit()
        self.current = None
        current.close()
        self._report()

    def idle(self) -> None:
        """At the end of a followed file: truncation, rotation, and held exits once all is quiet."""
        current = self.current
        if current is None:
            if os.path.exists(self.path):
                self.current = self._try_open(self.path)
                if self.current is not None:
                    self._learn_format(self.current)
                    log.info("%s appeared: following it", self.path)
            return
        if current.rewritten:
            self._truncated(current)
        elif self._rotated(current):
            return
        if self.parser.holding and time.monotonic() - self.last_data >= self.connector.quiet_release_s:
            self._emit(self.parser.flush(), "")
        if self.dirty:
            self._commit()

    def _truncated(self, current: _OpenFile) -> None:
        log.info("%s was truncated: reading it again from its start", current.path)
        self.counts.truncations += 1
        if current.partial:
            self._dead(f"{current.path}:{current.line + 1}", "incomplete line lost when the file was truncated",
                       current.partial)
        current.restart()
        self.dirty = True

    def _rotated(self, current: _OpenFile) -> bool:
        """If `path` now names another file with something in it, finish this one and switch (an
        empty new file may not be written yet: the writer may still be appending to this one)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        if (stat.st_dev, stat.st_ino) == (current.device, current.inode) or stat.st_size == 0:
            return False
        new = self._try_open(self.path)
        if new is None:
            return False  # keep reading the old file; try again at the next poll
        while self.pump():
            pass
        last = current.take_partial()
        if last is not None:
            self._handle(last[0], last[1], current.path)
        current.close()
        self.current, self.then_path = new, False
        self.counts.rotations += 1
        log.info("%s was rotated: following the new file", self.path)
        self._commit()
        return True

    def _handle(self, raw: bytes, number: int, path: str) -> None:
        location = f"{path}:{number}"
        self.counts.lines += 1
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
        cells = split_cells(text, self.delimiter)
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
        current = self.current
        if path is None or current is None:
            return
        head = current.head_bytes
        save_checkpoint(path, Checkpoint(
            os.path.abspath(self.path), current.device, current.inode, current.position, current.line,
            len(head), hashlib.sha256(head).hexdigest(), self.format, self.header, self.parser.state(),
            self.delimiter))

    def close(self) -> None:
        if self.connector.checkpoint_path is None and self.parser.holding:
            # Stopping with nothing to carry held exits over a restart: they are timeouts now.
            self._emit(self.parser.flush(), "")
        if self.current is not None:
            try:
                self._commit()
            finally:
                self.current.close()
                self.current = None
            self._report()

    def _report(self) -> None:
        counts = self.counts
        events = ", ".join(f"{k} {v}" for k, v in sorted(counts.events.items())) or "none"
        ignored = "; ".join(f"{k}: {v}" for k, v in sorted(counts.ignored.items())) or "none"
        log.info("%s: %d lines; events: %s; ignored: %s; dead-lettered %d; rotations %d, truncations %d",
                 self.path, counts.lines, events, ignored, counts.dead_lettered, counts.rotations,
                 counts.truncations)


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
        try:
            password = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UsageError(f"cannot read --queue-log-database-password-file {path}: {error.strerror}") from None
        if not password:
            raise UsageError(f"--queue-log-database-password-file {path} is empty")
        return password
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
            follower._resume(QueueLogParser(config, hashing))  # a damaged checkpoint stops us here, not mid-run
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
