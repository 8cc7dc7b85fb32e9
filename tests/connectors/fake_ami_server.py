"""An Asterisk Manager Interface server on 127.0.0.1 for tests and demonstrations: it greets like
Asterisk, answers Login, Ping and Logoff, and replays a recorded transcript over a real socket,
in small pieces (so frames and lines arrive split), optionally dropping the connection part-way.
It listens on loopback only and stops by itself after `lifetime_s`.

    python -m tests.connectors.fake_ami_server --transcript ../shared/data/real/asterisk_ami_capture_queue_call.txt --port 5038
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GREETING = "Asterisk Call Manager/2.10.3"
Send = Callable[[str | bytes], None]
LOOPBACK = "127.0.0.1"


@dataclass
class ServerLog:
    connections: int = 0
    logins: list[tuple[str, bool]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def action(self, name: str) -> None:
        with self.changed:
            self.actions.append(name)
            self.changed.notify_all()

    def wait_for_action(self, name: str, timeout_s: float) -> bool:
        """Until the latest action a client sent is `name` (readiness for tests)."""
        with self.changed:
            return self.changed.wait_for(lambda: bool(self.actions) and self.actions[-1] == name, timeout_s)
    dropped: int = 0  # connections cut on purpose
    streamed: int = 0  # connections that were sent the whole rest of the transcript


class FakeAmiServer:
    """Each connection: greeting, then actions are answered as they come; after a good Login the
    transcript is sent (from its start on every connection when `replay_from_start`, as a recorder
    or proxy would; else from where the previous connection was cut, as a live server would).
    `drops[i]` cuts connection i half-way through transcript line `drops[i]` (0-based).
    With `greeting` set to something else it plays a server that is not AMI at all."""

    def __init__(self, transcript: str, *, username: str = "callwatch", secret: str = "callwatch-demo",
                 port: int = 0, drops: Sequence[int] = (), replay_from_start: bool = True,
                 chunk_bytes: int = 61, chunk_delay_s: float = 0.0, lifetime_s: float = 30.0,
                 eol: str = "\r\n", greeting: str = GREETING, answer_pings: bool = True) -> None:
        self.lines = transcript.splitlines()
        self.username = username
        self.secret = secret
        self.drops = list(drops)
        self.replay_from_start = replay_from_start
        self.chunk_bytes = max(1, chunk_bytes)
        self.chunk_delay_s = chunk_delay_s
        self.lifetime_s = lifetime_s
        self.eol = eol
        self.greeting = greeting
        self.answer_pings = answer_pings  # False: a link that has silently died
        self.log = ServerLog()
        self._resume_at = 0
        self._stop = threading.Event()
        self._listener = socket.create_server((LOOPBACK, port))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> FakeAmiServer:
        thread = threading.Thread(target=self._accept, name="fake-ami-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for connection in self._connections:
                _close(connection)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> FakeAmiServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wait_stopped(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(0.5)

    def _accept(self) -> None:
        deadline = time.monotonic() + self.lifetime_s
        while not self._stop.is_set():
            if time.monotonic() > deadline:
                self._stop.set()
                break
            try:
                connection, _peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                self._connections.append(connection)
                number = self.log.connections
                self.log.connections += 1
            thread = threading.Thread(target=self._serve, args=(connection, number), daemon=True,
                                      name=f"fake-ami-{number}")
            thread.start()
            self._threads.append(thread)
        with self._lock:
            for connection in self._connections:
                _close(connection)

    # -- one connection --------------------------------------------------------------------------

    def _serve(self, connection: socket.socket, number: int) -> None:
        connection.settimeout(0.2)
        send_lock = threading.Lock()
        closed = threading.Event()
        logged_in = threading.Event()

        def send(data: str | bytes) -> None:
            with send_lock:
                connection.sendall(data.encode("utf-8") if isinstance(data, str) else data)

        try:
            send(self.greeting + "\r\n")
            reader = threading.Thread(target=self._read_actions, daemon=True, name=f"fake-ami-actions-{number}",
                                      args=(connection, send, logged_in, closed))
            reader.start()
            while not (logged_in.is_set() or closed.is_set() or self._stop.is_set()):
                logged_in.wait(0.05)
            if logged_in.is_set() and not closed.is_set():
                self._stream(number, send, closed)
            while not (closed.is_set() or self._stop.is_set()):
                closed.wait(0.1)  # stay up, answering pings, until the client or the server leaves
        except OSError:
            pass
        finally:
            closed.set()
            _close(connection)

    def _read_actions(self, connection: socket.socket, send: Send, logged_in: threading.Event,
                      closed: threading.Event) -> None:
        buffer = ""
        while not (closed.is_set() or self._stop.is_set()):
            try:
                data = connection.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            buffer += data.decode("utf-8", "replace").replace("\r\n", "\n")
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                action = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                              for line in block.split("\n") if line.strip())
                name = action.get("Action", "").lower()
                self.log.action(name)
                action_id = action.get("ActionID", "")
                try:
                    if name == "login":
                        ok = action.get("Username") == self.username and action.get("Secret") == self.secret
                        self.log.logins.append((action.get("Username", ""), ok))
                        if not ok:
                            send(f"Response: Error\r\nActionID: {action_id}\r\nMessage: Authentication failed\r\n\r\n")
                            closed.set()
                            return
                        send(f"Response: Success\r\nActionID: {action_id}\r\nMessage: Authentication accepted\r\n\r\n"
                             "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
                        logged_in.set()
                    elif name == "ping":
                        if not self.answer_pings:
                            continue
                        send(f"Response: Success\r\nActionID: {action_id}\r\nPing: Pong\r\n"
                             f"Timestamp: {time.time():.6f}\r\n\r\n")
                    elif name == "logoff":
                        send(f"Response: Goodbye\r\nActionID: {action_id}\r\nMessage: Thanks for all the fish.\r\n\r\n")
                        closed.set()
                        return
                    else:
                        send(f"Response: Error\r\nActionID: {action_id}\r\nMessage: Invalid/unknown command\r\n\r\n")
                except OSError:
                    break
        closed.set()

    def _stream(self, number: int, send: Send, closed: threading.Event) -> None:
        start = 0 if self.replay_from_start else self._resume_at
        drop_at = self.drops[number] if number < len(self.drops) else None
        end = len(self.lines) if drop_at is None else min(drop_at, len(self.lines))
        text = "".join(line + self.eol for line in self.lines[start:end])
        if drop_at is not None and drop_at < len(self.lines):
            cut = self.lines[drop_at]
            text += cut[: len(cut) // 2]  # cut in the middle of a line
        payload = text.encode("utf-8")
        for offset in range(0, len(payload), self.chunk_bytes):
            if closed.is_set() or self._stop.is_set():
                return
            send(payload[offset:offset + self.chunk_bytes])  # may end inside a line or a UTF-8 character
            if self.chunk_delay_s:
                time.sleep(self.chunk_delay_s)
        if drop_at is not None and drop_at < len(self.lines):
            self._resume_at = drop_at
            self.log.dropped += 1
            closed.set()  # the caller's finally closes the socket: an abrupt end, mid-line
        else:
            self.log.streamed += 1


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.connectors.fake_ami_server",
                                     description="Replay an AMI transcript to AMI clients on 127.0.0.1.")
    parser.add_argument("--transcript", required=True, help="recorded AMI text (a capture or a fixture)")
    parser.add_argument("--port", type=int, default=5038, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--username", default="callwatch")
    parser.add_argument("--secret-file", help="file holding the secret (default: CALLWATCH_AMI_SECRET, else callwatch-demo)")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds before the server stops by itself")
    args = parser.parse_args(argv)
    secret = (Path(args.secret_file).read_text(encoding="utf-8").strip() if args.secret_file
              else os.environ.get("CALLWATCH_AMI_SECRET", "callwatch-demo"))
    transcript = Path(args.transcript).read_text(encoding="utf-8", errors="replace")
    server = FakeAmiServer(transcript, username=args.username, secret=secret, port=args.port,
                           lifetime_s=args.lifetime).start()
    sys.stderr.write(f"fake AMI server on {LOOPBACK}:{server.port} replaying {args.transcript} "
                     f"(user {args.username}); Ctrl-C to stop\n")
    try:
        server.wait_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
