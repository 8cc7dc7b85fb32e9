"""The pure domain of callwatch (SPEC.md): events, call legs, windows and figures.

Standard library only; no Faust, Kafka, asyncio, files or wall clock. Time is always passed in."""

from .call_legs import LINE_TOTAL, Arrival, CallTracker, LegClosed
from .config import FlowConfig, InvalidConfig, LineConfig
from .events import CallEvent, InvalidEvent, event_to_dict, format_ts, parse_event, parse_ts
from .figures import REPORT_FIELDS, Tally, figures_of
from .flow import CallFlow, FlowCounts
from .live import BoardSnapshot, LiveBoard
from .windows import IntervalWindows, interval_s, parse_duration_s

__all__ = [
    "LINE_TOTAL", "Arrival", "CallTracker", "LegClosed", "FlowConfig", "InvalidConfig", "LineConfig",
    "CallEvent", "InvalidEvent", "event_to_dict", "format_ts", "parse_event", "parse_ts",
    "REPORT_FIELDS", "Tally", "figures_of", "CallFlow", "FlowCounts", "BoardSnapshot", "LiveBoard",
    "IntervalWindows", "interval_s", "parse_duration_s",
]
