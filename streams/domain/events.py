"""The canonical call event (SPEC section 2, version 1): `CallEvent`, the typed shape a line is
decoded into and validated as (`validate_decoded`), the validation of any decoded JSON value
(`parse_event`), and the conversion back to a JSON object. Event time is kept as integer UTC epoch
milliseconds (`occurred_ms`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Mapping, cast

import msgspec

SCHEMA_VERSION: Final = 1

OFFERED: Final = "offered"
ANSWERED: Final = "answered"
ABANDONED: Final = "abandoned"
TIMEOUT: Final = "timeout"
TRANSFERRED: Final = "transferred"
ENDED: Final = "ended"
AGENT_STATE: Final = "agent_state"

EVENT_TYPES: Final = (OFFERED, ANSWERED, ABANDONED, TIMEOUT, TRANSFERRED, ENDED, AGENT_STATE)
TERMINAL_TYPES: Final = frozenset({ANSWERED, ABANDONED, TIMEOUT, TRANSFERRED})
AGENT_STATES: Final = ("available", "busy", "wrapup", "away", "logged_out")

# Ties in event time are broken by type, then by event_id, so that the processing order (and hence
# every figure) is a function of the set of events alone, never of their arrival order.
TYPE_RANK: Final = {name: rank for rank, name in enumerate(EVENT_TYPES)}

_KNOWN_FIELDS: Final = frozenset(
    {"v", "event_id", "call_id", "type", "ts", "line", "queue", "site", "agent", "caller", "state", "source"}
)
_AGENT_STATES_SET: Final = frozenset(AGENT_STATES)
_EVENT_TYPES_SET: Final = frozenset(EVENT_TYPES)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
DEFAULT_SITE: Final = "default"


class InvalidEvent(ValueError):
    """An event that breaks the schema; `field` names the offending field."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


NO_EXTRA: Final[Mapping[str, Any]] = MappingProxyType({})


# The types msgspec checks as it decodes a line into a CallEvent (streams/io/codec.py); mypy sees
# what a validated event holds. The wire's `ts` is decoded as text into `occurred_ms` and
# `validate_decoded` turns it into epoch milliseconds before the event leaves the codec.
# `extra` cannot be decoded from a line at all (no object is both empty and not), so a line that
# has a field of that name is judged as any object with unknown fields is.
if TYPE_CHECKING:
    _EventType = str
    _Time = int
    _NonEmpty = str
    _AgentState = str | None
    _Version = int
    _Extra = Mapping[str, Any]
else:
    _EventType = Literal["offered", "answered", "abandoned", "timeout", "transferred", "ended", "agent_state"]
    _Time = str
    _NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
    _AgentState = Literal["available", "busy", "wrapup", "away", "logged_out"] | None
    _Version = Literal[1]
    _Extra = Annotated[dict[str, Any], msgspec.Meta(min_length=1, max_length=0)]


class CallEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One validated event, and what the typed decoder makes of a line: the known fields, each of a
    type the contract allows for it. A line outside those types (an unknown field, an unknown type
    or agent state, a number where text belongs) fails the typed decode and is decoded to plain JSON
    values and judged by `parse_event`, so the reason for a rejection is the same either way.
    A msgspec Struct rather than a NamedTuple: decoded straight from the line, no object between.
    The defaults of `type` and `v` are no valid value: an event built in code says its type, and
    `v` only marks a decoded line that carried it (`event_to_dict` always writes version 1), so an
    event built in code equals the same event decoded only when given v=1."""

    event_id: _NonEmpty
    call_id: str = ""
    type: _EventType = ""
    occurred_ms: _Time = msgspec.field(default=cast(int, ""), name="ts")
    line: str = ""
    queue: str = ""
    site: _NonEmpty = DEFAULT_SITE
    agent: str | None = None
    caller: str | None = None
    state: _AgentState = None
    source: str | None = None
    # Unknown fields are preserved for re-encoding (SPEC: "preserved and ignored").
    extra: _Extra = NO_EXTRA
    v: _Version = 0

    @property
    def occurred_at(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.occurred_ms)

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (self.occurred_ms, TYPE_RANK[self.type], self.event_id)


_set_field: Final = msgspec.structs.force_setattr


# Epoch ms of each hour seen in the canonical shape "YYYY-MM-DDTHH:MM:SS.sssZ", so the common
# case costs three dict lookups: a pure memo, bounded, filled only by fully checked parses. (Of
# minutes, it missed on one event in seven of a simulated day and one in five of the real month,
# each miss a strict parse.) The rest of the text, ":MM:SS" and ".sssZ", is looked up in tables of
# exactly the valid spellings (ASCII digits, minutes and seconds below 60), so nothing malformed
# gets through a known hour.
_HOUR_MS: dict[str, int] = {}
_HOUR_MEMO_LIMIT: Final = 50_000
_MINUTE_SECOND_MS: Final = {f":{minute:02d}:{second:02d}": (minute * 60 + second) * 1000
                            for minute in range(60) for second in range(60)}
_MILLISECOND: Final = {f".{millis:03d}Z": millis for millis in range(1000)}


def parse_ts(text: object) -> int:
    """RFC 3339 with an explicit offset to UTC epoch milliseconds; raises InvalidEvent('ts', ...)."""
    if type(text) is str and len(text) == 24:
        hour_ms = _HOUR_MS.get(text[:13])
        if hour_ms is not None:
            minute_second_ms = _MINUTE_SECOND_MS.get(text[13:19])
            millis = _MILLISECOND.get(text[19:])
            if minute_second_ms is not None and millis is not None:
                return hour_ms + minute_second_ms + millis
    occurred_ms = _parse_ts_strictly(text)
    if isinstance(text, str) and len(text) == 24 and text[23] == "Z" and text[19] == ".":
        if len(_HOUR_MS) >= _HOUR_MEMO_LIMIT:
            _HOUR_MS.clear()
        _HOUR_MS[text[:13]] = occurred_ms - occurred_ms % 3_600_000
    return occurred_ms


def _parse_ts_strictly(text: object) -> int:
    if not isinstance(text, str):
        raise InvalidEvent("ts", "must be an RFC 3339 string")
    # fromisoformat accepts ISO 8601 forms RFC 3339 forbids (week dates, '+0100', '+01', ',250',
    # no offset): insist on the strict shape first, by position since this runs once per event.
    size = len(text)
    if size < 20 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt" or text[13] != ":" \
            or text[16] != ":":
        raise InvalidEvent("ts", f"not RFC 3339: {text!r}")
    if text[-1] in "Zz":
        offset_at = size - 1
    elif size >= 25 and text[-6] in "+-" and text[-3] == ":":
        offset_at = size - 6
    else:
        raise InvalidEvent("ts", f"needs an explicit offset (Z or +hh:mm): {text!r}")
    if offset_at > 19 and text[19] != ".":
        raise InvalidEvent("ts", f"not RFC 3339: {text!r}")
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        raise InvalidEvent("ts", f"not RFC 3339: {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidEvent("ts", f"needs an explicit offset: {text!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_ts(occurred_ms: int) -> str:
    """UTC epoch milliseconds to RFC 3339 UTC with millisecond precision, e.g. 2024-03-01T09:00:00.250Z."""
    moment = _EPOCH + timedelta(milliseconds=occurred_ms)
    if moment.year >= 1000:
        # isoformat is C code, half the cost of strftime; its offset is always "+00:00" here.
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    # strftime writes years before 1000 without leading zeros, isoformat with: kept as it was.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{occurred_ms % 1000:03d}Z"


def _text_error(name: str, value: object) -> InvalidEvent:
    if value is None:
        return InvalidEvent(name, "is required")
    return InvalidEvent(name, "must be a non-empty string")


def _optional_text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None or type(value) is str:
        return value
    raise InvalidEvent(name, "must be a string or null")


def parse_event(obj: object) -> CallEvent:
    """Validate one decoded JSON object as a canonical v1 event (a CallEvent is returned as it is:
    the codec hands out only validated ones). Straight-line checks: this runs on every path."""
    if type(obj) is CallEvent:
        return obj
    if type(obj) is not dict:
        raise InvalidEvent("event", "must be a JSON object")
    get = obj.get
    version = get("v")
    if version != SCHEMA_VERSION or type(version) is not int:
        raise InvalidEvent("v", f"unsupported schema version {version!r} (expected 1)")
    event_type = get("type")
    if type(event_type) is not str or event_type not in _EVENT_TYPES_SET:
        raise InvalidEvent("type", f"unknown event type {event_type!r}")
    event_id = get("event_id")
    if type(event_id) is not str or not event_id:
        raise _text_error("event_id", event_id)
    call_id = get("call_id")
    if type(call_id) is not str or not call_id:
        if event_type != AGENT_STATE or call_id not in (None, ""):
            raise _text_error("call_id", call_id)
        call_id = ""
    occurred_ms = parse_ts(get("ts"))
    site = get("site")
    if site is None:
        site = DEFAULT_SITE
    elif type(site) is not str or not site:
        raise InvalidEvent("site", "must be a non-empty string")
    agent = get("agent")
    if agent is not None and type(agent) is not str:
        raise InvalidEvent("agent", "must be a string or null")
    caller = get("caller")
    if caller is not None and (type(caller) is not str or not caller.startswith("h:")):
        # A raw number must never travel further than the connector that read it.
        raise InvalidEvent("caller", "must be a keyed hash ('h:' + hex), never a raw number")
    source = get("source")
    if source is not None and type(source) is not str:
        raise InvalidEvent("source", "must be a string or null")
    state: str | None = None
    if event_type == AGENT_STATE:
        line = _optional_text(obj, "line") or ""
        queue = _optional_text(obj, "queue") or ""
        if not agent:
            raise InvalidEvent("agent", "is required on agent_state")
        state = get("state")
        if type(state) is not str or state not in _AGENT_STATES_SET:
            raise InvalidEvent("state", f"unknown agent state {state!r}")
    else:
        line_value, queue_value = get("line"), get("queue")
        if type(line_value) is not str or not line_value:
            raise _text_error("line", line_value)
        if type(queue_value) is not str or not queue_value:
            raise _text_error("queue", queue_value)
        line, queue = line_value, queue_value
        if queue == "*":
            raise InvalidEvent("queue", "'*' is reserved for line totals")
    extra = NO_EXTRA if _KNOWN_FIELDS.issuperset(obj) else {
        k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
    return CallEvent(event_id, call_id, event_type, occurred_ms, line, queue, site, agent, caller, state, source,
                     extra, SCHEMA_VERSION)


def validate_decoded(events: list[CallEvent]) -> None:
    """Finish, in place, the validation the typed decoder began (its types, the non-empty id and
    site are checked already): the wire's time text becomes epoch milliseconds and the rules types
    cannot say are checked, so that each event is exactly what `parse_event` makes of the same line
    as plain JSON values (property-tested). Raises InvalidEvent at the first event that breaks one;
    its reason is not the one to report: the caller judges that line again with `parse_event`.
    One loop over many events: its cost is most of what validating an event costs."""
    hour_of, minute_second_of, millis_of, set_field = _HOUR_MS, _MINUTE_SECOND_MS, _MILLISECOND, _set_field
    for event in events:
        ts: str = event.occurred_ms  # type: ignore[assignment]  # still the wire's text (a cast would cost a call)
        # parse_ts's memo of hours, inline, by subscripts (a try costs nothing until it raises):
        # the three keys are 13, 6 and 5 characters long, so a text they all match has 24.
        try:
            occurred_ms = hour_of[ts[:13]] + minute_second_of[ts[13:19]] + millis_of[ts[19:]]
        except KeyError:
            occurred_ms = parse_ts(ts)
        set_field(event, "occurred_ms", occurred_ms)
        if event.type == AGENT_STATE:
            if not event.agent or event.state is None:
                raise InvalidEvent("event", "an agent_state needs its agent and state")
        else:
            if not (event.type and event.call_id and event.line and event.queue) or event.queue == "*":
                raise InvalidEvent("event", "a call's event needs its type, call, line and queue")
            if event.state is not None:
                set_field(event, "state", None)  # an agent state means nothing on a call's event
        caller = event.caller
        if caller is not None and caller[:2] != "h:":
            raise InvalidEvent("caller", "must be a keyed hash")
        if event.v != SCHEMA_VERSION:
            raise InvalidEvent("v", "is required")


def event_to_dict(event: CallEvent) -> dict[str, Any]:
    """The canonical JSON object for an event (optional fields only when set)."""
    obj: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "event_id": event.event_id,
        "call_id": event.call_id,
        "type": event.type,
        "ts": format_ts(event.occurred_ms),
    }
    if event.line:
        obj["line"] = event.line
    if event.queue:
        obj["queue"] = event.queue
    obj["site"] = event.site
    if event.agent is not None:
        obj["agent"] = event.agent
    if event.caller is not None:
        obj["caller"] = event.caller
    if event.state is not None:
        obj["state"] = event.state
    if event.source is not None:
        obj["source"] = event.source
    obj.update(event.extra)
    return obj
