"""Following Asterisk's queue_log where a realtime installation keeps it: a table in PostgreSQL or
MySQL/MariaDB (`extconfig.conf`: `queue_log => odbc,asterisk` or `pgsql,...`), with columns
`id, time, callid, queuename, agent, event, data1..data5` (or one `data` column of `|`-joined
values; `time` a DATETIME/TIMESTAMP in the PBX's local time, or epoch seconds). New rows are read
by id, in batches, through psycopg 3 (PostgreSQL) or PyMySQL (MySQL, MariaDB); each batch goes
through the same parser as the file, then the checkpoint (last id, recent ids, the parser's
memory) is written. A lost connection is retried with backoff. The password comes from the
environment or a file and never appears in the URL, a log line or an error."""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

from connectors.backoff import Backoff
from connectors.checkpoints import write_checkpoint
from connectors.errors import ConfigurationError, IgnoredRecord, InvalidRecord
from connectors.privacy import Pseudonymiser, redact_numbers
from connectors.queue_log.queue_log_parser import ParserConfig, QueueLogParser
from connectors.sink import DeadLetter, EventSink

log = logging.getLogger("callwatch.connect.queue-log")

CHECKPOINT_VERSION: Final = 1
BATCH_ROWS: Final = 1_000
# Ids are handed out at INSERT and become visible at COMMIT: a row may appear after a higher id was
# read. Each poll looks back this many ids for such late rows (ids already handled are skipped).
LOOKBACK_IDS: Final = 100
QUIET_RELEASE_S: Final = 0.5  # as for the file: a held exit is a timeout once nothing more comes
SCHEMES: Final = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
_TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
_DATA_COLUMNS: Final = ("data1", "data2", "data3", "data4", "data5")


@dataclass(frozen=True)
class Database:
    """Where the table is. `url` is shown in logs: it never holds the password."""

    kind: str      # postgresql or mysql
    host: str
    port: int
    user: str
    name: str
    password: str = field(repr=False)
    table: str = "queue_log"

    @property
    def url(self) -> str:
        return f"{self.kind}://{self.user}@{self.host}:{self.port}/{self.name}"

    @classmethod
    def parse(cls, url: str, password: str, table: str = "queue_log") -> Database:
        """From `postgresql://USER@HOST[:PORT]/DB` or `mysql://...` (`mariadb://`, `postgres://`)."""
        parts = urlsplit(url.strip())
        kind = SCHEMES.get(parts.scheme.lower())
        if kind is None:
            raise ConfigurationError(f"database URL must start with postgresql:// or mysql:// (or mariadb://), "
                                     f"not {parts.scheme or 'nothing'}://")
        if parts.password is not None:
            raise ConfigurationError("the database URL holds a password: leave it out (it would show in the process "
                                     "list) and give it in CALLWATCH_QUEUE_LOG_DATABASE_PASSWORD or a file")
        name = parts.path.lstrip("/")
        if not parts.hostname or not parts.username or not name:
            raise ConfigurationError(f"database URL needs a user, a host and a database name: "
                                     f"{kind}://USER@HOST[:PORT]/DATABASE")
        try:
            port = parts.port or (5432 if kind == "postgresql" else 3306)
        except ValueError:
            raise ConfigurationError("database URL has a port that is not a number") from None
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigurationError(f"table name {table!r} is not a plain SQL name (letters, digits, _; schema.table)")
        if not password:
            raise ConfigurationError("the database password is missing: set CALLWATCH_QUEUE_LOG_DATABASE_PASSWORD "
                                     "or give --queue-log-database-password-file")
        return cls(kind, parts.hostname, port, unquote(parts.username), unquote(name), password, table)


class _Cursor(Protocol):
    description: Any

    def execute(self, query: str, params: tuple[Any, ...] = ...) -> Any: ...

    def fetchall(self) -> Any: ...

    def close(self) -> Any: ...


class _Connection(Protocol):
    def cursor(self) -> Any: ...

    def close(self) -> Any: ...


def _driver_errors(kind: str) -> tuple[type[BaseException], ...]:
    if kind == "postgresql":
        import psycopg
        return (psycopg.Error, OSError)
    import pymysql
    return (pymysql.MySQLError, OSError)


def connect(database: Database, timeout_s: float = 5.0) -> _Connection:
    """A connection in autocommit mode (each poll sees what was committed since the last)."""
    connection: _Connection
    try:
        if database.kind == "postgresql":
            import psycopg
            connection = psycopg.connect(host=database.host, port=database.port, user=database.user,
                                         password=database.password, dbname=database.name, autocommit=True,
                                         connect_timeout=max(1, round(timeout_s)), application_name="callwatch")
        else:
            import pymysql
            connection = pymysql.connect(host=database.host, port=database.port, user=database.user,
                                         password=database.password, database=database.name, autocommit=True,
                                         connect_timeout=timeout_s, read_timeout=30, charset="utf8mb4")
    except ModuleNotFoundError as missing:
        raise ConfigurationError(f"following a {database.kind} table needs the {missing.name} driver: "
                                 f"pip install 'callwatch[database]'") from None
    return connection


