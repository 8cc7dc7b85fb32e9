"""Asterisk Manager Interface (AMI) text to canonical call events. Pure: the transport hands in the
bytes as they arrive, with the time they arrived; out come AMI messages (`AmiFramer`) and canonical
event dicts or rejected frames (`AmiEventMapper`). No sockets, files or clocks here.

The mapping (Asterisk 12+ names; 1.8/11 `Join`, `Leave` and `QueueMemberPaused` are accepted too):
- QueueCallerJoin -> offered; AgentConnect -> answered; AgentComplete -> ended.
- QueueCallerAbandon / QueueCallerLeave without an AgentConnect: the caller left the queue
  unanswered. Asterisk sends QueueCallerAbandon for timeouts and leave-when-empty exits too (its
  `record_abandoned` runs on those paths), so the outcome is decided from what happens next, within
  a short decision window of stream time: the same call joining a queue -> transferred; the
  caller's own hang-up (HangupRequest, before the exit or within the window) -> abandoned, unless
  the queue had already reported a system exit (QUEUESTATUS set by Queue()) -> timeout; nothing
  within the window (the channel lives on in the dialplan: voicemail, a message) -> timeout.
- QueueMemberStatus / QueueMemberPause / QueueMemberAdded / QueueMemberRemoved -> agent_state.

Event time is the frame's `Timestamp` header (manager.conf `timestampevents=yes`) when present.
Without it, a call's offer is the time QueueCallerJoin arrived and its answer, abandon and end are
placed from Asterisk's own HoldTime and TalkTime (whole seconds), so answer times agree with
Asterisk's reports and a recording replayed at any speed gives the figures of the live run."""

from __future__ import annotations

import codecs
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from connectors.errors import ConfigurationError, InvalidRecord
from streams.domain.events import (
    ABANDONED, AGENT_STATE, ANSWERED, ENDED, OFFERED, SCHEMA_VERSION, TIMEOUT, TRANSFERRED, format_ts)

Pseudonymise: TypeAlias = Callable[[str], str]

SOURCE: Final = "ami"
# The debug console prints this before each event; in a captured console log it may end up glued
# to the previous frame's last header when that header's value was empty.
CONSOLE_MARKER: Final = "<-- Examining AMI event: -->"
MAX_LINE_CHARS: Final = 16_384
MAX_FRAME_LINES: Final = 1_000
DEFAULT_DECISION_WINDOW_MS: Final = 5_000
DEFAULT_MEMORY: Final = 50_000

_HEADER: Final = re.compile(r"([A-Za-z0-9_-]+(?:\([^()\r\n]*\))?):[ \t]?(.*)")
# Console output interleaved with frames: verbose lines ("    -- Executing", "  == Using"), log
# lines with a timestamp, the CLI prompt and DumpChan rulers.
_CONSOLE_NOISE: Final = re.compile(
    r"\s+(?:--|==|>)\s|\[[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\]|.*\*CLI>|={8,}\s*$")
_FRAME_START_KEYS: Final = frozenset({"event", "response"})
_WHOLE_SECONDS: Final = re.compile(r"[0-9]{1,9}")
_EPOCH_SECONDS: Final = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,9})?")
_SEQUENCE: Final = re.compile(r"[0-9]{1,20}")
_MAX_EPOCH_MS: Final = 32_503_680_000_000  # year 3000
_DIGIT_RUN: Final = re.compile(r"\d{3,}")
# Header values kept readable in a dead letter: none of them carries a caller's number or name.
_SAFE_HEADERS: Final = frozenset(h.lower() for h in (
    "Event", "Response", "Privilege", "Queue", "Position", "Count", "OriginalPosition", "HoldTime",
    "TalkTime", "RingTime", "Reason", "Status", "Paused", "Membership", "Penalty", "CallsTaken",
    "InCall", "SequenceNumber", "Timestamp", "Uniqueid", "Linkedid", "ActionID", "Message", "Variable",
    "ChannelState", "ChannelStateDesc", "File", "Line", "Func"))
