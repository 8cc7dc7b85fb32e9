"""Canonical events from JSON Lines files (or stdin), with every bad line turned into a numbered
rejection instead of an exception."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from streams.domain.events import CallEvent, InvalidEvent, parse_event

from .codec import decode


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line that is not a valid event: where it was and why."""

    origin: str
    line_number: int
    reason: str
    raw: str

    def __str__(self) -> str:
        return f"{self.origin}:{self.line_number}: {self.reason}"


def open_input(path: str) -> TextIO:
    """A text stream of the input. Text mode decodes UTF-8 in large chunks, cheaper than handing
    bytes to the JSON decoder line by line."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_events(paths: Iterable[str], on_position: Callable[[int], None] | None = None
                ) -> Iterator[CallEvent | Rejection]:
    """Events of every file in turn. `on_position` is told, now and then, how many bytes of all the
    inputs have been read (for a progress bar)."""
    done_before = 0
    for path in paths:
        origin = "<stdin>" if path == "-" else path
        stream = open_input(path)
        seekable = path != "-"
        try:
            for number, raw in enumerate(stream, 1):
                try:
                    yield parse_event(decode(raw))
                except InvalidEvent as error:
                    yield Rejection(origin, number, f"invalid {error}", raw)
                except (ValueError, RecursionError) as error:
                    if raw.strip():  # blank lines are allowed and skipped
                        yield Rejection(origin, number, f"not JSON: {str(error).splitlines()[0]}", raw)
                if on_position is not None and seekable and not number & 0xFFF:
                    on_position(done_before + stream.buffer.tell())
            if seekable:
                done_before += stream.buffer.tell()
        finally:
            if path != "-":
                stream.close()


def total_size(paths: Iterable[str]) -> int | None:
    """Total bytes of the inputs, or None when one is a stream of unknown length."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            total += Path(path).stat().st_size
        except OSError:
            return None
    return total