def _quoted(database: Database) -> str:
    quote = '"' if database.kind == "postgresql" else "`"
    return ".".join(f"{quote}{part}{quote}" for part in database.table.split("."))


@dataclass
class TableCounts:
    rows: int = 0
    events: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    late_rows: int = 0       # rows that appeared below an id already read
    reconnects: int = 0


@dataclass
class TableFollower:
    """The connector: reads the table to its end (import) or keeps following it (`follow`)."""

    database: Database
    config: ParserConfig
    pseudonymiser: Pseudonymiser
    follow: bool = False
    from_start: bool = False
    checkpoint_path: str | None = None
    poll_s: float = 0.5
    backoff: Backoff = field(default_factory=lambda: Backoff(0.5, 30.0))
    name: str = "queue-log"
    realtime: bool = False
    counts: TableCounts = field(default_factory=TableCounts)
    rng: random.Random = field(default_factory=random.Random)
    progress: threading.Condition = field(default_factory=threading.Condition, repr=False)
    at_end: int = 0          # times a poll found nothing new: a readiness signal for tests and logs
    _floor: int = field(default=-1, repr=False)

    def __post_init__(self) -> None:
        self.realtime = self.follow

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        parser = QueueLogParser(self.config, self.pseudonymiser)
        # `floor`: rows at or below it were there before a first start that follows from the end.
        last_id, recent, self._floor = self.resume_point(parser)
        errors = _driver_errors(self.database.kind)
        attempt, last_data = 0, time.monotonic()
        where = f"{self.database.url} table {self.database.table}"
        try:
            while not stop.is_set():
                try:
                    with self._connection() as connection:
                        if attempt:
                            log.info("%s: connected again", where)
                        attempt = 0
                        if last_id is None:
                            last_id = self._floor = self._start_id(connection)
                        while not stop.is_set():
                            rows = self._rows(connection, max(self._floor, last_id - LOOKBACK_IDS))
                            fresh = [row for row in rows if row["id"] not in recent]
                            if fresh:
                                last_id = max(last_id, *(row["id"] for row in fresh))
                                self._handle(parser, fresh, sink, recent, last_id)
                                last_data = time.monotonic()
                                if len(rows) >= BATCH_ROWS:
                                    continue
                            if parser.holding and (not self.follow or time.monotonic() - last_data >= QUIET_RELEASE_S):
                                self._emit(parser.flush(), sink, "")
                                self._commit(sink, parser, last_id, recent)
                            with self.progress:
                                self.at_end += 1
                                self.progress.notify_all()
                            if not self.follow:
                                return
                            stop.wait(self.poll_s)
                except errors as error:
                    if stop.is_set():
                        break
                    if last_id is None and _refused(error):
                        # Never connected, and the server said no: retrying cannot help.
                        raise ConfigurationError(f"{where}: {_reason(error, self.database)}") from None
                    delay = self.backoff.delay_s(attempt, self.rng)
                    attempt += 1
                    self.counts.reconnects += 1
                    log.warning("%s: %s; trying again in %.1f s", where, _reason(error, self.database), delay)
                    stop.wait(delay)
        finally:
            if self.checkpoint_path is None and parser.holding:
                self._emit(parser.flush(), sink, "")
            sink.flush()
            if last_id is not None:
                self._commit(sink, parser, last_id, recent)
            counts = self.counts
            log.info("%s: %d rows; events: %s; ignored: %s; dead-lettered %d; late rows %d; reconnections %d",
                     where, counts.rows, ", ".join(f"{k} {v}" for k, v in sorted(counts.events.items())) or "none",
                     "; ".join(f"{k}: {v}" for k, v in sorted(counts.ignored.items())) or "none",
                     counts.dead_lettered, counts.late_rows, counts.reconnects)

    def wait_at_end(self, after: int, timeout_s: float) -> bool:
        """Wait until a poll has found nothing new more than `after` times (readiness, not a sleep);
        the same signal as the file follower's."""
        with self.progress:
            return self.progress.wait_for(lambda: self.at_end > after, timeout_s)

    @property
    def follower(self) -> TableFollower:
        """What reads (and signals readiness), as `connector.follower` of the file sources."""
        return self

    # -- inside ----------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[_Connection]:
        connection = connect(self.database)
        try:
            yield connection
        finally:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass

    def _start_id(self, connection: _Connection) -> int:
        """No checkpoint: from the table's start, or (following) from its current end."""
        if self.from_start or not self.follow:
            return 0
        cursor = connection.cursor()
        try:
            cursor.execute(f"SELECT MAX(id) FROM {_quoted(self.database)}")
            (top,) = cursor.fetchall()[0]
        finally:
            cursor.close()
        return int(top or 0)

    def _rows(self, connection: _Connection, after_id: int) -> list[dict[str, Any]]:
        cursor = connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM {_quoted(self.database)} WHERE id > %s ORDER BY id LIMIT %s",
                           (after_id, BATCH_ROWS))
            names = [str(column[0]).lower() for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def _handle(self, parser: QueueLogParser, rows: list[dict[str, Any]], sink: EventSink,
                recent: dict[int, None], last_id: int) -> None:
        for row in rows:
            row_id = row["id"]
            if row_id < last_id - LOOKBACK_IDS or (recent and row_id < max(recent)):
                self.counts.late_rows += 1
            recent[row_id] = None
            self.counts.rows += 1
            location = f"{self.database.table} id {row_id}"
            self._emit(parser.parse_row(_with_data_columns(row), location), sink, location, row)
        while len(recent) > 2 * LOOKBACK_IDS:
            del recent[next(iter(recent))]
        self._commit(sink, parser, last_id, recent)

    def _emit(self, items: list[Any], sink: EventSink, location: str, row: Mapping[str, Any] | None = None) -> None:
        for item in items:
            if isinstance(item, dict):
                sink.send(item, location)
                self.counts.events[item["type"]] = self.counts.events.get(item["type"], 0) + 1
            elif isinstance(item, InvalidRecord):
                raw = "|".join("" if value is None else str(value) for value in (row or {}).values())
                sink.dead_letter(DeadLetter.of(self.name, item.reason, location, raw))
                self.counts.dead_lettered += 1
            elif isinstance(item, IgnoredRecord):
                self.counts.ignored[item.reason] = self.counts.ignored.get(item.reason, 0) + 1

    # -- checkpoint ------------------------------------------------------------------------------

    def resume_point(self, parser: QueueLogParser) -> tuple[int | None, dict[int, None], int]:
        """From the checkpoint: the last id handled, the recent ids, the floor, and the parser's
        memory restored; (None, {}, -1) without one. ConfigurationError if it is damaged or another's."""
        path = self.checkpoint_path
        if path is None:
            return None, {}, -1
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            return None, {}, -1
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"cannot read checkpoint {path}: {error}; move it away to start over") from None
        if (not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION
                or data.get("database") != self.database.url or data.get("table") != self.database.table
                or type(data.get("last_id")) is not int or not isinstance(data.get("recent"), list)
                or type(data.get("floor", -1)) is not int):
            raise ConfigurationError(f"checkpoint {path} is not one of table {self.database.table} at "
                                     f"{self.database.url}; move it away to start over")
        parser.restore(data.get("parser"))
        return data["last_id"], {int(row_id): None for row_id in data["recent"]}, data.get("floor", -1)

    def _commit(self, sink: EventSink, parser: QueueLogParser, last_id: int, recent: dict[int, None]) -> None:
        """Events out of the sink's buffers first, then the checkpoint (atomically)."""
        sink.flush()
        path = self.checkpoint_path
        if path is None:
            return
        write_checkpoint(path, {"version": CHECKPOINT_VERSION, "database": self.database.url,
                                "table": self.database.table, "last_id": last_id, "floor": self._floor,
                                "recent": list(recent), "parser": parser.state()})


def _with_data_columns(row: dict[str, Any]) -> dict[str, Any]:
    """Tables with one `data` column hold data1..data5 joined by '|'."""
    if "data1" in row or "data" not in row:
        return row
    values = ("" if row["data"] is None else str(row["data"])).split("|")
    return {**row, **dict(zip(_DATA_COLUMNS, values))}


def _refused(error: BaseException) -> bool:
    """The server refused the user, its password or the database (not a network fault)."""
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    if code in (1044, 1045, 1049, 1146, 1698):  # MySQL: access denied, unknown database or table
        return True
    text = str(error).lower()
    return any(phrase in text for phrase in ("password authentication failed", "does not exist",
                                             "no pg_hba.conf entry", "access denied"))


def _reason(error: BaseException, database: Database) -> str:
    """A driver's error in one line, with nothing of the password (or a number) in it."""
    text = " ".join(str(error).split()) or type(error).__name__
    return redact_numbers(text.replace(database.password, "<password>"))[:300]
