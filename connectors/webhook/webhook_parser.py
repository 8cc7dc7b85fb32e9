"""Webhook requests to canonical events (SPEC section 2): callwatch's request signature, and the
mappings of canonical JSON, Twilio TaskRouter event callbacks and Amazon Connect contact events.

Pure: bytes and headers in, events or a reason out; no I/O, and the time is passed in. Every public
function returns a value for any input (a fuzz test holds it to that): nothing raises."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Final, Mapping, NoReturn
from urllib.parse import parse_qsl, unquote_plus

from connectors.privacy import Pseudonymise, redact_numbers
from streams.domain.events import (
    ABANDONED, AGENT_STATE, ANSWERED, DEFAULT_SITE, ENDED, OFFERED, SCHEMA_VERSION, TIMEOUT, TRANSFERRED,
    InvalidEvent, format_ts, parse_event)

SOURCE: Final = "webhook"
TIMESTAMP_HEADER: Final = "X-Callwatch-Timestamp"
SIGNATURE_HEADER: Final = "X-Callwatch-Signature"
SIGNATURE_VERSION: Final = "v1"

FORM_TYPE: Final = "application/x-www-form-urlencoded"
JSON_LINES_TYPES: Final = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines",
                                     "application/x-jsonlines", "application/json-lines"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Event times outside [1970, 10000) cannot be formatted as RFC 3339: refuse them with a reason.
_MAX_MS: Final = 253_402_300_799_999
_MAX_TIMESTAMP_DIGITS: Final = 12
_MAX_FORM_FIELDS: Final = 1000
_REASON_CHARS: Final = 300


# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rejected:
    """A request that cannot become events: the HTTP status to answer and a reason a sender can act
    on (number-like runs masked, so a reason never carries a caller's number)."""

    reason: str
    status: int = 400


@dataclass(frozen=True, slots=True)
class Mapped:
    """The canonical events of a request, and why any well-formed record in it gave none (a Twilio
    event that is not about a call leg, an Amazon Connect chat, ...)."""

    events: tuple[dict[str, Any], ...] = ()
    ignored: tuple[str, ...] = ()


class _Invalid(Exception):
    """Raised inside this module only; every public function turns it into a Rejected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _invalid(reason: str) -> NoReturn:
    raise _Invalid(reason)


def _rejected(reason: str, status: int = 400) -> Rejected:
    text = redact_numbers(reason)
    return Rejected(text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "...", status)


# --- configuration of the mappings ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class QueueRoute:
    """Where a platform queue belongs: its service line, and the name to show for it when the
    platform gives only an id (Amazon Connect sends queue ARNs)."""

    line: str
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class MappingContext:
    pseudonymise: Pseudonymise
    site: str = DEFAULT_SITE
    # Keyed by queue name, SID, ARN or id: whichever the platform sends.
    queue_routes: Mapping[str, QueueRoute] = field(default_factory=dict)

    def route(self, *keys: str) -> QueueRoute | None:
        for key in keys:
            if key and key in self.queue_routes:
                return self.queue_routes[key]
        return None


def parse_queue_routes(text: str) -> dict[str, QueueRoute]:
    """'QUEUE=LINE[:NAME],...' to routes; raises ValueError saying which entry is wrong. An entry is
    split at its last '=' (ARNs hold ':' but never '='), the value at its first ':'."""
    routes: dict[str, QueueRoute] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, equals, value = entry.rpartition("=")
        line, _colon, name = value.partition(":")
        key, line, name = key.strip(), line.strip(), name.strip()
        if not equals or not key or not line:
            raise ValueError(f"queue-lines entry {entry!r} is not QUEUE=LINE or QUEUE=LINE:NAME")
        if line == "*" or name == "*":
            raise ValueError(f"queue-lines entry {entry!r}: '*' is reserved for line totals")
        routes[key] = QueueRoute(line, name or None)
    return routes


# --- signature ------------------------------------------------------------------------------------

def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256, under the shared secret, of the timestamp header's text, '.', and the body."""
    return hmac.new(secret, timestamp.encode("ascii", "replace") + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Callwatch-Signature value a sender puts on a request signed at `timestamp`."""
    return f"{SIGNATURE_VERSION}={signature(secret, str(timestamp), body)}"


def verify_signature(secret: bytes, timestamp_header: str | None, signature_header: str | None, body: bytes,
                     now_s: float, tolerance_s: float) -> str | None:
    """None when the request is signed by the secret holder within `tolerance_s` of `now_s`; else
    the reason to refuse it (401). Replays within the window are caught by ReplayGuard."""
    if not timestamp_header:
        return f"unsigned: no {TIMESTAMP_HEADER} header"
    if not signature_header:
        return f"unsigned: no {SIGNATURE_HEADER} header"
    stamp = timestamp_header.strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
        return f"bad timestamp: {TIMESTAMP_HEADER} must be whole Unix seconds"
    skew_s = now_s - int(stamp)
    if not abs(skew_s) <= tolerance_s:
        where = "behind" if skew_s > 0 else "ahead of"
        return f"stale timestamp: {abs(skew_s):.0f} s {where} the server clock (tolerance {tolerance_s:g} s)"
    prefix = SIGNATURE_VERSION + "="
    offered = [part.strip()[len(prefix):] for part in signature_header.split(",")
               if part.strip().startswith(prefix)]
    if not offered:
        return f"bad signature: no {prefix}<hex> in {SIGNATURE_HEADER}"
    expected = signature(secret, stamp, body).encode("ascii")
    # Several v1 values are allowed (a sender rolling its secret signs with both).
    if not any(hmac.compare_digest(expected, value.lower().encode("utf-8", "replace")) for value in offered):
        return "bad signature: does not match the timestamp and body"
    return None


class ReplayGuard:
    """Signatures already used, each kept until its timestamp leaves the tolerance window (from then
    on the timestamp check refuses it anyway). Bounded: at `capacity`, the entry nearest its expiry
    is forgotten first, so memory stays flat under any request rate."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = max(1, capacity)
        self._expiries: list[tuple[float, str]] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, digest: str, expires_s: float, now_s: float) -> bool:
        """True (and remembered) the first time `digest` is presented; False for a replay."""
        while self._expiries and self._expiries[0][0] < now_s:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        if digest in self._seen:
            return False
        while len(self._seen) >= self._capacity and self._expiries:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        heapq.heappush(self._expiries, (expires_s, digest))
        self._seen.add(digest)
        return True

    def forget(self, digest: str) -> None:
        """Make a signature usable again: its request was not accepted (the sink failed), so the
        sender's unchanged retry must not be taken for a replay."""
        self._seen.discard(digest)


# --- decoding bodies ------------------------------------------------------------------------------

def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _json_value(body: bytes | str) -> Any:
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        _invalid("not JSON: nested too deeply")
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError of a bad encoding
        _invalid(f"not JSON: {str(error).splitlines()[0] if str(error) else type(error).__name__}")


def _json_lines(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _invalid("JSON Lines body is not UTF-8")
    values: list[Any] = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                values.append(_json_value(line))
            except _Invalid as error:
                _invalid(f"line {number}: {error.reason}")
    return values


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS, errors="strict")
    except UnicodeDecodeError:
        _invalid("form body is not UTF-8")
    except ValueError as error:
        _invalid(f"not a form body: {error}")
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)  # the first of repeated fields wins
    return fields


