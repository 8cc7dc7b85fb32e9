"""The Kafka sink's promises, against a scripted in-memory producer (the same promises are checked
against a real broker in tests/integration/test_kafka_sink.py): keys, timestamps and headers; every
message kept until acknowledged and sent again when a delivery fails; back-pressure instead of
dropping when the buffer is full; records Kafka refuses for good are dead-lettered."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import warnings

import pytest

with warnings.catch_warnings():  # kafka-python 3 loads its protocol schemas with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import errors
    from kafka.future import Future

    from connectors.kafka_sink import KafkaSink, SinkLimits
from connectors.sink import DeadLetter

pytestmark = [pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]

FAST = SinkLimits(backoff_initial_s=0.01, backoff_max_s=0.05, stall_warning_s=0.0)


def offered(n: int, call: str | None = None) -> dict[str, Any]:
    return {"v": 1, "event_id": f"e{n}", "call_id": call or f"c{n}", "type": "offered",
            "ts": f"2024-03-01T09:00:{n % 60:02d}.250+00:00", "line": "999", "queue": "q"}


class ScriptedProducer:
    """Acknowledges at once unless told otherwise: `fail_next` errors fail the next deliveries in
    turn, `refuse_sends` errors are raised by send() itself, and while `holding` deliveries wait.
    Like kafka-python's idempotent producer, one that saw a non-retriable error fails every later
    send with that same error. `written` (acknowledged records) is shared by all producers."""

    def __init__(self, written: list[dict[str, Any]] | None = None) -> None:
        self.log: list[dict[str, Any]] = []  # every send() that returned a future
        self.written: list[dict[str, Any]] = [] if written is None else written
        self.fail_next: list[BaseException] = []
        self.refuse_sends: list[BaseException] = []
        self.refuse_value: tuple[bytes, BaseException] | None = None  # a record the broker never takes
        self.poisoned: BaseException | None = None
        self.holding = False
        self.held: list[tuple[Future, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> Future:
        with self.lock:
            if self.refuse_sends:
                raise self.refuse_sends.pop(0)
            record = {"topic": topic, "value": value, "key": key, "headers": headers or [], "timestamp_ms": timestamp_ms}
            self.log.append(record)
            future = Future()
            if self.holding:
                self.held.append((future, record))
                return future
            error = self.poisoned or (self.fail_next.pop(0) if self.fail_next else None)
            if error is None and self.refuse_value and value and self.refuse_value[0] in value:
                error = self.refuse_value[1]
            if error is not None and not isinstance(error, errors.RetriableError):
                self.poisoned = error
        self._complete(future, record, error)
        return future

    def _complete(self, future: Future, record: dict[str, Any], error: BaseException | None) -> None:
        if error is None:
            with self.lock:
                self.written.append(record)
            future.success(record)
        else:
            future.failure(error)

    def release(self) -> None:
        # Held records join the log before any later send can (a partition keeps the order in
        # which records were sent); the futures complete afterwards, outside the lock.
        with self.lock:
            self.holding = False
            held, self.held = self.held, []
            self.written.extend(record for _, record in held)
        for future, record in held:
            future.success(record)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def sink_with(producer: ScriptedProducer, limits: SinkLimits = FAST) -> KafkaSink:
    return KafkaSink(lambda: producer, "cw.events", "cw.deadletter", "test", "127.0.0.1:1", limits)


def test_events_are_keyed_by_site_stamped_with_event_time_and_canonical() -> None:
    producer = ScriptedProducer()
    sink = sink_with(producer)
    sink.send(offered(5, call="call-A"))
    sink.send({"v": 1, "event_id": "a1", "type": "agent_state", "ts": "2024-03-01T09:00:00Z",
               "agent": "agent-7", "state": "available", "site": "north"})
    sink.close()
    first, agent = producer.written
    # Keyed by site (docs/kafka.md): every event a site's figures need lands in one partition.
    assert first["topic"] == "cw.events" and first["key"] == b"default"
    assert first["timestamp_ms"] == 1709283605250
    # Canonical: compact JSON, UTC with milliseconds.
    assert first["value"] == (b'{"v":1,"event_id":"e5","call_id":"call-A","type":"offered",'
                              b'"ts":"2024-03-01T09:00:05.250Z","line":"999","queue":"q","site":"default"}')
    assert agent["key"] == b"north"
    assert sink.counts.sent == 2 and sink.counts.dead_lettered == 0
    assert producer.closed


def test_invalid_events_go_to_the_dead_letter_topic_with_reason_source_and_location() -> None:
    producer = ScriptedProducer()
    sink = sink_with(producer)
    sink.send({**offered(1), "ts": "yesterday"}, location="calls.jsonl:7")
    sink.dead_letter(DeadLetter.of("test", "not JSON: Expecting value", "calls.jsonl:8", "{oops 07700 900123"))
    sink.close()
    assert [r["topic"] for r in producer.written] == ["cw.deadletter", "cw.deadletter"]
    headers = [dict(r["headers"]) for r in producer.written]
    assert headers[0]["callwatch-reason"].startswith(b"invalid ts")
    assert headers[0]["callwatch-source"] == b"test" and headers[0]["callwatch-location"] == b"calls.jsonl:7"
    assert headers[1]["callwatch-reason"] == b"not JSON: Expecting value"
    letter = json.loads(producer.written[1]["value"])
    assert letter["location"] == "calls.jsonl:8" and "900123" not in letter["payload"]
    assert sink.counts.dead_lettered == 2 and sink.counts.by_reason == {"invalid ts": 1, "not JSON": 1}
    assert sink.counts.sent == 0


def test_a_failed_delivery_is_sent_again_until_acknowledged(caplog: pytest.LogCaptureFixture) -> None:
    producer = ScriptedProducer()
    producer.fail_next = [errors.KafkaTimeoutError("Expiring 1 record(s)"), errors.NotLeaderForPartitionError(),
                          errors.KafkaTimeoutError("Expiring 1 record(s)")]
    sink = sink_with(producer)
    with caplog.at_level(logging.WARNING, logger="callwatch.kafka_sink"):
        for n in range(10):
            sink.send(offered(n))
        sink.close()
    ids = [json.loads(r["value"])["event_id"] for r in producer.written]
    assert sorted(ids) == sorted(f"e{n}" for n in range(10))  # each exactly once
    assert sink.counts.sent == 10 and sink.resent == 3
    assert len(producer.log) == 13
    assert "delivery of e0 to cw.events failed after 1 attempt(s) (KafkaTimeoutError" in caplog.text


def test_a_producer_that_cannot_take_a_message_is_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    producer = ScriptedProducer()
    producer.refuse_sends = [errors.KafkaTimeoutError("Failed to update metadata after 10.0 secs."),
                             errors.KafkaTimeoutError("Failed to update metadata after 10.0 secs.")]
    sink = sink_with(producer)
    with caplog.at_level(logging.WARNING, logger="callwatch.kafka_sink"):
        sink.send(offered(1))
        sink.close()
    assert sink.counts.sent == 1
    assert caplog.text.count("broker unavailable at 127.0.0.1:1") == 2
    assert "buffering, retrying in 0.01 s" in caplog.text and "retrying in 0.02 s" in caplog.text


def test_a_full_buffer_blocks_the_connector_instead_of_dropping(caplog: pytest.LogCaptureFixture) -> None:
    producer = ScriptedProducer()
    producer.holding = True  # the broker is away: nothing is acknowledged
    sink = sink_with(producer, SinkLimits(max_pending=3, backoff_initial_s=0.01, backoff_max_s=0.02,
                                          stall_warning_s=0.0))
    sent = threading.Event()

    def connector() -> None:
        for n in range(10):
            sink.send(offered(n))
        sent.set()

    with caplog.at_level(logging.WARNING, logger="callwatch.kafka_sink"):
        thread = threading.Thread(target=connector)
        thread.start()
        assert not sent.wait(0.3)  # blocked: back-pressure
        assert len(producer.log) == 3
        assert "buffer full (3 messages" in caplog.text and "connector paused" in caplog.text
        while not sent.is_set():  # the broker comes back, a few acknowledgements at a time
            producer.release()
            producer.holding = True
            sent.wait(0.05)
        producer.holding = False
        producer.release()
        thread.join(5)
        sink.close()
    assert sink.counts.sent == 10
    assert [json.loads(r["value"])["event_id"] for r in producer.written] == [f"e{n}" for n in range(10)]
    assert "acknowledges again" in caplog.text


def test_a_record_kafka_refuses_for_good_is_dead_lettered_and_the_rest_delivered() -> None:
    """kafka-python's idempotent producer refuses everything after a non-retriable error: the sink
    replaces it, sends each suspect alone to find the guilty record, and dead-letters only that one."""
    written: list[dict[str, Any]] = []
    made: list[ScriptedProducer] = []

    def new_producer() -> ScriptedProducer:
        producer = ScriptedProducer(written)
        producer.refuse_value = (b'"event_id":"e3"', errors.InvalidTimestampError("One or more records have been rejected"))
        made.append(producer)
        return producer

    sink = KafkaSink(new_producer, "cw.events", "cw.deadletter", "test", "127.0.0.1:1", FAST)
    for n in range(8):
        sink.send(offered(n))
    sink.close()
    events = sorted(json.loads(r["value"])["event_id"] for r in written if r["topic"] == "cw.events")
    assert events == [f"e{n}" for n in range(8) if n != 3]
    letters = [r for r in written if r["topic"] == "cw.deadletter"]
    assert len(letters) == 1
    assert dict(letters[0]["headers"])["callwatch-reason"].startswith(b"refused by Kafka: InvalidTimestampError")
    assert json.loads(letters[0]["value"])["location"] == "e3"
    assert sink.counts.sent == 7 and sink.counts.dead_lettered == 1
    assert sink.producers_replaced >= 1 and all(p.closed for p in made)


def test_a_non_retriable_delivery_error_replaces_the_producer_and_loses_nothing() -> None:
    written: list[dict[str, Any]] = []
    failures = [errors.TopicAuthorizationFailedError()]

    def new_producer() -> ScriptedProducer:
        producer = ScriptedProducer(written)
        producer.fail_next = failures[:1]
        failures.clear()
        return producer

    sink = KafkaSink(new_producer, "cw.events", "cw.deadletter", "test", "127.0.0.1:1", FAST)
    for n in range(5):
        sink.send(offered(n))
    sink.close()
    assert sorted(json.loads(r["value"])["event_id"] for r in written) == [f"e{n}" for n in range(5)]
    assert sink.counts.sent == 5 and sink.counts.dead_lettered == 0 and sink.producers_replaced == 1


def test_a_message_too_large_for_the_client_is_dead_lettered_at_once() -> None:
    producer = ScriptedProducer()
    producer.refuse_sends = [errors.MessageSizeTooLargeError("The message is 2000000 bytes when serialized")]
    sink = sink_with(producer)
    sink.send(offered(1))
    sink.close()
    assert [r["topic"] for r in producer.written] == ["cw.deadletter"]
    assert sink.counts.dead_lettered == 1 and sink.producers_replaced == 0


def test_events_kafka_would_refuse_as_too_far_ahead_are_dead_lettered() -> None:
    producer = ScriptedProducer()
    now_ms = 1709283600000  # 2024-03-01T09:00:00Z
    sink = KafkaSink(lambda: producer, "cw.events", "cw.deadletter", "test", "127.0.0.1:1", FAST,
                     wall_clock_ms=lambda: now_ms)
    sink.send(offered(5))  # 09:00:05, 5 s ahead: fine
    sink.send({**offered(6), "ts": "2024-03-01T10:00:00Z"}, location="feed:2")  # an hour ahead
    sink.close()
    assert [r["topic"] for r in producer.written] == ["cw.events", "cw.deadletter"]
    reason = dict(producer.written[1]["headers"])["callwatch-reason"].decode()
    assert reason.startswith("event time 2024-03-01T10:00:00.000Z is more than 3540 s ahead")


def test_flush_waits_for_every_acknowledgement() -> None:
    producer = ScriptedProducer()
    producer.holding = True
    sink = sink_with(producer)
    for n in range(5):
        sink.send(offered(n))
    done = threading.Event()
    flusher = threading.Thread(target=lambda: (sink.flush(), done.set()))
    flusher.start()
    assert not done.wait(0.2)
    producer.release()
    assert done.wait(5)
    flusher.join()
    assert sink.counts.sent == 5
    sink.close()


def test_a_producer_that_delivers_nothing_while_the_broker_answers_is_replaced(
        caplog: pytest.LogCaptureFixture) -> None:
    """kafka-python 3.0.12 can wedge (no producer id after an expired batch): nothing fails, nothing
    is delivered. Once the broker answers and the producer stays silent, the sink replaces it."""
    written: list[dict[str, Any]] = []
    made: list[ScriptedProducer] = []

    def new_producer() -> ScriptedProducer:
        producer = ScriptedProducer(written)
        producer.holding = not made  # the first one takes everything and delivers nothing
        made.append(producer)
        return producer

    limits = SinkLimits(backoff_initial_s=0.01, backoff_max_s=0.05, stall_warning_s=0.05, stuck_after_s=0.2)
    sink = KafkaSink(new_producer, "cw.events", "cw.deadletter", "test", "127.0.0.1:1", limits,
                     broker_answers=lambda: True)
    with caplog.at_level(logging.WARNING, logger="callwatch.kafka_sink"):
        for n in range(5):
            sink.send(offered(n))
        sink.close()
    assert sorted(json.loads(r["value"])["event_id"] for r in written) == [f"e{n}" for n in range(5)]
    assert sink.counts.sent == 5 and sink.producers_replaced == 1 and len(made) == 2
    assert "answers, but the producer has delivered nothing" in caplog.text
