"""AMI framing: the byte stream of an Asterisk Manager Interface connection (or a console capture
of one) into frames, `Name: value` header lines ended by a blank line. Reads arrive split anywhere;
console output, the greeting and command output are skipped and counted; broken frames come out as
`InvalidFrame`s whose payload is safe for a dead letter. Pure: no sockets, clocks or mapping."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from connectors.errors import InvalidRecord
from connectors.privacy import redact_numbers

# The debug console prints this before each event; in a captured console log it may end up glued
# to the previous frame's last header when that header's value was empty.
CONSOLE_MARKER: Final = "<-- Examining AMI event: -->"
MAX_LINE_CHARS: Final = 16_384
MAX_FRAME_LINES: Final = 1_000

_HEADER: Final = re.compile(r"([A-Za-z0-9_-]+(?:\([^()\r\n]*\))?):[ \t]?(.*)")
# Console output interleaved with frames: verbose lines ("    -- Executing", "  == Using"), log
# lines with a timestamp, the CLI prompt and DumpChan rulers.
_CONSOLE_NOISE: Final = re.compile(
    r"\s+(?:--|==|>)\s|\[[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\]|.*\*CLI>|={8,}\s*$")
_FRAME_START_KEYS: Final = frozenset({"event", "response"})
# Header values kept readable in a dead letter: none of them carries a caller's number or name.
_SAFE_HEADERS: Final = frozenset(h.lower() for h in (
    "Event", "Response", "Privilege", "Queue", "Position", "Count", "OriginalPosition", "HoldTime",
    "TalkTime", "RingTime", "Reason", "Status", "Paused", "Membership", "Penalty", "CallsTaken",
    "InCall", "SequenceNumber", "Timestamp", "Uniqueid", "Linkedid", "ActionID", "Message", "Variable",
    "ChannelState", "ChannelStateDesc", "File", "Line", "Func"))


# --- frames -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI frame: its headers in order (names as sent) and its number in the stream."""

    headers: tuple[tuple[str, str], ...]
    number: int = 0

    def get(self, name: str, default: str = "") -> str:
        """The first header called `name` (AMI header names are case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    @property
    def is_response(self) -> bool:
        """An answer to an action (Login, Ping): its first header is Response."""
        return bool(self.headers) and self.headers[0][0].lower() == "response"

    @property
    def is_event(self) -> bool:
        return not self.is_response and bool(self.get("Event"))

    @property
    def event(self) -> str:
        return self.get("Event")

    @property
    def location(self) -> str:
        return f"frame {self.number}"


class InvalidFrame(InvalidRecord):
    """A frame that cannot be read or mapped. `payload` is the frame with every value that could
    hold a number or a name replaced, ready for a dead letter."""

    def __init__(self, reason: str, location: int | str | None = None, payload: str = "") -> None:
        super().__init__(reason, location)
        self.payload = payload

    def __repr__(self) -> str:
        return f"InvalidFrame({self.reason!r}, {self.location!r})"


def _mask_digits(text: str) -> str:
    """The kit's masking rule, from three digits: AMI's callers are often extensions ('123')."""
    return redact_numbers(text, min_digits=3)


def quote_value(value: str, limit: int = 40) -> str:
    """A value for a reason text: digit runs masked, shortened."""
    value = _mask_digits(value)
    return repr(value if len(value) <= limit else value[:limit] + "...")


def scrub_frame(lines: Iterable[str]) -> str:
    """Frame text safe for a dead letter: header names kept, values only where they cannot hold a
    caller's number or name, and digit runs masked in lines that are not headers."""
    out = []
    for line in lines:
        match = _HEADER.fullmatch(line)
        if match is None:
            out.append(_mask_digits(line[:200]))
        elif match.group(1).lower() in _SAFE_HEADERS or not match.group(2):
            out.append(f"{match.group(1)}: {match.group(2)[:200]}")
        else:
            out.append(f"{match.group(1)}: <redacted>")
    return "\n".join(out)


@dataclass
class FramerCounts:
    frames: int = 0
    noise_lines: int = 0     # console output and stray lines between frames: not AMI, not errors
    invalid_frames: int = 0
    discarded_lines: int = 0  # lines of a frame cut short by a lost connection


