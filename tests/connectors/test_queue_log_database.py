"""queue_log kept in a database, against a real PostgreSQL and a real MariaDB that the suite starts
on 127.0.0.1 (deploy/postgres/start.sh, deploy/mariadb/start.sh: Debian's packages, installed when
missing and root, a throw-away data directory, stopped at the end and by themselves after a
maximum lifetime). The realtime table is imported and followed by id, with restarts from the
checkpoint and a connection killed by the server; dumps of the same table made by psql and the
mariadb client are read like the pipe file. Synchronised by the follower's own readiness signal
(a poll that found nothing new), never by sleeping. With CI=true a server that cannot be had is a
failure, not a skip."""

from __future__ import annotations

import json
import os
import secrets
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.errors import ConfigurationError
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.queue_log.database import Database, TableFollower, connect
from connectors.queue_log.queue_log_parser import ParserConfig, QueueLogParser
from connectors.queue_log.queue_log_source import QueueLogConnector
from tests.connectors.following import Following
from tests.connectors.sinks import CollectingSink
from tests.ports import free_port

pytestmark = pytest.mark.database

REPO = Path(__file__).resolve().parents[2]
CALLS = Path(__file__).resolve().parent / "fixtures" / "queue_log" / "calls.queue_log"
KEY = pseudonymiser(b"test-key")
ZONE = ZoneInfo("Europe/London")
CONFIG = ParserConfig(parse_queue_lines("Q999=999,Q999B=999,Q101=101"), time_zone=ZONE)
WAIT_S = 20.0
PASSWORD = "cw-" + secrets.token_hex(8)  # fresh for each run: checked never to show anywhere
SCHEMA = {
    # Asterisk's realtime queue_log table: time as the PBX's local DATETIME, or epoch seconds.
    ("postgresql", "datetime"): "id SERIAL PRIMARY KEY, time TIMESTAMP(6)",
    ("postgresql", "epoch"): "id SERIAL PRIMARY KEY, time BIGINT",
    ("mysql", "datetime"): "id INT AUTO_INCREMENT PRIMARY KEY, time DATETIME(6)",
    ("mysql", "epoch"): "id INT AUTO_INCREMENT PRIMARY KEY, time BIGINT",
}
COLUMNS = ("callid VARCHAR(80), queuename VARCHAR(128), agent VARCHAR(80), event VARCHAR(32), "
           "data1 VARCHAR(100), data2 VARCHAR(100), data3 VARCHAR(100), data4 VARCHAR(100), data5 VARCHAR(100)")