def readable_body(body: bytes, content_type: str | None) -> str:
    """The body as text for a dead letter. Form bodies are decoded first so that a percent-encoded
    number ('%2B44...') is plain digits that redact_numbers masks."""
    text = body.decode("utf-8", "replace")
    if media_type(content_type) == FORM_TYPE:
        return unquote_plus(text, errors="replace")
    return text


def _unsupported(content_type: str | None, accepted: str) -> Rejected:
    shown = media_type(content_type) or "none"
    return _rejected(f"unsupported media type {shown!r}: send {accepted}", 415)


# --- shared field helpers -------------------------------------------------------------------------

def _text(fields: Mapping[str, Any], name: str, shown: str | None = None) -> str:
    """A field as text: '' when absent or null; numbers as written; anything else is invalid."""
    value = fields.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(value)
    _invalid(f"{shown or name} must be text, not {type(value).__name__}")


def _lower_keys(value: object) -> dict[str, Any]:
    """An object's fields by lower-cased name (Amazon's samples spell them agentInfo, AgentInfo...)."""
    if not isinstance(value, dict):
        return {}
    return {key.lower(): item for key, item in value.items() if isinstance(key, str)}


def _checked_ms(ms: int, shown: str) -> int:
    if not 0 <= ms <= _MAX_MS:
        _invalid(f"{shown} is out of range")
    return ms


