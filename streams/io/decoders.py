"""Decoder processes: JSON decoding and validation of input blocks in other processes, so that the
replay's own process mostly orders, tracks and tallies (pipeline parallelism on several cores).

Each decoder has its own pair of pipes and a few blocks in hand; blocks go round-robin and come
back in the same order, so the events reach replay exactly as the in-process path yields them.
Whenever the result the replay needs next has not come yet, the replay's process decodes the next
block itself rather than wait. A file block is only a range (the decoder reads it itself); a block
of stdin is sent as bytes. A decoded block travels as `marshal` data, events as columns (one tuple
per CallEvent field the receiver reads, with repeated strings shared), which costs the receiving
process a third of what pickled tuples do. Decoders are forked, ignore Ctrl-C (the replay stops
them), and stop by themselves when the replay process goes away (their pipes close)."""

from __future__ import annotations

import fcntl
import gc
import marshal
import multiprocessing
import os
import signal
import threading
from collections import deque
from contextlib import contextmanager
from itertools import chain, repeat
from multiprocessing.connection import Connection
from queue import SimpleQueue
from typing import Any, Callable, Collection, Final, Iterable, Iterator

from streams.domain.events import CallEvent

from .event_lines import (Batch, Block, BlockReader, DecodedBlock, batches_of, decode_block, decode_in_order,
                          read_blocks)

# Columns of CallEvent whose values repeat from event to event (call ids, types, lines, queues,
# sites, sources): sent once per block and referenced after that. (Agents, callers and states
# repeat less: sharing them costs the decoder more than it saves the replay.)
_REPEATING_COLUMNS = (1, 2, 4, 5, 6, 10)
ALL_FIELDS: Final = CallEvent._fields
_EXTRA = len(ALL_FIELDS) - 1
_NO_EXTRA = CallEvent("", "", "", 0).extra
_DEFAULTS: Final = CallEvent._field_defaults
_new_tuple = tuple.__new__
AHEAD = 3  # blocks in each decoder's hands (measured: 1 leaves decoders idle, more gains nothing)
PIPE_BYTES = 1024 * 1024


class DecoderFailed(RuntimeError):
    """A decoder process died or failed: the replay cannot be completed."""


def fork_available() -> bool:
    # Decoders are forked: they start in milliseconds with everything imported. Where fork is not
    # available, decoding stays in the replay's own process.
    return "fork" in multiprocessing.get_all_start_methods()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_fields(fields: Collection[str]) -> None:
    """Fields to carry must be CallEvent's, and include those without a default."""
    unknown = set(fields) - set(ALL_FIELDS)
    required = set(ALL_FIELDS) - set(_DEFAULTS) - set(fields)
    if unknown or required:
        raise ValueError(f"fields to carry: unknown {sorted(unknown)}, required but left out {sorted(required)}")


def pack(result: DecodedBlock, fields: Collection[str] = ALL_FIELDS) -> bytes:
    """A decoded block as bytes for the pipe, of its events only the `fields` the receiver reads:
    unpacked, the others hold their defaults. (Fewer fields, fewer objects to pack, rebuild and free:
    every string that is not shared costs both processes.)"""
    events = result.events
    if not events:
        return marshal.dumps((0, (), (), None, result.rejected, result.line_count))
    columns = list(zip(*events))
    shared: dict[Any, Any] = {}
    indices = tuple(index for index, name in enumerate(ALL_FIELDS[:_EXTRA]) if name in fields)
    sent = []
    for index in indices:
        column = columns[index]
        sent.append(tuple(map(shared.setdefault, column, column)) if index in _REPEATING_COLUMNS else column)
    extras = columns[_EXTRA]
    if "extra" not in fields or extras.count(_NO_EXTRA) == len(extras):
        sparse = None
    else:
        sparse = [(at, dict(extra)) for at, extra in enumerate(extras) if extra is not _NO_EXTRA]
    return marshal.dumps((len(events), indices, tuple(sent), sparse, result.rejected, result.line_count))


def unpack(payload: bytes | memoryview) -> DecodedBlock:
    count, indices, sent, sparse, rejected, line_count = marshal.loads(payload)
    if not count:
        return DecodedBlock([], rejected, line_count)
    columns = dict(zip(indices, sent))
    every = [columns[index] if index in columns else repeat(_DEFAULTS[name], count)
             for index, name in enumerate(ALL_FIELDS[:_EXTRA])]
    # tuple.__new__ is what CallEvent._make does, without a Python-level call per event.
    events: list[CallEvent] = list(map(_new_tuple, repeat(CallEvent), zip(*every, repeat(_NO_EXTRA, count))))
    if sparse:
        for at, extra in sparse:
            events[at] = events[at]._replace(extra=extra)  # a dict, as parse_event makes it
    return DecodedBlock(events, rejected, line_count)


