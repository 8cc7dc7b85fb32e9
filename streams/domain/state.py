"""Snapshots of the domain's running state as JSON-able values, and back: an adapter checkpoints a
partition's orderer and call tracker with them and resumes exactly where it stopped (the restored
objects behave, event for event, like the ones that were saved).

Leg, line-call and counter records are written field by field in declaration order, with their
field names kept in `schema()`; a snapshot taken under another schema is refused (IncompatibleState)
rather than misread."""

from __future__ import annotations

import copyreg
import io
import pickle
from collections import deque
from dataclasses import fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from msgspec.structs import astuple

from .call_legs import CallState, CallTracker, Leg, LineCall, TrackerCounts
from .config import FlowConfig
from .events import NO_EXTRA, CallEvent
from .figures import Tally

if TYPE_CHECKING:
    from .flow import CallFlow
from .ordering import EventOrderer, OrderingCounts

STATE_VERSION: Final = 4  # 2: a tracker state may leave its calls out; 3: events, legs and calls msgspec
# Structs; 4: a live board's callers noted by the tracker (LiveBoard.enders), the orderer's run of events

Json = Any  # JSON-able: dicts with string keys, lists, strings, numbers, booleans, None


class IncompatibleState(ValueError):
    """A snapshot written by another version of the domain (or not a snapshot at all)."""


def _names(cls: type) -> list[str]:
    struct_fields: tuple[str, ...] | None = getattr(cls, "__struct_fields__", None)  # a msgspec Struct
    return list(struct_fields) if struct_fields is not None else [f.name for f in fields(cls)]


def schema() -> dict[str, Json]:
    """What a snapshot's layout depends on; stored with it and compared on restore."""
    return {"version": STATE_VERSION, "leg": _names(Leg), "line_call": _names(LineCall),
            "tracker_counts": _names(TrackerCounts), "ordering_counts": _names(OrderingCounts),
            "tally": _names(Tally), "event": list(CallEvent.__struct_fields__)}


def check_schema(stored: Json) -> None:
    if stored != schema():
        raise IncompatibleState("the snapshot was written by another version of the domain")


_EXTRA_AT: Final = CallEvent.__struct_fields__.index("extra")


# --- events ----------------------------------------------------------------------------------

def event_state(event: CallEvent) -> list[Json]:
    """An event as a list in CallEvent field order (`extra` as a dict, or None when empty)."""
    values: list[Json] = list(astuple(event))
    values[_EXTRA_AT] = dict(event.extra) if event.extra else None
    return values


def restore_event(values: list[Json]) -> CallEvent:
    values = list(values)
    values[_EXTRA_AT] = values[_EXTRA_AT] or NO_EXTRA  # the shared empty mapping, as parse_event gives
    return CallEvent(*values)


# --- ordering --------------------------------------------------------------------------------

def orderer_state(orderer: EventOrderer) -> dict[str, Json]:
    # The orderer's fields are read directly: this module is the domain's own serialiser.
    return {
        "lateness_ms": orderer._lateness_ms,
        "run": [event_state(event) for event in orderer._run],
        "heap": [event_state(entry[3]) for entry in orderer._heap],  # list order keeps the heap
        "seen": dict(orderer._seen),
        "newest_ms": orderer._newest_ms,
        "released_before_ms": orderer._released_before_ms,
        "next_prune_ms": orderer._next_prune_ms,
        "counts": [getattr(orderer.counts, name) for name in _names(OrderingCounts)],
    }


def restore_orderer(state: dict[str, Json]) -> EventOrderer:
    from .events import TYPE_RANK

    orderer = EventOrderer(int(state["lateness_ms"]))

    def entry(values: list[Json]) -> tuple[int, int, str, CallEvent]:
        event = restore_event(values)
        return (event.occurred_ms, TYPE_RANK[event.type], event.event_id, event)

    orderer._run = deque(restore_event(values) for values in state["run"])
    orderer._heap = [entry(values) for values in state["heap"]]
    orderer._seen = {str(k): int(v) for k, v in state["seen"].items()}
    orderer._newest_ms = state["newest_ms"]
    orderer._released_before_ms = state["released_before_ms"]
    orderer._next_prune_ms = int(state["next_prune_ms"])
    orderer.counts = OrderingCounts(*state["counts"])
    return orderer


# --- call legs -------------------------------------------------------------------------------

def call_state(call: CallState) -> list[Json]:
    """One call's legs and line-calls (what the worker's call table stores per call)."""
    leg_names, line_names = _names(Leg), _names(LineCall)
    return [
        [[getattr(leg, name) for name in leg_names] for leg in call.legs],
        [[site, line, *(getattr(line_call, name) for name in line_names)]
         for (site, line), line_call in call.line_calls.items()],
        call.last_ms,
        call.open_count,
    ]


