"""The worker's saved state (streams/worker/call_table.py, streams/worker/partition.py) without Kafka:
calls one record per call in rounds, the rest in a checkpoint naming the round. A partition
restored from them after a crash at any point (clean, between a round's call records and its
checkpoint, twice in a row) carries on to exactly the state and window parts of a run that never
stopped. Kafka's part (sending, reading back, compaction) runs in tests/integration/test_worker.py."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest

from streams.domain import FlowConfig, parse_ts
from streams.domain.events import format_ts
from streams.domain.state import tracker_state
from streams.simulator import simulate
from streams.worker.call_table import CallRecord, CallTable, latest_by_call
from streams.worker.partition import CONTROL_HEADER, END_OF_STREAM, Message, PartitionFlow

START_MS = parse_ts("2024-03-30T22:00:00Z")
BATCH = 400


def _messages(hours: float, seed: int) -> list[Message]:
    events = list(simulate(seed, START_MS, hours * 3600))
    lines = [json.dumps(event).encode() for event in events]
    rng = random.Random(seed)
    for at in sorted(rng.sample(range(100, len(lines)), 40), reverse=True):  # duplicates, as connectors resend
        lines.insert(at + rng.randint(1, 20), lines[at])
    end = json.dumps({"at": format_ts(parse_ts(str(events[-1]["ts"])))}).encode()
    messages = [Message(offset, value) for offset, value in enumerate(lines)]
    messages.append(Message(len(lines), end, ((CONTROL_HEADER, END_OF_STREAM),)))
    return messages


class _Store:
    """What Kafka keeps for one partition: the call table's log and the checkpoints' log."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes | None, bytes | None]] = []
        self.checkpoints: list[bytes] = []

    def latest_checkpoint(self) -> Any:
        return json.loads(zlib.decompress(self.checkpoints[-1])) if self.checkpoints else None

    def latest_calls(self) -> list[tuple[str, bytes | None]]:
        return list(latest_by_call(self.calls).items())


class _Run:
    """A partition driven as the ingest service drives it, with its outputs collected."""

    def __init__(self, store: _Store, live_from: int | None = None) -> None:
        self.store = store
        self.flow = PartitionFlow(0, FlowConfig(), 900, wall_clock=False)
        self.live_from = live_from  # the offset from which the board runs on its own (go_live)
        self.parts: dict[tuple[Any, ...], Any] = {}  # as the aggregator keeps them: a re-sent part replaces itself

    def restore(self) -> _Run:
        self.flow.restore(self.store.latest_checkpoint(), self.store.latest_calls())
        return self

    def feed(self, messages: list[Message], until: int) -> None:
        start = self.flow.next_offset
        for first in range(start, until, BATCH):
            assert not self.flow.take(messages[first:min(first + BATCH, until)])
            if self.live_from is not None and self.flow.next_offset >= self.live_from:
                self.flow.go_live()
            for part in self.flow.advance().parts:
                self.parts[(part.start_ms, part.group)] = part

    def checkpoint(self, write_checkpoint: bool = True) -> list[CallRecord]:
        epoch, records = self.flow.table.round(self.flow.call_changes())
        self.store.calls.extend((record.call_id.encode(), record.value) for record in records)
        if write_checkpoint:
            self.store.checkpoints.append(zlib.compress(json.dumps(self.flow.snapshot(epoch)).encode()))
            self.flow.table.committed(epoch)
        return records

    def state(self) -> Any:
        """The whole state, calls included, as JSON."""
        flow = self.flow
        return json.loads(json.dumps({
            **flow.snapshot(0), "epoch": None,
            "exact_calls": tracker_state(flow._exact_tracker)["calls"],
            "board_calls": tracker_state(flow._board_tracker)["calls"]}))


def _uninterrupted(messages: list[Message], live_from: int | None = None) -> _Run:
    run = _Run(_Store(), live_from)
    run.feed(messages, len(messages))
    return run


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    return _messages(hours=30, seed=3)