# Headers left out of the content digest that identifies a frame without SequenceNumber/Timestamp.
_PERSONAL_HEADERS: Final = re.compile(r"(?i).*(callerid|connectedline|calleridname|^value$)")
# QUEUESTATUS values Queue() sets when the queue itself let the caller go.
_SYSTEM_EXITS: Final = frozenset({"TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL"})
# ast_device_state codes of QueueMemberStatus.Status.
_LOGGED_OUT_STATUS: Final = frozenset({"4", "5"})            # INVALID, UNAVAILABLE
_BUSY_STATUS: Final = frozenset({"2", "3", "6", "7", "8"})   # INUSE, BUSY, RINGING, RINGINUSE, ONHOLD
_WRAPUP_REASON: Final = re.compile(r"(?i)wrap|\bacw\b|after.?call")
_EVENT_ALIASES: Final = {"join": "queuecallerjoin", "leave": "queuecallerleave",
                         "queuememberpaused": "queuememberpause"}


# --- framing ------------------------------------------------------------------------------------

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
    return _DIGIT_RUN.sub("<n>", text)


def _quote(value: str, limit: int = 40) -> str:
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
                self._problem = f"line without a colon inside a frame: {_quote(line)}"
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


# --- mapping ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AmiMapping:
    """How AMI queues become canonical lines and groups. A queue not in `queue_lines` goes to
    `default_line`, or when that is None to a line named like the queue itself."""

    queue_lines: Mapping[str, str] = field(default_factory=dict)
    default_line: str | None = None
    site: str = "default"
    decision_window_ms: int = DEFAULT_DECISION_WINDOW_MS
    source: str = SOURCE

    def line_of(self, queue: str) -> str:
        line = self.queue_lines.get(queue)
        if line is not None:
            return line
        return self.default_line if self.default_line is not None else queue


def parse_queue_lines(text: str | None) -> tuple[dict[str, str], str | None]:
    """'Q1=999,101-general=101,*=101' -> ({'Q1': '999', '101-general': '101'}, '101')."""
    lines: dict[str, str] = {}
    default: str | None = None
    for item in (text or "").split(","):
        if not item.strip():
            continue
        queue, sep, line = item.partition("=")
        queue, line = queue.strip(), line.strip()
        if not sep or not queue or not line:
            raise ConfigurationError(f"queue lines: {item.strip()!r} is not QUEUE=LINE (e.g. Q1=999,*=101)")
        if queue == "*":
            default = line
        elif lines.setdefault(queue, line) != line:
            raise ConfigurationError(f"queue lines: queue {queue!r} is given two lines")
    return lines, default


@dataclass
class MapperCounts:
    event_frames: int = 0
    duplicates: int = 0     # frames seen before (a console printing twice, a replay after reconnect)
    ignored: int = 0        # event types that say nothing about queues and agents
    invalid: int = 0
    events: int = 0         # canonical events produced
    undecided: int = 0      # exits still in their decision window when the stream ended


# A canonical event (a v1 dict) or a rejected frame.
ParsedItem: TypeAlias = dict[str, Any] | InvalidFrame

_WAITING, _LEAVING, _ANSWERED, _CLOSED = "waiting", "leaving", "answered", "closed"


@dataclass(slots=True)
class _Leg:
    """A call's time in one queue, as far as the AMI stream has shown it."""

    uid: str
    call_id: str
    queue: str
    line: str
    offered_ms: int | None = None
    answered_ms: int | None = None
    state: str = _WAITING
    exit_ms: int = 0           # event time of the unanswered exit
    seen_ms: int = 0           # stream time it was seen: the decision window runs from here
    exit_id: str = ""
    system_exit: bool = False  # Queue() reported that the queue let the caller go


@dataclass(frozen=True, slots=True)
class _Moment:
    ms: int          # event time of the frame
    exact: bool      # from its Timestamp header (else the arrival time)


class _Reject(Exception):
    """Raised inside a handler; becomes an InvalidFrame for the frame being mapped."""


