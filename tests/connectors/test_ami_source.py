"""The AMI connector over a real socket, against an AMI server on 127.0.0.1 that replays recorded
transcripts (the real capture included): login, keep-alive, a connection cut mid-stream and the
reconnection that resumes without duplicates, a restart from a checkpoint, a refused login, and
`callwatch connect ami` / `callwatch run --source ami` as a user runs them. No raw caller number
reaches the sink, the dead letters, the logs or the metrics."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.ami.ami_parser import AmiMapping, parse_transcript
from connectors.ami.ami_source import AmiConnector, AmiEndpoint, LoginRejected
from connectors.backoff import Backoff
from connectors.privacy import pseudonymiser
from connectors.queue_lines import parse_queue_lines
from connectors.sink import JsonLinesSink
from tests.ports import free_port
from tests.real_data import excerpt, whole_file

try:
    from tests.connectors.fake_ami_server import FakeAmiServer
except ModuleNotFoundError:  # tests/connectors is not a package: pytest put this folder on sys.path
    from fake_ami_server import FakeAmiServer  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
CAPTURE = excerpt("asterisk_ami_capture_queue_call.txt")  # tests/fixtures/real/README.md
FIXTURES = Path(__file__).parent / "fixtures" / "ami"
KEY_BYTES = b"test-key"
KEY = pseudonymiser(KEY_BYTES)
SECRET = "s3cret-for-tests"
MAPPING = AmiMapping(parse_queue_lines("Q1=101,999-emergency=999,*=101"))
CALLWATCH = [sys.executable, "-m", "streams.cli"]
CAPTURE_NUMBERS = ("123", "777")  # CallerIDNum / ConnectedLineNum values of the real capture


def capture_text() -> str:
    return CAPTURE.read_text(encoding="utf-8")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeAmiServer]]:
    servers: list[FakeAmiServer] = []

    def start(transcript: str, **options: Any) -> FakeAmiServer:
        options.setdefault("secret", SECRET)
        options.setdefault("lifetime_s", 25.0)
        server = FakeAmiServer(transcript, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Run:
    """An AmiConnector running in a thread into a JSON Lines sink held in memory."""

    def __init__(self, port: int, secret: str = SECRET, checkpoint: Path | None = None,
                 ping_interval_s: float = 20.0, backoff: Backoff = Backoff(0.05, 0.2)) -> None:
        self.out, self.dead = io.StringIO(), io.StringIO()
        self.sink = JsonLinesSink(self.out, self.dead, "ami")
        self.connector = AmiConnector(AmiEndpoint("127.0.0.1", port, "callwatch", secret), MAPPING, KEY,
                                      checkpoint=checkpoint, ping_interval_s=ping_interval_s, backoff=backoff,
                                      rng=random.Random(1))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.connector.run(self.sink, self.stop)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def wait_for(self, predicate: Callable[[Run], bool], timeout_s: float = 10) -> None:
        """Until `predicate` holds, woken by the connector after each batch of events and each quiet
        read, and checked every 50 ms besides: reconnection attempts (no connection, or a server that
        is not AMI) wake nobody, and the wait would otherwise last its whole timeout."""
        progress = self.connector.progress
        deadline = time.monotonic() + timeout_s
        with progress:
            while not (predicate(self) or not self.thread.is_alive()) and time.monotonic() < deadline:
                progress.wait(0.05)
        assert self.error is None, f"the connector thread raised {self.error!r}"
        assert predicate(self), f"timed out; events so far: {self.events()}"

    def caught_up(self, server: FakeAmiServer) -> None:
        """Until the server has sent its whole transcript on its latest connection and the connector
        has read and handled all of it: then anything (wrongly) duplicated would be out."""
        self.wait_for(lambda r: server.log.streamed >= 1 and server.log.streamed + server.log.dropped
                      == server.log.connections)
        seen = self.connector.quiet_reads
        assert self.connector.wait_quiet(seen + 1, 10), "the connector did not go quiet"

    def finish(self, raised: type[BaseException] | None = None) -> Run:
        """Stop the connector; the test fails if its thread raised (unless `raised` is expected)."""
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        if raised is None:
            assert self.error is None, f"the connector thread raised {self.error!r}"
        else:
            assert isinstance(self.error, raised), f"expected {raised.__name__}, got {self.error!r}"
        return self


def identity(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event_id"], e["type"]) for e in events]


def calls_done(expected: int) -> Callable[[Run], bool]:
    return lambda run: len(run.events()) >= expected


# --- over a real socket ---------------------------------------------------------------------------

def test_real_capture_over_a_socket_gives_what_the_parser_gives(serve: Callable[..., FakeAmiServer]) -> None:
    text = capture_text()
    expected = [e for e in parse_transcript(text, MAPPING, KEY, 0) if isinstance(e, dict)]
    server = serve(text, chunk_bytes=97)
    run = Run(server.port)
    run.wait_for(calls_done(len(expected)))
    run.finish()
    assert identity(run.events()) == identity(expected)
    assert run.dead.getvalue() == ""
    answered, offered = (next(e for e in run.events() if e["type"] == kind) for kind in ("answered", "offered"))
    assert answered["ts"] > offered["ts"]
    assert server.log.logins == [("callwatch", True)]
    assert server.log.wait_for_action("logoff", 3)  # a clean goodbye on stop


def test_cut_mid_stream_then_replayed_from_the_start_resumes_without_duplicates(
        serve: Callable[..., FakeAmiServer]) -> None:
    text = capture_text()
    expected = identity([e for e in parse_transcript(text, MAPPING, KEY, 0) if isinstance(e, dict)])
    # Cut twice in the middle of lines (inside frames): once before the call is answered, once
    # after; every new connection replays the whole recording from its start.
    answered = text.splitlines().index("Event: AgentConnect")
    server = serve(text, drops=[answered - 3, answered + 40])
    run = Run(server.port)
    run.wait_for(lambda r: r.connector.stats.connections == 3 and len(r.events()) >= len(expected))
    run.caught_up(server)
    run.finish()
    assert identity(run.events()) == expected
    assert server.log.dropped == 2 and run.connector.stats.reconnects == 2


def test_cut_between_frames_of_a_live_server_loses_nothing(serve: Callable[..., FakeAmiServer]) -> None:
    text = fixture("answered_call.txt") + fixture("abandoned_call.txt") + fixture("transfer_between_queues.txt")
    blank_lines = [i for i, line in enumerate(text.splitlines()) if not line]
    expected = identity([e for e in parse_transcript(text, MAPPING, KEY, 0) if isinstance(e, dict)])
    # Each cut falls half-way through the first line of a frame, which the server sends again in full.
    server = serve(text, drops=[blank_lines[5] + 1, blank_lines[12] + 1], replay_from_start=False)
    run = Run(server.port)
    run.wait_for(calls_done(len(expected)))
    run.finish()
    assert identity(run.events()) == expected
    assert run.connector.stats.connections == 3


@pytest.mark.parametrize("name", ["loop_asterisk13.txt", "loop_asterisk18.txt"])
@pytest.mark.parametrize("replay_from_start", [True, False])
def test_a_queue_loop_without_timestamps_survives_reconnections(
        serve: Callable[..., FakeAmiServer], name: str, replay_from_start: bool) -> None:
    # Byte-identical frames on every visit, and the connection cut twice inside the loop: by a
    # server that replays from its start (the overlap is dropped) or a live one that goes on from
    # the frame it was cutting (nothing is). Other traffic comes first, as on a real connection.
    text = fixture("agent_status.txt") + fixture(name)
    expected = identity([e for e in parse_transcript(text, MAPPING, KEY, 0) if isinstance(e, dict)])
    lines = text.splitlines()
    joins = [i for i, line in enumerate(lines) if line.startswith("Event: QueueCallerJoin") or line == "Event: Join"]
    cut = 3 if replay_from_start else 0  # a live server sends the cut frame again from its first line
    server = serve(text, drops=[joins[1] + cut, joins[2] + cut], replay_from_start=replay_from_start)
    run = Run(server.port)
    run.wait_for(lambda r: r.connector.stats.connections == 3 and len(r.events()) >= len(expected))
    run.finish()
    assert identity(run.events()) == expected
    overlap = run.connector.parser.overlap.counts
    assert (overlap.replayed > 0) == replay_from_start and overlap.console_repeats == 0


def test_restart_with_a_checkpoint_sends_nothing_twice(serve: Callable[..., FakeAmiServer], tmp_path: Path) -> None:
    text = fixture("answered_call.txt")
    checkpoint = tmp_path / "ami-checkpoint.json"
    first = Run(serve(text).port, checkpoint=checkpoint)
    first.wait_for(calls_done(7))
    first.finish()
    assert json.loads(checkpoint.read_text())["sent"] == [e["event_id"] for e in first.events()]
    # A new process, the same frames again (a replaying proxy, or Asterisk's own resend).
    server = serve(text + fixture("abandoned_call.txt"))
    second = Run(server.port, checkpoint=checkpoint)
    second.wait_for(calls_done(2))
    second.caught_up(server)
    second.finish()
    assert [e["type"] for e in second.events()] == ["offered", "abandoned"]  # only what is new
    assert second.connector.stats.resent_skipped == 7


def test_a_refused_login_is_a_clear_error_not_a_retry_loop(serve: Callable[..., FakeAmiServer]) -> None:
    server = serve(fixture("answered_call.txt"))
    run = Run(server.port, secret="wrong")
    run.thread.join(timeout=5)
    run.finish(raised=LoginRejected)
    assert str(run.error) == (f"AMI login as 'callwatch' refused by 127.0.0.1:{server.port}: "
                              "Authentication failed")
    assert server.log.logins == [("callwatch", False)] and run.events() == []


def test_keep_alive_pings_and_a_silent_link_is_abandoned_for_a_new_one(serve: Callable[..., FakeAmiServer]) -> None:
    server = serve(fixture("agent_status.txt"), answer_pings=False)
    run = Run(server.port, ping_interval_s=0.3)
    run.wait_for(lambda r: r.connector.stats.connections >= 2, timeout_s=8)
    run.finish()
    assert server.log.actions.count("ping") >= 2
    assert len(run.events()) == 8  # the second connection's replay sent nothing twice


def test_unreachable_at_first_then_connected_with_backoff(serve: Callable[..., FakeAmiServer],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="callwatch.connect.ami")
    run = Run(port)
    run.wait_for(lambda r: r.connector.stats.reconnects >= 2)
    serve(fixture("abandoned_call.txt"), port=port)
    run.wait_for(calls_done(2))
    run.finish()
    assert "cannot connect" in caplog.text and "reconnecting in" in caplog.text


def test_a_server_that_is_not_ami_is_retried_not_trusted(serve: Callable[..., FakeAmiServer],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="callwatch.connect.ami")
    server = serve("", greeting="SSH-2.0-OpenSSH_9.6")
    run = Run(server.port)
    run.wait_for(lambda r: r.connector.stats.reconnects >= 1)
    run.finish()
    assert "not an Asterisk Manager Interface" in caplog.text and server.log.logins == []


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    rng = random.Random(7)
    backoff = Backoff(initial_s=0.5, max_s=30)
    delays = [backoff.delay_s(attempt, rng) for attempt in range(10)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30, 0.5 * 2 ** attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered: clients do not come back in step
    assert backoff.delay_s(10_000, rng) <= 30


# --- privacy --------------------------------------------------------------------------------------

BAD_FRAMES = ("Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nCallerIDNum 07700900999\r\nQueue: Q1\r\n\r\n"
              "Event: QueueCallerJoin\r\nCallerIDNum: 07700900999\r\nCallerIDName: Jo Bloggs\r\nQueue: Q1\r\n\r\n")


def test_no_raw_number_reaches_the_sink_the_dead_letters_or_the_logs(serve: Callable[..., FakeAmiServer],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    text = capture_text()
    fixtures = "".join(fixture(name) for name in ("answered_call.txt", "abandoned_call.txt", "timeout_call.txt",
                                                  "transfer_between_queues.txt"))
    transcript = text + "\n\n" + fixtures + BAD_FRAMES
    numbers = set(re.findall(r"^(?:CallerIDNum|ConnectedLineNum|DestCallerIDNum|DestConnectedLineNum): (\d+)",
                             transcript, re.M))
    assert set(CAPTURE_NUMBERS) <= numbers and "07700900123" in numbers
    caplog.set_level(logging.DEBUG)
    server = serve(transcript, drops=[3000])
    run = Run(server.port)
    run.wait_for(lambda r: len(r.dead.getvalue().splitlines()) >= 2 and any(
        e["type"] == "transferred" for e in r.events()))
    run.finish()
    dead = [json.loads(line)["dead_letter"] for line in run.dead.getvalue().splitlines()]
    assert [d["reason"] for d in dead] == ["line without a colon inside a frame: 'CallerIDNum <number>'",
                                           "QueueCallerJoin frame without Uniqueid"]
    everything = run.out.getvalue() + run.dead.getvalue() + caplog.text
    assert_no_numbers(everything, numbers | {"07700900999"})
    assert "Jo Bloggs" not in everything and SECRET not in everything
    assert all(e.get("caller") is None or e["caller"].startswith("h:") for e in run.events() if e["type"] == "offered")


LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.M)  # how a log line starts


def assert_no_numbers(text: str, numbers: set[str]) -> None:
    """No caller number as a token of its own (short extensions like 123 are also substrings of
    hashes and times, so they are looked for as whole alphanumeric tokens). The time a log line
    starts with is left out: its milliseconds once read ",777", the capture's extension."""
    tokens = set(re.findall(r"[A-Za-z0-9]+", LOG_TIME.sub("", text)))
    for number in numbers:
        assert number not in tokens, number
        if len(number) >= 7:
            assert number not in text, number


