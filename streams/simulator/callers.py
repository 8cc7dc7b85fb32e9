"""How simulated callers and handlers behave: patience in the queue, talk and wrap-up times, the
few seconds a handler takes to pick up, redials after abandoning, and pseudonymous caller ids."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Mapping

from .staffing import QUEUE_101, QUEUE_101_CRIME, QUEUE_999


@dataclass(frozen=True, slots=True)
class CallerBehaviour:
    """The distributions of one line's callers and calls. Times are seconds."""

    # Misdials, pocket calls and people who hang up at the first ring: they abandon within a few
    # seconds if nobody answers at once, which is what the SPEC's short abandons are for.
    impatient_share: float
    impatient_patience_s: tuple[float, float]
    # Everyone else gives up after a lognormal patience: most wait a while, a few wait very long.
    patience_mean_s: float
    patience_sigma: float
    talk_mean_s: float
    talk_sigma: float
    wrapup_mean_s: float
    wrapup_sigma: float
    # Some callers who gave up ring straight back (the same caller hash, a new call).
    redial_share: float
    redial_after_s: tuple[float, float]
    max_redials: int = 2


CALLERS_999: Final = CallerBehaviour(
    impatient_share=0.03, impatient_patience_s=(0.5, 4.5),
    patience_mean_s=90.0, patience_sigma=0.6,
    talk_mean_s=240.0, talk_sigma=0.5,
    wrapup_mean_s=60.0, wrapup_sigma=0.4,
    redial_share=0.4, redial_after_s=(10.0, 60.0),
)
CALLERS_101: Final = CallerBehaviour(
    impatient_share=0.02, impatient_patience_s=(0.5, 4.5),
    patience_mean_s=240.0, patience_sigma=0.8,
    talk_mean_s=330.0, talk_sigma=0.5,
    wrapup_mean_s=90.0, wrapup_sigma=0.4,
    redial_share=0.2, redial_after_s=(30.0, 300.0),
)
# People reporting a crime that is over expect a wait and are told their place in the queue; taking
# the report down takes longer than a general enquiry.
CALLERS_101_CRIME: Final = CallerBehaviour(
    impatient_share=0.02, impatient_patience_s=(0.5, 4.5),
    patience_mean_s=480.0, patience_sigma=0.8,
    talk_mean_s=480.0, talk_sigma=0.5,
    wrapup_mean_s=90.0, wrapup_sigma=0.4,
    redial_share=0.2, redial_after_s=(30.0, 300.0),
)
# By the queue a call first enters (what the caller chose at the menu).
CALLERS: Final[Mapping[str, CallerBehaviour]] = MappingProxyType(
    {QUEUE_999: CALLERS_999, QUEUE_101: CALLERS_101, QUEUE_101_CRIME: CALLERS_101_CRIME})

# A free handler takes a moment to pick up (the SPEC's answer clock runs meanwhile).
PICKUP_MEAN_S: Final = 3.0
PICKUP_SIGMA: Final = 0.4
PICKUP_MAX_S: Final = 8.0


def lognormal_s(rng: random.Random, mean_s: float, sigma: float) -> float:
    """A lognormal draw with the given mean (not median): mu is shifted by sigma^2 / 2."""
    return rng.lognormvariate(math.log(mean_s) - sigma * sigma / 2, sigma)


def draw_patience_s(rng: random.Random, behaviour: CallerBehaviour) -> tuple[float, bool]:
    """(how long this caller will wait before hanging up, whether they are one of the impatient)."""
    if rng.random() < behaviour.impatient_share:
        return rng.uniform(*behaviour.impatient_patience_s), True
    return lognormal_s(rng, behaviour.patience_mean_s, behaviour.patience_sigma), False


def draw_talk_s(rng: random.Random, behaviour: CallerBehaviour) -> float:
    return lognormal_s(rng, behaviour.talk_mean_s, behaviour.talk_sigma)


def draw_wrapup_s(rng: random.Random, behaviour: CallerBehaviour) -> float:
    return lognormal_s(rng, behaviour.wrapup_mean_s, behaviour.wrapup_sigma)


def draw_pickup_s(rng: random.Random) -> float:
    return min(lognormal_s(rng, PICKUP_MEAN_S, PICKUP_SIGMA), PICKUP_MAX_S)


def draw_caller_hash(rng: random.Random) -> str:
    """A stand-in for the keyed hash connectors make of a caller's number: never a number."""
    return f"h:{rng.getrandbits(64):016x}"
