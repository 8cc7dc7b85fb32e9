"""What every webhook mapping shares: decoding request bodies (JSON, JSON Lines, forms), reading
fields of untrusted payloads, and the results: the events of a request (Mapped) or the one reason
it is refused (InvalidRecord, its numbers masked). Pure; nothing here raises out of a mapping."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Final, Mapping, NoReturn
from urllib.parse import parse_qsl, unquote_plus

from connectors.canonical import EventBuilder
from connectors.errors import InvalidRecord
from connectors.privacy import redact_numbers
from connectors.queue_lines import QueueLines
from streams.domain.events import InvalidEvent, parse_event

SOURCE: Final = "webhook"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
JSON_LINES_TYPES: Final = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines",
                                     "application/x-jsonlines", "application/json-lines"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Event times outside [1970, 10000) cannot be formatted as RFC 3339: refuse them with a reason.
_MAX_MS: Final = 253_402_300_799_999
_MAX_FORM_FIELDS: Final = 1000
_REASON_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Mapped:
    """The canonical events of a request, and why any well-formed record in it gave none (a Twilio
    event that is not about a call leg, an Amazon Connect chat, ...)."""

    events: tuple[dict[str, Any], ...] = ()
    ignored: tuple[str, ...] = ()


class UnsupportedMedia(InvalidRecord):
    """A body of a media type the route does not take (answered 415, not 400)."""


@dataclass(frozen=True, slots=True)
class MappingContext:
    """What a mapping needs besides the payload: the event builder (site, pseudonymiser) and the
    lines of the platform's queues."""

    build: EventBuilder
    queues: QueueLines = QueueLines()


class Invalid(Exception):
    """Raised inside the mappings only; every public mapping turns it into an InvalidRecord."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def invalid(reason: str) -> NoReturn:
    raise Invalid(reason)


def rejected(reason: str) -> InvalidRecord:
    text = redact_numbers(reason)
    return InvalidRecord(text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "...")


def checked_event(event: dict[str, Any]) -> dict[str, Any]:
    try:
        parse_event(event)
    except InvalidEvent as error:
        invalid(f"{event.get('type', 'event')}: invalid {error}")
    return event


# --- bodies -----------------------------------------------------------------------------------------

def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def json_value(body: bytes | str) -> Any:
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        invalid("not JSON: nested too deeply")
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError of a bad encoding
        invalid(f"not JSON: {str(error).splitlines()[0] if str(error) else type(error).__name__}")


def json_lines(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        invalid("JSON Lines body is not UTF-8")
    values: list[Any] = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                values.append(json_value(line))
            except Invalid as error:
                invalid(f"line {number}: {error.reason}")
    return values


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """Every (name, value) of a form body, repeats included (Twilio signs them all)."""
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS, errors="strict")
    except UnicodeDecodeError:
        invalid("form body is not UTF-8")
    except ValueError as error:
        invalid(f"not a form body: {error}")


def form_fields(pairs: list[tuple[str, str]]) -> dict[str, str]:
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


def unsupported(content_type: str | None, accepted: str) -> UnsupportedMedia:
    shown = media_type(content_type) or "none"
    return UnsupportedMedia(f"unsupported media type {shown!r}: send {accepted}")



# --- fields of untrusted payloads ----------------------------------------------------------------

def text_field(fields: Mapping[str, Any], name: str, shown: str | None = None) -> str:
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
    invalid(f"{shown or name} must be text, not {type(value).__name__}")


def lower_keys(value: object) -> dict[str, Any]:
    """An object's fields by lower-cased name (Amazon's samples spell them agentInfo, AgentInfo...)."""
    if not isinstance(value, dict):
        return {}
    return {key.lower(): item for key, item in value.items() if isinstance(key, str)}


def checked_ms(ms: int, shown: str) -> int:
    if not 0 <= ms <= _MAX_MS:
        invalid(f"{shown} is out of range")
    return ms


def iso_ms(text: str, shown: str) -> int:
    """An ISO 8601 / RFC 3339 time with an offset (or Z) to UTC epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        invalid(f"{shown} is not an ISO 8601 time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        invalid(f"{shown} has no UTC offset")
    try:
        delta = moment - _EPOCH
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        invalid(f"{shown} is out of range")
    return checked_ms(delta // timedelta(milliseconds=1), shown)


def epoch_ms(text: str, scale: int, shown: str) -> int:
    """Epoch seconds (scale 1000, fractions allowed) or milliseconds (scale 1) written as digits."""
    whole, _dot, fraction = text.strip().partition(".")
    if not (whole.isascii() and whole.isdigit() and len(whole) <= 16) or (
            fraction and not (fraction.isascii() and fraction.isdigit())):
        invalid(f"{shown} is not a Unix time")
    ms = int(whole) * scale + (int((fraction + "000")[:3]) if scale == 1000 and fraction else 0)
    return checked_ms(ms, shown)



def collect(items: list[Any], one: Callable[[Any], dict[str, Any] | str], several: bool) -> Mapped | InvalidRecord:
    events: list[dict[str, Any]] = []
    ignored: list[str] = []
    for number, item in enumerate(items, 1):
        try:
            outcome = one(item)
            if isinstance(outcome, dict):
                outcome = checked_event(outcome)
        except Invalid as error:
            return rejected(f"record {number}: {error.reason}" if several else error.reason)
        if isinstance(outcome, str):
            reason = redact_numbers(outcome)[:_REASON_CHARS]
            if reason not in ignored:
                ignored.append(reason)
        else:
            events.append(outcome)
    return Mapped(tuple(events), tuple(ignored))