# --- the command line -----------------------------------------------------------------------------

def command_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(CALLWATCH_PSEUDONYMISATION_KEY=KEY_BYTES.decode(), PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} lines")


def test_connect_ami_on_the_real_capture_runs_until_interrupted(serve: Callable[..., FakeAmiServer],
                                                               tmp_path: Path) -> None:
    server = serve(capture_text())
    secret_file = tmp_path / "ami-secret"
    secret_file.write_text(SECRET + "\n")
    out, dead = tmp_path / "events.jsonl", tmp_path / "dead.jsonl"
    process = subprocess.Popen(
        CALLWATCH + ["connect", "ami", "--ami-host", "127.0.0.1", "--ami-port", str(server.port),
                     "--ami-username", "callwatch", "--ami-secret-file", str(secret_file),
                     "--ami-queue-lines", "Q1=101", "--out", str(out), "--dead-letters", str(dead)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=command_env())
    try:
        wait_for_lines(out, 7, process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr.decode()
    assert stderr.decode().splitlines()[-1] == "callwatch connect ami: 7 events sent, 0 dead-lettered"
    kinds = [json.loads(line)["type"] for line in out.read_text().splitlines()]
    assert [k for k in kinds if k != "agent_state"] == ["offered", "answered", "ended"]
    assert dead.read_text() == ""
    assert_no_numbers(out.read_text() + stderr.decode(), set(CAPTURE_NUMBERS))


def test_connect_ami_refused_login_exits_2_in_one_line(serve: Callable[..., FakeAmiServer]) -> None:
    server = serve(fixture("answered_call.txt"))
    done = subprocess.run(CALLWATCH + ["connect", "ami", "--ami-port", str(server.port), "--ami-username",
                                       "callwatch", "--out", "-"],
                          capture_output=True, timeout=20, env=command_env(CALLWATCH_AMI_SECRET="not-it"))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines()[-1] == (f"callwatch connect: error: AMI login as 'callwatch' refused "
                                                     f"by 127.0.0.1:{server.port}: Authentication failed")
    assert b"not-it" not in done.stderr and b"Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--ami-username", "callwatch"], {"CALLWATCH_AMI_SECRET": "x", "CALLWATCH_PSEUDONYMISATION_KEY": ""},
     "CALLWATCH_PSEUDONYMISATION_KEY"),
    (["--ami-username", "callwatch"], {}, "the AMI secret is missing: set CALLWATCH_AMI_SECRET or give --ami-secret-file"),
    ([], {"CALLWATCH_AMI_SECRET": "x"}, "--ami-username is required"),
    (["--ami-username", "u", "--ami-queue-lines", "Q1"], {"CALLWATCH_AMI_SECRET": "x"}, "is not QUEUE=LINE"),
    (["--ami-username", "u", "--ami-port", "70000"], {"CALLWATCH_AMI_SECRET": "x"}, "at most 65535"),
    (["--ami-username", "u", "--ami-secret", "hunter2"], {}, "there is no --ami-secret option"),
])
def test_connect_ami_bad_configuration_exits_2_in_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    done = subprocess.run(CALLWATCH + ["connect", "ami", *args, "--out", "-"], capture_output=True, timeout=20,
                          env=command_env(**env))
    assert done.returncode == 2
    assert message in done.stderr.decode() and done.stderr.count(b"\n") == 1
    assert b"hunter2" not in done.stderr


