"""`callwatch connect file PATH`: canonical JSON Lines from a file (or stdin), to its end or followed
as it grows, through the one file follower (connectors.follow: rotation, truncation, a file that
appears). Lines that are not JSON objects are rejected (the kit's InvalidRecord) and dead-lettered;
the sink validates each event against the schema."""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from connectors.errors import InvalidRecord
from connectors.follow import MAX_LINE_BYTES, FileFollower
from connectors.registry import ConnectorSpec, own_parser
from connectors.sink import DeadLetter, EventSink
from streams.io.codec import decode_json
from streams.io.event_lines import open_input
from streams.options import OptionTarget, UsageError, duration, env_option
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.file")

DEFAULT_POLL_S: Final = 0.2


def event_of_line(line: str, number: int) -> dict[str, Any] | InvalidRecord:
    """One line's event object, or why it is not one."""
    try:
        # Judged with its line end, as replay reads it, so a JSON error names the same place.
        obj = decode_json(line + "\n")
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
        return InvalidRecord(f"not JSON: {str(error).splitlines()[0]}", number)
    if not isinstance(obj, dict):
        return InvalidRecord("not a JSON object", number)
    return obj


@dataclass
class FileConnector:
    path: str
    follow: bool
    poll_s: float = DEFAULT_POLL_S
    name: str = "file"
    realtime: bool = False
    follower: FileFollower | None = field(default=None, repr=False)  # of the current run (readiness)

    def __post_init__(self) -> None:
        self.realtime = self.follow

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        if self.path == "-":
            self._read_stdin(sink, stop)
            return

        def handle(raw: bytes, number: int, path: str) -> None:
            if len(raw) >= MAX_LINE_BYTES:
                sink.dead_letter(DeadLetter.of(self.name, f"line longer than {MAX_LINE_BYTES} bytes",
                                               f"{path}:{number}", raw[:200]))
                return
            self._take(raw.decode("utf-8", "replace"), number, path, sink)

        def lost(location: str, reason: str, raw: bytes) -> None:
            sink.dead_letter(DeadLetter.of(self.name, reason, location, raw))

        follower = self.follower = FileFollower(self.path, handle, follow=self.follow, from_start=True,
                                                on_lost=lost, log=log)
        follower.start()
        try:
            while not stop.is_set():
                if follower.pump():
                    continue
                if not self.follow:
                    if follower.finish():
                        continue
                    break
                follower.idle()
                stop.wait(self.poll_s)  # the file's poll interval: the writer may add lines
        finally:
            follower.close()

    def _read_stdin(self, sink: EventSink, stop: threading.Event) -> None:
        """A pipe is not a file to follow: read it to its end."""
        stream = open_input("-")
        for number, line in enumerate(stream, 1):
            self._take(line[:-1] if line.endswith("\n") else line, number, "<stdin>", sink)
            if stop.is_set():
                return

    def _take(self, line: str, number: int, path: str, sink: EventSink) -> None:
        if not line.strip():
            return
        item = event_of_line(line, number)
        where = f"{path}:{number}"
        if isinstance(item, InvalidRecord):
            sink.dead_letter(DeadLetter.of(self.name, item.reason, where, line))
        else:
            sink.send(item, where)


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--file-path", env="CALLWATCH_FILE_PATH",
               help="JSON Lines file of canonical events; - for stdin (connect: PATH)")
    flags = ("--follow", "--file-follow") if own_parser(parser) else ("--file-follow",)
    env_option(parser, *flags, dest="file_follow", env="CALLWATCH_FILE_FOLLOW",
               action="store_true", help="keep reading as the file grows, like tail -F (rotation and truncation "
                                         "handled)")
    env_option(parser, "--file-poll", env="CALLWATCH_FILE_POLL", default="200ms",
               help="when following, how often to look for new lines (e.g. 200ms, 1s)")


def _build(args: argparse.Namespace, settings: Settings) -> FileConnector:
    path = getattr(args, "path", None) or args.file_path
    if not path:
        raise UsageError("give the JSON Lines file: PATH (or --file-path), or - for stdin")
    if path != "-" and not args.file_follow and not Path(path).is_file():
        raise UsageError(f"no such file: {path}")  # (followed, a file may appear later)
    if path == "-" and args.file_follow:
        raise UsageError("--follow needs a file, not stdin (a pipe is read to its end)")
    return FileConnector(path, bool(args.file_follow), duration(args.file_poll, "--file-poll", minimum_s=0.001))


SPEC = ConnectorSpec("file", "canonical JSON Lines events from a file", _add_arguments, _build,
                     example="callwatch connect file day.jsonl --out -",
                     path_help="JSON Lines file of canonical events, - for stdin (or --file-path)")
