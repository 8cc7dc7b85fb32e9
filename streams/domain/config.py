"""Per-line rules and stream-time limits the figures depend on (SPEC sections 3 and 5), as frozen
values. Reading them from files and the environment is the edge's job (streams/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Mapping

SL_FORMULAS: Final = ("answered", "offered", "positive")


class InvalidConfig(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class LineConfig:
    sl_threshold_s: float = 30.0
    sl_formula: str = "offered"
    short_abandon_s: float = 5.0
    # Alert targets travel with the line so dashboards and rules can show them next to the figure.
    sl_target: float = 0.80
    abandon_target: float = 0.05
    longest_wait_limit_s: float = 120.0
    waiting_limit: int = 10

    def __post_init__(self) -> None:
        if self.sl_formula not in SL_FORMULAS:
            raise InvalidConfig(f"sl_formula must be one of {', '.join(SL_FORMULAS)}, not {self.sl_formula!r}")
        if not self.sl_threshold_s > 0:
            raise InvalidConfig(f"sl_threshold_s must be positive, not {self.sl_threshold_s!r}")
        if not self.short_abandon_s >= 0:
            raise InvalidConfig(f"short_abandon_s must be zero or more, not {self.short_abandon_s!r}")
        for name in ("sl_target", "abandon_target"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InvalidConfig(f"{name} must be a fraction in [0, 1], not {value!r}")
        if not self.longest_wait_limit_s > 0:
            raise InvalidConfig(f"longest_wait_limit_s must be positive, not {self.longest_wait_limit_s!r}")
        if not self.waiting_limit > 0:
            raise InvalidConfig(f"waiting_limit must be positive, not {self.waiting_limit!r}")


EMERGENCY_LINE: Final = LineConfig(sl_threshold_s=10.0, sl_formula="answered", short_abandon_s=5.0,
                                   sl_target=0.90, abandon_target=0.05, longest_wait_limit_s=30.0,
                                   waiting_limit=5)
NON_EMERGENCY_LINE: Final = LineConfig(sl_threshold_s=30.0, sl_formula="offered", short_abandon_s=5.0,
                                       sl_target=0.80, abandon_target=0.05, longest_wait_limit_s=600.0,
                                       waiting_limit=20)


def _default_lines() -> dict[str, LineConfig]:
    return {"999": EMERGENCY_LINE, "101": NON_EMERGENCY_LINE}


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Everything the domain needs to turn events into figures."""

    tz: str = "Europe/London"
    allowed_lateness_s: float = 120.0
    max_wait_s: float = 3600.0
    lines: Mapping[str, LineConfig] = field(default_factory=_default_lines)
    # Lines not named above (any other service name) get this.
    other_lines: LineConfig = NON_EMERGENCY_LINE
    rolling_windows_s: tuple[int, ...] = (900, 3600)
    # The live board cannot wait the full lateness (a wallboard two minutes behind is useless), so
    # it runs its own flow with this shorter lateness; interval figures keep the full one. Half a
    # second keeps the board within a second of the calls (docs/worker.md); the platforms deliver a
    # call's events in order, and one later than this is missing from the board only.
    live_lateness_s: float = 0.5
    # How far back the live board lists callers to call back (abandoned, not answered since).
    callback_window_s: float = 4 * 3600.0

    def __post_init__(self) -> None:
        if not self.allowed_lateness_s >= 0:
            raise InvalidConfig(f"allowed_lateness_s must be zero or more, not {self.allowed_lateness_s!r}")
        if not self.max_wait_s > 0:
            raise InvalidConfig(f"max_wait_s must be positive, not {self.max_wait_s!r}")
        if not self.callback_window_s > 0:
            raise InvalidConfig(f"callback_window_s must be positive, not {self.callback_window_s!r}")
        if not self.rolling_windows_s or any(w <= 0 for w in self.rolling_windows_s):
            raise InvalidConfig(f"rolling windows must be positive, not {self.rolling_windows_s!r}")

    def line(self, name: str) -> LineConfig:
        return self.lines.get(name, self.other_lines)

    @property
    def allowed_lateness_ms(self) -> int:
        return round(self.allowed_lateness_s * 1000)

    @property
    def max_wait_ms(self) -> int:
        return round(self.max_wait_s * 1000)