def test_connect_ami_help_names_every_environment_variable() -> None:
    done = subprocess.run(CALLWATCH + ["connect", "ami", "--help"], capture_output=True, timeout=20, env=command_env())
    text = " ".join(done.stdout.decode().split())
    for variable in ("CALLWATCH_AMI_HOST", "CALLWATCH_AMI_PORT", "CALLWATCH_AMI_USERNAME", "CALLWATCH_AMI_SECRET_FILE",
                     "CALLWATCH_AMI_SECRET", "CALLWATCH_AMI_QUEUE_LINES", "CALLWATCH_AMI_SITE",
                     "CALLWATCH_AMI_CHECKPOINT", "CALLWATCH_AMI_PING_INTERVAL", "CALLWATCH_AMI_DECISION_WINDOW"):
        assert variable in text
    assert "--ami-secret " not in text


def run_source_ami(server: FakeAmiServer, queue_lines: str, until: Callable[[str], bool]) -> tuple[str, str]:
    """`callwatch run --source ami` against `server`, its /metrics read until `until(metrics)` holds
    (at most 20 s), then stopped by SIGTERM, which must end it with status 0: (last metrics, stderr)."""
    metrics_port = free_port()
    process = subprocess.Popen(
        CALLWATCH + ["run", "--source", "ami", "--port", str(metrics_port), "--ami-port", str(server.port),
                     "--ami-username", "callwatch", "--ami-queue-lines", queue_lines],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=command_env(CALLWATCH_AMI_SECRET=SECRET))
    metrics = ""
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None and not until(metrics):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as response:
                    metrics = response.read().decode()
            except OSError:
                metrics = ""
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return metrics, stderr.decode()


