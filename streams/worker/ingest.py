"""The worker's reading: one loop over an aiokafka consumer (a Faust stream costs ten times the domain),
partition p of the events and repartition topics into one Partition, its outputs, its checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from mode import Service

from connectors.kafka_sink import dead_letter_record
from connectors.sink import DeadLetter
from streams.domain.config import FlowConfig
from streams.io.codec import encode_report_row
from streams.kafka.clients import aiokafka_options, key_partition, site_partition
from streams.kafka.figures_topic import CONTROL_HEADER, END_OF_STREAM, row_key

from .health import RoundWatch, where_it_waits
from .kafka import Topology, keep_metadata_for
from .partition import Forward, Partition

log = logging.getLogger("callwatch.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    app_id: str  # prefix of the consumer groups and internal topics
    workdir: str = "var/worker"
    publish_every_s: float = 1.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9109
    window_s: int = 900
    wall_clock: bool = False
    # Records per poll: few enough that a batch's records are still in the CPU's caches when they are
    # decoded and applied (docs/benchmarks.md: 2,000 against 20,000).
    batch: int = 2_000
    checkpoint_every_s: float = 2.0  # each partition's state is saved about this often...
    max_checkpoint_gap_s: float = 30.0  # ...and at least this often, however long saving takes
    session_timeout_s: float = 10.0


class CallIngest(Service, ConsumerRebalanceListener):  # type: ignore[misc]  # and its consumer's listener
    def __init__(self, app: Any, kafka: Any, config: FlowConfig, topology: Topology, options: WorkerOptions) -> None:
        super().__init__()
        self.saved: Any = None  # Faust GlobalTable: events partition -> its last checkpoint (set by app.py)
        self._saved_news = asyncio.Event()
        self._app, self._kafka, self._config = app, kafka, config
        self._topology, self._group_id, self._options = topology, f"{options.app_id}-events", options
        self.parts: dict[int, Partition] = {}
        self._lock = asyncio.Lock()
        self._pending: list[asyncio.Future[Any]] = []  # sends not yet known to be acknowledged
        self._forwards: list[tuple[int, int, int, int, Forward]] = []  # heap: (time, marker, source, offset, ...)
        self._consumer: Any = None
        self.fatal: str | None = None  # why the worker cannot go on (its saved state cannot be used)
        self._next_checkpoint = 0.0
        self.checkpoints = 0
        self.checkpoints_skipped = 0  # not written: the table held a later one, or could not be read up to date
        self._written: dict[int, bytes] = {}  # events partition -> the checkpoint this worker last wrote of it
        self.dead_lettered = 0
        self.rows = 0
        self.rounds = RoundWatch(time.monotonic())  # is the reading loop going round?
        self._loop_task: asyncio.Task[Any] | None = None
        self._missing_said = float("-inf")
        self._site_partition = functools.cache(functools.partial(site_partition, partitions=topology.partitions))

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        await self._app.producer.maybe_start()
        topology = self._topology
        await keep_metadata_for(self._app.producer._ensure_producer().client, [  # noqa: SLF001 - see keep_metadata_for
            topology.figures, topology.deadletter, topology.repartition, topology.checkpoints, topology.marks])
        self._consumer = AIOKafkaConsumer(
            **aiokafka_options(self._kafka, f"{self._group_id}-ingest"), group_id=self._group_id,
            # Range: partition p of the events and of the repartition topic go to the same worker.
            partition_assignment_strategy=(RangePartitionAssignor,),
            # "none": events the retention deleted unread are reported (_skip_deleted), not skipped.
            enable_auto_commit=False, auto_offset_reset="none", isolation_level="read_committed",
            max_poll_records=self._options.batch, fetch_max_wait_ms=20,
            session_timeout_ms=int(self._options.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self._options.session_timeout_s * 250))
        self._consumer.subscribe([topology.events, topology.repartition], listener=self)
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is None:
            return
        try:  # a last checkpoint, as on a rebalance (the broker may be gone: then the previous ones stand)
            await asyncio.wait_for(self.on_partitions_revoked(self._consumer.assignment()), 3)
        except asyncio.TimeoutError:
            log.warning("no final checkpoint: the next start reads again from the last one")
        try:
            await asyncio.wait_for(self._consumer.stop(), 3)
        except asyncio.TimeoutError:
            log.warning("the consumer did not stop within 3 s; leaving it")

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._lock:
            mine = sorted({tp.partition for tp in revoked if tp.partition in self.parts})
            if mine and self.fatal is None:
                # aiokafka resets the generation when the group expelled this worker (its session timed
                # out): the partitions may have another owner already (see _fenced).
                expelled = self._consumer._coordinator.generation < 0  # noqa: SLF001 - no public accessor
                try:  # the next owner carries on
                    await self._checkpoint([self.parts[number] for number in mine], expelled)
                except Exception:  # noqa: BLE001 - it carries on from the previous one
                    log.exception("checkpoint of revoked partitions failed")
            for number in mine:
                del self.parts[number]
            self._forwards = [entry for entry in self._forwards if entry[2] not in mine]
            heapq.heapify(self._forwards)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self._lock:
            numbers = sorted({tp.partition for tp in assigned if tp.topic == self._topology.events})
            if numbers:
                await self._saved_caught_up()
            for number in numbers:
                value = self.saved.get(number)
                part = Partition(number, self._topology.partitions, self._config, self._options.window_s,
                                 self._options.wall_clock, self._site_partition)
                try:
                    if value is not None:
                        part.restore(value)
                except ValueError as error:  # CheckpointMismatch, IncompatibleState: said by command.py
                    self.fatal = f"partition {number}: {error}"
                    return
                self._consumer.seek(TopicPartition(self._topology.events, number), part.forward_from)
                self._consumer.seek(TopicPartition(self._topology.repartition, number), part.next_repartitioned)
                self.parts[number] = part
                log.info("partition %d: %s at offset %d", number, "restored" if value else "starting",
                         part.next_offset)

    async def _saved_caught_up(self) -> None:
        """Until the checkpoints table has applied every record its changelog holds now (docs/worker.md)."""
        from faust.types import TP

        tp = TP(self._topology.checkpoints, 0)
        end = (await self._app.consumer.highwaters(tp))[tp]
        recovery = self._app.tables.recovery
        while max(recovery.active_offsets.get(tp, -1), recovery.standby_offsets.get(tp, -1)) < end - 1:
            self._saved_news.clear()  # a stall shows as the read loop's (streams/worker/health.py)
            with contextlib.suppress(TimeoutError):  # looked at again each second, news or not
                await asyncio.wait_for(self._saved_news.wait(), 1)
        recovery.flush_buffers()

    async def on_saved_record(self, _event: Any) -> None:  # the checkpoints table's on_changelog_event
        self._saved_news.set()

    @Service.task
    async def _read(self) -> None:
        self._loop_task = asyncio.current_task()
        while not self.should_stop:
            self.rounds.finished_round(time.monotonic())
            if self.fatal is not None:
                await self.crash(RuntimeError(self.fatal))
                return
            try:
                batches = await self._consumer.getmany(timeout_ms=100, max_records=self._options.batch)
            except OffsetOutOfRangeError as error:
                await self._skip_deleted(error)
                continue
            except NoOffsetForPartitionError:
                await asyncio.sleep(0.05)  # assigned a moment ago: the rebalance listener is placing it
                continue
            async with self._lock:
                await self._process(batches)

    async def _process(self, batches: dict[Any, list[Any]]) -> None:
        parts, events = self.parts, self._topology.events
        for tp, records in batches.items():
            part = parts.get(tp.partition)
            if part is None:
                continue  # revoked meanwhile
            if tp.topic == events:
                rejected, forwards = part.take(records)
                for forward in forwards:
                    heapq.heappush(self._forwards, (forward.occurred_ms, forward.end_of_stream, part.number,
                                                    forward.offset, forward))
            else:
                rejected = part.take_repartitioned(records)
            for letter in rejected:
                await self._dead_letter(tp, letter)
        await self._forward()
        now_ms = time.time_ns() // 1_000_000
        for part in parts.values():
            rows = part.advance(now_ms, self._caught_up(part))
            if rows:
                await self.publish(self._topology.figures, [(row_key(r), encode_report_row(r).encode()) for r in rows])
                self.rows += len(rows)
        clock = time.monotonic()
        if clock >= self._next_checkpoint and parts:
            # One partition at a time, the one saved longest ago, and at most 1/200 of the time on
            # checkpoints (a big state is saved less often), but never less often than the maximum gap.
            await self._checkpoint([min(parts.values(), key=lambda part: part.saved_at)])
            took = time.monotonic() - clock
            options = self._options
            self._next_checkpoint = time.monotonic() + max(
                options.checkpoint_every_s / len(parts), min(199 * took, options.max_checkpoint_gap_s / len(parts)))

    def _read_all_events(self, part: Partition) -> bool:
        end = self._consumer.last_stable_offset(TopicPartition(self._topology.events, part.number))
        return end is not None and part.next_offset >= end

    def _caught_up(self, part: Partition) -> bool:
        """Has the partition read everything both its topics hold?"""
        again = self._consumer.last_stable_offset(TopicPartition(self._topology.repartition, part.number))
        return self._read_all_events(part) and again is not None and part.next_repartitioned >= again

    async def _forward(self) -> None:
        """Other sites' events to their partition of the repartition topic, in event-time order up to
        the slowest partition still reading a backlog (docs/worker.md, "Events from other producers")."""
        until = min((part.read_ms for part in self.parts.values() if not self._read_all_events(part)), default=None)
        heap, topic, partitions = self._forwards, self._topology.repartition, self._topology.partitions
        while heap and (until is None or heap[0][0] <= until):
            forward = heapq.heappop(heap)[4]
            if forward.end_of_stream:
                for target in range(partitions):
                    await self._send(topic, forward.value, target, key=b"callwatch-control",
                                     headers=[(CONTROL_HEADER, END_OF_STREAM)])
            else:
                await self._send(topic, forward.value, self._site_partition(forward.site), key=forward.site.encode())
        oldest: dict[int, int] = {}
        for _time, _marker, source, offset, _forward in heap:
            oldest[source] = min(offset, oldest.get(source, offset))
        for number, part in self.parts.items():
            part.forward_from = oldest.get(number, part.next_offset)

    async def _skip_deleted(self, error: Any) -> None:
        """Events the retention deleted unread: said, counted, and read on from the oldest left."""
        for tp, offset in error.args[0].items():  # aiokafka's fetcher: {partition: offset read}
            first = (await self._consumer.beginning_offsets([tp]))[tp]
            part = self.parts.get(tp.partition)
            if part is not None:
                part.counts.deleted_unread += max(0, first - offset)
            log.error("%s partition %d: messages at offsets %d to %d were deleted (retention) before this "
                      "worker read them; they are missing from the figures", tp.topic, tp.partition, offset, first - 1)
            self._consumer.seek(tp, first)

    def check_pause(self, since_s: float) -> None:
        """`since_s` since the timer's last call: half the session timeout already (a pause that ends
        it is noticed a little late) is said."""
        if since_s > self._options.session_timeout_s / 2:
            log.warning("the worker did not run for %.1f s (paused, or starved of CPU; session timeout %.0f s): its "
                        "partitions may have moved to another worker; it rejoins the group if so and carries on from "
                        "the checkpoints of those it gets", since_s, self._options.session_timeout_s)

    def check_topics(self) -> None:
        """Said once a minute while the events topic is missing (deleted under the worker)."""
        cluster = self._consumer._client.cluster if self._consumer is not None else None  # noqa: SLF001
        now = time.monotonic()
        if cluster is None or cluster.partitions_for_topic(self._topology.events) or now < self._missing_said + 60:
            return
        self._missing_said = now
        log.error("topic %s does not exist (deleted?): no events are read; create it again (deploy/kafka/topics.sh) "
                  "and the worker carries on from its checkpoints", self._topology.events)

    def check_rounds(self) -> None:
        stalled_s = self.rounds.stall_to_report(time.monotonic())
        if stalled_s is None:
            return
        if not self.rounds.rounds:
            log.error("the loop reading %s has not started %.0f s after the worker did: no events are read",
                      self._topology.events, stalled_s)
        else:
            log.error("the loop reading %s has not gone round for %.0f s: no events are read meanwhile; "
                      "it waits at %s", self._topology.events, stalled_s, where_it_waits(self._loop_task))

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages not read yet, per topic and partition held."""
        positions = {(topic, number): position for number, part in list(self.parts.items())
                     for topic, position in ((self._topology.events, part.next_offset),
                                             (self._topology.repartition, part.next_repartitioned))}
        ends = {key: self._consumer.highwater(TopicPartition(*key)) for key in positions}
        return {key: max(0, end - positions[key]) for key, end in ends.items() if end is not None}

    async def _dead_letter(self, tp: Any, rejected: Any) -> None:
        letter = DeadLetter.of(f"kafka:{tp.topic}", rejected.reason, f"{tp.topic}/{tp.partition}@{rejected.offset}",
                               rejected.raw)
        key, value, headers = dead_letter_record(letter)
        await self._send(self._topology.deadletter, value, None, key=key, headers=headers)
        self.dead_lettered += 1
        log.warning("dead-lettered %s: %s", letter.location, letter.reason)

    async def publish(self, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> None:
        """Keyed messages, each to the partition Kafka's default partitioner gives its key, in one
        batch per partition: a third of the cost of a send each (an interval row every 20 events)."""
        producer = self._app.producer._ensure_producer()  # noqa: SLF001 - Faust's own has no batches
        partitions = len(await producer.partitions_for(topic))
        batches: dict[int, Any] = {}
        for key, value in messages:
            number = key_partition(key, partitions)
            batch = batches.get(number)
            if batch is None or batch.append(key=key, value=value, timestamp=None) is None:  # None: full
                if batch is not None:
                    self._pending.append(await producer.send_batch(batch, topic, partition=number))
                batch = batches[number] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for number, batch in batches.items():
            self._pending.append(await producer.send_batch(batch, topic, partition=number))

    async def _send(self, topic: str, value: bytes | None, partition: int | None, key: bytes | None = None,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        self._pending.append(await self._app.producer.send(topic, key, value, partition, None, headers))
        if len(self._pending) > 10_000:  # drop those acknowledged (a failed one raises: a restart redoes the work)
            self._pending = [future for future in self._pending if not future.done() or future.result() is None]

    async def _settle(self) -> None:
        """Wait until every send so far is acknowledged; raise (no checkpoint) if one failed."""
        await self._app.producer.flush()
        pending, self._pending = self._pending, []
        for future in pending:
            await future

    async def _checkpoint(self, parts: list[Partition], expelled: bool = False) -> None:
        """Outputs first, then the state that no longer needs them (unless a later one is saved)."""
        await self._settle()
        parts = await self._fenced(parts, expelled)
        for part in parts:  # one changelog record each, sent by Faust (no offsets committed: the
            self.saved[part.number] = self._written[part.number] = part.snapshot()  # positions are in it)
        await self._settle()
        for part in parts:
            part.saved_at = time.monotonic()
        self.checkpoints += len(parts)

    async def _fenced(self, parts: list[Partition], expelled: bool) -> list[Partition]:
        """Those of `parts` whose checkpoint would not go back. A worker paused past the session timeout
        loses its partitions to another, which reads on and saves them; resumed, its revoke callback (or a
        round begun before the pause) must not save its older state over theirs: a later owner would read
        again from there, and a state could go back. The fence compares read positions with the table's
        checkpoint rather than trusting the generation or a timer alone: a later one in the table proves
        another owner read further, whatever the group did meanwhile, and writing over an equal or earlier
        one loses nothing. The table must hold what the changelog holds, and a resumed worker's has not read
        the other's records yet (without the catch-up the SIGSTOP test still fails): when this worker may
        have been out of the group (expelled, or this round began over half a session ago) it catches up
        first, or saves nothing."""
        options, now = self._options, time.monotonic()
        if expelled or now - self.rounds.since > options.session_timeout_s / 2:
            try:
                await asyncio.wait_for(self._saved_caught_up(), options.session_timeout_s)
            except (asyncio.TimeoutError, KafkaError) as error:
                self.checkpoints_skipped += len(parts)
                log.warning("partitions %s not checkpointed: after a pause, the checkpoints table could not be read "
                            "up to date within %.0f s (%r)", [part.number for part in parts],
                            options.session_timeout_s, error)
                return []
        fresh: list[Partition] = []
        stale: list[Partition] = []
        for part in parts:
            held = self.saved.get(part.number)
            later = held is not None and held != self._written.get(part.number) and part.is_behind(held)
            (stale if later else fresh).append(part)
        for part in stale:
            part.saved_at = now  # the next round saves another partition
        if stale:
            self.checkpoints_skipped += len(stale)
            log.warning("partitions %s not checkpointed: the checkpoints table holds later ones (another worker took "
                        "them over while this one did not run)", [part.number for part in stale])
        return fresh