@pytest.fixture(scope="module")
def references(messages: list[Message]) -> dict[int | None, _Run]:
    """Uninterrupted runs by the offset their board went live at (None: it followed throughout)."""
    return {}


def _reference(messages: list[Message], references: dict[int | None, _Run], live_from: int | None) -> _Run:
    if live_from not in references:
        references[live_from] = _uninterrupted(messages, live_from)
    return references[live_from]


def _checkpointed_run(messages: list[Message], store: _Store, stops: list[int], live_from: int | None) -> _Run:
    run = _Run(store, live_from)
    for stop in stops:
        run.feed(messages, stop)
        run.checkpoint()
    return run


@pytest.mark.parametrize("seed,live_after", [(1, None), (2, None), (3, None), (1, 0), (2, 4), (3, 8), (1, 10)])
def test_a_partition_restored_from_the_call_table_and_checkpoint_carries_on_exactly(
        messages: list[Message], references: dict[int | None, _Run], seed: int, live_after: int | None) -> None:
    """... whether its board follows the exact flow throughout, or goes live (`live_after` stops)
    before the checkpoints, just before one of them, or after the crash."""
    rng = random.Random(seed)
    # At batch boundaries, as Kafka hands out batches: when the orderer forgets old event ids
    # depends on where it releases (a duplicate of a forgotten id counts as late instead).
    stops = [stop * BATCH for stop in sorted(rng.sample(range(1, len(messages) // BATCH), 12))]
    live_from = None if live_after is None else 0 if live_after == 0 else stops[live_after - 1]
    reference = _reference(messages, references, live_from)
    store = _Store()
    first = _checkpointed_run(messages, store, stops[:8], live_from)
    saved = first.state()
    first.feed(messages, stops[8])  # work after the last checkpoint: lost in the crash, read again
    second = _Run(store, live_from).restore()
    assert second.flow.next_offset == stops[7]
    assert second.state() == saved
    second.parts.update(first.parts)
    for stop in stops[8:]:
        second.feed(messages, stop)
        second.checkpoint()
    second.feed(messages, len(messages))
    assert second.state() == reference.state()
    assert second.parts == reference.parts
    # The table holds one record per call, far fewer than the events.
    assert len(latest_by_call(store.calls)) < len(messages) / 2


def test_a_crash_between_call_records_and_checkpoint_restores_the_previous_round(
        messages: list[Message], references: dict[int | None, _Run]) -> None:
    reference = _reference(messages, references, 0)  # a live board: both flows' calls in the table
    store = _Store()
    size = len(messages) // BATCH * BATCH  # stops at batch boundaries (see above)
    first = _checkpointed_run(messages, store, [size // 5 // BATCH * BATCH, size // 3 // BATCH * BATCH], 0)
    first.feed(messages, size // 2 // BATCH * BATCH)
    written = first.checkpoint(write_checkpoint=False)  # the checkpoint never made it
    assert any(record.value is not None and json.loads(record.value)["p"] is not None for record in written)
    assert any(record.value is not None and json.loads(record.value)["s"] is None for record in written), \
        "calls forgotten in the round"

    second = _Run(store, 0).restore()
    assert second.flow.next_offset == size // 3 // BATCH * BATCH
    assert second.flow.table.next_epoch > json.loads(written[0].value or b"{}").get("e", 0)
    second.feed(messages, (size // 2 + 1000) // BATCH * BATCH)
    # A second crash in the middle of the next round, before its checkpoint too.
    second.checkpoint(write_checkpoint=False)
    third = _Run(store, 0).restore()
    assert third.flow.next_offset == size // 3 // BATCH * BATCH
    third.feed(messages, size * 3 // 4 // BATCH * BATCH)
    third.checkpoint()  # rewrites every stale record: they must not pass for committed ones later
    third.feed(messages, size * 4 // 5 // BATCH * BATCH)
    third.checkpoint()
    fourth = _Run(store, 0).restore()
    assert fourth.flow.next_offset == size * 4 // 5 // BATCH * BATCH
    fourth.feed(messages, len(messages))
    assert fourth.state() == reference.state()
    assert {**first.parts, **second.parts, **third.parts, **fourth.parts} == reference.parts


def test_a_stale_record_never_passes_for_a_committed_one() -> None:
    """Epoch 2's round is written but not its checkpoint; after the restore the call is not
    changed again, and later rounds complete: its state stays the one of round 1."""
    table = CallTable()
    epoch, records = table.round({"c1": '[["a"],null]', "c2": '[["x"],null]'})
    log = [(r.call_id, r.value) for r in records]
    table.committed(epoch)
    epoch, records = table.round({"c1": '[["b"],null]', "c2": None})  # crash before the checkpoint
    log += [(r.call_id, r.value) for r in records]

    restored = CallTable()
    pairs = restored.restore(latest_by_call((k.encode(), v) for k, v in log).items(), checkpoint_epoch=1)
    assert pairs == {"c1": [["a"], None], "c2": [["x"], None]}
    epoch, records = restored.round({})
    assert epoch == 3
    assert {r.call_id: json.loads(r.value)["s"] for r in records if r.value} == {
        "c1": [["a"], None], "c2": [["x"], None]}
    log += [(r.call_id, r.value) for r in records]
    restored.committed(epoch)
    again = CallTable()
    assert again.restore(latest_by_call((k.encode(), v) for k, v in log).items(), checkpoint_epoch=3) == pairs


def test_a_forgotten_call_is_marked_then_deleted() -> None:
    table = CallTable()
    epoch, _ = table.round({"c1": '[["a"],null]'})
    table.committed(epoch)
    epoch, records = table.round({"c1": None})
    assert [json.loads(r.value or b"") for r in records] == [{"e": 2, "s": None, "p": [["a"], None]}]
    table.committed(epoch)
    epoch, records = table.round({})
    assert records == [CallRecord("c1", None)]  # the tombstone, once the forgetting checkpoint is safe
    table.committed(epoch)
    assert table.round({}) == (4, [])


def test_a_partition_counts_what_it_turns_away_whatever_the_batches() -> None:
    """Duplicates, late events and malformed messages are counted once each, and the exact flow's
    orderer agrees, whether the messages come one at a time or all in one batch. (A copy that comes
    after its original was released is late rather than a duplicate: how many depends on how
    often the partition advances, not on the report.)"""
    messages = _messages(3, seed=11)
    *body, end = messages
    values = [message.value for message in body]
    rng = random.Random(5)
    late_at = sorted(rng.sample(range(len(values) // 2, len(values)), 5), reverse=True)
    for number, at in enumerate(late_at):
        newest = max(parse_ts(json.loads(value)["ts"]) for value in values[:at])  # type: ignore[arg-type]
        late = {"v": 1, "event_id": f"late-{number}", "call_id": f"late-call-{number}", "type": "offered",
                "ts": format_ts(newest - 10 * 60_000), "site": "default", "line": "999", "queue": "999-police"}
        values.insert(at, json.dumps(late).encode())
    values[300:300] = [b"not json", b'{"v": 1}', None]
    stream = [Message(offset, value) for offset, value in enumerate(values)]
    stream.append(Message(len(values), end.value, end.headers))
    copies = 40  # inserted by _messages; a copy that comes after the lateness is late, not a duplicate

    for batch in (1, len(stream)):
        flow = PartitionFlow(0, FlowConfig(), 900, wall_clock=False)
        rejected = []
        for first in range(0, len(stream), batch):
            rejected.extend(flow.take(stream[first:first + batch]))
            flow.advance()
        assert [r.offset for r in rejected] == [300, 301, 302]
        assert (flow.counts.received, flow.counts.rejected) == (len(values), 3)
        assert flow.counts.late >= 5 and flow.counts.late + flow.counts.duplicates == 5 + copies
        accepted, exact_duplicates, exact_late = flow.exact_counts[:3]
        assert (exact_late, exact_duplicates) == (flow.counts.late, flow.counts.duplicates)
        assert accepted == len(values) - 3 - 5 - copies
