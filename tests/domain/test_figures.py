"""Figures computed the quick way equal the plain definitions: nearest-rank percentiles and
seconds rounded to the millisecond."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.config import LineConfig
from streams.domain.figures import REPORT_FIELDS, Figures, Tally, _seconds, figures_of, nearest_rank, tally_figures

OUTCOMES = ("answered", "abandoned", "timed_out", "transferred", "lost")
waits_ms = st.one_of(st.sampled_from([0, 1, 999, 1_000, 4_999, 5_000, 9_999, 10_000, 29_999, 30_000, 60_000]),
                     st.integers(0, 7_200_000))
lines = st.builds(LineConfig, sl_threshold_s=st.sampled_from([10, 20.0, 30, 7.5, float("inf")]),
                  sl_formula=st.sampled_from(["answered", "offered", "positive"]),
                  short_abandon_s=st.sampled_from([0, 3.3, 5]))


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 2**42))
def test_whole_milliseconds_need_no_rounding_to_seconds(ms: int) -> None:
    assert _seconds(ms) == ms / 1000


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OUTCOMES), waits_ms), max_size=60), st.integers(0, 40), lines)
def test_answer_times_are_nearest_rank_percentiles_in_seconds(legs: list[tuple[str, int]], arrivals: int,
                                                              line: LineConfig) -> None:
    tally = Tally(arrivals=arrivals)
    for outcome, wait_ms in legs:
        tally.add_outcome(outcome, wait_ms, line)
    figures = tally_figures(tally, line)
    answers = sorted(tally.answer_ms)
    if answers:
        assert figures.asa_s == _seconds(sum(answers) / len(answers))
        assert (figures.answer_p50_s, figures.answer_p90_s, figures.answer_p95_s, figures.answer_max_s) == tuple(
            _seconds(nearest_rank(answers, percent)) for percent in (50, 90, 95, 100))
    else:
        assert figures.asa_s is figures.answer_p50_s is figures.answer_max_s is None
    assert figures.offered == tally.offered
    assert figures_of(tally, line) == figures._asdict()
    assert tuple(figures_of(tally, line)) == Figures._fields == REPORT_FIELDS[5:]