def restore_call(values: list[Json]) -> CallState:
    legs, line_calls, last_ms, open_count = values
    return CallState(
        legs=[Leg(*leg) for leg in legs],
        line_calls={(site, line): LineCall(*rest) for site, line, *rest in line_calls},
        last_ms=last_ms,
        open_count=open_count,
    )


def tracker_state(tracker: CallTracker, with_calls: bool = True) -> dict[str, Json]:
    """The tracker's state; without its calls (`"calls": None`) when they are stored one by one
    elsewhere (call_state) and handed back to restore_tracker."""
    return {
        "max_wait_ms": tracker._max_wait_ms,
        "calls": {call_id: call_state(call) for call_id, call in tracker.calls.items()} if with_calls else None,
        "deadlines": [list(item) for item in tracker._deadlines],
        "closed_calls": [list(item) for item in tracker._closed_calls],
        "next_housekeeping_ms": tracker._next_housekeeping_ms,
        "counts": [getattr(tracker.counts, name) for name in _names(TrackerCounts)],
    }


def restore_tracker(state: dict[str, Json], calls: dict[str, CallState] | None = None) -> CallTracker:
    """The tracker of `tracker_state`; `calls` are its calls when the state was taken without them."""
    tracker = CallTracker(int(state["max_wait_ms"]))
    if state["calls"] is not None:
        tracker.calls = {str(call_id): restore_call(values) for call_id, values in state["calls"].items()}
    elif calls is not None:
        tracker.calls = calls
    else:
        raise IncompatibleState("a tracker state without calls needs its calls")
    tracker._deadlines = deque((int(d), str(c), int(i)) for d, c, i in state["deadlines"])
    tracker._closed_calls = deque((int(t), str(c)) for t, c in state["closed_calls"])
    tracker._next_housekeeping_ms = int(state["next_housekeeping_ms"])
    tracker.counts = TrackerCounts(*state["counts"])
    return tracker


# --- tallies ---------------------------------------------------------------------------------

_TALLY_FIELDS: Final = tuple(_names(Tally))  # every window part and wallboard bucket is saved and sent


def tally_state(tally: Tally) -> list[Json]:
    """A tally as a list in field order (the answer times last, as a list)."""
    return [list(value) if isinstance(value, list) else value
            for value in (getattr(tally, name) for name in _TALLY_FIELDS)]


def restore_tally(values: list[Json]) -> Tally:
    if len(values) != len(_TALLY_FIELDS):
        raise IncompatibleState("a tally with another number of fields")
    return Tally(*values)


# --- whole flows -----------------------------------------------------------------------------

# A flow is saved whole with pickle: its live board keeps rolling windows, waiting legs, callbacks
# and totals that share objects with each other and with the tracker, and pickle keeps that graph as
# it is. Loading takes only the domain's own classes and a few standard ones (_FlowUnpickler), so a
# record that is not a flow's cannot make the loader run anything else.
_SAFE_MODULES: Final = frozenset({"collections", "zoneinfo", "datetime", "copyreg"})
_SAFE_BUILTINS: Final = frozenset({"set", "frozenset", "dict", "list", "tuple", "int", "float", "str", "bool",
                                   "bytes", "object", "slice", "range", "complex", "getattr"})


class _FlowUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = (module.startswith("streams.domain.") or module in _SAFE_MODULES
                   or (module == "builtins" and name in _SAFE_BUILTINS))
        if not allowed:
            raise IncompatibleState(f"a saved flow may not name {module}.{name}")
        return super().find_class(module, name)


def _read_only(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(mapping)


def _reduce_read_only(proxy: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _read_only, (dict(proxy),)


def load_saved(data: bytes) -> Any:
    """What was pickled, naming only the domain's classes and plain values (IncompatibleState if not)."""
    try:
        return _FlowUnpickler(io.BytesIO(data)).load()
    except IncompatibleState:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a foreign record makes pickle raise
        raise IncompatibleState(f"not a saved state ({type(error).__name__})") from None


def freeze_flow(flow: CallFlow) -> bytes:
    """A whole CallFlow (orderer, tracker with its calls, open report windows, live board)."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_read_only}
    pickler.dump(flow)
    return out.getvalue()


def thaw_flow(data: bytes, config: FlowConfig | None = None, report: bool = True, board: bool = True) -> CallFlow:
    """The flow of `freeze_flow`; with `config`, its lateness applies from now on; without its report
    or its board if not wanted. IncompatibleState if `data` is not a saved flow of this code."""
    from .flow import CallFlow

    flow = load_saved(data)
    if not isinstance(flow, CallFlow):
        raise IncompatibleState("not a saved flow")
    if config is not None:
        flow.config = config
        flow._orderer._lateness_ms = config.allowed_lateness_ms
    if not report:
        flow._report = None
    if not board:
        flow._board = None
    return flow
