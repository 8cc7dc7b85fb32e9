"""docs/metrics.md, written from the declarations in streams/metrics.py (names, types, labels,
meaning) so the list cannot drift from what a scrape contains; the renamed metrics with their old
names come from the same module."""

from __future__ import annotations

from typing import Iterable

from streams import metrics as m
from streams.domain.config import FlowConfig
from streams.domain.totals import answer_time_buckets

PATH = "docs/metrics.md"

SECTIONS: tuple[tuple[str, str, tuple[m.MetricSpec, ...]], ...] = (
    ("Counts since the pipeline started",
     "Per group: `site`, `line` and `queue`, where queue `*` is the line's total, which counts calls, not legs "
     "(a call transferred between two queues of the line is one call, waiting from its first offer). Counters "
     "start at 0 when the process starts and only grow, so `increase(...[range])` gives the calls of any range "
     "of time and `rate()` their pace; a restart is a counter reset, which both allow for. A leg counts when "
     "its outcome is processed, by the same rules as the interval report's figures of the same names.",
     (*m.TOTALS.values(), m.ANSWERED_BAND, m.ANSWER_TIME)),
    ("Figures over the board's windows",
     "What a wallboard shows: label `window` is `15m` or `60m` (rolling, of stream time, evaluated every "
     "publish; they decay to 0 when calls stop) or `today` (since local midnight). Counts over a window are "
     "gauges (they fall as the window moves on) and so carry `window_` in their name. A ratio whose "
     "denominator is 0, and a time over no calls, is absent rather than 0. Percentiles are nearest-rank, "
     "exact, as in the interval report.",
     (*m.WINDOW_FIGURES.values(), m.WINDOW_BAND)),
    ("Now",
     "Per group, at the stream's current time.",
     (m.WAITING, m.LONGEST_WAIT, m.AGENTS, m.DATA_AGE)),
    ("The lines' settings",
     "From the configuration (docs/configuration.md), so dashboards and alert rules compare each line with "
     "its own target.",
     (m.SL_THRESHOLD, m.SL_TARGET, m.ABANDON_TARGET, m.LONGEST_WAIT_LIMIT, m.WAITING_LIMIT)),
    ("The pipeline",
     "Per process (`job`, `instance` added by Prometheus).",
     (m.EVENTS_RECEIVED, m.EVENTS_REJECTED, m.EVENTS_ACCEPTED, m.EVENTS_DUPLICATE, m.EVENTS_LATE,
      m.EVENT_CONFLICTS, m.EVENTS_UNMATCHED, m.EVENTS_PENDING, m.NEWEST_EVENT, m.PROCESSING_LAG,
      m.LAST_PUBLISH, *m.WORKER_METRICS)),
)


def _row(spec: m.MetricSpec) -> str:
    names = " ".join(f"`{name}`" for name in m.series_names(spec))
    labels = ", ".join(f"`{label}`" for label in spec.labels) or "–"
    return f"| {names} | {spec.kind} | {labels} | {spec.help.replace('|', '/')} |"


def _table(specs: Iterable[m.MetricSpec]) -> list[str]:
    return ["| series | type | labels | meaning |", "|---|---|---|---|", *(_row(spec) for spec in specs)]


def document() -> str:
    bounds = ", ".join(f"{bound:g}" for bound in answer_time_buckets(FlowConfig()))
    lines = [
        "# Metrics",
        "",
        "<!-- Generated from streams/metrics.py by `callwatch dashboards build`; do not edit. -->",
        "",
        "Everything `callwatch run` (http://127.0.0.1:9108/metrics) and `callwatch worker` export, in Prometheus's",
        "conventions: a `callwatch_` prefix, base units (seconds, ratios as fractions in `_ratio`), `_total` on",
        "counters, Unix times in `_timestamp_seconds`, no `quantile` label outside summaries, and never a label",
        "naming a call, a caller or an agent. Dashboards and alert rules use only these names (a test checks).",
        "",
    ]
    for title, text, specs in SECTIONS:
        lines += [f"## {title}", "", text, "", *_table(specs), ""]
        if specs[-1] is m.ANSWER_TIME:
            lines += [
                f"The answer-time histogram's buckets (`le`, seconds) with the default lines: {bounds}: the police.uk "
                "band edges (10 s, 60 s), every configured line's service-level threshold (10 s for 999, 30 s for "
                "101; a configured threshold is added) and a spread for the rest. As in every Prometheus histogram, "
                "a bucket counts answers at or under its bound, while police.uk's bands and the service level count "
                "answers strictly under 10 s or the threshold: an answer at exactly 10.000 s is in the `le=\"10.0\"` "
                "bucket but in the 10-60 s band. For exact band and service-level counts use "
                "`callwatch_calls_answered_band_total` and `callwatch_calls_answered_within_sl_total`; the "
                "histogram is for distributions and estimates (`histogram_quantile`).",
                "",
                "In the distributed pipeline each events partition counts its own calls and saves its counts with "
                "its checkpoint; the worker holding a group adds the partitions up, keeping each partition's "
                "larger reading, so a partition restored from an older checkpoint (it replays what followed) never "
                "pulls a counter back. When a group's partitions move to another worker, its series continue under "
                "that worker's `instance`: `sum by (line) (increase(...))` then misses only the calls between the "
                "last scrape of one worker and the first of the other.",
                "",
            ]
    lines += [
        "## Renamed",
        "",
        "Names earlier versions exported, and what replaced them (dashboards and rules built by "
        "`callwatch dashboards build` use the new ones):",
        "",
        "| old | new |",
        "|---|---|",
        *(f"| `{old}` | `{new}` |" for old, new in m.RENAMED.items()),
        "",
        "The old windowed count names (`callwatch_calls_offered{window=...}` ...) now belong to the counters "
        "`callwatch_calls_offered_total` ... (no `window` label); `callwatch_answer_time_seconds` is now the "
        "histogram.",
        "",
    ]
    return "\n".join(lines)
