"""Snapshots of the running domain (streams/domain/state.py) and figures merged from parts
(streams/domain/records.py): a restored orderer and tracker carry on exactly like the originals, and
per-partition window parts merge into exactly the replay's report rows."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest
from msgspec.structs import replace

from streams.domain import CallFlow, FlowConfig, parse_event, parse_ts
from streams.domain.call_legs import CallTracker, Record
from streams.domain.events import CallEvent
from streams.domain.ordering import EventOrderer
from streams.domain.records import (LiveMerge, LiveTallies, WindowTallies, group_now_state, report_row,
                                    restore_group_now)
from streams.domain.state import (IncompatibleState, check_schema, orderer_state, restore_orderer,
                                  restore_tally, restore_tracker, schema, tally_state, tracker_state)
from streams.simulator import simulate

START_MS = parse_ts("2024-03-30T20:00:00Z")  # runs over the clock change of 31 March


def _events(hours: float = 30, seed: int = 5, scenario: str = "normal") -> list[CallEvent]:
    return [parse_event(obj) for obj in simulate(seed, START_MS, hours * 3600, scenario)]


def _jumbled(events: list[CallEvent], lateness_s: float, seed: int) -> list[CallEvent]:
    """Out of order within the lateness, with some duplicates and a few late events."""
    rng = random.Random(seed)
    arriving = sorted(events, key=lambda e: e.occurred_ms + rng.uniform(0, lateness_s * 900))
    for index in rng.sample(range(len(arriving)), 50):
        arriving.insert(index + rng.randint(0, 30), arriving[index])  # duplicates
    for index in rng.sample(range(1000, len(arriving)), 5):
        late = arriving[index]
        arriving.insert(index + 400, replace(late, event_id=late.event_id + "-late"))
    return arriving


def _json(value: Any) -> Any:
    """Through real JSON (and compression, as the worker stores it): no Python object survives."""
    return json.loads(zlib.decompress(zlib.compress(json.dumps(value).encode())))


class _Partition:
    """An orderer and a tracker driven as the worker drives them: offer, release in batches, apply."""

    def __init__(self, config: FlowConfig) -> None:
        self.orderer = EventOrderer(config.allowed_lateness_ms)
        self.tracker = CallTracker(config.max_wait_ms)
        self.records: list[Record] = []

    def feed(self, events: list[CallEvent], batch: int = 97, start: int = 1) -> None:
        # Releases at the same points as an uninterrupted run: when the orderer forgets old ids
        # depends on them (a duplicate of a forgotten id counts as late rather than duplicate).
        for number, event in enumerate(events, start):
            self.orderer.offer(event)
            if not number % batch:
                self._apply(self.orderer.release())

    def finish(self) -> None:
        self._apply(self.orderer.drain())

    def _apply(self, released: list[CallEvent]) -> None:
        for event in released:
            self.tracker.apply(event, self.records)

    def snapshot(self) -> Any:
        return _json({"orderer": orderer_state(self.orderer), "tracker": tracker_state(self.tracker)})

    @classmethod
    def restored(cls, config: FlowConfig, state: Any) -> _Partition:
        partition = cls(config)
        partition.orderer = restore_orderer(state["orderer"])
        partition.tracker = restore_tracker(state["tracker"])
        return partition


@pytest.mark.parametrize("cut", [0.0, 0.13, 0.5, 0.87])
def test_a_restored_orderer_and_tracker_carry_on_exactly(cut: float) -> None:
    config = FlowConfig()
    arriving = _jumbled(_events(), config.allowed_lateness_s, seed=11)
    at = int(len(arriving) * cut)

    whole = _Partition(config)
    whole.feed(arriving)
    whole.finish()

    first = _Partition(config)
    first.feed(arriving[:at])
    second = _Partition.restored(config, first.snapshot())
    assert second.snapshot() == first.snapshot()
    second.feed(arriving[at:], start=at + 1)
    second.finish()

    assert first.records + second.records == whole.records
    assert len(whole.records) > 5_000
    assert second.orderer.counts == whole.orderer.counts
    assert second.tracker.counts == whole.tracker.counts
    assert whole.orderer.counts.duplicates > 0 and whole.orderer.counts.late > 0


def test_a_tally_round_trips() -> None:
    flow_records: list[Record] = []
    partition = _Partition(FlowConfig())
    partition.feed(_events(hours=3))
    partition.finish()
    flow_records = partition.records
    parts = WindowTallies(900, FlowConfig())
    parts.add(flow_records)
    for part in parts.take_until(None):
        assert restore_tally(_json(tally_state(part.tally))) == part.tally


def test_a_snapshot_of_another_schema_is_refused() -> None:
    check_schema(_json(schema()))
    stored = _json(schema())
    stored["leg"] = stored["leg"][:-1]
    with pytest.raises(IncompatibleState):
        check_schema(stored)
    with pytest.raises(IncompatibleState):
        restore_tally([1, 2, 3])


def _replay_rows(events: list[CallEvent], config: FlowConfig, window_s: int) -> list[dict[str, object]]:
    flow = CallFlow(config, interval_s=window_s)
    rows: list[dict[str, object]] = []
    for number, event in enumerate(events, 1):
        flow.ingest(event)
        if not number % 256:
            rows.extend(flow.advance())
    return rows + flow.finish()


@pytest.mark.parametrize("window_s,partitions", [(900, 6), (60, 3), (86_400, 4)])
def test_parts_of_partitions_merge_into_the_replay_rows(window_s: int, partitions: int) -> None:
    """Events split by call (as Kafka partitions them by key), each partition ordered, tracked and
    tallied on its own, some of them restored from a snapshot midway: the merged parts are the rows
    of one replay over all the events."""
    config = FlowConfig()
    events = _events(hours=30, seed=9, scenario="surge")
    # The last event time of the whole stream: every partition expires lost legs up to it at the end,
    # as the single replay does when its last event arrives.
    end_ms = max(e.occurred_ms for e in events)
    by_partition: list[list[CallEvent]] = [[] for _ in range(partitions)]
    for event in events:
        by_partition[zlib.crc32((event.call_id or event.agent or "").encode()) % partitions].append(event)

    parts: dict[tuple[int, int, tuple[str, str, str]], list[Any]] = {}
    for number, partition_events in enumerate(by_partition):
        tallies = WindowTallies(window_s, config)
        partition = _Partition(config)
        half = len(partition_events) // 2
        partition.feed(partition_events[:half])
        if number % 2:  # a restart midway
            state = partition.snapshot()
            tallies.add(partition.records)
            partition = _Partition.restored(config, state)
            restored = WindowTallies(window_s, config)
            restored.restore(_json(tallies.state()))
            tallies = restored
        else:
            tallies.add(partition.records)
        partition.records = []
        partition.feed(partition_events[half:])
        partition.finish()
        partition.tracker.expire(end_ms, partition.records)
        tallies.add(partition.records)
        for part in tallies.take_until(None):
            parts.setdefault((part.start_ms, part.end_ms, part.group), []).append(part.tally)

    merged = [row.as_dict() for (start, end, group), tallies_of in sorted(parts.items())
              if (row := report_row(start, end, group, tallies_of, config)) is not None]
    expected = _replay_rows(events, config, window_s)
    assert len(expected) > 10
    assert merged == expected


@pytest.mark.parametrize("cut", [0.37, 0.61, 1.0])
def test_wallboard_parts_of_partitions_merge_into_the_live_board(cut: float) -> None:
    """Each partition's LiveTallies, merged by a LiveMerge, show what one LiveBoard over all the
    events shows: waiting legs and longest waits, agents, data age, today, and the rolling windows
    (at an instant whose windows start on a bucket boundary, where buckets lose no precision)."""
    config = FlowConfig(allowed_lateness_s=0)
    events = _events(hours=30, seed=4, scenario="surge")
    if cut < 1:  # end just after an offer: at least that call waits
        at = next(i for i in range(int(len(events) * cut), len(events)) if events[i].type == "offered")
        events = events[:at + 1]
    reference = CallFlow(config, live=True)
    for event in events:
        reference.ingest(event)
    reference.finish()
    end_ms = max(e.occurred_ms for e in events)

    merge = LiveMerge(config)
    partitions = 5
    by_partition: list[list[CallEvent]] = [[] for _ in range(partitions)]
    for event in events:
        by_partition[zlib.crc32((event.call_id or event.agent or "").encode()) % partitions].append(event)
    for number, partition_events in enumerate(by_partition):
        tallies = LiveTallies(config)
        partition = _Partition(config)
        half = len(partition_events) // 2
        for part in (partition_events[:half], partition_events[half:]):
            partition.feed(part)
            partition.finish()
            for event in part:
                tallies.observe(event)
            tallies.add(partition.records)
            partition.records = []
            for update in tallies.updates(end_ms):  # sent twice: the second replaces the first
                merge.update(number, restore_group_now(_json(group_now_state(update))))
        partition.tracker.expire(end_ms, partition.records)
        tallies.add(partition.records)
        restored = LiveTallies(config)
        restored.restore(_json(tallies.state()))
        for update in restored.updates(end_ms, full=True):
            merge.update(number, restore_group_now(_json(group_now_state(update))))

    now_ms = end_ms - end_ms % 10_000 + 10_000
    expected, merged = reference.snapshot(now_ms), merge.snapshot(now_ms)
    assert merged.queues == expected.queues
    assert merged.agents == expected.agents
    assert merged.data_age_s == expected.data_age_s
    assert merged.figures.keys() == expected.figures.keys()
    for window in expected.figures:
        assert merged.figures[window] == expected.figures[window], window
    assert sum(f["offered"] for f in expected.figures["today"].values()) > 100  # type: ignore[misc]
    assert sum(f["offered"] for f in expected.figures["15m"].values()) > 10  # type: ignore[misc]
    assert expected.agents and len(expected.queues) >= 6
    if cut < 1:
        assert sum(q.waiting for q in expected.queues.values()) > 0
