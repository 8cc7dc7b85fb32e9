"""The call table: the worker's call-leg state as one record per call, in a compacted changelog topic
keyed by call id (`<app-id>-call-legs`, partitioned like the events topic, so a call's record lives
in the partition number of its events). No Kafka here: this module decides what to write and how to
read it back; streams/worker/ingest.py sends and reads.

Why not one record per event, as a Faust table writes one changelog record per assignment: the domain
changes a call several times a second at a busy centre, and a record per change doubles the work per
event. Calls are written in rounds instead, one round per checkpoint of their partition: the calls
changed (or forgotten) since the last round, then the partition's checkpoint (ordering buffer, leg
deadlines, open windows, next offset), which names the round's epoch. The table alone is therefore
never the whole truth: a crash can fall between a round's call records and its checkpoint. Each
record carries what makes that harmless:

    {"e": epoch of its round, "s": [exact, board] (the call in each flow, null where absent),
     "p": the same call as of its previous record (null if it had none)}

Restoring with the checkpoint of epoch C reads the latest record of every call: written in a round at
or before C, its "s" holds; written later (a round whose checkpoint never came), its "p" does, since
that is the call as of round C or before. Such stale records are written again in the next round (so
they cannot pass for committed ones once a later checkpoint exists), and epochs never repeat: the next
round is numbered above every epoch found in the table. A call forgotten by both flows gets a record
with "s": null (a tombstone would lose "p"), and a tombstone in the round after, when the checkpoint
that forgot it is safe."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

Pair = list[Any]  # [exact flow's call state or None, board flow's call state or None]


class CorruptCallTable(ValueError):
    """A record of the call table that no version of this code wrote."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    value: bytes | None  # None: a tombstone


def _record(epoch: int, current: str, previous: str) -> bytes:
    return f'{{"e":{epoch},"s":{current},"p":{previous}}}'.encode()


def encode_pair(pair: Pair) -> str:
    return json.dumps(pair, separators=(",", ":"))


@dataclass
class CallTable:
    """One events partition's side of the table: the latest record of each of its calls, and the
    records of the next round."""

    epoch: int = 0  # the epoch of the latest checkpoint: every round up to it is committed
    next_epoch: int = 1
    _written: dict[str, str] = field(default_factory=dict)  # call id -> its latest encoded pair
    _gone: set[str] = field(default_factory=set)  # latest record says "forgotten": tombstone due
    _stale: dict[str, str | None] = field(default_factory=dict)  # found after a crash: write again
    _pending: list[tuple[str, str | None]] = field(default_factory=list)

    def round(self, changed: Mapping[str, str | None]) -> tuple[int, list[CallRecord]]:
        """The epoch and records of the next round: `changed` maps each call changed since the last
        round to its encoded pair, or to None when both flows have forgotten it."""
        epoch = self.next_epoch
        targets = {**self._stale, **changed}  # stale records are rewritten with the restored state
        records: list[CallRecord] = []
        pending: list[tuple[str, str | None]] = []
        for call_id in sorted(self._gone - targets.keys()):
            records.append(CallRecord(call_id, None))
            pending.append((call_id, None))
        for call_id, current in targets.items():
            previous = self._written.get(call_id)
            if current is not None:
                records.append(CallRecord(call_id, _record(epoch, current, previous or "null")))
                pending.append((call_id, current))
            elif previous is not None:  # forgotten since the last round: a marker keeps "p"
                records.append(CallRecord(call_id, _record(epoch, "null", previous)))
                pending.append((call_id, ""))
            elif call_id in self._gone or call_id in self._stale:  # absent then and now
                records.append(CallRecord(call_id, None))
                pending.append((call_id, None))
        self._pending = pending
        return epoch, records

    def committed(self, epoch: int) -> None:
        """The round's records and the checkpoint naming `epoch` are both acknowledged."""
        for call_id, current in self._pending:
            if current is None:  # tombstone
                self._gone.discard(call_id)
                self._written.pop(call_id, None)
            elif current == "":  # forgotten: marker written
                self._written.pop(call_id, None)
                self._gone.add(call_id)
            else:
                self._written[call_id] = current
                self._gone.discard(call_id)
        self._pending = []
        self._stale.clear()
        self.epoch = epoch
        self.next_epoch = epoch + 1

    def restore(self, latest: Iterable[tuple[str, bytes | None]], checkpoint_epoch: int) -> dict[str, Pair]:
        """Each call's pair as of the checkpoint of `checkpoint_epoch`, from the latest record of each
        call (tombstones as None); prepares the next round to rewrite stale records."""
        self.epoch = checkpoint_epoch
        self._written, self._gone, self._stale, self._pending = {}, set(), {}, []
        newest = checkpoint_epoch
        calls: dict[str, Pair] = {}
        for call_id, value in latest:
            if value is None:
                continue
            try:
                record = json.loads(value)
                epoch, current, previous = int(record["e"]), record["s"], record["p"]
            except (ValueError, TypeError, KeyError) as error:
                raise CorruptCallTable(f"call {call_id!r}: unreadable record ({error})") from None
            newest = max(newest, epoch)
            pair = current if epoch <= checkpoint_epoch else previous
            if epoch > checkpoint_epoch:
                self._stale[call_id] = None if pair is None else encode_pair(pair)
            if pair is None:
                if epoch <= checkpoint_epoch:
                    self._gone.add(call_id)
                continue
            calls[call_id] = pair
            self._written[call_id] = encode_pair(pair)
        self.next_epoch = newest + 1
        return calls


def latest_by_call(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, bytes | None]:
    """The last value of each key, in log order (what compaction keeps)."""
    latest: dict[str, bytes | None] = {}
    for key, value in records:
        if key is None:
            raise CorruptCallTable("a record without a key")
        latest[key.decode()] = value
    return latest
