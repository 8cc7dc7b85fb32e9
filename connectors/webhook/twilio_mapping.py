"""Twilio TaskRouter event callbacks to canonical events: which events are call legs, how a
cancelled task is told from a timeout, activity names to agent states. The WorkerSid is hashed like
every agent id; the caller's number too."""

from __future__ import annotations

from typing import Any, Final, Mapping

from connectors.errors import InvalidRecord
from connectors.webhook.payloads import (
    Invalid, Mapped, MappingContext, collect, epoch_ms, form_fields, invalid, iso_ms, json_value, text_field)
from streams.domain.events import ABANDONED, AGENT_STATE, ANSWERED, ENDED, OFFERED, TIMEOUT, TRANSFERRED

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


def twilio_events(pairs: list[tuple[str, str]], context: MappingContext) -> Mapped | InvalidRecord:
    """POST /v1/twilio/taskrouter: an event callback as TaskRouter posts it (its form fields, already
    decoded by the endpoint, which checked their signature)."""
    return from_twilio_taskrouter(form_fields(pairs), context)


def from_twilio_taskrouter(fields: object, context: MappingContext) -> Mapped | InvalidRecord:
    """TaskRouter event callback fields to canonical events (docs/connectors/webhook.md lists the
    fields read). Events that are not about a call leg are ignored, with the reason."""
    if isinstance(fields, list):
        return collect(fields, lambda item: _twilio_event(item, context), several=True)
    return collect([fields], lambda item: _twilio_event(item, context), several=False)


def _twilio_event(fields: object, context: MappingContext) -> dict[str, Any] | str:
    if not isinstance(fields, dict):
        invalid("a TaskRouter event must be form fields or a JSON object")
    event_type = text_field(fields, "EventType")
    if not event_type:
        invalid("EventType is missing")
    kind = _TWILIO_KINDS.get(event_type)
    if kind is None:
        return f"{event_type[:60]} is not a call-leg event"
    occurred_ms = _twilio_ms(fields)
    if kind == AGENT_STATE:
        return _twilio_agent_state(fields, occurred_ms, context)
    channel = text_field(fields, "TaskChannelUniqueName").strip().lower()
    if channel and channel != "voice":
        return f"{event_type}: channel {channel[:30]!r} is not a call"
    task_sid = text_field(fields, "TaskSid")
    if not task_sid:
        invalid(f"{event_type}: TaskSid is missing")
    queue_name, queue_sid = text_field(fields, "TaskQueueName"), text_field(fields, "TaskQueueSid")
    if not (queue_name or queue_sid):
        invalid(f"{event_type}: TaskQueueName and TaskQueueSid are both missing")
    attributes = _task_attributes(text_field(fields, "TaskAttributes"))
    listed = context.queues.listed(queue_name, queue_sid)
    queue = (listed.name if listed else None) or queue_name or queue_sid
    attribute_line = attributes.get("line")
    if listed is not None:
        line = listed.line
    elif isinstance(attribute_line, str) and attribute_line and attribute_line != "*":
        line = attribute_line  # the workflow's own word beats '*'
    else:
        line = context.queues.line_of(queue)
    if kind == ABANDONED:
        cancel_reason = text_field(fields, "TaskCanceledReason").lower()
        if any(word in cancel_reason for word in _TWILIO_TIMEOUT_WORDS):
            kind = TIMEOUT
    call_sid = attributes.get("call_sid")
    call_id = call_sid if isinstance(call_sid, str) and call_sid else task_sid
    caller = attributes.get("from") or attributes.get("caller")
    worker = text_field(fields, "WorkerSid") if kind == ANSWERED else ""
    if kind == ANSWERED and not worker:
        invalid(f"{event_type}: WorkerSid is missing")
    parts = ["twilio", event_type, text_field(fields, "ReservationSid") or task_sid, queue_sid or queue_name,
             str(occurred_ms)]
    return context.build.call(kind, event_id=":".join(parts), call_id=call_id, occurred_ms=occurred_ms, line=line,
                              queue=queue, agent=worker or None,
                              caller=caller if isinstance(caller, str) and caller else None)


def _twilio_agent_state(fields: Mapping[str, Any], occurred_ms: int, context: MappingContext) -> dict[str, Any]:
    worker = text_field(fields, "WorkerSid")
    if not worker:
        invalid("worker.activity.update: WorkerSid is missing")
    activity = " ".join(text_field(fields, "WorkerActivityName").lower().replace("-", " ").replace("_", " ").split())
    if not activity:
        invalid("worker.activity.update: WorkerActivityName is missing")
    state = _ACTIVITY_STATES.get(activity, _ACTIVITY_STATES.get(activity.replace(" ", ""), "away"))
    # The event id names the worker by its pseudonym: no raw WorkerSid leaves the connector.
    agent = context.build.pseudonymiser.agent(worker) if context.build.pseudonymiser else None
    return context.build.agent_state(event_id=f"twilio:worker.activity.update:{agent}:{occurred_ms}",
                                     occurred_ms=occurred_ms, agent=worker, state=state)


def _twilio_ms(fields: Mapping[str, Any]) -> int:
    """TimestampMs (epoch ms, sent since 2018), else Timestamp (epoch seconds, or an ISO time from
    a relay), else EventDateMs / EventDate (the Event resource's names)."""
    for name, scale in (("TimestampMs", 1), ("EventDateMs", 1)):
        text = text_field(fields, name)
        if text:
            return epoch_ms(text, scale, name)
    for name in ("Timestamp", "EventDate"):
        text = text_field(fields, name)
        if text:
            return iso_ms(text, name) if "-" in text else epoch_ms(text, 1000, name)
    invalid("Timestamp is missing")


def callback_time_s(fields: Mapping[str, Any]) -> float | None:
    """The signed time of a callback in seconds, for the replay check; None when it has none that
    reads (the mapping then refuses it, naming the field)."""
    try:
        return _twilio_ms(fields) / 1000
    except Invalid:
        return None


def _task_attributes(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json_value(text)
    except Invalid as error:
        invalid(f"TaskAttributes: {error.reason}")
    if not isinstance(value, dict):
        invalid("TaskAttributes must be a JSON object")
    return value


