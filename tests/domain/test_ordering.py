"""The orderer's batch intake (`offer_all`, replay's hot loop) leaves exactly the state that offering
the same events one by one leaves: buffered entries, seen ids, newest time, counts and releases,
whatever the duplicates, late events, ties and release points."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.events import EVENT_TYPES, CallEvent
from streams.domain.ordering import EventOrderer

events = st.builds(
    lambda number, at_s, kind: CallEvent(f"e{number}", f"c{number % 7}", kind, at_s * 1000, "999", "q"),
    st.integers(0, 60),  # a few ids repeat: duplicates
    st.integers(0, 400),  # times jump back and forth around the lateness: late and tied events
    st.sampled_from(EVENT_TYPES),
)


def state(orderer: EventOrderer) -> tuple[object, ...]:
    return (list(orderer._run), sorted(orderer._heap), dict(orderer._seen), orderer.newest_ms,
            orderer._released_before_ms, orderer.counts)


# Between batches: nothing, a release by the events' own time, by a live clock, or a drain (each
# moves the bound below which events are late in its own way).
releases = st.one_of(st.none(), st.just("events"), st.integers(0, 500_000), st.just("drain"))


def release(orderer: EventOrderer, how: object) -> list[CallEvent]:
    if how is None:
        return []
    if how == "drain":
        return orderer.drain()
    return orderer.release(how if isinstance(how, int) else None)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=80), st.lists(st.tuples(st.integers(1, 20), releases), min_size=1, max_size=10),
       st.sampled_from([0, 1_000, 30_000, 120_000]))
def test_offer_all_equals_offering_one_by_one(stream: list[CallEvent], cuts: list[tuple[int, object]],
                                              lateness_ms: int) -> None:
    one_by_one, batched = EventOrderer(lateness_ms), EventOrderer(lateness_ms)
    released_one, released_batched = [], []
    start = 0
    for size, how in cuts * 10:
        chunk = stream[start:start + size]
        if not chunk:
            break
        start += size
        for event in chunk:
            one_by_one.offer(event)
        batched.offer_all(chunk)
        assert state(batched) == state(one_by_one)
        released_one += release(one_by_one, how)
        released_batched += release(batched, how)
    released_one += one_by_one.drain()
    released_batched += batched.drain()
    assert released_batched == released_one
    assert state(batched) == state(one_by_one)


def test_offer_all_counts_duplicates_and_late_events() -> None:
    orderer = EventOrderer(1_000)
    first = CallEvent("a", "c", "offered", 10_000, "999", "q")
    orderer.offer_all([first, first, CallEvent("b", "c", "answered", 8_000, "999", "q"),
                       CallEvent("c", "c", "answered", 9_500, "999", "q")])
    assert (orderer.counts.accepted, orderer.counts.duplicates, orderer.counts.late) == (2, 1, 1)
    assert [event.event_id for event in orderer.drain()] == ["c", "a"]
