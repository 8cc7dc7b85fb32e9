"""The one canonical-event builder of every connector (SPEC section 2): a connector says what
happened, in its own terms; this module writes the event object in the schema's field order and
hashes the caller and agent on the way, so that no raw identity can leave a connector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from connectors.errors import ConfigurationError, InvalidRecord
from connectors.privacy import Pseudonymiser
from streams.domain.events import AGENT_STATE, DEFAULT_SITE, SCHEMA_VERSION, InvalidEvent, format_ts, parse_event

_NO_IDENTITIES: Final = ("this source was set up without a pseudonymisation key, yet a record carries a "
                         "caller or an agent: set CALLWATCH_PSEUDONYMISATION_KEY")


@dataclass(frozen=True, slots=True)
class EventBuilder:
    """Builds the events of one source. `pseudonymiser` is None only for sources that carry no
    callers or agents (a CSV mapping without those columns)."""

    source: str
    pseudonymiser: Pseudonymiser | None = None
    site: str = DEFAULT_SITE

    def call(self, event_type: str, *, event_id: str, call_id: str, occurred_ms: int, line: str, queue: str,
             site: str | None = None, agent: str | None = None, caller: str | None = None) -> dict[str, Any]:
        """A call-leg event. `agent` and `caller` are the platform's raw identity and number."""
        return self._event(event_type, event_id, call_id, occurred_ms, line, queue, site, agent, caller, None)

    def agent_state(self, *, event_id: str, occurred_ms: int, agent: str, state: str, site: str | None = None,
                    line: str | None = None, queue: str | None = None) -> dict[str, Any]:
        """An agent's state change; `agent` is the platform's raw identity."""
        return self._event(AGENT_STATE, event_id, None, occurred_ms, line, queue, site, agent, None, state)

    def _event(self, event_type: str, event_id: str, call_id: str | None, occurred_ms: int, line: str | None,
               queue: str | None, site: str | None, agent: str | None, caller: str | None,
               state: str | None) -> dict[str, Any]:
        event: dict[str, Any] = {"v": SCHEMA_VERSION, "event_id": event_id}
        if call_id is not None:
            event["call_id"] = call_id
        event["type"] = event_type
        event["ts"] = format_ts(occurred_ms)
        if line is not None:
            event["line"] = line
        if queue is not None:
            event["queue"] = queue
        event["site"] = site or self.site
        if agent is not None or caller is not None:
            if self.pseudonymiser is None:
                raise ConfigurationError(_NO_IDENTITIES)
            hashed_agent = self.pseudonymiser.agent(agent) if agent is not None else None
            if hashed_agent is not None:
                event["agent"] = hashed_agent
            hashed_caller = self.pseudonymiser.caller(caller) if caller is not None else None
            if hashed_caller is not None:
                event["caller"] = hashed_caller
        if state is not None:
            event["state"] = state
        event["source"] = self.source
        return event

    def pseudonymised(self, event: dict[str, Any]) -> dict[str, Any]:
        """An event that arrived already canonical (callwatch's own endpoint), with a raw caller
        or agent hashed like every other source's (values already 'h:...' / 'a:...' are kept)."""
        result = dict(event)
        for name, hashed in (("caller", "h:"), ("agent", "a:")):
            value = result.get(name)
            if isinstance(value, str) and value and not value.startswith(hashed):
                if self.pseudonymiser is None:
                    raise ConfigurationError(_NO_IDENTITIES)
                result[name] = (self.pseudonymiser.caller(value) if name == "caller"
                                else self.pseudonymiser.agent(value))
                if result[name] is None:
                    del result[name]
        result.setdefault("source", self.source)
        return result


def checked(event: dict[str, Any], location: int | str | None = None, what: str = "") -> dict[str, Any] | InvalidRecord:
    """The event if it is valid against the schema, else the rejection saying which field is wrong."""
    try:
        parse_event(event)
    except InvalidEvent as error:
        return InvalidRecord(f"{what}: invalid {error}" if what else f"invalid {error}", location)
    return event
