"""`track_calls`: the worker's reading of the call-events topic. Each assigned partition is a
PartitionFlow (the domain); what it returns goes to the outcomes and dead-letter topics; every few
seconds each partition's state is saved: its calls changed since the last time to the call table
(one record per call, streams/worker/call_table.py), then the rest with the offset of its next
message as the partition's checkpoint.

The topic is read in batches by aiokafka (Faust's own client) in a consumer group of its own,
not through a Faust stream: Faust hands a stream one message at a time through several asyncio
tasks, about 100 µs a message on the development machine (docs/worker.md), ten times what the
domain needs. One loop, one batch at a time: concurrency 1, so nothing is processed twice at once.

Exactly the same figures after a crash: outputs are flushed before a checkpoint is written, and a
restored partition resumes at its checkpoint's offset; what it sends again is identical to what
it sent before (parts replace parts, watermarks only move forward)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from mode import Service

from connectors.sink import DeadLetter
from streams.domain.config import FlowConfig
from streams.domain.state import IncompatibleState

from .call_table import CorruptCallTable
from .health import RoundWatch, where_it_waits
from .kafka import Topology, client_options, encode_checkpoint, keep_metadata_for, load_call_table, load_checkpoint
from .messages import encode_live, encode_parts, encode_tick, encode_watermark, outcomes_partition
from .partition import CheckpointMismatch, PartitionFlow

log = logging.getLogger("callwatch.worker")

REASON_HEADER = "callwatch-reason"  # as connectors.kafka_sink writes dead letters
SOURCE_HEADER = "callwatch-source"
LOCATION_HEADER = "callwatch-location"


@dataclass(frozen=True, slots=True)
class IngestOptions:
    window_s: int = 900
    wall_clock: bool = False
    batch: int = 20_000  # records per poll
    checkpoint_every_s: float = 2.0  # each partition's state is saved about this often
    # ... and at least this often however long saving takes: what changed since a partition's last
    # round (its changed calls) is held in memory until the next, and a restart reads it all again.
    max_checkpoint_gap_s: float = 30.0
    live_every_s: float = 0.1  # wallboard parts that changed go out this often
    full_live_every_s: float = 30.0  # every wallboard part again, for aggregators that just started
    catch_up_ratio: float = 20.0  # stream time this many times faster than the wall clock: catching up
    catch_up_live_every_s: float = 2.0  # wallboard parts while catching up
    watermark_every_s: float = 0.5  # window parts and watermarks go out this often
    quiet_watermark_every_s: float = 10.0  # a watermark that closes no window, at most this often
    parts_per_message: int = 200
    session_timeout_s: float = 10.0


@dataclass
class IngestStatus:
    """Totals over the partitions this worker holds now (restored with them from checkpoints)."""

    received: int = 0
    rejected: int = 0
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    conflicts: int = 0
    unmatched: int = 0
    pending: int = 0
    stream_time_ms: int | None = None
    dead_lettered: int = 0
    deleted_unread: int = 0  # events the topic's retention deleted before they were read
    checkpoints: int = 0
    call_records: int = 0  # records written to the call table
    partitions: list[int] = field(default_factory=list)


class CallIngest(Service):
    def __init__(self, app: Any, kafka: Any, config: FlowConfig, topology: Topology, group_id: str,
                 options: IngestOptions, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app = app
        self._kafka = kafka
        self._config = config
        self._topology = topology
        self._group_id = group_id
        self._options = options
        self._flows: dict[int, PartitionFlow] = {}
        self._lock = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []  # sends not yet known to be acknowledged
        self._sent_watermark: dict[int, tuple[int, float]] = {}  # partition -> (watermark, monotonic time)
        self._unsent: dict[int, dict[int, list[Any]]] = {}  # partition -> outcomes partition -> parts
        self._fresh: set[int] = set()  # partitions whose wallboard parts have not been sent whole yet
        self._live_sent: dict[int, tuple[float, int | None]] = {}  # partition -> (monotonic, stream time)
        self._next_emit = 0.0
        self._consumer: Any = None
        self._fatal: BaseException | None = None
        self._next_checkpoint = 0.0
        self._saved_at: dict[int, float] = {}  # partition -> when its last checkpoint was written
        self._next_live = 0.0
        self._next_full_live = 0.0
        self.status = IngestStatus()
        self.rounds = RoundWatch(time.monotonic())  # is the loop reading the events topic going round?
        self._loop_task: asyncio.Task[Any] | None = None

    @property
    def fatal(self) -> BaseException | None:
        """Why the worker cannot go on (a checkpoint written under other settings), if so."""
        return self._fatal

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        ingest = self

        class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await ingest._on_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await ingest._on_assigned(assigned)

        await self._app.producer.maybe_start()
        topology = self._topology
        await keep_metadata_for(self._app.producer._ensure_producer().client, [  # noqa: SLF001 - see keep_metadata_for
            topology.outcomes, topology.deadletter, topology.checkpoints, topology.call_table, topology.figures])
        self._consumer = AIOKafkaConsumer(
            **client_options(self._kafka), group_id=self._group_id, client_id=f"{self._group_id}-ingest",
            # "none": a position the log no longer has (retention deleted unread events) is reported,
            # not silently skipped (see _track_calls).
            enable_auto_commit=False, auto_offset_reset="none", isolation_level="read_committed",
            max_poll_records=self._options.batch, fetch_max_wait_ms=20,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(self._options.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self._options.session_timeout_s * 250))
        self._consumer.subscribe([self._topology.events], listener=Rebalance())
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            if self._fatal is None:
                try:
                    async with self._lock:
                        await self._checkpoint(list(self._flows))
                except Exception:  # noqa: BLE001 - stopping anyway; the last checkpoint stands
                    log.exception("final checkpoint failed")
            await self._consumer.stop()

    # --- partitions come and go ----------------------------------------------------------------

    async def _on_revoked(self, revoked: Any) -> None:
        async with self._lock:
            mine = [tp.partition for tp in revoked if tp.partition in self._flows]
            if mine and self._fatal is None:
                try:
                    await self._checkpoint(mine)  # the next owner carries on from here
                except Exception:  # noqa: BLE001 - it will carry on from the previous one
                    log.exception("checkpoint of revoked partitions failed")
            for partition in mine:
                del self._flows[partition]
                self._saved_at.pop(partition, None)
                self._live_sent.pop(partition, None)
                self._sent_watermark.pop(partition, None)
                self._unsent.pop(partition, None)
            self._refresh_status()

    async def _on_assigned(self, assigned: Any) -> None:
        async with self._lock:
            ordered = sorted(assigned, key=lambda tp: tp.partition)
            # Read every partition's checkpoint and call table at once: the group waits for this.
            saved = await asyncio.gather(*(asyncio.gather(
                load_checkpoint(self._kafka, self._topology.checkpoints, tp.partition),
                load_call_table(self._kafka, self._topology.call_table, tp.partition)) for tp in ordered))
            for tp, (state, calls) in zip(ordered, saved):
                flow = PartitionFlow(tp.partition, self._config, self._options.window_s, self._options.wall_clock)
                try:
                    flow.restore(state, calls.items())
                except (CheckpointMismatch, IncompatibleState, CorruptCallTable) as error:
                    self._fatal = error
                    log.error("partition %d: %s; run with a new --app-id (or reset the worker)",
                              tp.partition, error)
                    return
                self._consumer.seek(tp, flow.next_offset)
                self._flows[tp.partition] = flow
                self._fresh.add(tp.partition)
                log.info("partition %d: %s at offset %d (%d calls in the call table)", tp.partition,
                         "restored" if state is not None else "starting", flow.next_offset, len(calls))
            self._refresh_status()

    # --- the loop ------------------------------------------------------------------------------

    @Service.task
    async def _track_calls(self) -> None:
        self._loop_task = asyncio.current_task()
        while not self.should_stop:
            self.rounds.finished_round(time.monotonic())
            if self._fatal is not None:
                await self.crash(self._fatal)
                return
            try:
                batches = await self._consumer.getmany(timeout_ms=100, max_records=self._options.batch)
            except OffsetOutOfRangeError as error:
                await self._skip_deleted(error)
                continue
            except NoOffsetForPartitionError:
                await asyncio.sleep(0.05)  # assigned a moment ago: the rebalance listener is placing it
                continue
            started = time.monotonic()
            async with self._lock:
                await self._process(batches)
            took = time.monotonic() - started
            if took > 0.25:
                log.info("slow batch: %d records in %.3f s", sum(len(r) for r in batches.values()), took)

    def check_rounds(self) -> None:
        """Say it once if the loop has stopped going round (see streams/worker/health.py)."""
        stalled_s = self.rounds.stall_to_report(time.monotonic())
        if stalled_s is None:
            return
        if not self.rounds.rounds:
            log.error("the loop reading %s has not started %.0f s after the worker did: no events are read",
                      self._topology.events, stalled_s)
        else:
            log.error("the loop reading %s has not gone round for %.0f s: no events are read meanwhile; "
                      "it waits at %s", self._topology.events, stalled_s, where_it_waits(self._loop_task))

    async def _skip_deleted(self, error: Any) -> None:
        """Events deleted by the topic's retention before this worker read them cannot be counted:
        say so loudly, count them, and go on from the oldest event the topic still has."""
        positions = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
        for tp, offset in positions.items():
            first = (await self._consumer.beginning_offsets([tp]))[tp]
            self.status.deleted_unread += max(0, first - offset)
            log.error("partition %d: events at offsets %d to %d were deleted (retention) before this worker "
                      "read them; they are missing from the figures", tp.partition, offset, first - 1)
            self._consumer.seek(tp, first)

    async def _process(self, batches: dict[Any, list[Any]]) -> None:
        flows = self._flows
        for tp, records in batches.items():
            flow = flows.get(tp.partition)
            if flow is None:
                continue  # revoked meanwhile
            for rejected in flow.take(records):
                await self._dead_letter(tp, rejected)
        clock = time.monotonic()
        now_ms = time.time_ns() // 1_000_000
        targets = self._topology.outcomes_partitions
        for partition, flow in flows.items():
            # The wall clock moves a partition only once it has read all the topic holds for it: a
            # backlog (a worker starting, or back after a while) is applied in event-time order,
            # not turned away as late because the clock passed it before it was read. Then, too,
            # its board starts running on its own (until then it follows the exact flow).
            caught_up = self._read_everything(partition, flow)
            if caught_up:
                flow.go_live()
            progress = flow.advance(now_ms if caught_up else None)
            held = self._unsent.setdefault(partition, {})
            for part in progress.parts:
                held.setdefault(outcomes_partition(part.group, targets), []).append(part)
        if clock >= self._next_emit:
            await self._emit(clock)
        if clock >= self._next_live:
            await self._send_live(now_ms, full=clock >= self._next_full_live)
            self._next_live = clock + self._options.live_every_s
        if clock >= self._next_checkpoint and flows:
            # One partition at a time, the one saved longest ago, so that the loop pauses for one
            # partition's state at once; and at most 1/200 of the time on checkpoints, so that their
            # pauses stay out of the 99th percentile of latency (a big state is saved less often:
            # a restart then reads a little more again), but never less often than the maximum gap:
            # one slow checkpoint (a backlog of sends to settle while catching up) once held off the
            # next ones for a quarter of an hour, every changed call id held in memory until then.
            partition = min(flows, key=lambda p: self._saved_at.get(p, 0.0))
            started = time.monotonic()
            await self._checkpoint([partition])
            took = time.monotonic() - started
            options = self._options
            self._next_checkpoint = time.monotonic() + max(
                options.checkpoint_every_s / len(flows), min(199 * took, options.max_checkpoint_gap_s / len(flows)))
        self._refresh_status()

    def _read_everything(self, partition: int, flow: PartitionFlow) -> bool:
        end = self._consumer.last_stable_offset(TopicPartition(self._topology.events, partition))
        return end is not None and flow.next_offset >= end

    async def _emit(self, clock: float) -> None:
        """Window parts collected since the last emit, then each partition's watermark (after the
        parts it covers: Kafka keeps one producer's order within a partition)."""
        sources = self._topology.events_partitions
        sent_parts = set()
        for partition, by_target in self._unsent.items():
            for target, parts in sorted(by_target.items()):
                for chunk in _chunks(parts, self._options.parts_per_message):
                    await self._send(self._topology.outcomes, encode_parts(partition, sources, chunk), target)
                sent_parts.add(partition)
            by_target.clear()
        for partition, flow in self._flows.items():
            watermark_ms = flow.watermark_ms
            sent_ms, sent_at = self._sent_watermark.get(partition, (None, 0.0))
            if watermark_ms is None:
                continue
            # Aggregators act on a watermark only when it passes a window's end: send it then, after
            # parts, and now and then anyway, even unchanged: it also carries the stream time, and an
            # aggregator that took over an outcomes partition (its Faust table restored from the
            # changelog) may hold an older one; a watermark it already has changes nothing.
            if (clock - sent_at >= self._options.quiet_watermark_every_s
                    or (watermark_ms != sent_ms and (
                        partition in sent_parts or sent_ms is None
                        or flow.window_of(watermark_ms)[0] != flow.window_of(sent_ms)[0]))):
                value = encode_watermark(partition, sources, watermark_ms, flow.stream_time_ms)
                for target in range(self._topology.outcomes_partitions):
                    await self._send(self._topology.outcomes, value, target)
                self._sent_watermark[partition] = (watermark_ms, clock)
        self._next_emit = clock + self._options.watermark_every_s
        self._forget_acknowledged()

    def _forget_acknowledged(self) -> None:
        """Drop the sends already acknowledged (raising a failed one's error: the worker stops and a
        restart redoes the work), so the list stays short however long checkpoints are apart."""
        waiting = []
        for future in self._pending:
            if future.done():
                future.result()
            else:
                waiting.append(future)
        self._pending = waiting

    async def _send_live(self, now_ms: int, full: bool) -> None:
        targets = self._topology.outcomes_partitions
        if full:
            self._next_full_live = time.monotonic() + self._options.full_live_every_s
        told: set[int] = set()
        clock = time.monotonic()
        for partition, flow in self._flows.items():
            stream_ms = flow.stream_time_ms
            at_ms = now_ms if self._options.wall_clock else stream_ms
            if at_ms is None:
                continue
            sent_at, sent_stream_ms = self._live_sent.get(partition, (0.0, None))
            if (not full and partition not in self._fresh and stream_ms is not None and sent_stream_ms is not None
                    and clock - sent_at < self._options.catch_up_live_every_s
                    and stream_ms - sent_stream_ms > self._options.catch_up_ratio * (clock - sent_at) * 1000):
                # Reading history far faster than it happened: every bucket changes between two
                # ticks, and a board that moves hours a second is for no one's eyes. Less often.
                continue
            self._live_sent[partition] = (clock, stream_ms)
            by_target: dict[int, list[Any]] = {}
            for update in flow.live_updates(at_ms, full or partition in self._fresh):
                by_target.setdefault(outcomes_partition(update.group, targets), []).append(update)
            for target, updates in by_target.items():
                await self._send(self._topology.outcomes,
                                 encode_live(partition, self._topology.events_partitions, stream_ms, updates), target)
                told.add(target)
            self._fresh.discard(partition)
        if told:
            for target in set(range(targets)) - told:
                await self._send(self._topology.outcomes, encode_tick(self._topology.events_partitions), target)

    async def _dead_letter(self, tp: Any, rejected: Any) -> None:
        letter = DeadLetter.of(f"kafka:{tp.topic}", rejected.reason, f"{tp.topic}/{tp.partition}@{rejected.offset}",
                               rejected.raw)
        headers = [(REASON_HEADER, letter.reason.encode()), (SOURCE_HEADER, letter.source.encode()),
                   (LOCATION_HEADER, letter.location.encode())]
        value = json.dumps(letter.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()
        await self._send(self._topology.deadletter, value, None, key=letter.source.encode(), headers=headers)
        self.status.dead_lettered += 1
        log.warning("dead-lettered %s: %s", letter.location, letter.reason)

    async def _send(self, topic: str, value: bytes | None, partition: int | None, key: bytes | None = None,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        future = await self._app.producer.send(topic, key, value, partition, None, headers)
        self._pending.append(future)

    async def _settle(self) -> None:
        """Wait until every send so far is acknowledged; fail (no checkpoint) if one was not."""
        await self._app.producer.flush()
        pending, self._pending = self._pending, []
        for future in pending:
            await future  # raises the send's error: the worker stops and a restart redoes the work

    async def _checkpoint(self, partitions: list[int]) -> None:
        """Outputs first, then the state that no longer needs them: a crash between the two only
        makes the next run send some outputs again, identical ones."""
        started = time.monotonic()
        await self._emit(time.monotonic())  # parts taken out of a partition's state go out before it is saved
        await self._settle()
        # The calls changed since the last round, then (once they are acknowledged) the rest of the
        # state naming the round: a crash in between leaves records the restore knows to pass over.
        rounds = {}
        for partition in partitions:
            flow = self._flows[partition]
            epoch, records = flow.table.round(flow.call_changes())
            rounds[partition] = epoch
            for record in records:
                await self._send(self._topology.call_table, record.value, partition, key=record.call_id.encode())
            self.status.call_records += len(records)
        await self._settle()
        offsets = {}
        for partition in partitions:
            flow = self._flows[partition]
            await self._send(self._topology.checkpoints, encode_checkpoint(flow.snapshot(rounds[partition])),
                             partition, key=str(partition).encode())
            offsets[TopicPartition(self._topology.events, partition)] = flow.next_offset
        await self._settle()
        for partition in partitions:
            self._flows[partition].table.committed(rounds[partition])
            self._saved_at[partition] = time.monotonic()
        self.status.checkpoints += 1
        took = time.monotonic() - started
        if took > 0.1:
            log.info("checkpoint of %d partitions took %.3f s", len(partitions), took)
        if offsets:
            try:  # for lag monitoring only: a restart resumes at the checkpoint's offset
                await self._consumer.commit(offsets)
            except Exception as error:  # noqa: BLE001 - e.g. a rebalance under way; harmless
                log.info("offset commit skipped: %s", error)

    def _refresh_status(self) -> None:
        status = self.status
        totals = [0] * 6
        received = rejected = pending = 0
        newest: int | None = None
        for flow in self._flows.values():
            for index, value in enumerate(flow.exact_counts):
                totals[index] += value
            received += flow.counts.received
            rejected += flow.counts.rejected
            pending += flow.pending
            stream_ms = flow.stream_time_ms
            if stream_ms is not None and (newest is None or stream_ms > newest):
                newest = stream_ms
        (status.accepted, status.duplicates, status.late, status.conflicts, status.unmatched, _lost) = totals
        status.received, status.rejected, status.pending = received, rejected, pending
        status.stream_time_ms = newest
        status.partitions = sorted(self._flows)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]
