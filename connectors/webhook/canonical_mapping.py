"""POST /v1/events, callwatch's own endpoint: canonical events as a PBX integration or a relay sends
them (SPEC section 2), each validated; a raw caller number or agent id is hashed here like every
connector's, so none goes further."""

from __future__ import annotations

from typing import Any

from connectors.errors import ConfigurationError, InvalidRecord
from connectors.webhook.payloads import (
    JSON_LINES_TYPES, Invalid, Mapped, MappingContext, is_json, json_lines, json_value, media_type, rejected,
    unsupported)
from streams.domain.events import InvalidEvent, parse_event


def canonical_events(body: bytes, content_type: str | None, context: MappingContext) -> Mapped | InvalidRecord:
    """One canonical event (a JSON object), a JSON array of them, or JSON Lines."""
    media = media_type(content_type)
    try:
        if media in JSON_LINES_TYPES:
            return from_canonical(json_lines(body), context)
        if is_json(media):
            return from_canonical(json_value(body), context)
    except Invalid as error:
        return rejected(error.reason)
    return unsupported(content_type, "application/json (an event or an array of events) or "
                                     "application/x-ndjson (JSON Lines)")


def from_canonical(value: object, context: MappingContext) -> Mapped | InvalidRecord:
    """One invalid event rejects the whole request, so that a sender can fix and resend it as a unit."""
    if not isinstance(value, (dict, list)):
        return rejected("a canonical event must be a JSON object (or send an array of them)")
    several = isinstance(value, list)
    items = value if isinstance(value, list) else [value]
    events: list[dict[str, Any]] = []
    for number, item in enumerate(items, 1):
        where = f"event {number}: " if several else ""
        if not isinstance(item, dict):
            return rejected(f"{where}not a JSON object")
        try:
            event = context.build.pseudonymised(item)
            parse_event(event)
        except InvalidEvent as error:
            return rejected(f"{where}invalid {error}")
        except ConfigurationError as error:  # a keyless endpoint given an identity
            return rejected(f"{where}{error}")
        events.append(event)
    return Mapped(tuple(events))