class AmiEventMapper:
    """AMI event messages, in arrival order, to canonical events. Keeps what it must between
    frames (calls in queues, undecided exits, recent frames for duplicates), each bounded."""

    def __init__(self, mapping: AmiMapping, pseudonymise: Pseudonymise, memory: int = DEFAULT_MEMORY) -> None:
        self._mapping = mapping
        self._pseudonymise = pseudonymise
        self._memory = memory
        self.counts = MapperCounts()
        self._legs: OrderedDict[tuple[str, str], _Leg] = OrderedDict()
        self._queues_of: dict[str, list[str]] = {}
        self._leaving: dict[tuple[str, str], _Leg] = {}
        self._hangup_requested: OrderedDict[str, int] = OrderedDict()
        self._queue_status: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._seen_frames: OrderedDict[object, None] = OrderedDict()
        self._agents: OrderedDict[str, str] = OrderedDict()
        self._skew_ms = 0  # Timestamp minus arrival time of the latest timestamped frame
        self._handlers: dict[str, Callable[[AmiMessage, _Moment], list[ParsedItem]]] = {
            "queuecallerjoin": self._join,
            "agentconnect": self._connect,
            "queuecallerabandon": self._exit,
            "queuecallerleave": self._exit,
            "agentcomplete": self._complete,
            "queuememberstatus": self._member,
            "queuememberpause": self._member,
            "queuememberadded": self._member,
            "queuememberremoved": self._member,
            "hanguprequest": self._hangup,
            "softhanguprequest": self._hangup,
            "hangup": self._hangup,
            "varset": self._varset,
        }

    # -- entry points ----------------------------------------------------------------------------

    def accept(self, message: AmiMessage, received_ms: int) -> list[ParsedItem]:
        """One event message that arrived at `received_ms` (epoch ms of the receiving clock)."""
        self.counts.event_frames += 1
        name = message.event.lower()
        name = _EVENT_ALIASES.get(name, name)
        handler = self._handlers.get(name)
        moment = self._moment(message, received_ms)
        if handler is None or (name == "varset" and message.get("Variable").upper() != "QUEUESTATUS"):
            self.counts.ignored += 1  # still, its arrival tells the time
            return self._expire(moment.ms) if moment is not None else []
        if moment is None:
            self.counts.invalid += 1
            return [self._invalid(f"bad Timestamp {_quote(message.get('Timestamp'))} (epoch seconds expected)",
                                  message)]
        out = self._expire(moment.ms)
        if self._seen_before(message, name):
            self.counts.duplicates += 1
            return out
        try:
            out.extend(handler(message, moment))
        except _Reject as problem:
            self.counts.invalid += 1
            out.append(self._invalid(str(problem), message))
        return out

    def tick(self, now_ms: int) -> list[ParsedItem]:
        """Time passes with no frame (receiving clock): decide exits whose window is over."""
        return self._expire(now_ms + self._skew_ms)

    def close(self) -> list[ParsedItem]:
        """End of a finite recording: every exit still in its window is decided as it would be
        at the window's end."""
        return [self._decide(leg, TIMEOUT) for leg in list(self._leaving.values())]

    def drop_undecided(self) -> int:
        """A live stream stops: exits still in their window are not guessed at. Returns how many."""
        count = len(self._leaving)
        for leg in self._leaving.values():
            leg.state = _CLOSED
        self._leaving.clear()
        self.counts.undecided += count
        return count

    # -- handlers --------------------------------------------------------------------------------

    def _join(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        call_id = message.get("Linkedid") or uid
        out: list[ParsedItem] = []
        # A call that left a queue unanswered moments ago and joins a queue now was transferred.
        for leg in list(self._leaving.values()):
            if leg.uid == uid or leg.call_id == call_id:
                out.append(self._decide(leg, TRANSFERRED))
        line = self._mapping.line_of(queue)
        self._remember_leg(_Leg(uid, call_id, queue, line, offered_ms=moment.ms))
        event = self._event(OFFERED, f"ami:{uid}:{queue}:join:{_discriminator(message)}", call_id,
                            moment.ms, queue, line)
        event["caller"] = self._caller(message.get("CallerIDNum"))
        out.append(event)
        return out

    def _connect(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        hold_s = self._seconds(message, "HoldTime")
        leg = self._leg(message, uid, queue)
        at_ms = moment.ms
        if not moment.exact and leg.offered_ms is not None and hold_s is not None:
            at_ms = leg.offered_ms + hold_s * 1000
        self._leaving.pop((uid, queue), None)
        leg.state = _ANSWERED
        leg.answered_ms = at_ms
        event = self._event(ANSWERED, f"ami:{uid}:{queue}:connect:{_discriminator(message)}", leg.call_id,
                            at_ms, queue, leg.line)
        event["agent"] = self._agent(message)
        return [event]

    def _exit(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        """QueueCallerAbandon or QueueCallerLeave: the caller left the queue, maybe unanswered."""
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        hold_s = self._seconds(message, "HoldTime")
        leg = self._leg(message, uid, queue)
        if leg.state != _WAITING:
            return []  # the leave on answer, or the leave after an abandon
        at_ms = moment.ms
        if not moment.exact and leg.offered_ms is not None and hold_s is not None:
            at_ms = leg.offered_ms + hold_s * 1000
        leg.state = _LEAVING
        leg.exit_ms = at_ms
        leg.seen_ms = moment.ms
        leg.exit_id = f"ami:{uid}:{queue}:exit:{_discriminator(message)}"
        status = self._queue_status.get(uid)
        leg.system_exit = status is not None and moment.ms - status[0] <= self._mapping.decision_window_ms
        self._leaving[(uid, queue)] = leg
        if uid in self._hangup_requested:
            # The caller hung up before the queue let go: an abandon. Nothing can follow it.
            return [self._decide(leg, TIMEOUT if leg.system_exit else ABANDONED)]
        return []

    def _complete(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        talk_s = self._seconds(message, "TalkTime")
        self._seconds(message, "HoldTime")
        leg = self._legs.pop((uid, queue), None)
        if leg is not None:
            self._forget_queue_of(uid, queue)
            self._leaving.pop((uid, queue), None)
        at_ms = moment.ms
        if not moment.exact and leg is not None and leg.answered_ms is not None and talk_s is not None:
            at_ms = leg.answered_ms + talk_s * 1000
        call_id = leg.call_id if leg is not None else (message.get("Linkedid") or uid)
        line = leg.line if leg is not None else self._mapping.line_of(queue)
        event = self._event(ENDED, f"ami:{uid}:{queue}:complete:{_discriminator(message)}", call_id, at_ms,
                            queue, line)
        event["agent"] = self._agent(message)
        return [event]

    def _member(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        queue = self._required(message, "Queue")
        agent = self._agent(message)
        if agent is None:
            raise _Reject(f"{message.event} frame without Interface or MemberName")
        if message.event.lower() == "queuememberremoved":
            state = "logged_out"
        else:
            state = _agent_state(message.get("Status"), message.get("Paused"),
                                 message.get("PausedReason") or message.get("Reason"), message.get("InCall"))
        event = self._event(AGENT_STATE, f"ami:agent:{agent}:{queue}:{_discriminator(message)}", None,
                            moment.ms, queue, self._mapping.line_of(queue))
        event["agent"] = agent
        event["state"] = state
        return [event]

    def _hangup(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        uid = message.get("Uniqueid")
        if not uid:
            return []
        name = message.event.lower()
        out: list[ParsedItem] = []
        for queue in list(self._queues_of.get(uid, ())):
            leg = self._leaving.get((uid, queue))
            if leg is not None:
                # Only the caller's own hang-up (HangupRequest) is an abandon; a hang-up after the
                # queue let the caller go, or one the dialplan asked for, ends a timeout.
                caller_hung_up = name == "hanguprequest" or (name == "hangup" and uid not in self._hangup_requested)
                out.append(self._decide(leg, ABANDONED if caller_hung_up and not leg.system_exit else TIMEOUT))
        if name == "hanguprequest":
            _bounded_put(self._hangup_requested, uid, moment.ms, self._memory)
        if name == "hangup":
            for queue in list(self._queues_of.get(uid, ())):
                leg = self._legs.get((uid, queue))
                if leg is not None and leg.state != _ANSWERED:  # answered legs wait for AgentComplete
                    del self._legs[(uid, queue)]
                    self._forget_queue_of(uid, queue)
            self._hangup_requested.pop(uid, None)
            self._queue_status.pop(uid, None)
        return out

    def _varset(self, message: AmiMessage, moment: _Moment) -> list[ParsedItem]:
        uid, value = message.get("Uniqueid"), message.get("Value").strip().upper()
        if not uid or value not in _SYSTEM_EXITS:
            return []
        _bounded_put(self._queue_status, uid, (moment.ms, value), self._memory)
        for queue in self._queues_of.get(uid, ()):
            leg = self._leaving.get((uid, queue))
            if leg is not None:
                leg.system_exit = True
        return []

    # -- helpers ---------------------------------------------------------------------------------

    def _moment(self, message: AmiMessage, received_ms: int) -> _Moment | None:
        """The frame's event time; None when its Timestamp header is not a time."""
        text = message.get("Timestamp").strip()
        if not text:
            return _Moment(received_ms + self._skew_ms, False)
        if _EPOCH_SECONDS.fullmatch(text):
            ms = round(float(text) * 1000)
            if 0 < ms < _MAX_EPOCH_MS:
                self._skew_ms = ms - received_ms
                return _Moment(ms, True)
        return None

    def _expire(self, stream_ms: int) -> list[ParsedItem]:
        window = self._mapping.decision_window_ms
        due = [leg for leg in self._leaving.values() if stream_ms - leg.seen_ms > window]
        return [self._decide(leg, TIMEOUT) for leg in due]

    def _decide(self, leg: _Leg, outcome: str) -> dict[str, Any]:
        self._leaving.pop((leg.uid, leg.queue), None)
        leg.state = _CLOSED
        return self._event(outcome, leg.exit_id, leg.call_id, leg.exit_ms, leg.queue, leg.line)

    def _leg(self, message: AmiMessage, uid: str, queue: str) -> _Leg:
        leg = self._legs.get((uid, queue))
        if leg is None:  # joined before we were listening
            leg = _Leg(uid, message.get("Linkedid") or uid, queue, self._mapping.line_of(queue))
            self._remember_leg(leg)
        return leg

    def _remember_leg(self, leg: _Leg) -> None:
        key = (leg.uid, leg.queue)
        if key in self._legs:
            self._forget_queue_of(leg.uid, leg.queue)
        self._legs[key] = leg
        self._legs.move_to_end(key)
        self._queues_of.setdefault(leg.uid, []).append(leg.queue)
        while len(self._legs) > self._memory:
            (old_uid, old_queue), _old = self._legs.popitem(last=False)
            self._forget_queue_of(old_uid, old_queue)
            self._leaving.pop((old_uid, old_queue), None)

    def _forget_queue_of(self, uid: str, queue: str) -> None:
        queues = self._queues_of.get(uid)
        if queues is None:
            return
        if queue in queues:
            queues.remove(queue)
        if not queues:
            del self._queues_of[uid]

    def _seen_before(self, message: AmiMessage, name: str) -> bool:
        sequence = message.get("SequenceNumber")
        if sequence:
            key: object = (name, sequence, message.get("Timestamp"), message.get("Uniqueid"),
                           message.get("Interface") or message.get("MemberName"), message.get("Queue"))
        else:
            key = hash(message.headers)
        if key in self._seen_frames:
            return True
        _bounded_put(self._seen_frames, key, None, 4096)
        return False

    def _required(self, message: AmiMessage, name: str) -> str:
        value = message.get(name).strip()
        if not value:
            raise _Reject(f"{message.event} frame without {name}")
        return value

    def _seconds(self, message: AmiMessage, name: str) -> int | None:
        text = message.get(name).strip()
        if not text:
            return None
        if not _WHOLE_SECONDS.fullmatch(text):
            raise _Reject(f"bad {name} {_quote(text)} in {message.event} (whole seconds expected)")
        return int(text)

    def _caller(self, number: str) -> str | None:
        number = "".join(number.split())
        if not any(ch.isdigit() for ch in number):
            return None  # withheld: empty, <unknown>, anonymous
        return self._pseudonymise(number)

    def _agent(self, message: AmiMessage) -> str | None:
        member = (message.get("Interface") or message.get("Member") or message.get("Location")
                  or message.get("MemberName")).strip()
        if not member:
            return None
        agent = self._agents.get(member)
        if agent is None:
            agent = self._pseudonymise("agent:" + member)
            _bounded_put(self._agents, member, agent, 10_000)
        return agent

    def _event(self, event_type: str, event_id: str, call_id: str | None, at_ms: int, queue: str,
               line: str) -> dict[str, Any]:
        event: dict[str, Any] = {"v": SCHEMA_VERSION, "event_id": event_id}
        if call_id is not None:
            event["call_id"] = call_id
        event.update(type=event_type, ts=format_ts(at_ms), line=line, queue=queue, site=self._mapping.site,
                     source=self._mapping.source)
        self.counts.events += 1
        return event

    def _invalid(self, reason: str, message: AmiMessage) -> InvalidFrame:
        lines = [f"{name}: {value}" for name, value in message.headers]
        return InvalidFrame(reason, message.location, scrub_frame(lines))


def _agent_state(status: str, paused: str, reason: str, in_call: str) -> str:
    status = status.strip()
    if status in _LOGGED_OUT_STATUS:
        return "logged_out"
    if status in _BUSY_STATUS or in_call.strip() == "1":
        return "busy"  # on a call (or being rung): a pause takes effect when it ends
    if paused.strip() in ("1", "true", "yes"):
        return "wrapup" if _WRAPUP_REASON.search(reason) else "away"
    return "available"


def _discriminator(message: AmiMessage) -> str:
    """What tells this frame from another of the same kind for the same call and queue, the same
    whenever the frame is read again: its SequenceNumber (Asterisk 12+), else its Timestamp, else
    a digest of its content (never of the caller's number or name)."""
    sequence = message.get("SequenceNumber").strip()
    timestamp = message.get("Timestamp").strip()
    if sequence and _SEQUENCE.fullmatch(sequence):
        return f"s{sequence}" + (f"t{timestamp}" if timestamp and _EPOCH_SECONDS.fullmatch(timestamp) else "")
    if timestamp and _EPOCH_SECONDS.fullmatch(timestamp):
        return f"t{timestamp}"
    digest = hashlib.sha256()
    for name, value in message.headers:
        if not _PERSONAL_HEADERS.match(name):
            digest.update(f"{name.lower()}\x00{value}\x00".encode("utf-8", "replace"))
    return "d" + digest.hexdigest()[:16]


def _bounded_put(store: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


# --- both together ------------------------------------------------------------------------------

class AmiParser:
    """Framer and mapper together, for recordings and tests: text in, canonical events out.
    Responses (to the transport's own actions) are dropped here."""

    def __init__(self, mapping: AmiMapping, pseudonymise: Pseudonymise, memory: int = DEFAULT_MEMORY) -> None:
        self.framer = AmiFramer()
        self.mapper = AmiEventMapper(mapping, pseudonymise, memory)

    def feed(self, data: bytes | str, received_ms: int) -> list[ParsedItem]:
        return self._map(self.framer.feed(data), received_ms)

    def tick(self, now_ms: int) -> list[ParsedItem]:
        return self.mapper.tick(now_ms)

    def finish(self, received_ms: int) -> list[ParsedItem]:
        """End of a recording: the last frame, then every exit still undecided."""
        return self._map(self.framer.flush(), received_ms) + self.mapper.close()

    def _map(self, messages: list[AmiMessage | InvalidFrame], received_ms: int) -> list[ParsedItem]:
        out: list[ParsedItem] = []
        for message in messages:
            if isinstance(message, InvalidFrame):
                out.append(message)
            elif message.is_event:
                out.extend(self.mapper.accept(message, received_ms))
        return out


def parse_transcript(text: bytes | str, mapping: AmiMapping, pseudonymise: Pseudonymise,
                     received_ms: int, chunk_size: int | None = None) -> list[ParsedItem]:
    """A whole recorded AMI transcript, as if it all arrived at `received_ms` (in pieces of
    `chunk_size` characters or bytes, to mimic socket reads)."""
    parser = AmiParser(mapping, pseudonymise)
    out: list[ParsedItem] = []
    size = chunk_size or len(text) or 1
    for start in range(0, len(text), size):
        out.extend(parser.feed(text[start:start + size], received_ms))
    out.extend(parser.finish(received_ms))
    return out
