"""A report row written through its format string is the same text as the JSON encoder writes for
the row's dict, whatever its strings and numbers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.figures import Figures
from streams.domain.interval_report import ReportRow
from streams.io.codec import decode, encode, encode_report_row

counts = st.integers(0, 10**12)
maybe_numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(0, 10**9).map(lambda ms: ms / 1000))
texts = st.one_of(st.sampled_from(["999", "101", "*", "default", "1999-08-01T03:45:00Z"]), st.text())
figures = st.builds(
    Figures, counts, counts, counts, counts, counts, counts, counts, counts, counts,
    st.floats(min_value=0, exclude_min=True, allow_infinity=True), st.sampled_from(["answered", "offered", "positive"]),
    maybe_numbers, maybe_numbers, maybe_numbers, maybe_numbers, maybe_numbers, maybe_numbers, maybe_numbers,
    maybe_numbers, maybe_numbers, counts, counts, counts)
rows = st.builds(ReportRow, texts, texts, texts, texts, texts, figures)


@settings(max_examples=1000, deadline=None)
@given(rows)
def test_a_report_row_is_encoded_as_its_dict_would_be(row: ReportRow) -> None:
    text = encode_report_row(row)
    assert text == encode(row.as_dict())
    assert list(decode(text)) == list(row.as_dict())
