"""A deterministic simulator of a UK police 999/101 control room: a source of canonical call events
for demos, load tests and the embedded pipeline (`callwatch simulate`)."""

from .control_room import UnknownScenario, simulate, simulate_to_lines
from .demand import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Scenario", "UnknownScenario", "simulate", "simulate_to_lines"]
