"""One events partition as the worker holds it (streams/worker/partition.py), without Kafka: what it
forwards, and what it forwards again when a restart reads messages before its checkpoint's offset."""

from __future__ import annotations

import json
from typing import NamedTuple

from streams.domain import FlowConfig
from streams.kafka.figures_topic import CONTROL_HEADER, END_OF_STREAM
from streams.worker.partition import Partition


class Message(NamedTuple):  # what a partition reads of a Kafka record (aiokafka's ConsumerRecord)
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    key: bytes | None = None

EVENT = {"v": 1, "event_id": "e1", "call_id": "c1", "type": "offered", "ts": "2024-03-01T08:00:00Z",
         "line": "999", "queue": "999-police", "site": "north"}


def _partition() -> Partition:
    # Site "north" belongs to partition 0, every other site to partition 1.
    return Partition(0, 2, FlowConfig(), 900, False, lambda site: 0 if site == "north" else 1)


def _messages() -> list[Message]:
    south = dict(EVENT, event_id="e2", site="south")
    marker = json.dumps({"at": "2024-03-01T08:00:00Z"}).encode()
    return [Message(0, json.dumps(EVENT).encode(), (), b"north"),   # ours: read in place
            Message(1, json.dumps(EVENT | {"event_id": "e3"}).encode(), (), b"c1"),  # keyed by call: forwarded
            Message(2, json.dumps(south).encode(), (), b"south"),  # another partition's site: forwarded
            Message(3, marker, ((CONTROL_HEADER, END_OF_STREAM),), b"callwatch-control")]


def test_messages_not_keyed_by_their_site_here_are_forwarded_and_the_end_marker_to_every_partition() -> None:
    rejected, forward = _partition().take(_messages())
    assert [(f.offset, f.site, f.end_of_stream) for f in forward] == [
        (1, "north", False), (2, "south", False), (3, "", True)]
    assert json.loads(forward[-1].value) == {"at": "2024-03-01T08:00:00Z", "source": 0}
    assert not rejected


def test_a_checkpoint_is_behind_one_that_read_further_in_either_topic_and_not_an_equal_or_unreadable_one() -> None:
    earlier, later = _partition(), _partition()
    earlier.take(_messages()[:1])
    later.take(_messages())
    assert earlier.is_behind(later.snapshot())
    assert not later.is_behind(earlier.snapshot()) and not later.is_behind(later.snapshot())
    further_again = _partition()
    further_again.take(_messages())
    further_again.take_repartitioned([Message(0, json.dumps(EVENT | {"event_id": "e4"}).encode())])
    assert later.is_behind(further_again.snapshot())  # the same events read, more of the repartition topic
    assert not later.is_behind(b"\x00 not a checkpoint")  # restore says what is wrong with that one


def test_a_restart_forwards_again_what_may_not_have_gone_and_applies_nothing_twice() -> None:
    first = _partition()
    first.take(_messages())
    again = _partition()
    again.restore(first.snapshot())
    _rejected, forward = again.take(_messages())  # read again from before the checkpoint's offset (forward_from)
    assert [(f.offset, f.end_of_stream) for f in forward] == [(1, False), (2, False), (3, True)]
    assert again.counts == first.counts  # nothing counted twice
    assert again.exact.counts.accepted == first.exact.counts.accepted == 1  # once, not twice
    assert again.exact.counts.pending == 1


def _calls(count: int) -> list[Message]:
    return [Message(n, json.dumps(EVENT | {"event_id": f"e{n}", "call_id": f"c{n}",
                                           "ts": f"2024-03-01T08:00:{n % 60:02d}Z"}).encode(), (), b"north")
            for n in range(count)]


def test_a_batch_read_as_one_block_leaves_the_state_of_one_message_at_a_time() -> None:
    whole, singly = _partition(), _partition()
    messages = _calls(50) + [Message(50, json.dumps(EVENT | {"event_id": "x", "site": "south"}).encode(), (), b"south")]
    _rejected, forward = whole.take(messages)
    forwarded_singly = [f for message in messages for f in singly.take([message])[1]]
    assert forward == forwarded_singly and [f.site for f in forward] == ["south"]
    assert whole.counts == singly.counts and whole.next_offset == singly.next_offset == 51
    assert whole.read_ms == singly.read_ms
    assert whole.exact.counts == singly.exact.counts and whole.exact.counts.accepted == 50
    # and the same as message by message (the path a batch with a bad message takes: one, at the end)
    judged = _partition()
    _rejected, judged_forward = judged.take(messages + [Message(51, None, (), b"north")])
    assert judged_forward == forward and judged.counts.rejected == 1 and judged.counts.received == whole.counts.received + 1
    assert judged.exact.counts == whole.exact.counts and judged.read_ms == whole.read_ms


def test_a_bad_message_in_a_batch_is_rejected_with_its_own_reason_and_offset_and_the_rest_applied() -> None:
    part = _partition()
    messages = _calls(10)
    messages[3] = Message(3, b'{"v": 1, "type": "offered"', (), b"north")
    messages[7] = Message(7, None, (), b"north")
    rejected, forward = part.take(messages)
    assert [(r.offset, r.reason.split(":")[0]) for r in rejected] == [(3, "not JSON"), (7, "empty message")]
    assert not forward
    assert part.counts.received == 10 and part.counts.rejected == 2
    assert part.exact.counts.accepted == 8


def test_a_batch_with_headers_other_than_the_end_marker_is_read_as_any_other() -> None:
    part = _partition()
    messages = [message._replace(headers=(("traceparent", b"00-ab-cd-01"),)) for message in _calls(5)]
    rejected, forward = part.take(messages)
    assert not rejected and not forward
    assert part.exact.counts.accepted == 5 and part.next_offset == 5