class Server:
    """One database server started by its deploy script, stopped when the module ends."""

    def __init__(self, kind: str, script: str, port_variable: str) -> None:
        self.kind, self.port = kind, free_port()
        self.state = tempfile.mkdtemp(prefix="callwatch-db-")
        os.chmod(self.state, 0o755)  # the server runs as its own system user
        self.env = {**os.environ, port_variable: str(self.port), "CALLWATCH_STATE": self.state,
                    "CALLWATCH_DB_PASSWORD": PASSWORD, "CALLWATCH_DB_MAX_LIFETIME_S": "900"}
        self.script = REPO / "deploy" / script
        done = subprocess.run([str(self.script / "start.sh")], env=self.env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            message = f"deploy/{script}/start.sh failed: {done.stderr.strip()[-800:]}"
            shutil.rmtree(self.state, ignore_errors=True)
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.url = f"{kind}://callwatch@127.0.0.1:{self.port}/callwatch"

    def stop(self) -> None:
        subprocess.run([str(self.script / "stop.sh")], env=self.env, capture_output=True, timeout=60)
        shutil.rmtree(self.state, ignore_errors=True)

    def database(self, table: str = "queue_log", password: str = PASSWORD) -> Database:
        return Database.parse(self.url, password, table)

    def execute(self, *statements: str, params: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
        connection = connect(self.database())
        try:
            cursor = connection.cursor()
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                if params is not None:
                    cursor.executemany(statement, params)
                else:
                    cursor.execute(statement)
                    if cursor.description:
                        rows = list(cursor.fetchall())
            cursor.close()
            return rows
        finally:
            connection.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    server = Server("postgresql", "postgres", "POSTGRES_PORT")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mariadb() -> Iterator[Server]:
    server = Server("mysql", "mariadb", "MARIADB_PORT")
    yield server
    server.stop()


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue("postgres" if request.param == "postgresql" else "mariadb")  # type: ignore[no-any-return]


def fixture_lines() -> list[str]:
    return CALLS.read_text().splitlines()


def one_shot(lines: list[str]) -> list[str]:
    """Event ids the pure parser gives for the pipe file's lines, read at once."""
    parser = QueueLogParser(CONFIG, KEY)
    items = [item for line in lines for item in parser.parse_line(line)] + parser.flush()
    return [item["event_id"] for item in items if isinstance(item, dict)]


def table_rows(lines: list[str], time_kind: str) -> list[tuple[Any, ...]]:
    """The pipe file's lines as Asterisk's realtime driver would have stored them."""
    rows = []
    for line in lines:
        fields = line.split("|")
        data = (fields[5:] + [""] * 5)[:5]
        epoch = int(fields[0])
        when: Any = epoch if time_kind == "epoch" else datetime.fromtimestamp(epoch, ZONE).replace(tzinfo=None)
        rows.append((when, *fields[1:5], *data))
    return rows


def fill(server: Server, table: str, time_kind: str, lines: list[str], create: bool = True) -> None:
    statements = [f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} ({SCHEMA[(server.kind, time_kind)]}, {COLUMNS})"]
    if create:
        server.execute(*statements)
    if lines:
        server.execute(f"INSERT INTO {table} (time, callid, queuename, agent, event, data1, data2, data3, data4, data5) "
                       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", params=table_rows(lines, time_kind))


# --- the live table -----------------------------------------------------------------------------------

@pytest.mark.parametrize("time_kind", ["datetime", "epoch"])
def test_importing_the_table_gives_what_the_pipe_file_gives(server: Server, time_kind: str) -> None:
    lines = fixture_lines()
    fill(server, "queue_log", time_kind, lines)
    sink = CollectingSink()
    follower = TableFollower(server.database(), CONFIG, KEY)
    follower.run(sink, threading.Event())
    assert sink.ids() == one_shot(lines)  # the same events, the same ids, in order
    assert sink.dead == [] and follower.counts.rows == len(lines)


def test_following_the_table_then_restarting_from_the_checkpoint(server: Server, tmp_path: Path) -> None:
    lines = fixture_lines()
    checkpoint = str(tmp_path / "table.checkpoint")
    fill(server, "queue_log", "datetime", lines[:3])  # there before we start: not ours (tail -F)

    def follower() -> TableFollower:
        return TableFollower(server.database(), CONFIG, KEY, follow=True, checkpoint_path=checkpoint, poll_s=0.05)

    with Following(follower(), CollectingSink()) as first:
        first.settle()
        fill(server, "queue_log", "datetime", lines[3:20], create=False)
        first.settle()
    got = first.sink.ids()
    fill(server, "queue_log", "datetime", lines[20:], create=False)  # written while we were stopped
    with Following(follower(), CollectingSink()) as second:
        second.settle()
    got += second.sink.ids()
    assert got == one_shot(lines[3:])  # nothing lost, nothing twice, held exits carried over


def test_a_connection_the_server_kills_is_reopened_and_nothing_is_lost(server: Server) -> None:
    lines = fixture_lines()
    fill(server, "queue_log", "epoch", lines[:10])
    follower = TableFollower(server.database(), CONFIG, KEY, follow=True, from_start=True, poll_s=0.05)
    with Following(follower, CollectingSink()) as following:
        following.settle()
        if server.kind == "postgresql":
            server.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'callwatch' AND pid <> pg_backend_pid()")
        else:
            for (connection_id,) in server.execute("SELECT id FROM information_schema.processlist "
                                                   "WHERE user = 'callwatch' AND id <> CONNECTION_ID()"):
                server.execute(f"KILL {int(connection_id)}")
        fill(server, "queue_log", "epoch", lines[10:], create=False)
        following.wait_for(lambda ids: ids == one_shot(lines), "the rows added after the kill")
    assert follower.counts.reconnects >= 1


def test_a_wrong_password_stops_at_once_and_is_never_shown(server: Server) -> None:
    fill(server, "queue_log", "epoch", [])
    wrong = "not-" + PASSWORD
    follower = TableFollower(server.database(password=wrong), CONFIG, KEY, follow=True)
    with pytest.raises(ConfigurationError) as refused:
        follower.run(CollectingSink(), threading.Event())
    assert wrong not in str(refused.value) and PASSWORD not in str(refused.value)
    assert server.url in str(refused.value)


# --- dumps of the table, read like the file -----------------------------------------------------------

def dumps(server: Server, directory: Path) -> dict[str, Path]:
    """The table as the database's own clients write it out."""
    env = {**os.environ, "PGPASSWORD": PASSWORD, "MYSQL_PWD": PASSWORD}
    query = "SELECT * FROM queue_log ORDER BY id"
    if server.kind == "postgresql":
        base = ["psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "callwatch", "-d", "callwatch", "-X"]
        commands = {"psql-copy-csv.csv": [*base, "-c", f"\\copy ({query}) TO STDOUT WITH CSV HEADER"],
                    "psql-unaligned.txt": [*base, "-A", "-c", query],
                    "psql-aligned.txt": [*base, "-c", query],
                    "psql-tab.tsv": [*base, "-A", "-F", "\t", "-c", query]}
    else:
        base = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(server.port), "-u", "callwatch", "callwatch"]
        commands = {"mariadb-batch.tsv": [*base, "-B", "-e", query],
                    "mariadb-table.txt": [*base, "--table", "-e", query]}
    paths = {}
    for name, command in commands.items():
        if shutil.which(command[0]) is None:
            pytest.fail(f"{command[0]} (the database's own client) is missing")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        paths[name] = directory / name
        paths[name].write_text(done.stdout)
    return paths


@pytest.mark.parametrize("time_kind", ["datetime", "epoch"])
def test_dumps_made_by_psql_and_mariadb_read_like_the_pipe_file(server: Server, time_kind: str, tmp_path: Path) -> None:
    lines = fixture_lines()
    fill(server, "queue_log", time_kind, lines)
    expected = one_shot(lines)
    for name, path in dumps(server, tmp_path).items():
        sink = CollectingSink()
        QueueLogConnector(str(path), CONFIG, KEY).run(sink, threading.Event())
        assert sink.dead == [], (name, [(d.location, d.reason) for d in sink.dead])
        assert sink.ids() == expected, name


# --- the command line ---------------------------------------------------------------------------------

def test_connect_queue_log_database_with_the_password_from_a_file(server: Server, tmp_path: Path) -> None:
    lines = fixture_lines()
    fill(server, "queue_log", "datetime", lines)
    secret = tmp_path / "db-password"
    secret.write_text(PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(CALLWATCH_PSEUDONYMISATION_KEY="test-key", PYTHONPATH=str(REPO), CALLWATCH_TZ="Europe/London")
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "connect", "queue-log", "--queue-log-database", server.url,
         "--queue-log-database-password-file", str(secret), "--queue-log-queue-lines", "Q999=999,Q999B=999,Q101=101",
         "--out", "-"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stdout.splitlines() if line.strip()]
    assert len(done.stdout.splitlines()) == len(one_shot(lines))
    assert PASSWORD not in done.stdout + done.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "streams.cli", "connect", "queue-log", "--queue-log-database", server.url, "--out", "-"],
        capture_output=True, text=True, timeout=60, env={**env, "CALLWATCH_QUEUE_LOG_DATABASE_PASSWORD": "wrong"})
    assert refused.returncode == 2, refused.stderr
    last = refused.stderr.splitlines()[-1]
    assert last.startswith(f"callwatch connect: error: {server.url} table queue_log: ")
    assert "password authentication failed" in last or "Access denied" in last
    assert "Traceback" not in refused.stderr and "=wrong" not in refused.stderr and "'wrong'" not in refused.stderr




def test_run_follows_the_table_until_interrupted_and_resumes_from_its_checkpoint(server: Server,
                                                                                 tmp_path: Path) -> None:
    lines = fixture_lines()
    fill(server, "queue_log", "epoch", lines[:20])
    checkpoint = tmp_path / "table.checkpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(CALLWATCH_PSEUDONYMISATION_KEY="test-key", PYTHONPATH=str(REPO), CALLWATCH_QUEUE_LOG_DATABASE_PASSWORD=PASSWORD)
    argv = [sys.executable, "-m", "streams.cli", "connect", "queue-log", "--queue-log-database", server.url,
            "--queue-log-follow", "--queue-log-from-start", "--queue-log-poll", "0.05",
            "--queue-log-checkpoint", str(checkpoint), "--queue-log-queue-lines", "Q999=999,Q999B=999,Q101=101"]

    def follow_until(count: int, out: Path) -> list[str]:
        process = subprocess.Popen([*argv, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        try:
            # Readiness: the events file holds the events of the rows (the sink flushes each batch).
            deadline = time.monotonic() + WAIT_S
            while process.poll() is None and time.monotonic() < deadline:
                if out.exists() and len(out.read_text().splitlines()) >= count:
                    break
                time.sleep(0.05)  # polling another process's output file
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr[-2000:]
        assert PASSWORD not in stderr
        return [json.loads(line)["event_id"] for line in out.read_text().splitlines()]

    expected = one_shot(lines)
    first_part = len(one_shot(lines[:20]))
    ids = follow_until(first_part - 1, tmp_path / "first.jsonl")  # a held exit may wait in the checkpoint
    fill(server, "queue_log", "epoch", lines[20:], create=False)
    ids += follow_until(len(expected) - len(ids), tmp_path / "second.jsonl")
    assert ids == expected  # nothing lost, nothing twice across the restart, in order
