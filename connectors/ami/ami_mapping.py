"""AMI event frames to canonical call events. Pure: frames in arrival order (with the time each
arrived and its occurrence number from `ami_overlap`), events and rejected frames out.

Asterisk 12+ names (`QueueCallerJoin`, `QueueCallerLeave`, `QueueCallerAbandon`, `AgentConnect`,
`AgentComplete`, `QueueMember*`); the 1.8/11 names `Join`, `Leave` and `QueueMemberPaused` too.
- QueueCallerJoin -> offered; AgentConnect -> answered; AgentComplete -> ended.
- QueueCallerAbandon / QueueCallerLeave without an AgentConnect: the caller left the queue
  unanswered. Asterisk sends QueueCallerAbandon for its timeouts and leave-when-empty exits too
  (its `record_abandoned` runs on those paths), so the outcome is decided from the best evidence
  Asterisk gives within a short decision window of stream time, strongest first: the same call
  joining a queue (transferred); `QUEUESTATUS` set by Queue() to a system exit (timeout); the
  caller's own HangupRequest (abandoned); a SoftHangupRequest (timeout); a leave with no abandon
  (timeout: Asterisk did not count an abandon, e.g. a key press); then, inferred and counted as
  such, a bare Hangup (its cause: normal clearing -> abandoned, any other -> timeout) or nothing
  at all (timeout: the channel went on in the dialplan).
- QueueMemberStatus / QueueMemberPause / QueueMemberAdded / QueueMemberRemoved -> agent_state.

Event time is the frame's `Timestamp` header (manager.conf `timestampevents=yes`) when present.
Without it, a call's offer is the time QueueCallerJoin arrived and its answer, abandon and end are
placed from Asterisk's own HoldTime and TalkTime (whole seconds), so answer times agree with
Asterisk's reports and a recording replayed at any speed gives the figures of the live run."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from connectors.ami.ami_framing import AmiMessage, InvalidFrame, quote_value, scrub_frame
from connectors.ami.ami_overlap import remember, sequence_of, timestamp_of
from connectors.canonical import EventBuilder
from connectors.privacy import Pseudonymiser
from connectors.queue_lines import QueueLines
from streams.domain.events import ABANDONED, ANSWERED, ENDED, OFFERED, TIMEOUT, TRANSFERRED

SOURCE: Final = "ami"
DEFAULT_DECISION_WINDOW_MS: Final = 5_000
DEFAULT_MEMORY: Final = 50_000

_WHOLE_SECONDS: Final = re.compile(r"[0-9]{1,9}")
_MAX_EPOCH_MS: Final = 32_503_680_000_000  # year 3000
# Headers left out of the content digest that identifies a frame without SequenceNumber/Timestamp.
_PERSONAL_HEADERS: Final = re.compile(r"(?i).*(callerid|connectedline|calleridname|^value$)")
# QUEUESTATUS values Queue() sets when the queue itself let the caller go.
_SYSTEM_EXITS: Final = frozenset({"TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL"})
# Hang-up causes (Q.850) of a call cleared normally, as a caller's hang-up is: 16 normal clearing,
# 31 normal, unspecified. Any other cause (network failure, congestion...) is not the caller's choice.
_NORMAL_CLEARING: Final = frozenset({"16", "31"})
# ast_device_state codes of QueueMemberStatus.Status.
_LOGGED_OUT_STATUS: Final = frozenset({"4", "5"})            # INVALID, UNAVAILABLE
_BUSY_STATUS: Final = frozenset({"2", "3", "6", "7", "8"})   # INUSE, BUSY, RINGING, RINGINUSE, ONHOLD
_WRAPUP_REASON: Final = re.compile(r"(?i)wrap|\bacw\b|after.?call")
_EVENT_ALIASES: Final = {"join": "queuecallerjoin", "leave": "queuecallerleave",
                         "queuememberpaused": "queuememberpause"}

# What decided an unanswered exit. The inferred ones are guesses where Asterisk said nothing better.
INFERRED: Final = "inferred: "
BY_JOIN: Final = "the call joined a queue again"
BY_QUEUESTATUS: Final = "QUEUESTATUS set to a system exit"
BY_HANGUP_REQUEST: Final = "the caller's HangupRequest"
BY_SOFT_HANGUP: Final = "a SoftHangupRequest (the system's)"
BY_LEAVE_ONLY: Final = "QueueCallerLeave without QueueCallerAbandon"
BY_NORMAL_HANGUP: Final = "inferred: Hangup without a request, normal clearing cause"
BY_OTHER_HANGUP: Final = "inferred: Hangup without a request, cause not normal clearing"
BY_SILENCE: Final = "inferred: no hang-up or join within the decision window"
BY_END: Final = "inferred: the recording ended within the decision window"


@dataclass(frozen=True, slots=True)
class AmiMapping:
    """Which line each queue is on (`QUEUE=LINE` grammar of connectors.queue_lines), the site, and
    how long an unanswered exit waits for better evidence."""

    lines: QueueLines = field(default_factory=QueueLines)
    site: str = "default"
    decision_window_ms: int = DEFAULT_DECISION_WINDOW_MS
    source: str = SOURCE


@dataclass
class MapperCounts:
    event_frames: int = 0
    ignored: int = 0        # event types that say nothing about queues and agents
    invalid: int = 0
    events: int = 0         # canonical events produced
    undecided: int = 0      # exits still in their decision window when a live stream stopped
    decided: dict[str, int] = field(default_factory=dict)  # "outcome: evidence" -> count

    @property
    def inferred(self) -> dict[str, int]:
        return {key: value for key, value in self.decided.items() if "inferred" in key}


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
    abandon_sent: bool = False  # Asterisk sent QueueCallerAbandon (it counted an abandon or a system exit)
    system_exit: str = ""       # the QUEUESTATUS system exit Queue() reported, if any


@dataclass(frozen=True, slots=True)
class _Moment:
    ms: int          # event time of the frame
    exact: bool      # from its Timestamp header (else the arrival time)


class _Reject(Exception):
    """Raised inside a handler; becomes an InvalidFrame for the frame being mapped."""


class AmiEventMapper:
    """AMI event messages, in arrival order, to canonical events. Keeps what it must between
    frames (calls in queues, undecided exits, hang-up evidence), each bounded."""

    def __init__(self, mapping: AmiMapping, pseudonymiser: Pseudonymiser, memory: int = DEFAULT_MEMORY) -> None:
        self._mapping = mapping
        self._build = EventBuilder(mapping.source, pseudonymiser, mapping.site)
        self._memory = memory
        self.counts = MapperCounts()
        self._legs: OrderedDict[tuple[str, str], _Leg] = OrderedDict()
        self._queues_of: dict[str, list[str]] = {}
        self._leaving: dict[tuple[str, str], _Leg] = {}
        self._hangup_requested: OrderedDict[str, int] = OrderedDict()
        self._soft_requested: OrderedDict[str, int] = OrderedDict()
        self._queue_status: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._skew_ms = 0  # Timestamp minus arrival time of the latest timestamped frame
        self._handlers: dict[str, Callable[[AmiMessage, _Moment, int], list[ParsedItem]]] = {
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

    def accept(self, message: AmiMessage, received_ms: int, occurrence: int = 1) -> list[ParsedItem]:
        """One new event message that arrived at `received_ms` (epoch ms of the receiving clock);
        `occurrence` counts the new frames with exactly its content (see ami_overlap)."""
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
            return [self._invalid(f"bad Timestamp {quote_value(message.get('Timestamp'))} (epoch seconds expected)",
                                  message)]
        out = self._expire(moment.ms)
        try:
            out.extend(handler(message, moment, occurrence))
        except _Reject as problem:
            self.counts.invalid += 1
            out.append(self._invalid(str(problem), message))
        return out

    def tick(self, now_ms: int) -> list[ParsedItem]:
        """Time passes with no frame (receiving clock): decide exits whose window is over."""
        return self._expire(now_ms + self._skew_ms)

    def close(self) -> list[ParsedItem]:
        """End of a finite recording: every exit still in its window is decided on what it has."""
        return [self._decide(leg, *self._without_more(leg, BY_END)) for leg in list(self._leaving.values())]

    def drop_undecided(self) -> int:
        """A live stream stops: exits still in their window are not guessed at. Returns how many."""
        count = len(self._leaving)
        for leg in self._leaving.values():
            leg.state = _CLOSED
        self._leaving.clear()
        self.counts.undecided += count
        return count

    # -- handlers --------------------------------------------------------------------------------

    def _join(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        call_id = message.get("Linkedid") or uid
        out: list[ParsedItem] = []
        at_ms = moment.ms
        # A call that left a queue unanswered moments ago and joins a queue now (another one, or the
        # same one again: a Queue() loop in the dialplan) is still waiting: a transfer.
        for leg in list(self._leaving.values()):
            if leg.uid == uid or leg.call_id == call_id:
                out.append(self._decide(leg, TRANSFERRED, BY_JOIN))
                if not moment.exact:
                    # The exit was placed by its HoldTime: a replay faster than life must not put
                    # the new offer before it.
                    at_ms = max(at_ms, leg.exit_ms)
        self._queue_status.pop(uid, None)  # a new Queue() run: the last one's QUEUESTATUS is stale
        route = self._mapping.lines.route(queue)
        self._remember_leg(_Leg(uid, call_id, queue, route.line, offered_ms=at_ms))
        out.append(self._build.call(OFFERED, event_id=self._id(uid, queue, "join", message, occurrence),
                                    call_id=call_id, occurred_ms=at_ms, line=route.line, queue=queue,
                                    caller=message.get("CallerIDNum")))
        return out

    def _connect(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        hold_s = self._seconds(message, "HoldTime")
        leg = self._leg(message, uid, queue)
        at_ms = moment.ms
        if not moment.exact and leg.offered_ms is not None and hold_s is not None:
            at_ms = leg.offered_ms + hold_s * 1000
        self._leaving.pop((uid, queue), None)
        leg.state = _ANSWERED
        leg.answered_ms = at_ms
        return [self._build.call(ANSWERED, event_id=self._id(uid, queue, "connect", message, occurrence),
                                 call_id=leg.call_id, occurred_ms=at_ms, line=leg.line, queue=queue,
                                 agent=_member(message))]

    def _exit(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
        """QueueCallerAbandon or QueueCallerLeave: the caller left the queue, maybe unanswered."""
        uid, queue = self._required(message, "Uniqueid"), self._required(message, "Queue")
        hold_s = self._seconds(message, "HoldTime")
        leg = self._leg(message, uid, queue)
        abandon = message.event.lower() == "queuecallerabandon"
        if leg.state == _LEAVING and abandon:
            leg.abandon_sent = True  # the leave came first; the abandon still says what Asterisk counted
        if leg.state != _WAITING:
            return []  # the leave on answer, or the leave after an abandon
        at_ms = moment.ms
        if not moment.exact and leg.offered_ms is not None and hold_s is not None:
            at_ms = leg.offered_ms + hold_s * 1000
        leg.state = _LEAVING
        leg.exit_ms = at_ms
        leg.seen_ms = moment.ms
        leg.exit_id = self._id(uid, queue, "exit", message, occurrence)
        leg.abandon_sent = abandon
        status = self._queue_status.get(uid)
        if status is not None and moment.ms - status[0] <= self._mapping.decision_window_ms:
            leg.system_exit = status[1]
        self._leaving[(uid, queue)] = leg
        if uid in self._hangup_requested:
            # The caller hung up before the queue let go: an abandon. Nothing can follow it.
            if leg.system_exit:
                return [self._decide(leg, TIMEOUT, BY_QUEUESTATUS)]
            return [self._decide(leg, ABANDONED, BY_HANGUP_REQUEST)]
        if uid in self._soft_requested:
            return [self._decide(leg, TIMEOUT, BY_SOFT_HANGUP)]
        return []

    def _complete(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
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
        line = leg.line if leg is not None else self._mapping.lines.line_of(queue)
        return [self._build.call(ENDED, event_id=self._id(uid, queue, "complete", message, occurrence),
                                 call_id=call_id, occurred_ms=at_ms, line=line, queue=queue,
                                 agent=_member(message))]

    def _member(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
        queue = self._required(message, "Queue")
        member = _member(message)
        if member is None:
            raise _Reject(f"{message.event} frame without Interface or MemberName")
        if message.event.lower() == "queuememberremoved":
            state = "logged_out"
        else:
            state = _agent_state(message.get("Status"), message.get("Paused"),
                                 message.get("PausedReason") or message.get("Reason"), message.get("InCall"))
        agent = self._build.pseudonymiser.agent(member) if self._build.pseudonymiser else None
        event_id = f"ami:agent:{agent}:{queue}:{_discriminator(message, occurrence)}"
        return [self._build.agent_state(event_id=event_id, occurred_ms=moment.ms, agent=member, state=state,
                                        line=self._mapping.lines.line_of(queue), queue=queue)]

    def _hangup(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
        uid = message.get("Uniqueid")
        if not uid:
            return []
        name = message.event.lower()
        out: list[ParsedItem] = []
        for queue in list(self._queues_of.get(uid, ())):
            leg = self._leaving.get((uid, queue))
            if leg is None:
                continue
            if leg.system_exit:
                out.append(self._decide(leg, TIMEOUT, BY_QUEUESTATUS))
            elif name == "hanguprequest":
                out.append(self._decide(leg, ABANDONED, BY_HANGUP_REQUEST))
            elif name == "softhanguprequest" or uid in self._soft_requested:
                out.append(self._decide(leg, TIMEOUT, BY_SOFT_HANGUP))
            elif not leg.abandon_sent:
                out.append(self._decide(leg, TIMEOUT, BY_LEAVE_ONLY))
            elif message.get("Cause").strip() in _NORMAL_CLEARING or not message.get("Cause").strip():
                out.append(self._decide(leg, ABANDONED, BY_NORMAL_HANGUP))
            else:
                out.append(self._decide(leg, TIMEOUT, BY_OTHER_HANGUP))
        if name == "hanguprequest":
            remember(self._hangup_requested, uid, moment.ms, self._memory)
        elif name == "softhanguprequest":
            remember(self._soft_requested, uid, moment.ms, self._memory)
        else:
            for queue in list(self._queues_of.get(uid, ())):
                leg = self._legs.get((uid, queue))
                if leg is not None and leg.state != _ANSWERED:  # answered legs wait for AgentComplete
                    del self._legs[(uid, queue)]
                    self._forget_queue_of(uid, queue)
            for store in (self._hangup_requested, self._soft_requested, self._queue_status):
                store.pop(uid, None)
        return out

    def _varset(self, message: AmiMessage, moment: _Moment, occurrence: int) -> list[ParsedItem]:
        uid, value = message.get("Uniqueid"), message.get("Value").strip().upper()
        if not uid or value not in _SYSTEM_EXITS:
            return []
        remember(self._queue_status, uid, (moment.ms, value), self._memory)
        for queue in self._queues_of.get(uid, ()):
            leg = self._leaving.get((uid, queue))
            if leg is not None:
                leg.system_exit = value
        return []

    # -- decisions -------------------------------------------------------------------------------

    def _without_more(self, leg: _Leg, silence: str) -> tuple[str, str]:
        """The outcome of an exit nothing more was heard about within its window."""
        if leg.system_exit:
            return TIMEOUT, BY_QUEUESTATUS
        if not leg.abandon_sent:
            return TIMEOUT, BY_LEAVE_ONLY
        return TIMEOUT, silence

    def _expire(self, stream_ms: int) -> list[ParsedItem]:
        window = self._mapping.decision_window_ms
        due = [leg for leg in self._leaving.values() if stream_ms - leg.seen_ms > window]
        return [self._decide(leg, *self._without_more(leg, BY_SILENCE)) for leg in due]

    def _decide(self, leg: _Leg, outcome: str, evidence: str) -> dict[str, Any]:
        self._leaving.pop((leg.uid, leg.queue), None)
        leg.state = _CLOSED
        key = f"{outcome}: {evidence}"
        self.counts.decided[key] = self.counts.decided.get(key, 0) + 1
        return self._build.call(outcome, event_id=leg.exit_id, call_id=leg.call_id, occurred_ms=leg.exit_ms,
                                line=leg.line, queue=leg.queue)

    # -- helpers ---------------------------------------------------------------------------------

    def _moment(self, message: AmiMessage, received_ms: int) -> _Moment | None:
        """The frame's event time; None when its Timestamp header is not a time."""
        text = message.get("Timestamp").strip()
        if not text:
            return _Moment(received_ms + self._skew_ms, False)
        if timestamp_of(message):
            ms = round(float(text) * 1000)
            if 0 < ms < _MAX_EPOCH_MS:
                self._skew_ms = ms - received_ms
                return _Moment(ms, True)
        return None

    def _id(self, uid: str, queue: str, kind: str, message: AmiMessage, occurrence: int) -> str:
        return f"ami:{uid}:{queue}:{kind}:{_discriminator(message, occurrence)}"

    def _leg(self, message: AmiMessage, uid: str, queue: str) -> _Leg:
        leg = self._legs.get((uid, queue))
        if leg is None:  # joined before we were listening
            leg = _Leg(uid, message.get("Linkedid") or uid, queue, self._mapping.lines.line_of(queue))
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
            raise _Reject(f"bad {name} {quote_value(text)} in {message.event} (whole seconds expected)")
        return int(text)

    def _invalid(self, reason: str, message: AmiMessage) -> InvalidFrame:
        lines = [f"{name}: {value}" for name, value in message.headers]
        return InvalidFrame(reason, message.location, scrub_frame(lines))


