"""Amazon Connect contact events (as EventBridge delivers them) to canonical events: which contacts
are queued calls, how a disconnect before an agent is told apart. The agent (the id at the end of
its ARN) is hashed like every agent id; the caller's number too."""

from __future__ import annotations

from typing import Any, Final

from connectors.errors import InvalidRecord
from connectors.webhook.payloads import (
    Invalid, Mapped, MappingContext, collect, invalid, is_json, iso_ms, json_value, lower_keys, media_type, rejected,
    text_field, unsupported)
from streams.domain.events import ABANDONED, ANSWERED, ENDED, OFFERED, TIMEOUT, TRANSFERRED

CONNECT_DETAIL_TYPE: Final = "Amazon Connect Contact Event"
# Queued contacts that disconnect before an agent: the caller hung up (or was cut off), unless
# the reason says the system ended or moved the contact.
_CONNECT_ABANDON_REASONS: Final = frozenset({"", "CUSTOMER_DISCONNECT", "TELECOM_PROBLEM"})


def connect_events(body: bytes, content_type: str | None, context: MappingContext) -> Mapped | InvalidRecord:
    """POST /v1/amazon-connect: an EventBridge event (or a JSON array of them), as an EventBridge
    API destination sends it."""
    if not is_json(media_type(content_type)):
        return unsupported(content_type, "application/json")
    try:
        value = json_value(body)
    except Invalid as error:
        return rejected(error.reason)
    return from_amazon_connect(value, context)


def from_amazon_connect(value: object, context: MappingContext) -> Mapped | InvalidRecord:
    """Amazon Connect contact events to canonical events (docs/connectors/webhook.md lists the fields
    read). Contacts that never reached a queue, and chats and tasks, are ignored with the reason."""
    if isinstance(value, list):
        return collect(value, lambda item: _connect_event(item, context), several=True)
    return collect([value], lambda item: _connect_event(item, context), several=False)


def _connect_event(value: object, context: MappingContext) -> dict[str, Any] | str:
    top = lower_keys(value)
    if not isinstance(value, dict):
        invalid("an Amazon Connect event must be a JSON object")
    if "detail" in top:
        detail_type = text_field(top, "detail-type")
        if detail_type and detail_type != CONNECT_DETAIL_TYPE:
            return f"detail-type {detail_type[:60]!r} is not {CONNECT_DETAIL_TYPE!r}"
        if not isinstance(top["detail"], dict):
            invalid("detail must be a JSON object")
        detail, sent_at = lower_keys(top["detail"]), text_field(top, "time")
    elif "eventtype" in top and "contactid" in top:
        detail, sent_at = top, ""  # the detail alone, as an EventBridge input transformer may send it
    else:
        invalid("not an Amazon Connect contact event: expected an EventBridge event (detail-type, detail) "
                 "or its detail (eventType, contactId)")
    event_type = text_field(detail, "eventtype", "detail.eventType").upper()
    contact_id = text_field(detail, "contactid", "detail.contactId")
    if not event_type:
        invalid("detail.eventType is missing")
    if not contact_id:
        invalid("detail.contactId is missing")
    channel = text_field(detail, "channel", "detail.channel").upper()
    if channel and channel != "VOICE":
        return f"{event_type[:40]}: channel {channel[:20]} is not a call"
    if event_type not in ("QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED"):
        return f"{event_type[:40]} is not a call-leg event"
    queue_info, agent_info = lower_keys(detail.get("queueinfo")), lower_keys(detail.get("agentinfo"))
    queue_arn = text_field(queue_info, "queuearn", "detail.queueInfo.queueArn")
    if not queue_arn:
        return f"{event_type}: contact never queued (no queueInfo.queueArn)"
    connected_at = text_field(agent_info, "connectedtoagenttimestamp", "detail.agentInfo.connectedToAgentTimestamp")
    agent_arn = text_field(agent_info, "agentarn", "detail.agentInfo.agentArn")
    if event_type == "QUEUED":
        kind, stamp, shown = OFFERED, text_field(queue_info, "enqueuetimestamp"), "queueInfo.enqueueTimestamp"
    elif event_type == "CONNECTED_TO_AGENT":
        kind, stamp, shown = ANSWERED, connected_at, "agentInfo.connectedToAgentTimestamp"
    else:
        stamp, shown = text_field(detail, "disconnecttimestamp"), "disconnectTimestamp"
        reason = text_field(detail, "disconnectreason", "detail.disconnectReason").upper()
        if connected_at or agent_arn:
            kind = ENDED
        elif "TRANSFER" in reason:
            kind = TRANSFERRED
        elif reason in _CONNECT_ABANDON_REASONS:
            kind = ABANDONED
        else:
            kind = TIMEOUT  # the flow, an API call or expiry ended the contact: the system gave up
    if stamp:
        occurred_ms = iso_ms(stamp, f"detail.{shown}")
    elif sent_at:
        occurred_ms = iso_ms(sent_at, "time")
    else:
        invalid(f"{event_type}: detail.{shown} is missing (and the event has no time)")
    queue_id = queue_arn.rsplit("/", 1)[-1]
    queue_name = text_field(queue_info, "queuename")
    route = context.queues.route(queue_name or queue_id, queue_arn, queue_id)
    initial_id = text_field(detail, "initialcontactid", "detail.initialContactId")
    if kind == ANSWERED and not agent_arn:
        invalid("CONNECTED_TO_AGENT: detail.agentInfo.agentArn is missing")
    address = lower_keys(detail.get("customerendpoint")).get("address")
    return context.build.call(
        kind, event_id=f"connect:{contact_id}:{event_type}:{queue_id}", call_id=initial_id or contact_id,
        occurred_ms=occurred_ms, line=route.line, queue=route.name or queue_id,
        agent=agent_arn.rsplit("/", 1)[-1] if kind == ANSWERED else None,
        caller=address if isinstance(address, str) and address else None)