def test_run_source_ami_shows_what_decided_each_unanswered_exit(serve: Callable[..., FakeAmiServer]) -> None:
    # Asterisk 1.8 sends no HangupRequest: the last visit's abandon is inferred from a bare Hangup
    # (cause 16), and says so on /metrics; the loop's other exits were decided by the re-join.
    inferred = ('callwatch_ami_unanswered_exits_total{evidence="Hangup without a request, normal clearing cause",'
                'inferred="true",outcome="abandoned"} 1.0')
    metrics, stderr = run_source_ami(serve(fixture("loop_asterisk18.txt")), "*=101", lambda text: inferred in text)
    assert inferred in metrics, metrics[-3000:]
    assert ('callwatch_ami_unanswered_exits_total{evidence="the call joined a queue again",inferred="false",'
            'outcome="transferred"} 3.0') in metrics
    assert "unanswered exits decided by: abandoned: inferred: Hangup without a request" in stderr
    # The pipeline ends after the connector, so everything the connector sent is in its count.
    assert "stopped: 8 events received, 0 rejected" in stderr


def test_run_source_ami_serves_metrics_with_no_raw_number(serve: Callable[..., FakeAmiServer]) -> None:
    def received_all(text: str) -> bool:
        received = re.search(r'^callwatch_events_received_total\{[^}]*source="ami"[^}]*\} (\S+)', text, re.M)
        return received is not None and float(received.group(1)) >= 7

    metrics, stderr = run_source_ami(serve(capture_text()), "Q1=101", received_all)
    assert re.search(r'^callwatch_events_received_total\{[^}]*source="ami"[^}]*\} 7\.0$', metrics, re.M), metrics
    assert 'line="101"' in metrics and 'queue="Q1"' in metrics
    # Names and labels are where a number could leak; sample values are measurements (a lag of
    # 0.777 s would match the capture's extension 777), so they are left out of the search.
    labelled = "\n".join(line if line.startswith("#") else line.rsplit(" ", 1)[0] for line in metrics.splitlines())
    assert_no_numbers(labelled + "\n" + stderr, set(CAPTURE_NUMBERS))