def _member(message: AmiMessage) -> str | None:
    """The queue member's platform identity (hashed by the event builder)."""
    member = (message.get("Interface") or message.get("Member") or message.get("Location")
              or message.get("MemberName")).strip()
    return member or None


def _agent_state(status: str, paused: str, reason: str, in_call: str) -> str:
    status = status.strip()
    if status in _LOGGED_OUT_STATUS:
        return "logged_out"
    if status in _BUSY_STATUS or in_call.strip() == "1":
        return "busy"  # on a call (or being rung): a pause takes effect when it ends
    if paused.strip() in ("1", "true", "yes"):
        return "wrapup" if _WRAPUP_REASON.search(reason) else "away"
    return "available"


def _discriminator(message: AmiMessage, occurrence: int) -> str:
    """What tells this frame from another of the same kind for the same call and queue, the same
    whenever the frame is read again: its SequenceNumber (with its Timestamp), else its Timestamp,
    else a digest of its content (never of the caller's number or name) with, from the second
    frame of that content on, its occurrence number (a caller looping through a queue)."""
    sequence, timestamp = sequence_of(message), timestamp_of(message)
    if sequence:
        return f"s{sequence}" + (f"t{timestamp}" if timestamp else "")
    if timestamp:
        return f"t{timestamp}"
    digest = hashlib.sha256()
    for name, value in message.headers:
        if not _PERSONAL_HEADERS.match(name):
            digest.update(f"{name.lower()}\x00{value}\x00".encode("utf-8", "replace"))
    return "d" + digest.hexdigest()[:16] + (f"n{occurrence}" if occurrence > 1 else "")
