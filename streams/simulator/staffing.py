"""Who answers the simulated control room's calls: its queues and their routing rules, the call
handlers' skill groups and which queues each serves first, the shift roster and breaks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Final, Mapping
from zoneinfo import ZoneInfo

from .demand import LINE_101, LINE_999

QUEUE_999: Final = "999-police"
QUEUE_999_OVERFLOW: Final = "999-overflow"
QUEUE_101: Final = "101-general"
QUEUE_101_CRIME: Final = "101-crime-report"

LINE_OF_QUEUE: Final[Mapping[str, str]] = MappingProxyType({
    QUEUE_999: LINE_999, QUEUE_999_OVERFLOW: LINE_999, QUEUE_101: LINE_101, QUEUE_101_CRIME: LINE_101})

# A 999 call still waiting after this long overflows to the wider room, where 101 handlers trained
# for 999 pick it up before any 101 call.
OVERFLOW_999_AFTER_S: Final = 45.0
# A 101 caller still waiting hears, at this interval, an offer to leave a voicemail for a callback;
# those who accept leave the queue unanswered (a `timeout`). Nobody waits in a 101 queue longer than
# the hard limit: the ACD then sends them to voicemail regardless.
CALLBACK_OFFER_EVERY_S: Final = 60.0
CALLBACK_ACCEPT_SHARE: Final = 0.25
TIMEOUT_101_AFTER_S: Final = 20 * 60.0
# The share of 101 callers who choose "crime report" at the menu; the rest go to the general queue.
CRIME_REPORT_SHARE: Final = 0.2
# Callers in the general queue who chose the wrong option and re-select during the queue
# announcement; the ACD holds them for the announcement, then moves them to the crime-report queue.
MISROUTED_101_SHARE: Final = 0.03
MISROUTE_DWELL_S: Final = (3.0, 15.0)

HANDLER_999: Final = "999"
BLENDED: Final = "blended"
HANDLER_101: Final = "101"

# The queues each skill group serves, most urgent tier first; within a tier a free handler takes
# the call that has waited longest (FCFS). Blended handlers take 101 calls only when no 999 call
# waits, and 101 handlers take 999 overflow first, which is what starves 101 when 999 surges.
# Crime reports (the crime is over) wait until no general 101 call does.
SERVES: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = MappingProxyType({
    HANDLER_999: ((QUEUE_999_OVERFLOW,), (QUEUE_999,)),
    BLENDED: ((QUEUE_999_OVERFLOW,), (QUEUE_999,), (QUEUE_101,), (QUEUE_101_CRIME,)),
    HANDLER_101: ((QUEUE_999_OVERFLOW,), (QUEUE_101,), (QUEUE_101_CRIME,)),
})

# Which free handler a new call goes to: the most specialised group first, so blended handlers
# stay free for 999 as long as possible; within a group the one idle longest.
PICK_ORDER: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    QUEUE_999: (HANDLER_999, BLENDED),
    QUEUE_999_OVERFLOW: (HANDLER_999, BLENDED, HANDLER_101),
    QUEUE_101: (HANDLER_101, BLENDED),
    QUEUE_101_CRIME: (HANDLER_101, BLENDED),
})

# Under major-incident procedures the supervisor puts every handler on 999 first: 101 handlers then
# serve as blended ones do, and a new 999 call may go to any free handler.
SERVES_ALL_HANDS: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = MappingProxyType(
    {group: SERVES[BLENDED] for group in SERVES})
PICK_ORDER_ALL_HANDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    QUEUE_999: (HANDLER_999, BLENDED, HANDLER_101),
    QUEUE_999_OVERFLOW: (HANDLER_999, BLENDED, HANDLER_101),
    QUEUE_101: (HANDLER_101, BLENDED),
    QUEUE_101_CRIME: (HANDLER_101, BLENDED),
})

# The line a handler's agent_state events are shown under on the wallboard.
HOME_LINE: Final[Mapping[str, str]] = MappingProxyType({
    HANDLER_999: LINE_999, BLENDED: LINE_999, HANDLER_101: LINE_101})


@dataclass(frozen=True, slots=True)
class Shift:
    """A daily shift starting at a local hour, with its headcount per skill group."""

    name: str
    start_hour: int
    hours: int
    handlers_999: int
    blended: int
    handlers_101: int

    def __post_init__(self) -> None:
        # 01:00 local is skipped or repeated at the clock changes; a shift must start exactly once a day.
        if not 0 <= self.start_hour < 24 or self.start_hour == 1:
            raise ValueError(f"shift {self.name!r}: start hour must be 0 or 2-23, not {self.start_hour}")
        if not 0 < self.hours < 24:
            raise ValueError(f"shift {self.name!r}: length must be 1-23 hours, not {self.hours}")

    @property
    def headcount(self) -> tuple[tuple[str, int], ...]:
        return ((HANDLER_999, self.handlers_999), (BLENDED, self.blended), (HANDLER_101, self.handlers_101))

    def bounds_ms(self, local_day: date, tz: ZoneInfo) -> tuple[int, int]:
        """[start, end) in UTC epoch ms of this shift starting on `local_day`. The end is the same
        local wall-clock time a shift length later, so a night shift over a clock change is 7 or 9 h."""
        start = datetime(local_day.year, local_day.month, local_day.day, self.start_hour, tzinfo=tz)
        naive_end = datetime(local_day.year, local_day.month, local_day.day, self.start_hour) + timedelta(hours=self.hours)
        return _to_ms(start), _to_ms(naive_end.replace(tzinfo=tz))


def _to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def local_day_of(instant_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(instant_ms / 1000, timezone.utc).astimezone(tz).date()


# Staggered shifts follow the demand curve: two overlapping shifts cover the day and evening peaks,
# one the small hours. Sized so the normal day meets the 999 and 101 targets with some slack.
ROSTER: Final = (
    Shift("early", start_hour=7, hours=8, handlers_999=4, blended=2, handlers_101=8),
    Shift("day", start_hour=10, hours=8, handlers_999=3, blended=1, handlers_101=4),
    Shift("late", start_hour=15, hours=8, handlers_999=5, blended=2, handlers_101=7),
    Shift("evening", start_hour=18, hours=8, handlers_999=3, blended=1, handlers_101=4),
    Shift("night", start_hour=23, hours=8, handlers_999=4, blended=1, handlers_101=3),
)


@dataclass(frozen=True, slots=True)
class Break:
    after_s: float
    length_s: float


# Two breaks per shift; handlers are spread over a window so the room never empties at once. A
# break falls due at its time but starts only when the handler is free (never mid-call).
BREAKS: Final = (Break(after_s=2.5 * 3600, length_s=20 * 60), Break(after_s=5 * 3600, length_s=30 * 60))
BREAK_STAGGER_S: Final = 20 * 60.0
BREAK_STAGGER_SLOTS: Final = 5


def break_offset_s(handler_index: int) -> float:
    """How much later than the nominal time this handler's breaks fall due."""
    return (handler_index % BREAK_STAGGER_SLOTS) * BREAK_STAGGER_S
