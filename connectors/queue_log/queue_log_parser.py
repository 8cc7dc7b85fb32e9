"""Asterisk queue_log records (the pipe-delimited file, rows of the realtime database table, or an
export of that table: Bicom PBXware's CSV, mysql/psql dumps) to canonical events. Pure: records in;
events, rejections and ignored-with-a-reason out. Its only memory is a little per-call and per-agent
state, exported as JSON for the follower's checkpoint."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Final, TypeAlias

from connectors.canonical import EventBuilder
from connectors.errors import ConfigurationError, IgnoredRecord, InvalidRecord
from connectors.privacy import Pseudonymiser, redact_numbers
from connectors.queue_lines import QueueLines
from streams.domain.events import ABANDONED, ANSWERED, ENDED, OFFERED, TIMEOUT, TRANSFERRED

SOURCE: Final = "queue-log"
STATE_VERSION: Final = 1

# Epoch seconds outside these bounds are corrupt lines, not calls (and would not format as RFC 3339).
_MIN_EPOCH_S: Final = 631_152_000      # 1990-01-01
_MAX_EPOCH_S: Final = 32_503_680_000   # 3000-01-01
_EVENT_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_EPOCH: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{0,6})?")
# The realtime table's `time` as a DATETIME/TIMESTAMP: '2024-03-01 09:00:00[.123456][+01[:00]]'.
_DATETIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"\s*(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?")
_NONE: Final = frozenset({"", "NONE"})
# Caller ids that say "no number": kept as no caller rather than hashed.
_NO_CALLER: Final = frozenset({"anonymous", "unknown", "<unknown>", "restricted", "private", "unavailable",
                               "none", "withheld"})
# Channel technologies that prefix a member's interface ("Agent/1127", "Local/1127@from-queue/n",
# "PJSIP/1127"): the same person whichever interface a line names.
_TECH_PREFIX: Final = re.compile(
    r"^(?:agent|local|sip|pjsip|iax2|dahdi|zap|sccp|mgcp|h323|ooh323|console|custom|motif|unistim|skinny)/",
    re.IGNORECASE)

# What each queue_log event is to us (see docs/connectors/queue-log.md for the reasons).
CALL_ENTERED: Final = frozenset({"ENTERQUEUE"})
CALL_CONNECTED: Final = frozenset({"CONNECT"})
CALL_ABANDONED: Final = frozenset({"ABANDON"})
CALL_EXITED: Final = frozenset({"EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"})
CALL_COMPLETED: Final = frozenset({"COMPLETECALLER", "COMPLETEAGENT"})
CALL_TRANSFERRED: Final = frozenset({"TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"})
AGENT_JOINED: Final = frozenset({"ADDMEMBER"})
AGENT_LEFT: Final = frozenset({"REMOVEMEMBER"})
AGENT_LOGGED_IN: Final = frozenset({"AGENTLOGIN", "AGENTCALLBACKLOGIN"})
AGENT_LOGGED_OFF: Final = frozenset({"AGENTLOGOFF", "AGENTCALLBACKLOGOFF"})
AGENT_PAUSED: Final = frozenset({"PAUSE", "PAUSEALL"})
AGENT_UNPAUSED: Final = frozenset({"UNPAUSE", "UNPAUSEALL"})
CALL_EVENTS: Final = CALL_ENTERED | CALL_CONNECTED | CALL_ABANDONED | CALL_EXITED | CALL_COMPLETED | CALL_TRANSFERRED
AGENT_EVENTS: Final = (AGENT_JOINED | AGENT_LEFT | AGENT_LOGGED_IN | AGENT_LOGGED_OFF | AGENT_PAUSED
                       | AGENT_UNPAUSED)

RING_ATTEMPT: Final = "ring attempt (RINGNOANSWER, RINGCANCELED): not a call outcome"
OUTBOUND_DIAL: Final = "outbound dial (PBXware OUT* event): not a queue call"
SYSTEM_EVENT: Final = "queue system event (QUEUESTART, CONFIGRELOAD, NONE)"
INFORMATIONAL: Final = "informational event (DID, INFO, SYSCOMPAT, AGENTDUMP, ...): no call outcome"
UNKNOWN_EVENT: Final = "unknown event"
BLANK_LINE: Final = "blank line"

_IGNORED_EVENTS: Final = {
    "RINGNOANSWER": RING_ATTEMPT, "RINGCANCELED": RING_ATTEMPT,
    "QUEUESTART": SYSTEM_EVENT, "CONFIGRELOAD": SYSTEM_EVENT, "NONE": SYSTEM_EVENT,
    "DID": INFORMATIONAL, "INFO": INFORMATIONAL, "SYSCOMPAT": INFORMATIONAL, "AGENTDUMP": INFORMATIONAL,
    "CALLERONHOLD": INFORMATIONAL, "CALLEROFFHOLD": INFORMATIONAL, "AGENTLOGINFAIL": INFORMATIONAL,
    "ATTENDEDTRANSFERFAIL": INFORMATIONAL, "RINGNOANSWERPAUSE": INFORMATIONAL,
}

# Column names of database exports of queue_log (PBXware's first, then Asterisk's realtime table).
CSV_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "time": ("date_time", "time"),
    "callid": ("callid",),
    "queue": ("queue_name", "queuename"),
    "agent": ("type", "agent"),
    "event": ("event",),
}
_CSV_DATA: Final = (("param1", "data1"), ("param2", "data2"), ("param3", "data3"), ("data4",), ("data5",))


# An event (a canonical v1 dict), a rejected record, or an ignored one.
ParsedItem: TypeAlias = dict[str, Any] | InvalidRecord | IgnoredRecord


@dataclass(frozen=True, slots=True)
class QueueLogRecord:
    """One queue_log line, whatever the file format: `time|callid|queue|agent|event|data1|data2|...`."""

    time_ms: int
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def datum(self, index: int) -> str:
        return self.data[index].strip() if index < len(self.data) else ""


@dataclass(frozen=True, slots=True)
class ParserConfig:
    """`lines`: which line each queue is on (the kit's `QUEUE=LINE` grammar; a queue not listed, with
    no `*`, is a line of its own name). An exit (EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY) followed
    within `overflow_window_s` by the same call entering a queue is a transfer, otherwise a timeout.
    `time_zone` reads a database's `time` column written without an offset (Asterisk writes the
    PBX's local time there); epoch seconds need none."""

    lines: QueueLines = field(default_factory=QueueLines)
    site: str = "default"
    overflow_window_s: float = 2.0
    time_zone: tzinfo = timezone.utc

    def __post_init__(self) -> None:
        if not self.site:
            raise ConfigurationError("site must be a non-empty name")
        if not (self.overflow_window_s >= 0 and math.isfinite(self.overflow_window_s)):
            raise ConfigurationError(f"overflow window must be zero or more seconds, not {self.overflow_window_s!r}")

    def line_of(self, queue: str) -> str:
        return self.lines.line_of(queue)