class AmiFramer:
    """Splits an AMI byte (or text) stream into frames: header lines `Name: value`, each frame ended
    by a blank line; CRLF or LF. Reads arrive in arbitrary pieces: a frame, a line or a UTF-8
    character may be split across them. Lines outside a frame that do not start one (the greeting,
    console output) are counted as noise; a frame holding a line that is not a header is invalid."""

    def __init__(self) -> None:
        self.counts = FramerCounts()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._skipping_long_line = False
        self._lines: list[str] = []   # raw lines of the current frame
        self._headers: list[tuple[str, str]] = []
        self._in_frame = False
        self._after_marker = False
        self._problem = ""
        self._has_event = False
        self._follows = False         # a "Response: Follows" command output, ended by --END COMMAND--
        self._orphans: list[str] = []  # header lines outside a frame, before a blank line
        self._out: list[AmiMessage | InvalidFrame] = []

    def feed(self, data: bytes | str) -> list[AmiMessage | InvalidFrame]:
        text = self._decoder.decode(data) if isinstance(data, bytes) else data
        if not text:
            return []
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        for piece in pieces:
            if self._skipping_long_line:
                self._skipping_long_line = False
                self._overlong_line()
                continue
            self._line(piece[:-1] if piece.endswith("\r") else piece)
        if len(self._partial) > MAX_LINE_CHARS:
            # No newline in sight: keep memory bounded, drop the line and say so at its end.
            self._partial = ""
            self._skipping_long_line = True
        out, self._out = self._out, []
        return out

    def flush(self) -> list[AmiMessage | InvalidFrame]:
        """End of a finite input: the last line and frame count even without their terminators."""
        tail = self._decoder.decode(b"", final=True)
        rest, self._partial = self._partial + tail, ""
        if rest:
            self._line(rest[:-1] if rest.endswith("\r") else rest)
        self._end_frame()
        self._flush_orphans()
        out, self._out = self._out, []
        return out

    def reset(self) -> int:
        """The connection was lost: forget the partial line and frame. Returns the lines dropped."""
        dropped = len(self._lines) + len(self._orphans) + (1 if self._partial else 0)
        self.counts.discarded_lines += dropped
        self._orphans = []
        self._decoder.reset()
        self._partial = ""
        self._skipping_long_line = False
        self._clear()
        self._after_marker = False
        return dropped

    # -- lines -------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        if CONSOLE_MARKER in line:
            before, _, after = line.partition(CONSOLE_MARKER)
            if before.strip():
                self._line(before)
            self._end_frame()
            self._after_marker = True
            if after.strip():
                self._line(after)
            return
        if not line.strip():
            self._end_frame()
            self._flush_orphans()
            self._after_marker = False
            return
        match = _HEADER.fullmatch(line)
        if not self._in_frame:
            starts = match is not None and (self._after_marker or match.group(1).lower() in _FRAME_START_KEYS)
            self._after_marker = False
            if match is not None and not starts:
                self._orphans.append(line)
                return
            self._flush_orphans()
            if not starts:
                self.counts.noise_lines += 1
                return
            self._in_frame = True
        if self._follows:
            if line.strip() == "--END COMMAND--":
                self._end_frame()
            return
        if match is None:
            if _CONSOLE_NOISE.match(line):
                self.counts.noise_lines += 1
                return
            self._lines.append(line)
            if not self._problem:
                self._problem = f"line without a colon inside a frame: {quote_value(line)}"
            return
        name, value = match.group(1), match.group(2).rstrip()
        lowered = name.lower()
        if lowered == "event":
            if self._has_event:
                # The console cut the previous frame short (it printed a new event over it).
                self._end_frame()
                self._in_frame = True
            self._has_event = True
        if len(self._lines) >= MAX_FRAME_LINES:
            self._problem = self._problem or f"frame longer than {MAX_FRAME_LINES} lines"
            return
        self._lines.append(line)
        self._headers.append((name, value))
        if lowered == "response" and value.lower() == "follows" and len(self._headers) == 1:
            self._follows = True

    def _overlong_line(self) -> None:
        if self._in_frame:
            self._problem = self._problem or f"line longer than {MAX_LINE_CHARS} characters"
        else:
            self._flush_orphans()
            self.counts.noise_lines += 1

    def _flush_orphans(self) -> None:
        """Header lines that no Event or Response line started: one alone is console output (a
        DumpChan title); several together are a frame whose first line was lost or garbled."""
        orphans, self._orphans = self._orphans, []
        if len(orphans) < 2:
            self.counts.noise_lines += len(orphans)
            return
        self.counts.frames += 1
        self.counts.invalid_frames += 1
        self._out.append(InvalidFrame("header lines without an Event or Response line",
                                      f"frame {self.counts.frames}", scrub_frame(orphans[:MAX_FRAME_LINES])))

    def _end_frame(self) -> None:
        if not self._in_frame:
            return
        self.counts.frames += 1
        number = self.counts.frames
        if self._problem:
            self.counts.invalid_frames += 1
            self._out.append(InvalidFrame(self._problem, f"frame {number}", scrub_frame(self._lines)))
        elif self._headers:
            self._out.append(AmiMessage(tuple(self._headers), number))
        self._clear()

    def _clear(self) -> None:
        self._lines = []
        self._headers = []
        self._in_frame = False
        self._problem = ""
        self._has_event = False
        self._follows = False
