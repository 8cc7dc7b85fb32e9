"""`callwatch connect file`: canonical JSON Lines from a file (or stdin), to its end or followed
as it grows."""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from typing import TextIO

from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from streams.io.codec import decode_json
from streams.io.event_lines import open_input
from streams.options import OptionTarget, UsageError, env_option
from streams.settings import Settings


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
            try:
                obj = decode_json(line)
            except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
                sink.dead_letter(DeadLetter.of(self.name, f"not JSON: {str(error).splitlines()[0]}",
                                               f"{self.path}:{number}", line))
                continue
            if not isinstance(obj, dict):
                sink.dead_letter(DeadLetter.of(self.name, "not a JSON object", f"{self.path}:{number}", line))
                continue
            sink.send(obj, f"{self.path}:{number}")


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--file-path", env="CALLWATCH_FILE_PATH", help="JSON Lines file of canonical events; - for stdin")
    env_option(parser, "--file-follow", env="CALLWATCH_FILE_FOLLOW", action="store_true",
               help="keep reading as the file grows (like tail -f)")


def _build(args: argparse.Namespace, settings: Settings) -> FileConnector:
    if not args.file_path:
        raise UsageError("--file-path is required (a JSON Lines file, or - for stdin)")
    return FileConnector(args.file_path, bool(args.file_follow))


SPEC = ConnectorSpec("file", "canonical JSON Lines events from a file", _add_arguments, _build,
                     example="callwatch connect file --file-path day.jsonl --out -")
