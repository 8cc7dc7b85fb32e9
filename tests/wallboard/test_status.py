"""The board's colours: red exactly where the alert rules' condition holds, amber over the last fifth
of the allowance, and hysteresis so a figure hovering at a boundary does not flicker. Checked at
the boundaries of the default 999 and 101 settings and, for any values, against a reference built
as two independent Schmitt triggers (one per boundary) from the documented numbers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.config import EMERGENCY_LINE, NON_EMERGENCY_LINE, LineConfig
from streams.wallboard.status import AMBER, GREEN, NONE, RED, Bands, StatusMemory, judge

BANDS = Bands()


@pytest.mark.parametrize("value, colour", [
    (0.8999, RED), (0.90, AMBER), (0.915, AMBER), (0.92, AMBER), (0.9201, GREEN), (1.0, GREEN)])
def test_999_service_level_is_red_under_its_target_amber_up_to_92_percent(value, colour):
    assert judge(value, BANDS.service_level(EMERGENCY_LINE), None) == colour


@pytest.mark.parametrize("value, colour", [
    (0.0, GREEN), (0.0399, GREEN), (0.04, AMBER), (0.05, AMBER), (0.0501, RED)])
def test_abandonment_is_red_over_its_target_amber_from_four_fifths_of_it(value, colour):
    assert judge(value, BANDS.abandonment(NON_EMERGENCY_LINE), None) == colour


@pytest.mark.parametrize("value, colour", [(0, GREEN), (3, GREEN), (4, AMBER), (5, AMBER), (6, RED)])
def test_999_calls_waiting_is_red_over_its_limit_of_five(value, colour):
    assert judge(value, BANDS.waiting(EMERGENCY_LINE), None) == colour


@pytest.mark.parametrize("value, colour", [(23.9, GREEN), (24.0, AMBER), (30.0, AMBER), (30.001, RED)])
def test_999_longest_wait_is_red_over_30_seconds(value, colour):
    assert judge(value, BANDS.longest_wait(EMERGENCY_LINE), None) == colour


def test_101_service_level_boundaries_follow_its_own_80_percent_target():
    scale = BANDS.service_level(NON_EMERGENCY_LINE)
    assert [judge(v, scale, None) for v in (0.79, 0.80, 0.84, 0.8401)] == [RED, AMBER, AMBER, GREEN]


def test_a_service_level_must_recover_a_point_past_each_boundary_before_it_looks_better():
    memory, scale = StatusMemory(), BANDS.service_level(EMERGENCY_LINE)
    seen = [memory.judge(("999",), v, scale) for v in (0.95, 0.89, 0.905, 0.899, 0.909, 0.911, 0.925, 0.93, 0.931)]
    assert seen == [GREEN, RED, RED, RED, RED, AMBER, AMBER, AMBER, GREEN]


def test_calls_waiting_needs_a_whole_call_below_a_boundary_to_look_better():
    memory, scale = StatusMemory(), BANDS.waiting(EMERGENCY_LINE)
    seen = [memory.judge(("999",), v, scale) for v in (3, 4, 3, 4, 6, 5, 6, 5, 4, 3, 2)]
    assert seen == [GREEN, AMBER, AMBER, AMBER, RED, RED, RED, RED, AMBER, AMBER, GREEN]


def test_no_calls_is_no_colour_and_forgets_the_last_one():
    memory, scale = StatusMemory(), BANDS.service_level(EMERGENCY_LINE)
    assert memory.judge(("k",), 0.85, scale) == RED
    assert memory.judge(("k",), None, scale) == NONE
    assert memory.judge(("k",), 0.905, scale) == AMBER  # no history: as it is now


# --- against a reference ------------------------------------------------------------------------

def reference_colours(values: list[float], target: float, higher_is_better: bool, amber_share: float = 0.2,
                      margin_share: float = 0.1, min_margin: float = 0.0) -> list[str]:
    """Each boundary is a Schmitt trigger: tripped when the figure goes past it (red: strictly past
    the target, amber: at or past the amber point), reset only once the figure is back by the margin."""
    if higher_is_better:  # as a shortfall from 100 %, a lower-is-better figure
        values, target = [1 - v for v in values], 1 - target
    red_at, amber_at = target, target * (1 - amber_share)
    margin = max(min_margin, target * margin_share)
    red = amber = False
    colours = []
    first = True
    for v in values:
        red_now, amber_now = v > red_at + 1e-12, v >= amber_at - 1e-12
        if first:
            red, amber = red_now, amber_now
            first = False
        else:
            red = red_now or (red and v + margin > red_at + 1e-12)
            amber = amber_now or (amber and v + margin >= amber_at - 1e-12)
        colours.append(RED if red else AMBER if amber else GREEN)
    return colours


LINES = st.builds(LineConfig, sl_target=st.floats(0.5, 0.99), abandon_target=st.floats(0.01, 0.3),
                  longest_wait_limit_s=st.floats(5, 900), waiting_limit=st.integers(1, 40))


def _grid(low: float, high: float, steps: int) -> st.SearchStrategy[float]:
    # Values on a grid well away from float ties, with plenty of them near the boundaries.
    return st.integers(0, steps).map(lambda i: low + (high - low) * i / steps + (high - low) / (steps * 7.3))


@settings(max_examples=300, deadline=None)
@given(line=LINES, data=st.data())
def test_the_colours_of_any_sequence_equal_the_two_trigger_reference(line, data):
    cases = [
        (BANDS.service_level(line), line.sl_target, True, 0.0, _grid(line.sl_target - 0.1, 1.0, 200)),
        (BANDS.abandonment(line), line.abandon_target, False, 0.0, _grid(0.0, line.abandon_target * 1.5, 200)),
        (BANDS.longest_wait(line), line.longest_wait_limit_s, False, 0.0, _grid(0.0, line.longest_wait_limit_s * 1.5, 200)),
        (BANDS.waiting(line), float(line.waiting_limit), False, 1.0, st.integers(0, line.waiting_limit * 2).map(float)),
    ]
    for scale, target, higher, min_margin, values in cases:
        sequence = data.draw(st.lists(values, min_size=1, max_size=40))
        memory = StatusMemory()
        got = [memory.judge(("g",), v, scale) for v in sequence]
        assert got == reference_colours(sequence, target, higher, min_margin=min_margin), (scale, sequence)


@settings(max_examples=300, deadline=None)
@given(line=LINES, wobble=st.lists(st.floats(-0.49, 0.49), min_size=2, max_size=60),
       boundary=st.sampled_from(["limit", "amber_from"]))
def test_a_figure_wobbling_around_a_boundary_by_less_than_the_margin_changes_colour_at_most_once(line, wobble, boundary):
    scale = BANDS.abandonment(line)
    centre = getattr(scale, boundary)
    memory = StatusMemory()
    colours = [memory.judge(("g",), centre + w * scale.margin, scale) for w in wobble]
    assert sum(1 for a, b in zip(colours, colours[1:]) if a != b) <= 1


@given(value=st.floats(0, 2), previous=st.sampled_from([None, GREEN, AMBER, RED, NONE]), line=LINES)
def test_judging_the_same_value_twice_changes_nothing_and_never_hides_a_worse_colour(value, previous, line):
    for scale in (BANDS.service_level(line), BANDS.abandonment(line), BANDS.waiting(line)):
        once = judge(value, scale, previous)
        assert judge(value, scale, once) == once
        order = [GREEN, AMBER, RED]
        assert order.index(once) >= order.index(judge(value, scale, None))
