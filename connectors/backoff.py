"""How long a connector waits before trying its source again: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnection attempt n (0-based): min(max, initial * 2^n), times a random
    factor in [0.5, 1] so that many clients do not come back in step."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        return min(self.max_s, self.initial_s * 2.0 ** min(attempt, 30)) * rng.uniform(0.5, 1.0)
