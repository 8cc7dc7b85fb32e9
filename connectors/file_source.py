"""`callwatch connect file PATH`: canonical JSON Lines from a file (or stdin), to its end or followed
as it grows. Lines that are not JSON objects are rejected (the kit's InvalidRecord) and
dead-lettered; the sink validates each event against the schema."""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from connectors.errors import InvalidRecord
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from streams.io.event_lines import open_input
from streams.options import OptionTarget, UsageError, env_option
from streams.settings import Settings


def event_of_line(line: str, number: int) -> dict[str, Any] | InvalidRecord:
    """One line's event object, or why it is not one."""
    try:
        obj = json.loads(line)
    except ValueError as error:
        return InvalidRecord(f"not JSON: {str(error).splitlines()[0]}", number)
    if not isinstance(obj, dict):
        return InvalidRecord("not a JSON object", number)
    return obj


@dataclass
class FileConnector:
    path: str
    follow: bool
    name: str = "file"
    realtime: bool = False

    def __post_init__(self) -> None:
        self.realtime = self.follow

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        stream = open_input(self.path)
        try:
            self._read(stream, sink, stop)
        finally:
            if self.path != "-":
                stream.close()

    def _read(self, stream: TextIO, sink: EventSink, stop: threading.Event) -> None:
        number = 0
        pending = ""
        while not stop.is_set():
            line = stream.readline()
            if not line:
                if not self.follow:
                    break
                stop.wait(0.2)  # the writer may still be adding lines
                continue
            if not line.endswith("\n") and self.follow:
                pending += line  # half a line: wait for the rest
                continue
            line, pending = pending + line, ""
            number += 1
            if not line.strip():
                continue
            item = event_of_line(line, number)
            where = f"{self.path}:{number}"
            if isinstance(item, InvalidRecord):
                sink.dead_letter(DeadLetter.of(self.name, item.reason, where, line))
            else:
                sink.send(item, where)


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--file-path", env="CALLWATCH_FILE_PATH",
               help="JSON Lines file of canonical events; - for stdin (connect: PATH)")
    env_option(parser, "--file-follow", "--follow", dest="file_follow", env="CALLWATCH_FILE_FOLLOW",
               action="store_true", help="keep reading as the file grows (like tail -f)")


def _build(args: argparse.Namespace, settings: Settings) -> FileConnector:
    path = getattr(args, "path", None) or args.file_path
    if not path:
        raise UsageError("give the JSON Lines file: PATH (or --file-path), or - for stdin")
    if path != "-" and not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    return FileConnector(path, bool(args.file_follow))


SPEC = ConnectorSpec("file", "canonical JSON Lines events from a file", _add_arguments, _build,
                     example="callwatch connect file day.jsonl --out -",
                     path_help="JSON Lines file of canonical events, - for stdin (or --file-path)")