def _iso_ms(text: str, shown: str) -> int:
    """An ISO 8601 / RFC 3339 time with an offset (or Z) to UTC epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        _invalid(f"{shown} is not an ISO 8601 time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        _invalid(f"{shown} has no UTC offset")
    try:
        delta = moment - _EPOCH
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        _invalid(f"{shown} is out of range")
    return _checked_ms(delta // timedelta(milliseconds=1), shown)


def _epoch_ms(text: str, scale: int, shown: str) -> int:
    """Epoch seconds (scale 1000, fractions allowed) or milliseconds (scale 1) written as digits."""
    whole, _dot, fraction = text.strip().partition(".")
    if not (whole.isascii() and whole.isdigit() and len(whole) <= 16) or (
            fraction and not (fraction.isascii() and fraction.isdigit())):
        _invalid(f"{shown} is not a Unix time")
    ms = int(whole) * scale + (int((fraction + "000")[:3]) if scale == 1000 and fraction else 0)
    return _checked_ms(ms, shown)


def _event(event_id: str, call_id: str, kind: str, occurred_ms: int, site: str) -> dict[str, Any]:
    event: dict[str, Any] = {"v": SCHEMA_VERSION, "event_id": event_id}
    if call_id:
        event["call_id"] = call_id
    event.update(type=kind, ts=format_ts(occurred_ms), site=site, source=SOURCE)
    return event


def _checked(event: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        parse_event(event)
    except InvalidEvent as error:
        _invalid(f"{what}: invalid {error}")
    return event


def _collect(items: list[Any], one: Callable[[Any], dict[str, Any] | str], several: bool) -> Mapped | Rejected:
    events: list[dict[str, Any]] = []
    ignored: list[str] = []
    for number, item in enumerate(items, 1):
        try:
            outcome = one(item)
        except _Invalid as error:
            return _rejected(f"record {number}: {error.reason}" if several else error.reason)
        if isinstance(outcome, str):
            reason = redact_numbers(outcome)[:_REASON_CHARS]
            if reason not in ignored:
                ignored.append(reason)
        else:
            events.append(outcome)
    return Mapped(tuple(events), tuple(ignored))


# --- canonical events -----------------------------------------------------------------------------

def canonical_events(body: bytes, content_type: str | None, context: MappingContext) -> Mapped | Rejected:
    """POST /v1/events: one canonical event (a JSON object), a JSON array of them, or JSON Lines."""
    media = media_type(content_type)
    try:
        if media in JSON_LINES_TYPES:
            return from_canonical(_json_lines(body), context)
        if _is_json(media):
            return from_canonical(_json_value(body), context)
    except _Invalid as error:
        return _rejected(error.reason)
    return _unsupported(content_type, "application/json (an event or an array of events) or "
                                      "application/x-ndjson (JSON Lines)")


def from_canonical(value: object, context: MappingContext) -> Mapped | Rejected:
    """Canonical events as sent, each validated; a caller given as a raw number is hashed here (it
    must never go further than this connector). One invalid event rejects the whole request, so
    that a sender can fix and resend it as a unit."""
    if not isinstance(value, (dict, list)):
        return _rejected("a canonical event must be a JSON object (or send an array of them)")
    several = isinstance(value, list)
    items = value if isinstance(value, list) else [value]
    events: list[dict[str, Any]] = []
    for number, item in enumerate(items, 1):
        where = f"event {number}: " if several else ""
        if not isinstance(item, dict):
            return _rejected(f"{where}not a JSON object")
        event = dict(item)
        caller = event.get("caller")
        if isinstance(caller, str) and caller and not caller.startswith("h:"):
            event["caller"] = context.pseudonymise(caller)
        event.setdefault("source", SOURCE)
        try:
            parse_event(event)
        except InvalidEvent as error:
            return _rejected(f"{where}invalid {error}")
        events.append(event)
    return Mapped(tuple(events))


# --- Twilio TaskRouter ----------------------------------------------------------------------------

_TWILIO_KINDS: Final = {
    "task-queue.entered": OFFERED,
    "reservation.accepted": ANSWERED,
    "task.canceled": ABANDONED,  # or TIMEOUT, by TaskCanceledReason
    "task-queue.timeout": TIMEOUT,
    "task-queue.moved": TRANSFERRED,
    "task.completed": ENDED,
    "worker.activity.update": AGENT_STATE,
}
# Cancel reasons that mean the system gave up on the task (TTL, workflow timeout), not the caller.
_TWILIO_TIMEOUT_WORDS: Final = ("timeout", "timed out", "ttl", "expired")
# Twilio activity names are free text; these are the usual ones. Anything else reads as "away".
_ACTIVITY_STATES: Final = {
    "available": "available", "idle": "available", "ready": "available",
    "busy": "busy", "reserved": "busy", "on call": "busy", "on a call": "busy", "on a task": "busy",
    "talking": "busy", "in call": "busy",
    "wrapup": "wrapup", "wrap up": "wrapup", "wrapping": "wrapup", "after call work": "wrapup", "acw": "wrapup",
    "offline": "logged_out", "logged out": "logged_out", "logout": "logged_out", "signed out": "logged_out",
}


def twilio_events(body: bytes, content_type: str | None, context: MappingContext) -> Mapped | Rejected:
    """POST /v1/twilio/taskrouter: an event callback as TaskRouter posts it (form fields), or the same
    fields as a JSON object (or array of objects) from a relay."""
    media = media_type(content_type)
    try:
        if media == FORM_TYPE:
            return from_twilio_taskrouter(_form_fields(body), context)
        if _is_json(media):
            return from_twilio_taskrouter(_json_value(body), context)
    except _Invalid as error:
        return _rejected(error.reason)
    return _unsupported(content_type, f"{FORM_TYPE} (as TaskRouter posts it) or application/json")


def from_twilio_taskrouter(fields: object, context: MappingContext) -> Mapped | Rejected:
    """TaskRouter event callback fields to canonical events (docs/connectors/webhook.md lists the
    fields read). Events that are not about a call leg are ignored, with the reason."""
    if isinstance(fields, list):
        return _collect(fields, lambda item: _twilio_event(item, context), several=True)
    return _collect([fields], lambda item: _twilio_event(item, context), several=False)


def _twilio_event(fields: object, context: MappingContext) -> dict[str, Any] | str:
    if not isinstance(fields, dict):
        _invalid("a TaskRouter event must be form fields or a JSON object")
    event_type = _text(fields, "EventType")
    if not event_type:
        _invalid("EventType is missing")
    kind = _TWILIO_KINDS.get(event_type)
    if kind is None:
        return f"{event_type[:60]} is not a call-leg event"
    occurred_ms = _twilio_ms(fields)
    if kind == AGENT_STATE:
        return _twilio_agent_state(fields, occurred_ms, context)
    channel = _text(fields, "TaskChannelUniqueName").strip().lower()
    if channel and channel != "voice":
        return f"{event_type}: channel {channel[:30]!r} is not a call"
    task_sid = _text(fields, "TaskSid")
    if not task_sid:
        _invalid(f"{event_type}: TaskSid is missing")
    queue_name, queue_sid = _text(fields, "TaskQueueName"), _text(fields, "TaskQueueSid")
    if not (queue_name or queue_sid):
        _invalid(f"{event_type}: TaskQueueName and TaskQueueSid are both missing")
    attributes = _task_attributes(_text(fields, "TaskAttributes"))
    route = context.route(queue_name, queue_sid)
    queue = (route.queue if route else None) or queue_name or queue_sid
    attribute_line = attributes.get("line")
    line = route.line if route else (attribute_line if isinstance(attribute_line, str) and attribute_line
                                     else queue)
    if kind == ABANDONED:
        cancel_reason = _text(fields, "TaskCanceledReason").lower()
        if any(word in cancel_reason for word in _TWILIO_TIMEOUT_WORDS):
            kind = TIMEOUT
    call_sid = attributes.get("call_sid")
    call_id = call_sid if isinstance(call_sid, str) and call_sid else task_sid
    parts = ["twilio", event_type, _text(fields, "ReservationSid") or task_sid, queue_sid or queue_name,
             str(occurred_ms)]
    event = _event(":".join(parts), call_id, kind, occurred_ms, context.site)
    event.update(line=line, queue=queue)
    if kind == ANSWERED:
        worker = _text(fields, "WorkerSid")
        if not worker:
            _invalid(f"{event_type}: WorkerSid is missing")
        event["agent"] = worker
    caller = attributes.get("from") or attributes.get("caller")
    if isinstance(caller, str) and caller:
        event["caller"] = context.pseudonymise(caller)
    return _checked(event, event_type)


def _twilio_agent_state(fields: Mapping[str, Any], occurred_ms: int, context: MappingContext) -> dict[str, Any]:
    worker = _text(fields, "WorkerSid")
    if not worker:
        _invalid("worker.activity.update: WorkerSid is missing")
    activity = " ".join(_text(fields, "WorkerActivityName").lower().replace("-", " ").replace("_", " ").split())
    if not activity:
        _invalid("worker.activity.update: WorkerActivityName is missing")
    state = _ACTIVITY_STATES.get(activity, _ACTIVITY_STATES.get(activity.replace(" ", ""), "away"))
    event = _event(f"twilio:worker.activity.update:{worker}:{occurred_ms}", "", AGENT_STATE, occurred_ms,
                   context.site)
    event.update(agent=worker, state=state)
    return _checked(event, "worker.activity.update")


def _twilio_ms(fields: Mapping[str, Any]) -> int:
    """TimestampMs (epoch ms, sent since 2018), else Timestamp (epoch seconds, or an ISO time from
    a relay), else EventDateMs / EventDate (the Event resource's names)."""
    for name, scale in (("TimestampMs", 1), ("EventDateMs", 1)):
        text = _text(fields, name)
        if text:
            return _epoch_ms(text, scale, name)
    for name in ("Timestamp", "EventDate"):
        text = _text(fields, name)
        if text:
            return _iso_ms(text, name) if "-" in text else _epoch_ms(text, 1000, name)
    _invalid("Timestamp is missing")


def _task_attributes(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = _json_value(text)
    except _Invalid as error:
        _invalid(f"TaskAttributes: {error.reason}")
    if not isinstance(value, dict):
        _invalid("TaskAttributes must be a JSON object")
    return value


# --- Amazon Connect -------------------------------------------------------------------------------

CONNECT_DETAIL_TYPE: Final = "Amazon Connect Contact Event"
# Queued contacts that disconnect before an agent: the caller hung up (or was cut off), unless
# the reason says the system ended or moved the contact.
_CONNECT_ABANDON_REASONS: Final = frozenset({"", "CUSTOMER_DISCONNECT", "TELECOM_PROBLEM"})


def connect_events(body: bytes, content_type: str | None, context: MappingContext) -> Mapped | Rejected:
    """POST /v1/amazon-connect: an EventBridge event (or a JSON array of them), as an EventBridge
    API destination or a relay sends it."""
    if not _is_json(media_type(content_type)):
        return _unsupported(content_type, "application/json")
    try:
        value = _json_value(body)
    except _Invalid as error:
        return _rejected(error.reason)
    return from_amazon_connect(value, context)


def from_amazon_connect(value: object, context: MappingContext) -> Mapped | Rejected:
    """Amazon Connect contact events to canonical events (docs/connectors/webhook.md lists the fields
    read). Contacts that never reached a queue, and chats and tasks, are ignored with the reason."""
    if isinstance(value, list):
        return _collect(value, lambda item: _connect_event(item, context), several=True)
    return _collect([value], lambda item: _connect_event(item, context), several=False)


def _connect_event(value: object, context: MappingContext) -> dict[str, Any] | str:
    top = _lower_keys(value)
    if not isinstance(value, dict):
        _invalid("an Amazon Connect event must be a JSON object")
    if "detail" in top:
        detail_type = _text(top, "detail-type")
        if detail_type and detail_type != CONNECT_DETAIL_TYPE:
            return f"detail-type {detail_type[:60]!r} is not {CONNECT_DETAIL_TYPE!r}"
        if not isinstance(top["detail"], dict):
            _invalid("detail must be a JSON object")
        detail, sent_at = _lower_keys(top["detail"]), _text(top, "time")
    elif "eventtype" in top and "contactid" in top:
        detail, sent_at = top, ""  # the detail alone, as an EventBridge input transformer may send it
    else:
        _invalid("not an Amazon Connect contact event: expected an EventBridge event (detail-type, detail) "
                 "or its detail (eventType, contactId)")
    event_type = _text(detail, "eventtype", "detail.eventType").upper()
    contact_id = _text(detail, "contactid", "detail.contactId")
    if not event_type:
        _invalid("detail.eventType is missing")
    if not contact_id:
        _invalid("detail.contactId is missing")
    channel = _text(detail, "channel", "detail.channel").upper()
    if channel and channel != "VOICE":
        return f"{event_type[:40]}: channel {channel[:20]} is not a call"
    if event_type not in ("QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED"):
        return f"{event_type[:40]} is not a call-leg event"
    queue_info, agent_info = _lower_keys(detail.get("queueinfo")), _lower_keys(detail.get("agentinfo"))
    queue_arn = _text(queue_info, "queuearn", "detail.queueInfo.queueArn")
    if not queue_arn:
        return f"{event_type}: contact never queued (no queueInfo.queueArn)"
    connected_at = _text(agent_info, "connectedtoagenttimestamp", "detail.agentInfo.connectedToAgentTimestamp")
    agent_arn = _text(agent_info, "agentarn", "detail.agentInfo.agentArn")
    if event_type == "QUEUED":
        kind, stamp, shown = OFFERED, _text(queue_info, "enqueuetimestamp"), "queueInfo.enqueueTimestamp"
    elif event_type == "CONNECTED_TO_AGENT":
        kind, stamp, shown = ANSWERED, connected_at, "agentInfo.connectedToAgentTimestamp"
    else:
        stamp, shown = _text(detail, "disconnecttimestamp"), "disconnectTimestamp"
        reason = _text(detail, "disconnectreason", "detail.disconnectReason").upper()
        if connected_at or agent_arn:
            kind = ENDED
        elif "TRANSFER" in reason:
            kind = TRANSFERRED
        elif reason in _CONNECT_ABANDON_REASONS:
            kind = ABANDONED
        else:
            kind = TIMEOUT  # the flow, an API call or expiry ended the contact: the system gave up
    if stamp:
        occurred_ms = _iso_ms(stamp, f"detail.{shown}")
    elif sent_at:
        occurred_ms = _iso_ms(sent_at, "time")
    else:
        _invalid(f"{event_type}: detail.{shown} is missing (and the event has no time)")
    queue_id = queue_arn.rsplit("/", 1)[-1]
    route = context.route(queue_arn, queue_id, _text(queue_info, "queuename"))
    queue = (route.queue if route else None) or _text(queue_info, "queuename") or queue_id
    initial_id = _text(detail, "initialcontactid", "detail.initialContactId")
    event = _event(f"connect:{contact_id}:{event_type}:{queue_id}", initial_id or contact_id, kind,
                   occurred_ms, context.site)
    event.update(line=route.line if route else queue, queue=queue)
    if kind == ANSWERED:
        if not agent_arn:
            _invalid("CONNECTED_TO_AGENT: detail.agentInfo.agentArn is missing")
        event["agent"] = agent_arn.rsplit("/", 1)[-1]
    endpoint = _lower_keys(detail.get("customerendpoint"))
    address = endpoint.get("address")
    if isinstance(address, str) and address:
        event["caller"] = context.pseudonymise(address)
    return _checked(event, event_type)
