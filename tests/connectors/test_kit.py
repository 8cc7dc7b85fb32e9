"""The connector kit shared by every connector: one pseudonymisation of callers and agents, one
event builder, one QUEUE=LINE grammar, one masking rule; fuzzed with hypothesis (the number of
examples each property ran is printed)."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.canonical import EventBuilder, checked
from connectors.errors import ConfigurationError, InvalidRecord
from connectors.privacy import pseudonymiser, redact_numbers
from connectors.queue_lines import QueueRoute, parse_queue_lines

KEY = b"kit-test-key-0123456789"


def _reference_hash(text: str) -> str:
    """HMAC-SHA256 written out again here, sharing no code with connectors.privacy."""
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()[:16]


def test_a_pseudonymiser_needs_a_key() -> None:
    with pytest.raises(ConfigurationError, match="CALLWATCH_PSEUDONYMISATION_KEY"):
        pseudonymiser(None)


def test_callers_are_hashed_without_separators_and_withheld_ones_dropped() -> None:
    hide = pseudonymiser(KEY)
    assert hide.caller("+44 (7700) 900-123") == "h:" + _reference_hash("+447700900123")
    assert hide.caller("+447700900123") == hide.caller("+44 7700 900 123")
    assert hide.caller("anonymous") is None and hide.caller("") is None


def test_agents_are_hashed_alike_whatever_the_platform() -> None:
    hide = pseudonymiser(KEY)
    for identity in ("WK0123456789abcdef0123456789abcdef", "SIP/1001", "Agent/7", "a1b2c3d4-agent-id"):
        assert hide.agent(identity) == "a:" + _reference_hash("agent:" + identity)
        assert hide.agent(f"  {identity} ") == hide.agent(identity)
    assert hide.agent(" ") is None


def test_the_builder_hashes_identities_and_writes_the_schema_order() -> None:
    build = EventBuilder("test", pseudonymiser(KEY), site="north")
    event = build.call("answered", event_id="e1", call_id="c1", occurred_ms=1_700_000_000_250, line="999",
                       queue="q1", agent="WK42", caller="07700 900123")
    assert list(event) == ["v", "event_id", "call_id", "type", "ts", "line", "queue", "site", "agent", "caller",
                           "source"]
    assert event["agent"] == "a:" + _reference_hash("agent:WK42")
    assert event["caller"] == "h:" + _reference_hash("07700900123")
    assert event["ts"] == "2023-11-14T22:13:20.250Z" and event["site"] == "north"
    assert checked(event) is event
    state = build.agent_state(event_id="s1", occurred_ms=0, agent="WK42", state="away")
    assert state["agent"] == event["agent"] and "call_id" not in state


def test_a_builder_without_a_key_refuses_identities() -> None:
    build = EventBuilder("test")
    assert build.call("offered", event_id="e", call_id="c", occurred_ms=0, line="1", queue="q")["source"] == "test"
    with pytest.raises(ConfigurationError):
        build.call("offered", event_id="e", call_id="c", occurred_ms=0, line="1", queue="q", caller="0123456789")


def test_canonical_events_keep_hashes_and_hash_raw_identities() -> None:
    build = EventBuilder("webhook", pseudonymiser(KEY))
    kept = {"caller": "h:0011223344556677", "agent": "a:0011223344556677"}
    assert build.pseudonymised(kept) == {**kept, "source": "webhook"}
    raw = build.pseudonymised({"caller": "+44 7700 900123", "agent": "agent-4", "source": "pbx"})
    assert raw == {"caller": "h:" + _reference_hash("+447700900123"),
                   "agent": "a:" + _reference_hash("agent:agent-4"), "source": "pbx"}


def test_checked_names_the_field() -> None:
    rejected = checked({"v": 1, "event_id": "e", "type": "offered"}, 7, "row")
    assert isinstance(rejected, InvalidRecord) and rejected.location == 7
    assert rejected.reason.startswith("row: invalid ")


def test_queue_lines_grammar() -> None:
    lines = parse_queue_lines("Q1=999, arn:aws:connect:eu-west-2:1:instance/i/queue/abc=101:Non-emergency ,*=101")
    assert lines.route("Q1") == QueueRoute("999", "Q1")
    assert lines.route("abc", "arn:aws:connect:eu-west-2:1:instance/i/queue/abc") == QueueRoute("101", "Non-emergency")
    assert lines.route("other") == QueueRoute("101", "other")
    assert parse_queue_lines("").route("lonely") == QueueRoute("lonely", "lonely")


@pytest.mark.parametrize("text, wrong", [
    ("Q1", "is not QUEUE=LINE"), ("=999", "is not QUEUE=LINE"), ("Q1=", "is not QUEUE=LINE"),
    ("Q1=*", "line's total"), ("Q1=999:*", "line's total"), ("*=101:All", "takes no NAME"),
    ("Q1=999,Q1=101", "two lines"), ("*=999,*=101", "two lines")])
def test_queue_lines_errors_name_the_entry(text: str, wrong: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(wrong)):
        parse_queue_lines(text, "--x-queue-lines")


# --- properties -------------------------------------------------------------------------------------

_NAMES = st.text(st.characters(blacklist_characters=",=:*", blacklist_categories=("Cs",)), min_size=1,
                 max_size=12).map(str.strip).filter(bool)


@settings(max_examples=300)
@given(st.dictionaries(_NAMES, st.tuples(_NAMES, st.none() | _NAMES), max_size=6), st.none() | _NAMES, _NAMES)
def test_queue_lines_round_trip(routes: dict[str, tuple[str, str | None]], other: str | None, probe: str) -> None:
    text = ",".join(f"{q}={line}" + (f":{name}" if name else "") for q, (line, name) in routes.items())
    if other is not None:
        text += f",*={other}"
    lines = parse_queue_lines(text)
    for queue, (line, name) in routes.items():
        assert lines.route(queue) == QueueRoute(line, name or queue)
    if probe not in routes:
        assert lines.line_of(probe) == (other if other is not None else probe)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_queue_lines_never_crash_and_never_route_to_a_total(text: str) -> None:
    try:
        lines = parse_queue_lines(text)
    except ConfigurationError as error:
        assert str(error).startswith("queue lines: ")
        return
    assert all(route.line != "*" for route in lines.routes.values())


@settings(max_examples=300)
@given(st.text(max_size=60), st.from_regex(r"\+?[0-9]{5,15}", fullmatch=True), st.text(max_size=60))
def test_masking_hides_every_number_in_any_text(before: str, number: str, after: str) -> None:
    masked = redact_numbers(f"{before} {number} {after}")
    assert re.search(r"\d{5}", masked) is None or number not in masked
    assert number not in masked


_IDENTITIES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=300)
@given(_IDENTITIES, st.from_regex(r"\+?[0-9][0-9 ()\-]{6,18}[0-9]", fullmatch=True), _NAMES, _NAMES,
       st.integers(min_value=0, max_value=253_402_300_799_999))
def test_built_events_are_valid_and_carry_no_raw_identity(agent: str, number: str, line: str, queue: str,
                                                          occurred_ms: int) -> None:
    build = EventBuilder("fuzz", pseudonymiser(KEY))
    event = build.call("answered", event_id="e", call_id="c", occurred_ms=occurred_ms, line=line, queue=queue,
                       agent=agent, caller=number)
    assert checked(event) is event
    assert event["caller"] == "h:" + _reference_hash("".join(ch for ch in number if ch not in " ()-"))
    if agent.strip():
        assert event["agent"] == "a:" + _reference_hash("agent:" + agent.strip())
    else:
        assert "agent" not in event
    digits = "".join(ch for ch in number if ch.isdigit())
    assert digits not in event["caller"] or len(digits) < 5