# --- reading one record -----------------------------------------------------------------------------

def _time_ms(text: str, zone: tzinfo) -> int | None:
    """Epoch seconds, or a DATETIME (in `zone` unless it carries an offset); None if neither, or
    outside 1990-3000."""
    text = text.strip()
    if len(text) > 40:
        return None
    if _EPOCH.fullmatch(text):
        seconds = float(text)
    else:
        match = _DATETIME.fullmatch(text)
        if match is None:
            return None
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        try:
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                              int((fraction or "0").ljust(6, "0")), tzinfo=_offset(offset) or zone)
        except ValueError:
            return None  # 2024-02-30, 25:00:00
        seconds = moment.timestamp()
    if not _MIN_EPOCH_S <= seconds < _MAX_EPOCH_S:
        return None
    return round(seconds * 1000)


def _offset(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text == "Z":
        return timezone.utc
    digits = text[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return timezone(-delta if text[0] == "-" else delta)


def _shown(value: str) -> str:
    """A raw value quoted in a reason: short, and with number-like runs masked."""
    return repr(redact_numbers(value[:40]))


def record_of_line(line: str, location: int | str | None = None,
                   zone: tzinfo = timezone.utc) -> QueueLogRecord | InvalidRecord | IgnoredRecord:
    """One line of the pipe-delimited queue_log file."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return IgnoredRecord(BLANK_LINE, location)
    fields = text.split("|")
    if len(fields) < 5:
        return InvalidRecord(f"expected at least 5 '|'-separated fields (time|callid|queue|agent|event), "
                             f"found {len(fields)}", location)
    return _record(fields[0], fields[1], fields[2], fields[3], fields[4], tuple(fields[5:]), location, zone)


def missing_csv_columns(header: list[str] | tuple[str, ...]) -> list[str]:
    """Required columns a database export's header lacks (named by their first alias)."""
    names = {name.strip().lower() for name in header}
    return [aliases[0] for aliases in CSV_COLUMNS.values() if not names.intersection(aliases)]


def record_of_row(row: Mapping[str, object], location: int | str | None = None,
                  zone: tzinfo = timezone.utc) -> QueueLogRecord | InvalidRecord | IgnoredRecord:
    """One row of the realtime table (id,time,callid,queuename,agent,event,data1..data5) or of an
    export of it (PBXware: uid,date_time,callid,queue_name,type,event,param1..3,...). Cells are text
    or what a database driver returns (numbers, datetimes); None and mysql's NULL are empty."""
    cells = {str(k).strip().lower(): _cell(v) for k, v in row.items() if k is not None}
    if not any(value.strip() for value in cells.values()):
        return IgnoredRecord(BLANK_LINE, location)
    missing = [aliases[0] for aliases in CSV_COLUMNS.values() if not any(a in cells for a in aliases)]
    if missing:
        return InvalidRecord(f"row lacks the column(s) {', '.join(missing)}", location)

    def cell(aliases: tuple[str, ...]) -> str:
        return next((cells[a] for a in aliases if a in cells), "")

    data = tuple(cell(aliases) for aliases in _CSV_DATA)
    return _record(cell(CSV_COLUMNS["time"]), cell(CSV_COLUMNS["callid"]), cell(CSV_COLUMNS["queue"]),
                   cell(CSV_COLUMNS["agent"]), cell(CSV_COLUMNS["event"]), data, location, zone)


def _cell(value: object) -> str:
    if value is None or value == "NULL":
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _record(time_text: str, callid: str, queue: str, agent: str, event: str, data: tuple[str, ...],
            location: int | str | None, zone: tzinfo) -> QueueLogRecord | InvalidRecord | IgnoredRecord:
    time_ms = _time_ms(time_text, zone)
    if time_ms is None:
        return InvalidRecord(f"time is neither epoch seconds nor a date and time between 1990 and 3000: "
                             f"{_shown(time_text)}", location)
    event = event.strip()
    if not _EVENT_NAME.fullmatch(event):
        return InvalidRecord(f"event is not a queue_log event name: {_shown(event)}", location)
    return QueueLogRecord(time_ms, callid.strip(), queue.strip(), agent.strip(), event, data)


# --- identities -----------------------------------------------------------------------------------

def agent_name(raw: str) -> str | None:
    """The person behind a member interface: 'Agent/1127', 'Local/1127@callback-agent/n' and
    'PJSIP/1127' are all '1127'; other member names are kept as written."""
    name = raw.strip()
    if name.upper() in _NONE:
        return None
    name = _TECH_PREFIX.sub("", name, count=1)
    name = name.split("@", 1)[0].strip()
    return name or None


def caller_value(record: QueueLogRecord) -> str | None:
    """The caller id on ENTERQUEUE: data2 in Asterisk (data1 is a URL, usually empty); PBXware's
    export writes it in data1 with data2 empty."""
    value = record.datum(1) or record.datum(0)
    if value.lower() in _NO_CALLER:
        return None
    return value


# --- per-agent and per-call memory ----------------------------------------------------------------

@dataclass(slots=True)
class _Agent:
    queue: str | None = None          # the queue its state is shown under (last mapped queue seen)
    queues: list[str] = field(default_factory=list)  # mapped queues it was added to (ADDMEMBER)
    paused: bool = False
    call: str | None = None           # callid of the call it is connected to
    logged_out: bool = False

    @property
    def state(self) -> str:
        if self.logged_out:
            return "logged_out"
        if self.call is not None:
            return "busy"
        return "away" if self.paused else "available"

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "queues": list(self.queues), "paused": self.paused, "call": self.call,
                "logged_out": self.logged_out}


@dataclass(slots=True)
class _Exit:
    """An exit held back until we know whether the call went on to another queue."""

    event: dict[str, Any]
    queue: str
    at_ms: int


class QueueLogParser:
    """Turns records into canonical events. Feed records in file order with `parse_line`/`parse_row`
    (or `parse_record`); `expire`/`flush` release held exits; `state()`/`restore()` carry the memory
    across a restart."""

    def __init__(self, config: ParserConfig, pseudonymiser: Pseudonymiser) -> None:
        self.config = config
        self._pseudonymiser = pseudonymiser
        self._build = EventBuilder(SOURCE, pseudonymiser, config.site)
        self._agents: dict[str, _Agent] = {}   # keyed by pseudonymous agent id
        self._exits: dict[str, _Exit] = {}     # callid -> held exit
        self._window_ms = round(config.overflow_window_s * 1000)

    # -- input ---------------------------------------------------------------------------------

    def parse_line(self, line: str, location: int | str | None = None) -> list[ParsedItem]:
        record = record_of_line(line, location, self.config.time_zone)
        return self.parse_record(record, location) if isinstance(record, QueueLogRecord) else [record]

    def parse_row(self, row: Mapping[str, object], location: int | str | None = None) -> list[ParsedItem]:
        record = record_of_row(row, location, self.config.time_zone)
        return self.parse_record(record, location) if isinstance(record, QueueLogRecord) else [record]

    def parse_record(self, record: QueueLogRecord, location: int | str | None = None) -> list[ParsedItem]:
        out: list[ParsedItem] = []
        if self._exits:
            out.extend(self.expire(record.time_ms))
        event = record.event
        held = self._exits.pop(record.callid, None) if self._exits else None
        if held is not None:
            # Entering a queue at once, another or the same one again (a Queue() loop), the call is
            # still waiting: a transfer, as the AMI connector decides it.
            moved_on = event in CALL_ENTERED and record.time_ms - held.at_ms <= self._window_ms
            out.append(_retyped(held.event, TRANSFERRED if moved_on else TIMEOUT))
        if event in CALL_EVENTS:
            out.extend(self._call_event(record, location))
        elif event in AGENT_EVENTS:
            out.extend(self._agent_event(record, location))
        elif event in _IGNORED_EVENTS:
            out.append(IgnoredRecord(_IGNORED_EVENTS[event], location))
        elif event.startswith("OUT"):
            out.append(IgnoredRecord(OUTBOUND_DIAL, location))
        else:
            out.append(IgnoredRecord(UNKNOWN_EVENT, location, event))
        return out

    def expire(self, now_ms: int) -> list[ParsedItem]:
        """Release as timeouts the held exits older than the overflow window at stream time `now_ms`."""
        due = [callid for callid, held in self._exits.items() if now_ms - held.at_ms > self._window_ms]
        return [_retyped(self._exits.pop(callid).event, TIMEOUT) for callid in due]

    def flush(self) -> list[ParsedItem]:
        """Release every held exit as a timeout (end of the input, or nothing more is coming soon)."""
        held, self._exits = self._exits, {}
        return [_retyped(h.event, TIMEOUT) for h in held.values()]

    @property
    def holding(self) -> int:
        return len(self._exits)

    # -- calls ---------------------------------------------------------------------------------

    def _call_event(self, record: QueueLogRecord, location: int | str | None) -> list[ParsedItem]:
        if record.callid.upper() in _NONE:
            return [InvalidRecord(f"{record.event} without a callid", location)]
        if record.queue.upper() in _NONE:
            return [InvalidRecord(f"{record.event} without a queue", location)]
        line = self.config.line_of(record.queue)
        event = record.event
        if event in CALL_ENTERED:
            return [self._call(record, OFFERED, line, caller=caller_value(record))]
        agent = agent_name(record.agent)
        if event in CALL_CONNECTED:
            # The answer time is the CONNECT line's time: it equals ENTERQUEUE + holdtime (data1).
            return [self._call(record, ANSWERED, line, agent=agent),
                    *self._agent_change(record, agent, line, call=record.callid, suffix=":agent")]
        if event in CALL_ABANDONED:
            return [self._call(record, ABANDONED, line)]
        if event in CALL_EXITED:
            # Held: if the call enters another queue at once, it was moved on (overflow), not timed out.
            self._exits[record.callid] = _Exit(self._call(record, TIMEOUT, line), record.queue, record.time_ms)
            return []
        # COMPLETECALLER, COMPLETEAGENT and the transfers: the answered call left this agent.
        return [self._call(record, ENDED, line, agent=agent),
                *self._agent_change(record, agent, line, call=None, suffix=":agent")]

    def _call(self, record: QueueLogRecord, event_type: str, line: str, agent: str | None = None,
              caller: str | None = None) -> dict[str, Any]:
        """A call event; `agent` and `caller` raw (the event builder hashes them)."""
        return self._build.call(event_type, event_id=_event_id(record), call_id=record.callid,
                                occurred_ms=record.time_ms, line=line, queue=record.queue, agent=agent, caller=caller)

    # -- agents --------------------------------------------------------------------------------

    def _agent_event(self, record: QueueLogRecord, location: int | str | None) -> list[ParsedItem]:
        agent = agent_name(record.agent)
        if agent is None:
            return [InvalidRecord(f"{record.event} without an agent", location)]
        queue = record.queue if record.queue.upper() not in _NONE else None
        line = None if queue is None else self.config.line_of(queue)
        event = record.event
        if event in AGENT_JOINED:
            return self._agent_change(record, agent, line, joined=True)
        if event in AGENT_LEFT:
            return self._agent_change(record, agent, line, left=True)
        if event in AGENT_LOGGED_IN:
            return self._agent_change(record, agent, line, logged_out=False)
        if event in AGENT_LOGGED_OFF:
            return self._agent_change(record, agent, line, logged_out=True)
        return self._agent_change(record, agent, line, paused=event in AGENT_PAUSED)

    def _agent_change(self, record: QueueLogRecord, agent: str | None, line: str | None, *,
                      call: str | None | bool = False, joined: bool = False, left: bool = False,
                      logged_out: bool | None = None, paused: bool | None = None,
                      suffix: str = "") -> list[ParsedItem]:
        """Update one agent's memory from a record and emit its resulting state. `agent` is the
        person's name (raw); `call` is False when the record says nothing about a call, else the
        callid connected (or None: call over)."""
        if agent is None:
            return []
        pseudonym = self._pseudonymiser.agent(agent) or ""
        state = self._agents.get(pseudonym)
        if state is None:
            state = self._agents[pseudonym] = _Agent()
        queue = record.queue if line is not None else None
        if call is not False:
            assert call is None or isinstance(call, str)
            state.call = call
            if call is not None:
                state.logged_out = False
        if joined and queue is not None:
            if queue not in state.queues:
                state.queues.append(queue)
            state.logged_out = False
        if left:
            if queue in state.queues:
                state.queues.remove(queue)
            if state.queues:
                queue = state.queues[0]   # still working other queues: shown under one of them
                line = self.config.line_of(queue)
            else:
                state.logged_out, state.call, state.paused = True, None, False
        if logged_out is not None:
            state.logged_out = logged_out
            if logged_out:
                state.queues.clear()
                state.call, state.paused = None, False
        if paused is not None:
            state.paused = paused
        if queue is not None and line is not None:
            state.queue = queue
        elif state.queue is not None:
            queue = state.queue
            line = self.config.line_of(queue)
        # No call_id: a state is the agent's, not a call's (the Kafka sink keys these by agent).
        shown = queue is not None and line is not None
        return [self._build.agent_state(event_id=_event_id(record, pseudonym) + suffix, occurred_ms=record.time_ms,
                                        agent=agent, state=state.state, line=line if shown else None,
                                        queue=queue if shown else None)]

    # -- memory across restarts ----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able memory: held exits and agents (pseudonymous ids only, never a number)."""
        return {"version": STATE_VERSION,
                "exits": {callid: {"event": held.event, "queue": held.queue, "at_ms": held.at_ms}
                          for callid, held in self._exits.items()},
                "agents": {agent: memory.to_json() for agent, memory in self._agents.items()}}

    def restore(self, state: object) -> None:
        """Take back what `state()` gave; raises ConfigurationError if it is not that shape."""
        try:
            exits, agents = _checked_state(state)
        except (TypeError, ValueError, KeyError) as error:
            raise ConfigurationError(f"parser state is damaged: {error}") from None
        self._exits, self._agents = exits, agents


def _checked_state(state: object) -> tuple[dict[str, _Exit], dict[str, _Agent]]:
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError("not a version 1 parser state")
    exits: dict[str, _Exit] = {}
    for callid, held in _mapping(state.get("exits", {})).items():
        held = _mapping(held)
        event, queue, at_ms = _mapping(held["event"]), held["queue"], held["at_ms"]
        if not isinstance(queue, str) or type(at_ms) is not int:
            raise ValueError(f"held exit of {callid!r} is malformed")
        exits[callid] = _Exit(dict(event), queue, at_ms)
    agents: dict[str, _Agent] = {}
    for agent, memory in _mapping(state.get("agents", {})).items():
        memory = _mapping(memory)
        queue, queues, call = memory.get("queue"), memory.get("queues", []), memory.get("call")
        paused, logged_out = memory.get("paused", False), memory.get("logged_out", False)
        if (not (queue is None or isinstance(queue, str)) or not isinstance(queues, list)
                or not all(isinstance(q, str) for q in queues) or not (call is None or isinstance(call, str))
                or not isinstance(paused, bool) or not isinstance(logged_out, bool)):
            raise ValueError(f"agent {agent!r} is malformed")
        agents[agent] = _Agent(queue, list(queues), paused, call, logged_out)
    return exits, agents


def _mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError("expected an object")
    return value


def _event_id(record: QueueLogRecord, agent: str | None = None) -> str:
    """From the record's content, so the same line (in either file format) always gives the same id."""
    base = f"qlog:{record.callid}:{record.time_ms}:{record.event}:{record.queue}"
    return base if agent is None else f"{base}:{agent}"


def _retyped(event: dict[str, Any], event_type: str) -> dict[str, Any]:
    return {**event, "type": event_type}
