"""The Kafka sink of a connector: canonical events to the events topic (key = site, message
timestamp = event time), rejected records to the dead-letter topic with their reason in a header.
It never drops a message: it keeps each one until Kafka acknowledges it, sends again what fails,
and blocks the connector (back-pressure) while its bounded buffer is full. docs/kafka.md says what
that guarantees and what it does not."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from connectors.sink import DeadLetter, SinkCounts, validate
from streams.domain.events import CallEvent, event_to_dict, format_ts
from streams.io.codec import encode
from streams.kafka.clients import client_options, open_metadata_client, require_topics
from streams.settings import Settings

log = logging.getLogger("callwatch.kafka_sink")

REASON_HEADER = "callwatch-reason"
SOURCE_HEADER = "callwatch-source"
LOCATION_HEADER = "callwatch-location"


def dead_letter_record(letter: DeadLetter) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A dead letter as a Kafka record (key, value, headers), from a connector or the worker alike."""
    headers = [(REASON_HEADER, letter.reason.encode("utf-8")), (SOURCE_HEADER, letter.source.encode("utf-8")),
               (LOCATION_HEADER, letter.location.encode("utf-8"))]
    value = json.dumps(letter.to_dict(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return letter.source.encode("utf-8"), value, headers


# Kafka's Integer.MAX_VALUE: the producer itself retries a batch (in order, deduplicated by the
# broker) until it is acknowledged, however long the broker is away.
RETRY_UNTIL_ACKNOWLEDGED_MS = 2_147_483_647


@dataclass(frozen=True, slots=True)
class SinkLimits:
    """How much the sink holds while Kafka is slow or away, and how it waits."""

    max_pending: int = 20_000  # messages handed to the producer, not yet acknowledged
    max_pending_bytes: int = 16 * 1024 * 1024
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stall_warning_s: float = 5.0  # no acknowledgement for this long: say that the broker is away
    # The broker answers, yet the producer acknowledges nothing for this long: it is wedged (kafka-
    # python 3.0.12 never asks for a new producer id after one expired batch), so it is replaced.
    stuck_after_s: float = 30.0
    # Kafka 4 brokers refuse messages stamped more than message.timestamp.after.max.ms (1 h by
    # default) ahead of their clock; such events are dead-lettered here, with a minute's margin.
    max_ahead_s: float = 3540.0
    delivery_timeout_ms: int = RETRY_UNTIL_ACKNOWLEDGED_MS
    request_timeout_ms: int = 30_000
    max_block_ms: int = 10_000  # longest single wait inside the producer's send()
    linger_ms: int = 5
    connect_wait_s: float = 10.0


class Producer(Protocol):
    """What the sink needs of kafka-python's KafkaProducer (a scripted one in the unit tests)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass(slots=True)
class _Message:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None
    label: str  # for log lines: the event id, or where a dead letter came from
    letter: DeadLetter | None = None  # set on dead letters
    attempts: int = 0  # sends so far; a callback of an earlier send is stale
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.value) + len(self.key or b"") + sum(len(k) + len(v) for k, v in self.headers) + 64


class KafkaSink:
    """EventSink writing to Kafka through producers made by `new_producer`. Thread-safe; `close`
    returns once everything sent is acknowledged (the graceful stop)."""

    def __init__(self, new_producer: Callable[[], Producer], events_topic: str, dead_letter_topic: str,
                 source: str, bootstrap: str, limits: SinkLimits = SinkLimits(),
                 broker_answers: Callable[[], bool] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._new_producer = new_producer
        self._broker_answers = broker_answers
        self._events_topic = events_topic
        self._dead_topic = dead_letter_topic
        self._source = source
        self._bootstrap = bootstrap
        self._limits = limits
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self.counts = SinkCounts()
        self.resent = 0  # sends of a message after a failed delivery
        self.producers_replaced = 0
        self._cond = threading.Condition()
        self._producer = new_producer()
        self._generation = 0  # of the producer; bumped on each replacement
        self._pending: dict[int, _Message] = {}
        self._pending_bytes = 0
        self._next_id = 0
        self._retry: deque[int] = deque()  # failed deliveries to send again
        self._suspects: deque[int] = deque()  # refused as records: sent again alone, to find the guilty
        self._replace_producer = False
        self._isolating = False  # while suspects are sent alone, other sends wait
        self._last_progress = clock()
        self._stalled_since: float | None = None  # set while we have said that the broker is away
        self._last_probe = clock()
        self._answering_since: float | None = None  # the broker answers probes, the producer is silent
        self._last_failure_log = clock() - 1.0
        self._failures_unlogged = 0
        self._closing = False
        self._resender = threading.Thread(target=self._resend_failed, name=f"kafka-sink-{source}", daemon=True)
        self._resender.start()

    # --- EventSink ---------------------------------------------------------------------------

    def send(self, event: Mapping[str, Any], location: str = "") -> None:
        checked = validate(event, self._source, location)
        if isinstance(checked, DeadLetter):
            self.dead_letter(checked)
            return
        latest_ms = self._wall_clock_ms() + int(self._limits.max_ahead_s * 1000)
        if checked.occurred_ms > latest_ms:
            self.dead_letter(DeadLetter.of(
                self._source, f"event time {format_ts(checked.occurred_ms)} is more than {self._limits.max_ahead_s:g} s "
                "ahead of this machine's clock: Kafka would refuse it (message.timestamp.after.max.ms)",
                location or checked.event_id, json.dumps(dict(event), default=str)))
            return
        self._submit(self._event_message(checked))

    def dead_letter(self, letter: DeadLetter) -> None:
        self._submit(self._dead_letter_message(letter))

    def flush(self) -> None:
        """Return once every message handed to the sink so far is acknowledged by Kafka."""
        delay = self._limits.backoff_initial_s
        while True:
            with self._cond:
                producer = self._producer
            try:
                producer.flush(timeout=delay)
            except Exception as error:  # noqa: BLE001 - a flush timeout: the wait below decides
                if not _is_timeout(error):
                    raise
            with self._cond:
                if self._cond.wait_for(lambda: not self._pending, timeout=delay):
                    return
                if self._clock() - self._last_progress >= self._limits.stall_warning_s:
                    self._say_stalled(f"{len(self._pending)} messages not yet acknowledged; flushing, "
                                      f"retrying in {min(delay * 2, self._limits.backoff_max_s):g} s")
            delay = min(delay * 2, self._limits.backoff_max_s)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._resender.join(timeout=10)
        self._producer.close(timeout=10)

    # --- building messages -------------------------------------------------------------------

    def _event_message(self, event: CallEvent) -> _Message:
        # Keyed by site: every event a site's figures need (its calls, transfers between its queues
        # and lines, its agents' states) is in one partition, in the order sent (docs/worker.md).
        return _Message(self._events_topic, event.site.encode("utf-8"), encode(event_to_dict(event)).encode("utf-8"),
                        [], event.occurred_ms, event.event_id)

    def _dead_letter_message(self, letter: DeadLetter) -> _Message:
        key, value, headers = dead_letter_record(letter)
        return _Message(self._dead_topic, key, value, headers, None, f"dead letter {letter.location or letter.reason}",
                        letter=letter)

    # --- the buffer: reserve, send, acknowledge ----------------------------------------------

    def _submit(self, message: _Message) -> None:
        ident = self._reserve(message)
        self._produce(ident, message)

    def _reserve(self, message: _Message) -> int:
        """Take a place in the bounded buffer, waiting (back-pressure on the connector) while it is full."""
        limits = self._limits
        delay = limits.backoff_initial_s
        with self._cond:
            if not self._pending:
                self._last_progress = self._clock()  # the stall clock runs only while something waits
            while self._pending and (len(self._pending) >= limits.max_pending or
                                     self._pending_bytes + message.size > limits.max_pending_bytes):
                if self._cond.wait(timeout=delay):
                    delay = limits.backoff_initial_s
                    continue
                if self._clock() - self._last_progress >= limits.stall_warning_s:
                    self._say_stalled(f"buffer full ({len(self._pending)} messages, {self._pending_bytes:,} bytes); "
                                      f"connector paused, retrying in {min(delay * 2, limits.backoff_max_s):g} s")
                delay = min(delay * 2, limits.backoff_max_s)
            if (self._pending and self._stalled_since is None
                    and self._clock() - self._last_progress >= limits.stall_warning_s):
                self._say_stalled(f"buffering ({len(self._pending)} messages not yet acknowledged)")
            ident = self._next_id
            self._next_id += 1
            self._pending[ident] = message
            self._pending_bytes += message.size
            return ident

    def _produce(self, ident: int, message: _Message, isolated: bool = False) -> Any:
        """Hand one message to the producer, retrying with backoff while it cannot take it. Returns
        the producer's future; unless `isolated`, the outcome is handled by the callbacks."""
        delay = self._limits.backoff_initial_s
        while True:
            with self._cond:
                if not isolated:
                    self._cond.wait_for(lambda: not self._isolating)
                producer, generation = self._producer, self._generation
                message.attempts += 1
                attempt = message.attempts
            try:
                future = producer.send(message.topic, value=message.value, key=message.key,
                                       headers=message.headers or None, timestamp_ms=message.timestamp_ms)
            except Exception as error:  # noqa: BLE001 - classified below; anything unknown propagates
                if _refused_record(error):  # found out by the client itself: the producer is still fine
                    self._refuse(ident, message, error)
                    return None
                if not _is_retriable(error):
                    raise
                with self._cond:
                    self._say_stalled(f"cannot hand over {message.label} ({type(error).__name__}); "
                                      f"buffering, retrying in {delay:g} s",
                                      refused_access=_is_authorization_error(error))
                time.sleep(delay)
                delay = min(delay * 2, self._limits.backoff_max_s)
                continue
            future.add_callback(self._acknowledged, ident)
            if not isolated:
                future.add_errback(self._failed, ident, attempt, generation)
            return future

    def _acknowledged(self, ident: int, _metadata: object) -> None:
        with self._cond:
            message = self._pending.pop(ident, None)
            if message is None:
                return  # an earlier send of a message sent again: it is now in Kafka twice
            self._pending_bytes -= message.size
            if message.letter is not None:
                self._count_dead(message.letter)
            else:
                self.counts.sent += 1
            self._last_progress = self._clock()
            if self._stalled_since is not None:
                log.warning("broker at %s acknowledges again after %.1f s; %d messages still buffered",
                            self._bootstrap, self._last_progress - self._stalled_since, len(self._pending))
                self._stalled_since = None
            self._cond.notify_all()

    def _failed(self, ident: int, attempt: int, generation: int, error: BaseException) -> None:
        """The producer gave up on a message (I/O thread): keep it for the re-send thread. Any
        non-retriable error leaves kafka-python's idempotent producer refusing everything after it,
        so that producer is replaced; a message refused as a record is a suspect, sent again alone."""
        refused, poisoned = _refused_record(error), _leaves_producer_refusing(error)
        with self._cond:
            message = self._pending.get(ident)
            if message is None or attempt != message.attempts:
                return  # acknowledged meanwhile, or already sent again
            (self._suspects if refused else self._retry).append(ident)
            if poisoned and generation == self._generation:
                self._replace_producer = True
            now = self._clock()
            if now - self._last_failure_log >= 1.0:  # a whole buffer may fail at once: one line a second
                more = f" ({self._failures_unlogged} more failed since the last line)" if self._failures_unlogged else ""
                log.warning("delivery of %s to %s failed after %d attempt(s) (%s: %s); sending it again%s",
                            message.label, message.topic, message.attempts, type(error).__name__, error, more)
                self._last_failure_log, self._failures_unlogged = now, 0
            else:
                self._failures_unlogged += 1
            self._cond.notify_all()

    def _refuse(self, ident: int, message: _Message, error: BaseException) -> None:
        """Kafka will never take this record: an event becomes a dead letter in its place; a dead
        letter is sent again without its payload (the reason and location are what matter)."""
        reason = f"refused by Kafka: {type(error).__name__}"
        if _is_timestamp_error(error):
            reason += " (event time outside the topic's message.timestamp.before.max.ms / after.max.ms)"
        if message.letter is None:
            replacement: _Message | None = self._dead_letter_message(
                DeadLetter.of(self._source, reason, message.label, message.value))
        elif message.letter.payload:
            replacement = self._dead_letter_message(
                DeadLetter(message.letter.source, message.letter.reason, message.letter.location,
                           f"<payload dropped: {reason}>"))
        else:
            replacement = None
        with self._cond:
            self._pending_bytes -= message.size
            if replacement is None:
                # Cannot happen to a payload-free letter of a few hundred bytes; said loudly if it does.
                log.error("dead letter %s refused by Kafka (%s): dropped", message.label, error)
                del self._pending[ident]
                self._cond.notify_all()
                return
            log.warning("%s refused by Kafka (%s: %s); dead-lettering it instead", message.label,
                        type(error).__name__, error)
            replacement.attempts = message.attempts  # callbacks of earlier sends stay stale
            self._pending[ident] = replacement
            self._pending_bytes += replacement.size
            self._retry.append(ident)
            self._cond.notify_all()

    # --- the re-send thread ------------------------------------------------------------------

    def _resend_failed(self) -> None:
        delay = self._limits.backoff_initial_s
        while True:
            with self._cond:
                woke = self._cond.wait_for(lambda: self._retry or self._suspects or self._closing,
                                           timeout=min(1.0, max(0.05, self._limits.stall_warning_s)))
                queued = bool(self._retry or self._suspects)
                progressed = self._clock() - self._last_progress < delay
            if not woke:
                self._check_wedged()
                continue
            if not queued:
                return  # closing, and nothing left to send
            delay = self._limits.backoff_initial_s if progressed else min(delay * 2, self._limits.backoff_max_s)
            time.sleep(delay)
            with self._cond:
                retry, suspects = list(self._retry), list(self._suspects)
                self._retry.clear()
                self._suspects.clear()
                replace, self._replace_producer = self._replace_producer, False
                self._isolating = bool(suspects)
            try:
                if replace:
                    self._renew_producer()
                for ident in suspects:
                    self._isolate(ident)
            finally:
                with self._cond:
                    self._isolating = False
                    self._cond.notify_all()
            for ident in retry:
                with self._cond:
                    message = self._pending.get(ident)
                    if message is None:
                        continue
                    self.resent += 1
                try:
                    self._produce(ident, message)
                except Exception:  # noqa: BLE001 - this thread must outlive any one message
                    log.exception("sending %s again failed; it stays buffered and is tried again", message.label)
                    with self._cond:
                        self._retry.append(ident)

    def _check_wedged(self) -> None:
        """While nothing is acknowledged, ask (now and then) whether the broker answers; if it has
        answered for `stuck_after_s` and the producer still delivers nothing, replace the producer
        and send every buffered message again."""
        limits = self._limits
        with self._cond:
            now = self._clock()
            if (self._broker_answers is None or not self._pending or now - self._last_progress < limits.stall_warning_s
                    or now - self._last_probe < limits.stall_warning_s):
                if not self._pending:
                    self._answering_since = None
                return
            self._last_probe = now
        answers = self._broker_answers()
        with self._cond:
            now = self._clock()
            if not answers or now - self._last_progress < limits.stall_warning_s:
                self._answering_since = None
                return
            if self._answering_since is None:
                self._answering_since = now
            if now - self._answering_since < limits.stuck_after_s:
                return
            log.warning("the broker at %s answers, but the producer has delivered nothing for %.0f s: replacing it "
                        "and sending the %d buffered messages again", self._bootstrap, now - self._last_progress,
                        len(self._pending))
            self._answering_since = None
            self._replace_producer = True
            queued = set(self._retry) | set(self._suspects)
            self._retry.extend(ident for ident in self._pending if ident not in queued)
            self._cond.notify_all()

    def _isolate(self, ident: int) -> None:
        """Send one suspect alone, nothing else in flight, and wait: refused again, it is guilty and
        dead-lettered; accepted, it was refused only for sharing a batch (or a producer) with one."""
        backoff = self._limits.backoff_initial_s
        while True:
            with self._cond:
                message = self._pending.get(ident)
                if message is None:
                    return
                self.resent += 1
            future = self._produce(ident, message, isolated=True)
            if future is None:
                return  # refused by the client itself and dead-lettered
            outcome: list[BaseException | None] = []
            done = threading.Event()

            def settled(error: BaseException | None) -> None:
                outcome.append(error)
                done.set()

            future.add_callback(lambda _metadata: settled(None))
            future.add_errback(settled)
            delay = self._limits.backoff_initial_s
            while not done.is_set():
                with self._cond:
                    producer = self._producer
                try:
                    producer.flush(timeout=delay)
                except Exception as flush_error:  # noqa: BLE001 - a flush timeout: keep waiting
                    if not _is_timeout(flush_error):
                        raise
                done.wait(delay)
                delay = min(delay * 2, self._limits.backoff_max_s)
            failure = outcome[0]
            if failure is None:
                return
            if _leaves_producer_refusing(failure):
                self._renew_producer()
            if _refused_record(failure):
                self._refuse(ident, message, failure)
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, self._limits.backoff_max_s)

    def _renew_producer(self) -> None:
        delay = self._limits.backoff_initial_s
        while True:
            try:
                fresh = self._new_producer()
                break
            except Exception as error:  # noqa: BLE001 - a broker away (NoBrokersAvailable...): retried
                if not _is_retriable(error):
                    raise
                log.warning("broker unavailable at %s (%s); new producer retrying in %g s", self._bootstrap,
                            type(error).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, self._limits.backoff_max_s)
        with self._cond:
            old, self._producer = self._producer, fresh
            self._generation += 1
            self.producers_replaced += 1
            log.warning("replaced the Kafka producer; %d messages buffered", len(self._pending))
        # The old producer's remaining sends fail and come back to the re-send queue.
        threading.Thread(target=_close_quietly, args=(old,), name="kafka-sink-close-old", daemon=True).start()

    # --- bookkeeping (called with the lock held) --------------------------------------------------

    def _count_dead(self, letter: DeadLetter) -> None:
        self.counts.dead_lettered += 1
        key = letter.reason.split(":")[0]
        self.counts.by_reason[key] = self.counts.by_reason.get(key, 0) + 1

    def _say_stalled(self, what: str, refused_access: bool = False) -> None:
        if self._stalled_since is None:
            self._stalled_since = self._last_progress
        log.warning("%s at %s (no acknowledgement for %.1f s): %s",
                    "Kafka refuses access (check the ACLs)" if refused_access else "broker unavailable",
                    self._bootstrap, self._clock() - self._last_progress, what)


def _close_quietly(producer: Producer) -> None:
    try:
        producer.close(timeout=10)
        return
    except Exception:  # noqa: BLE001 - a wedged producer cannot flush; it is abandoned below
        log.debug("closing a replaced producer failed", exc_info=True)
    # kafka-python has no public way to abandon a producer whose flush cannot finish: stop its
    # sender without sending (its records fail, and are already buffered again here), then close.
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
    try:
        producer.close(timeout=5)
    except Exception:  # noqa: BLE001 - nothing more can be done with it
        log.debug("abandoning a replaced producer failed", exc_info=True)


def _refused_record(error: BaseException) -> bool:
    """Errors saying that the broker (or the client) will never take this record as it is."""
    from kafka import errors

    return isinstance(error, (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError,
                              errors.InvalidRecordError, errors.InvalidTimestampError,
                              errors.CorruptRecordError))


def _leaves_producer_refusing(error: BaseException) -> bool:
    """kafka-python's idempotent producer treats every non-retriable delivery error as fatal: it
    fails all later sends with it. Such a producer must be replaced."""
    from kafka.errors import RetriableError

    return not isinstance(error, RetriableError)


def _is_authorization_error(error: BaseException) -> bool:
    from kafka.errors import AuthorizationError

    return isinstance(error, AuthorizationError)


def _is_timestamp_error(error: BaseException) -> bool:
    from kafka.errors import InvalidTimestampError

    return isinstance(error, InvalidTimestampError)


def _is_timeout(error: BaseException) -> bool:
    from kafka.errors import KafkaTimeoutError

    return isinstance(error, KafkaTimeoutError)


def _is_retriable(error: BaseException) -> bool:
    from kafka import errors

    # An authorisation error is retried too: an operator can fix the ACL, and the event must not be lost.
    return isinstance(error, (errors.RetriableError, errors.KafkaConnectionError, errors.BrokerNotAvailableError,
                              errors.AuthorizationError))


def open_kafka_sink(settings: Settings, source: str, limits: SinkLimits = SinkLimits()) -> KafkaSink:
    """A sink for connector `source`: waits (with backoff) for a broker, checks that the events and
    dead-letter topics exist (TopicMissing otherwise), then starts an idempotent producer."""
    from kafka import KafkaProducer

    kafka = settings.kafka
    events_topic, dead_topic = kafka.topic("events"), kafka.topic("deadletter")
    options = client_options(kafka, f"callwatch-connect-{source}")
    _wait_for_topics(settings, source, (events_topic, dead_topic), limits)

    def new_producer() -> Producer:
        producer: Producer = KafkaProducer(
            **options, enable_idempotence=True, acks="all",
            delivery_timeout_ms=limits.delivery_timeout_ms, request_timeout_ms=limits.request_timeout_ms,
            max_block_ms=limits.max_block_ms, linger_ms=limits.linger_ms, batch_size=64 * 1024,
            retry_backoff_ms=200, reconnect_backoff_max_ms=int(min(limits.backoff_max_s, 5) * 1000),
            bootstrap_timeout_ms=int(limits.connect_wait_s * 1000))
        return producer

    def broker_answers() -> bool:
        from streams.kafka import KafkaUnavailable

        try:
            open_metadata_client(kafka, f"callwatch-connect-{source}", min(limits.connect_wait_s, 5.0)).close()
        except KafkaUnavailable:
            return False
        return True

    return KafkaSink(new_producer, events_topic, dead_topic, source, kafka.bootstrap_servers, limits, broker_answers)


def _wait_for_topics(settings: Settings, source: str, topics: tuple[str, ...], limits: SinkLimits) -> None:
    from streams.kafka import KafkaUnavailable

    bootstrap = settings.kafka.bootstrap_servers
    delay = limits.backoff_initial_s
    try:
        while True:
            try:
                client = open_metadata_client(settings.kafka, f"callwatch-connect-{source}",
                                              min(limits.connect_wait_s, 2.0))
            except KafkaUnavailable:
                log.warning("broker unavailable at %s; connector %s waiting for it, retrying in %g s",
                            bootstrap, source, delay)
                time.sleep(delay)
                delay = min(delay * 2, limits.backoff_max_s)
                continue
            try:
                require_topics(client, topics, bootstrap)
                return
            finally:
                client.close()
    except KeyboardInterrupt:
        # Nothing was sent yet: a one-line message rather than a traceback.
        raise KafkaUnavailable(f"interrupted while waiting for a broker at {bootstrap}") from None
