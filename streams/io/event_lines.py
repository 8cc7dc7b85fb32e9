"""Canonical events from JSON Lines files (or stdin), with every bad line turned into a numbered
rejection instead of an exception. Inputs are read and decoded in blocks of whole lines."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Final, Iterable, Iterator, TextIO, cast

from streams.domain.events import CallEvent, InvalidEvent, parse_event

from .codec import decode, decode_lines

BLOCK_BYTES: Final = 512 * 1024


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line that is not a valid event: where it was and why."""

    origin: str
    line_number: int
    reason: str
    raw: str

    def __str__(self) -> str:
        return f"{self.origin}:{self.line_number}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines of one input. `position`: bytes of all the inputs up to the block's end;
    `starts_input` marks an input's first block (its line 1)."""

    origin: str
    data: bytes
    position: int
    starts_input: bool


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """A block's valid events in input order, its bad lines as (index of the line in the block,
    reason, line) and how many lines it held (blank ones included, for numbering)."""

    events: list[CallEvent]
    rejected: list[tuple[int, str, str]]
    line_count: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What replay consumes: a block's events and its rejections, numbered in their input."""

    events: list[CallEvent]
    rejections: list[Rejection]
    position: int


def open_input(path: str) -> TextIO:
    """A text stream of the input. Text mode decodes UTF-8 in large chunks, cheaper than handing
    bytes to the JSON decoder line by line."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def origin_of(path: str) -> str:
    return "<stdin>" if path == "-" else path


def read_blocks(paths: Iterable[str], block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """The inputs in blocks of about `block_bytes`, each extended to the end of a line so that no
    line (and no UTF-8 sequence or CR LF pair) is ever split: files and pipes alike."""
    position = 0
    for path in paths:
        origin = origin_of(path)
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            first = True
            while data := stream.read(block_bytes):
                if data[-1] != 0x0A:
                    data += stream.readline()
                position += len(data)
                yield Block(origin, data, position, first)
                first = False
        finally:
            if path != "-":
                stream.close()


def decode_block(data: bytes) -> DecodedBlock:
    """Decode and validate every line of a block. Lines end at LF, CR LF or CR (as text mode reads
    them); blank lines are skipped; a bad line's reason is exactly what `rejection_reason` says.
    Lines are decoded as bytes (msgspec checks their UTF-8 itself) unless the block holds a CR.
    A block with a blank or bad line is decoded again line by line."""
    lines: list[bytes | str]
    if b"\r" in data:
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        lines = cast("list[bytes | str]", text.split("\n"))
    else:
        lines = cast("list[bytes | str]", data.split(b"\n"))
    # The last piece follows the last line end: empty unless the input ends without one.
    ended = len(lines) - 1
    if not lines[-1]:
        lines.pop()
    try:  # the usual block, every line a valid event: decoded and validated in two calls
        return DecodedBlock(decode_lines(lines), [], len(lines))
    except (ValueError, RecursionError):
        pass
    events: list[CallEvent] = []
    rejected: list[tuple[int, str, str]] = []
    for index, line in enumerate(lines):
        try:
            events.append(parse_event(decode(line)))
        except (ValueError, RecursionError):  # InvalidEvent is a ValueError
            raw = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            raw += "\n" if index < ended else ""
            reason = rejection_reason(raw)
            if reason is not None:
                rejected.append((index, reason, raw))
    return DecodedBlock(events, rejected, len(lines))


def rejection_reason(raw: str) -> str | None:
    """Why a line (with its line end) is not a valid event; None for a blank line (skipped)."""
    try:
        parse_event(decode(raw))
    except InvalidEvent as error:
        return f"invalid {error}"
    except (ValueError, RecursionError) as error:
        return f"not JSON: {str(error).splitlines()[0]}" if raw.strip() else None
    return None


def numbered(origin: str, first_line: int, rejected: list[tuple[int, str, str]]) -> list[Rejection]:
    return [Rejection(origin, first_line + index, reason, raw) for index, reason, raw in rejected]


def decode_in_order(blocks: Iterable[Block]) -> Iterator[tuple[Block, DecodedBlock]]:
    """Decode blocks one after the other."""
    for block in blocks:
        yield block, decode_block(block.data)


def batches_of(decoded: Iterable[tuple[Block, DecodedBlock]],
               on_position: Callable[[int], None] | None = None) -> Iterator[Batch]:
    """Number the lines of decoded blocks within their input (the first line of each input is 1)
    and tell `on_position` how far the inputs have been consumed."""
    lines_before = 0
    for block, result in decoded:
        if block.starts_input:
            lines_before = 0
        rejections = numbered(block.origin, lines_before + 1, result.rejected) if result.rejected else []
        lines_before += result.line_count
        yield Batch(result.events, rejections, block.position)
        if on_position is not None:
            on_position(block.position)


def read_event_batches(paths: Iterable[str], on_position: Callable[[int], None] | None = None
                       ) -> Iterator[Batch]:
    """Events of every input in turn, a block at a time."""
    return batches_of(decode_in_order(read_blocks(paths)), on_position)


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
