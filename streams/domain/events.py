"""The canonical call event (SPEC section 2, version 1): validation from a decoded JSON object and
conversion back to one. Event time is kept as integer UTC epoch milliseconds (`occurred_ms`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Mapping

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


@dataclass(frozen=True, slots=True)
class CallEvent:
    event_id: str
    call_id: str
    type: str
    occurred_ms: int
    line: str = ""
    queue: str = ""
    site: str = DEFAULT_SITE
    agent: str | None = None
    caller: str | None = None
    state: str | None = None
    source: str | None = None
    # Unknown fields are preserved for re-encoding (SPEC: "preserved and ignored").
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def occurred_at(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.occurred_ms)

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (self.occurred_ms, TYPE_RANK[self.type], self.event_id)


def parse_ts(text: object) -> int:
    """RFC 3339 with an explicit offset to UTC epoch milliseconds; raises InvalidEvent('ts', ...)."""
    if not isinstance(text, str):
        raise InvalidEvent("ts", "must be an RFC 3339 string")
    # fromisoformat accepts forms RFC 3339 forbids (no 'T', no offset): insist on the strict shape.
    if len(text) < 20 or text[10] not in "Tt":
        raise InvalidEvent("ts", f"not RFC 3339: {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent("ts", f"not RFC 3339: {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidEvent("ts", f"needs an explicit offset: {text!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_ts(occurred_ms: int) -> str:
    """UTC epoch milliseconds to RFC 3339 UTC with millisecond precision, e.g. 2024-03-01T09:00:00.250Z."""
    moment = _EPOCH + timedelta(milliseconds=occurred_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{occurred_ms % 1000:03d}Z"


def _required_text(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise InvalidEvent(name, "is required")
    if not isinstance(value, str) or not value:
        raise InvalidEvent(name, "must be a non-empty string")
    return value


def _optional_text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidEvent(name, "must be a string or null")


def parse_event(obj: object) -> CallEvent:
    """Validate one decoded JSON object as a canonical v1 event."""
    if not isinstance(obj, dict):
        raise InvalidEvent("event", "must be a JSON object")
    version = obj.get("v")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent("v", f"unsupported schema version {version!r} (expected 1)")
    event_type = obj.get("type")
    if event_type not in _EVENT_TYPES_SET:
        raise InvalidEvent("type", f"unknown event type {event_type!r}")
    event_id = _required_text(obj, "event_id")
    call_id = _required_text(obj, "call_id") if event_type != AGENT_STATE else (
        _optional_text(obj, "call_id") or "")
    occurred_ms = parse_ts(obj.get("ts"))
    site = obj.get("site")
    if site is None:
        site = DEFAULT_SITE
    elif not isinstance(site, str) or not site:
        raise InvalidEvent("site", "must be a non-empty string")
    agent = _optional_text(obj, "agent")
    caller = _optional_text(obj, "caller")
    if caller is not None and not caller.startswith("h:"):
        # A raw number must never travel further than the connector that read it.
        raise InvalidEvent("caller", "must be a keyed hash ('h:' + hex), never a raw number")
    source = _optional_text(obj, "source")
    state: str | None = None
    if event_type == AGENT_STATE:
        line = _optional_text(obj, "line") or ""
        queue = _optional_text(obj, "queue") or ""
        if not agent:
            raise InvalidEvent("agent", "is required on agent_state")
        state = _optional_text(obj, "state")
        if state not in _AGENT_STATES_SET:
            raise InvalidEvent("state", f"unknown agent state {state!r}")
    else:
        line = _required_text(obj, "line")
        queue = _required_text(obj, "queue")
        if queue == "*":
            raise InvalidEvent("queue", "'*' is reserved for line totals")
    extra = {} if _KNOWN_FIELDS.issuperset(obj) else {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
    return CallEvent(event_id, call_id, event_type, occurred_ms, line, queue, site, agent, caller, state, source, extra)


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