def _serve(tasks: Connection, results: Connection, inherited: list[Connection], fields: tuple[str, ...]) -> None:
    """A decoder process: blocks in, decoded blocks out, until an empty message or a closed pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the replay process's to handle
    for connection in inherited:  # other decoders' pipe ends, so that their death is seen as EOF
        connection.close()
    # Decoded JSON is a tree and nothing here keeps a cycle: reference counting frees everything,
    # and the collector's passes over each block's fresh objects cost a few percent (measured).
    # A collection now and then still bounds memory should anything ever make a cycle.
    gc.freeze()
    gc.disable()
    # Threads move blocks and results through the pipes, so that decoding never waits for the
    # replay process to collect a result, and neither side can block the other with both pipes full.
    queued: SimpleQueue[bytes] = SimpleQueue()
    outgoing: SimpleQueue[bytes] = SimpleQueue()
    threading.Thread(target=_take_tasks, args=(tasks, queued), daemon=True).start()
    sender = threading.Thread(target=_send_results, args=(results, outgoing), daemon=True)
    sender.start()
    reader = BlockReader()
    done = 0
    try:
        while True:
            task = queued.get()
            if not task:
                return
            done += 1
            if not done % 256:
                gc.collect()
            try:
                if task[:1] == b"F":
                    path, start, size = marshal.loads(memoryview(task)[1:])
                    data = reader.read(Block("", path, start, size, None, 0, False))
                else:
                    data = memoryview(task)[1:].tobytes()
                payload = b"+" + pack(decode_block(data), fields)
            except Exception as error:  # a bug or an unreadable file: say what it was, then stop
                outgoing.put(b"!" + f"{type(error).__name__}: {error}".encode())
                return
            outgoing.put(payload)
    finally:
        reader.close()
        outgoing.put(b"")
        sender.join()


def _take_tasks(tasks: Connection, queued: SimpleQueue[bytes]) -> None:
    try:
        while True:
            task = tasks.recv_bytes()
            queued.put(task)
            if not task:
                return
    except (EOFError, OSError):
        queued.put(b"")  # the replay process has gone


def _send_results(results: Connection, outgoing: SimpleQueue[bytes]) -> None:
    try:
        while payload := outgoing.get():
            results.send_bytes(payload)
    except OSError:
        pass  # the replay process has gone (or stopped reading): nothing left to do


def _widen(pipe: Connection) -> None:
    """A pipe that holds a whole decoded block (Linux: 64 KiB by default, up to pipe-max-size), so
    that a result is written in one go rather than in many wake-ups of the reader."""
    try:
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:
        pass  # not Linux, or a lower limit: the default size works, only slower


class DecoderPool:
    """`processes` decoder processes, sending back the `fields` of each event (see `pack`); use as a
    context manager so that they are always stopped."""

    def __init__(self, processes: int, fields: Collection[str] = ALL_FIELDS) -> None:
        if processes < 1:
            raise ValueError("a decoder pool needs at least one process")
        check_fields(fields)
        context = multiprocessing.get_context("fork")
        # Pipe(duplex=False) gives (receiving end, sending end).
        pipes = [(multiprocessing.Pipe(duplex=False), multiprocessing.Pipe(duplex=False))
                 for _ in range(processes)]
        every_end = [end for pair in pipes for pipe in pair for end in pipe]
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection, Connection]] = []
        for pipe in pipes:
            for reader, _writer in pipe:
                _widen(reader)
        try:
            for (task_reader, task_writer), (result_reader, result_writer) in pipes:
                others = [end for end in every_end if end is not task_reader and end is not result_writer]
                process = context.Process(target=_serve, args=(task_reader, result_writer, others, tuple(fields)),
                                          name="callwatch-decoder", daemon=True)
                process.start()
                self._workers.append((process, task_writer, result_reader))
        except BaseException:
            self.close()
            raise
        finally:
            for (task_reader, _task_writer), (_result_reader, result_writer) in pipes:
                task_reader.close()
                result_writer.close()

    @property
    def size(self) -> int:
        return len(self._workers)

    def decode(self, blocks: Iterable[Block]) -> Iterator[tuple[Block, DecodedBlock]]:
        """Decode blocks in order: in the decoders, each holding AHEAD blocks so that it always has
        the next one when it finishes one, and in this process whenever the result it needs next
        is not ready yet: rather than wait, it decodes the next block itself. Neither side then
        idles while the other has work, whatever their speeds (and no result has to be packed)."""
        blocks = iter(blocks)
        # Blocks in input order: (block, the decoder it went to, None) until its result is taken,
        # or (block, -1, result) for a block decoded here.
        pending: deque[tuple[Block, int, DecodedBlock | None]] = deque()
        for _round in range(AHEAD):
            for index in range(len(self._workers)):
                block = next(blocks, None)
                if block is None:
                    break
                self._send(index, block)
                pending.append((block, index, None))
        reader = BlockReader()
        try:
            while pending:
                block, index, result = pending[0]
                if result is None:
                    if not self._ready(index):
                        spare = next(blocks, None)
                        if spare is not None:
                            pending.append((spare, -1, decode_block(reader.read(spare))))
                            continue
                    result = unpack(self._receive(index))
                    following = next(blocks, None)
                    if following is not None:
                        self._send(index, following)
                        pending.append((following, index, None))
                pending.popleft()
                yield block, result
        finally:
            reader.close()

    def _ready(self, index: int) -> bool:
        """Whether decoder `index` has sent a result (or died: then receiving says so)."""
        return self._workers[index][2].poll(0)

    def _send(self, index: int, block: Block) -> None:
        process, tasks, _results = self._workers[index]
        if block.data is None:  # a file range: the decoder reads it itself
            task = b"F" + marshal.dumps((block.path, block.start, block.size))
        else:
            task = b"D" + block.data
        try:
            tasks.send_bytes(task)
        except (BrokenPipeError, ConnectionResetError):
            raise DecoderFailed(self._death(process)) from None

    def _receive(self, index: int) -> memoryview:
        process, _tasks, results = self._workers[index]
        try:
            payload = results.recv_bytes()
        except (EOFError, ConnectionResetError):
            raise DecoderFailed(self._death(process)) from None
        if payload[:1] != b"+":
            raise DecoderFailed(f"decoder process {process.pid} failed: "
                                f"{payload[1:].decode(errors='replace')}")
        return memoryview(payload)[1:]

    @staticmethod
    def _death(process: multiprocessing.process.BaseProcess) -> str:
        process.join(1)
        code = process.exitcode
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        elif code is not None:
            how = f"exit status {code}"
        else:
            how = "its pipe closed"
        return f"decoder process {process.pid} stopped unexpectedly ({how})"

    def close(self) -> None:
        """Stop every decoder: asked first, then terminated, then killed; never left behind."""
        for process, tasks, _results in self._workers:
            try:
                tasks.send_bytes(b"")
            except OSError:
                pass
            tasks.close()
        for process, _tasks, results in self._workers:
            results.close()  # a decoder stuck sending a result gets EPIPE and stops
            process.join(2)
            if process.exitcode is None:
                process.terminate()
                process.join(2)
            if process.exitcode is None:
                process.kill()
                process.join()
        self._workers = []

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# Below this much input, starting decoders costs more than it saves (and tests of small files stay
# on the simple path unless they ask for decoders).
AUTO_MIN_BYTES = 4 * 1024 * 1024


def automatic_decoders() -> int:
    """How many decoder processes replay uses by default: one per CPU beyond the replay's own, at
    most two. None on one CPU (they would only take turns with the replay itself). Decoding and
    validating an event costs about one and a half times what the replay's own process then does
    with it, so two decoders keep up with it where each has a core; on two cores one decoder and
    the replay's process, which decodes a block itself whenever it would otherwise wait, keep both
    busy without taking turns (measured in docs/benchmarks.md: faster than two decoders)."""
    if not fork_available():
        return 0
    return max(0, min(2, usable_cpus() - 1))


@contextmanager
def event_batches(paths: Iterable[str], decoders: int | None = None,
                  on_position: Callable[[int], None] | None = None,
                  fields: Collection[str] = ALL_FIELDS) -> Iterator[tuple[Iterator[Batch], int]]:
    """The events of the inputs as numbered batches, and how many decoder processes produce them.
    `decoders`: None chooses automatically (none for inputs under AUTO_MIN_BYTES, files and pipes
    alike), 0 decodes in this process. `fields`: those the consumer reads; events from decoder
    processes carry only these (the others hold their defaults), events decoded here carry all.
    Decoders are stopped when the block ends, however it ends."""
    check_fields(fields)
    blocks: Iterator[Block] = read_blocks(paths)
    if decoders is None:
        decoders = automatic_decoders()
        if decoders:
            head: list[Block] = []
            size = 0
            for block in blocks:
                head.append(block)
                size += block.size
                if size >= AUTO_MIN_BYTES:
                    break
            else:
                decoders = 0
            blocks = chain(head, blocks)
    elif not fork_available():
        decoders = 0
    if not decoders:
        yield batches_of(decode_in_order(blocks), on_position), 0
        return
    with DecoderPool(decoders, fields) as pool:
        yield batches_of(pool.decode(blocks), on_position), decoders
