"""Every Prometheus metric callwatch exports, declared once (name, type, help, labels), and the
collector that renders a board snapshot and pipeline counters at scrape time. Dashboards and alert
rules may only use names declared here (a test checks); docs/metrics.md is generated from them.

Two kinds of call figures: counters since the pipeline started (`_total`, and the answer-time
histogram), for `increase()` over any range of wall-clock time; and gauges over the board's
windows (label `window`: rolling 15m/60m of stream time, today), what a wallboard shows."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from streams.domain.config import FlowConfig
from streams.domain.live import BoardSnapshot
from streams.domain.totals import GroupTotals

GROUP: Final = ("site", "line", "queue")
WINDOWED: Final = GROUP + ("window",)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: str  # "gauge", "counter" (exported as NAME_total) or "histogram" (NAME_bucket, _sum, _count)
    help: str
    labels: tuple[str, ...]


def _spec(name: str, kind: str, help_text: str, labels: tuple[str, ...]) -> MetricSpec:
    return MetricSpec(name, kind, help_text, labels)


# Counts since the pipeline started, per group (queue "*": the line's calls): report field -> counter.
TOTALS: Final = {
    "arrivals": _spec("callwatch_calls_arrived", "counter", "Legs (queue '*': calls) offered to the queue.", GROUP),
    "offered": _spec("callwatch_calls_offered", "counter", "Legs that reached an outcome: answered + abandoned + timed out.", GROUP),
    "answered": _spec("callwatch_calls_answered", "counter", "Legs answered.", GROUP),
    "abandoned": _spec("callwatch_calls_abandoned", "counter", "Legs abandoned by the caller.", GROUP),
    "short_abandoned": _spec("callwatch_calls_short_abandoned", "counter", "Abandoned legs that waited less than the line's short-abandon time.", GROUP),
    "timed_out": _spec("callwatch_calls_timed_out", "counter", "Legs taken out of the queue unanswered by the system.", GROUP),
    "transferred": _spec("callwatch_calls_transferred", "counter", "Legs transferred to another queue (0 on line totals).", GROUP),
    "lost": _spec("callwatch_calls_lost", "counter", "Legs with no outcome after max_wait_s, closed as lost.", GROUP),
    "answered_within_sl": _spec("callwatch_calls_answered_within_sl", "counter", "Legs answered in strictly less than the line's service-level threshold.", GROUP),
}
BANDS: Final = {"band_lt10": "lt10", "band_10_60": "10_60", "band_ge60": "ge60"}
ANSWERED_BAND: Final = _spec("callwatch_calls_answered_band", "counter", "Answered legs by police.uk answer-time band (lt10: under 10 s, 10_60: 10 s to under 60 s, ge60: 60 s or longer).", GROUP + ("band",))
ANSWER_TIME: Final = _spec("callwatch_answer_time_seconds", "histogram", "Answer time of answered legs (buckets: the police.uk band edges, every line's SL threshold and others; le counts answers at or under the bound).", GROUP)

# Figures over the board's windows: report field -> gauge. Counts over a window are gauges (they
# fall as the window moves on) named callwatch_window_*, apart from the counters above; ratios end
# in _ratio; times are in seconds.
WINDOW_FIGURES: Final = {
    "arrivals": _spec("callwatch_window_calls_arrived", "gauge", "Legs (queue '*': calls) offered to the queue whose offer falls in the window.", WINDOWED),
    "offered": _spec("callwatch_window_calls_offered", "gauge", "Legs reaching an outcome in the window: answered + abandoned + timed out.", WINDOWED),
    "answered": _spec("callwatch_window_calls_answered", "gauge", "Legs answered in the window.", WINDOWED),
    "abandoned": _spec("callwatch_window_calls_abandoned", "gauge", "Legs abandoned by the caller in the window.", WINDOWED),
    "short_abandoned": _spec("callwatch_window_calls_short_abandoned", "gauge", "Abandoned legs in the window that waited less than the line's short-abandon time.", WINDOWED),
    "timed_out": _spec("callwatch_window_calls_timed_out", "gauge", "Legs taken out of the queue unanswered by the system in the window.", WINDOWED),
    "transferred": _spec("callwatch_window_calls_transferred", "gauge", "Legs transferred to another queue in the window.", WINDOWED),
    "lost": _spec("callwatch_window_calls_lost", "gauge", "Legs with no outcome after max_wait_s, closed as lost, in the window.", WINDOWED),
    "answered_within_sl": _spec("callwatch_window_calls_answered_within_sl", "gauge", "Legs answered in the window in less than the line's service-level threshold.", WINDOWED),
    "service_level": _spec("callwatch_service_level_ratio", "gauge", "Service level by the line's formula (absent when undefined).", WINDOWED),
    "abandonment_rate": _spec("callwatch_abandonment_ratio", "gauge", "Abandoned / offered (absent when nothing was offered).", WINDOWED),
    "abandonment_rate_excl_short": _spec("callwatch_abandonment_excl_short_ratio", "gauge", "Abandonment excluding short abandons.", WINDOWED),
    "asa_s": _spec("callwatch_answer_time_mean_seconds", "gauge", "Average speed of answer.", WINDOWED),
    "answer_p50_s": _spec("callwatch_answer_time_p50_seconds", "gauge", "Median answer time (nearest rank) of the legs answered in the window.", WINDOWED),
    "answer_p90_s": _spec("callwatch_answer_time_p90_seconds", "gauge", "90th percentile (nearest rank) of answer time in the window.", WINDOWED),
    "answer_p95_s": _spec("callwatch_answer_time_p95_seconds", "gauge", "95th percentile (nearest rank) of answer time in the window.", WINDOWED),
    "answer_max_s": _spec("callwatch_answer_time_max_seconds", "gauge", "Longest answer time in the window.", WINDOWED),
    "abandon_wait_mean_s": _spec("callwatch_abandon_wait_mean_seconds", "gauge", "Mean wait of abandoned legs.", WINDOWED),
}
WINDOW_BAND: Final = _spec("callwatch_window_calls_answered_band", "gauge", "Answered legs in the window by police.uk answer-time band.", WINDOWED + ("band",))

SL_THRESHOLD: Final = _spec("callwatch_service_level_threshold_seconds", "gauge", "The line's service-level threshold.", ("site", "line", "formula"))
SL_TARGET: Final = _spec("callwatch_service_level_target_ratio", "gauge", "The line's service-level alert target.", ("site", "line"))
ABANDON_TARGET: Final = _spec("callwatch_abandonment_target_ratio", "gauge", "The line's abandonment alert target.", ("site", "line"))
LONGEST_WAIT_LIMIT: Final = _spec("callwatch_longest_wait_limit_seconds", "gauge", "The line's longest-wait alert limit.", ("site", "line"))
WAITING_LIMIT: Final = _spec("callwatch_calls_waiting_limit", "gauge", "The line's calls-waiting alert limit.", ("site", "line"))

WAITING: Final = _spec("callwatch_calls_waiting", "gauge", "Legs offered and not yet answered, abandoned or otherwise closed.", GROUP)
LONGEST_WAIT: Final = _spec("callwatch_longest_wait_seconds", "gauge", "Age of the oldest waiting leg (0 when none waits).", GROUP)
AGENTS: Final = _spec("callwatch_agents", "gauge", "Agents by last reported state.", ("site", "line", "queue", "state"))
DATA_AGE: Final = _spec("callwatch_data_age_seconds", "gauge", "Stream time since the group's last event: a stale board shows here.", GROUP)

EVENTS_RECEIVED: Final = _spec("callwatch_events_received", "counter", "Events read from the source, valid or not.", ("source",))
EVENTS_REJECTED: Final = _spec("callwatch_events_rejected", "counter", "Events rejected as invalid (dead-lettered).", ("source",))
EVENTS_ACCEPTED: Final = _spec("callwatch_events_accepted", "counter", "Valid events accepted for processing.", ())
EVENTS_DUPLICATE: Final = _spec("callwatch_events_duplicate", "counter", "Events ignored as duplicates of an event_id already seen.", ())
EVENTS_LATE: Final = _spec("callwatch_events_late", "counter", "Events later than the allowed lateness: counted, not applied.", ())
EVENT_CONFLICTS: Final = _spec("callwatch_event_conflicts", "counter", "Terminal events for a leg that already had its outcome.", ())
EVENTS_UNMATCHED: Final = _spec("callwatch_events_unmatched", "counter", "Events for a call or leg never offered.", ())
EVENTS_PENDING: Final = _spec("callwatch_events_pending", "gauge", "Events held for ordering within the allowed lateness.", ())
NEWEST_EVENT: Final = _spec("callwatch_newest_event_timestamp_seconds", "gauge", "Event time of the newest event (Unix time in seconds): the stream's clock.", ())
PROCESSING_LAG: Final = _spec("callwatch_processing_lag_seconds", "gauge", "Clock time minus the newest event's time.", ())
LAST_PUBLISH: Final = _spec("callwatch_last_publish_timestamp_seconds", "gauge", "When figures were last computed (Unix seconds).", ())

ALL_METRICS: Final = (
    tuple(TOTALS.values())
    + (ANSWERED_BAND, ANSWER_TIME)
    + tuple(WINDOW_FIGURES.values())
    + (WINDOW_BAND, SL_THRESHOLD, SL_TARGET, ABANDON_TARGET, LONGEST_WAIT_LIMIT, WAITING_LIMIT,
       WAITING, LONGEST_WAIT, AGENTS, DATA_AGE, EVENTS_RECEIVED, EVENTS_REJECTED, EVENTS_ACCEPTED,
       EVENTS_DUPLICATE, EVENTS_LATE, EVENT_CONFLICTS, EVENTS_UNMATCHED, EVENTS_PENDING, NEWEST_EVENT,
       PROCESSING_LAG, LAST_PUBLISH)
)


# `callwatch worker`'s own (streams/worker/health.py): how long ago its loop reading the events topic
# last went round. Not a figure of the pipeline's: the worker exports it beside the collector.
READ_LOOP_AGE: Final = _spec("callwatch_worker_read_loop_age_seconds", "gauge", "Seconds since the worker's loop reading the events topic last went round (under a second when all is well; growing: no events are read).", ())
CONSUMER_LAG: Final = _spec("callwatch_worker_consumer_lag_messages", "gauge", "Messages not read yet, per topic and partition the worker holds (the topic's end minus the worker's position).", ("topic", "partition"))
WORKER_METRICS: Final = (READ_LOOP_AGE, CONSUMER_LAG)

# A connector's own figures, which `callwatch run --source NAME` exports beside the collector
# (connectors/ami/ami_source.py): how the AMI connector decided the exits Asterisk left open.
AMI_UNANSWERED_EXITS: Final = _spec("callwatch_ami_unanswered_exits", "counter", "Unanswered queue exits seen by the AMI connector, by outcome and the evidence that decided it (inferred=true: Asterisk gave no better signal).", ("outcome", "evidence", "inferred"))
CONNECTOR_METRICS: Final = (AMI_UNANSWERED_EXITS,)


# Names this version no longer exports (old name -> what replaced it), listed in docs/metrics.md.
RENAMED: Final = {
    **{old.name.replace("_window_", "_"): old.name for old in WINDOW_FIGURES.values() if "_window_" in old.name},
    "callwatch_calls_answered_band": WINDOW_BAND.name,
    'callwatch_answer_time_seconds{quantile="0.5"}': WINDOW_FIGURES["answer_p50_s"].name,
    'callwatch_answer_time_seconds{quantile="0.9"}': WINDOW_FIGURES["answer_p90_s"].name,
    'callwatch_answer_time_seconds{quantile="0.95"}': WINDOW_FIGURES["answer_p95_s"].name,
    'callwatch_answer_time_seconds{quantile="1"}': WINDOW_FIGURES["answer_max_s"].name,
    "callwatch_stream_time_seconds": NEWEST_EVENT.name,
}

SUFFIXES: Final = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def series_names(spec: MetricSpec) -> tuple[str, ...]:
    """The names of the series a metric is exported as."""
    return tuple(spec.name + suffix for suffix in SUFFIXES[spec.kind])


def exported_names() -> frozenset[str]:
    """Every series name a scrape can contain (counters with their _total suffix, histograms with
    _bucket, _sum and _count)."""
    return frozenset(name for spec in ALL_METRICS + WORKER_METRICS + CONNECTOR_METRICS for name in series_names(spec))


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """Counters of the pipeline around the domain, published with each snapshot."""

    received: Mapping[str, int]
    rejected: Mapping[str, int]
    accepted: int
    duplicates: int
    late: int
    conflicts: int
    unmatched: int
    pending: int
    stream_time_s: float | None
    processing_lag_s: float | None
    published_at_s: float


Family = GaugeMetricFamily | CounterMetricFamily  # a number per series


def _family(spec: MetricSpec) -> Family:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _answer_times() -> HistogramMetricFamily:
    return HistogramMetricFamily(ANSWER_TIME.name, ANSWER_TIME.help, labels=ANSWER_TIME.labels)


class FigureCollector(Collector):
    """Renders the latest published snapshot; publishing swaps one reference, so a scrape never
    sees half an update and never waits for the pipeline."""

    def __init__(self, flow_config: FlowConfig, registry: CollectorRegistry | None = None) -> None:
        self._config = flow_config
        self._lock = threading.Lock()
        self._latest: tuple[BoardSnapshot, PipelineStatus] | None = None
        if registry is not None:
            registry.register(self)

    def publish(self, snapshot: BoardSnapshot, status: PipelineStatus) -> None:
        with self._lock:
            self._latest = (snapshot, status)

    def describe(self) -> Iterator[Metric]:
        for spec in ALL_METRICS:
            yield _answer_times() if spec is ANSWER_TIME else _family(spec)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = self._latest
        families = {spec.name: _family(spec) for spec in ALL_METRICS if spec is not ANSWER_TIME}
        answer_times = _answer_times()
        if latest is not None:
            snapshot, status = latest
            for group, totals in sorted(snapshot.totals.items()):
                _add_totals(families, answer_times, list(group), totals)
            self._add_figures(families, snapshot)
            self._add_status(families, status)
        for spec in ALL_METRICS:
            yield answer_times if spec is ANSWER_TIME else families[spec.name]

    def _add_figures(self, families: dict[str, Family], snapshot: BoardSnapshot) -> None:
        for window, by_group in snapshot.figures.items():
            for (site, line, queue), figures in sorted(by_group.items()):
                labels = [site, line, queue, window]
                for field_name, spec in WINDOW_FIGURES.items():
                    value = figures[field_name]
                    if value is not None:  # undefined ratios are absent, never 0 or NaN
                        families[spec.name].add_metric(labels, float(value))  # type: ignore[arg-type]
                for field_name, band in BANDS.items():
                    families[WINDOW_BAND.name].add_metric(labels + [band], float(figures[field_name]))  # type: ignore[arg-type]
        sites_lines = sorted({(site, line) for site, line, _ in snapshot.queues} |
                             {(site, line) for by_group in snapshot.figures.values() for site, line, _ in by_group})
        for site, line in sites_lines:
            rules = self._config.line(line)
            families[SL_THRESHOLD.name].add_metric([site, line, rules.sl_formula], rules.sl_threshold_s)
            families[SL_TARGET.name].add_metric([site, line], rules.sl_target)
            families[ABANDON_TARGET.name].add_metric([site, line], rules.abandon_target)
            families[LONGEST_WAIT_LIMIT.name].add_metric([site, line], rules.longest_wait_limit_s)
            families[WAITING_LIMIT.name].add_metric([site, line], float(rules.waiting_limit))
        for group, now in sorted(snapshot.queues.items()):
            families[WAITING.name].add_metric(list(group), float(now.waiting))
            families[LONGEST_WAIT.name].add_metric(list(group), now.longest_wait_s)
        for key, count in sorted(snapshot.agents.items()):
            families[AGENTS.name].add_metric(list(key), float(count))
        for group, age in sorted(snapshot.data_age_s.items()):
            families[DATA_AGE.name].add_metric(list(group), age)

    def _add_status(self, families: dict[str, Family], status: PipelineStatus) -> None:
        for source, count in sorted(status.received.items()):
            families[EVENTS_RECEIVED.name].add_metric([source], count)
        for source, count in sorted(status.rejected.items()):
            families[EVENTS_REJECTED.name].add_metric([source], count)
        for spec, value in ((EVENTS_ACCEPTED, status.accepted), (EVENTS_DUPLICATE, status.duplicates),
                            (EVENTS_LATE, status.late), (EVENT_CONFLICTS, status.conflicts),
                            (EVENTS_UNMATCHED, status.unmatched), (EVENTS_PENDING, status.pending),
                            (LAST_PUBLISH, status.published_at_s)):
            families[spec.name].add_metric([], float(value))
        if status.stream_time_s is not None:
            families[NEWEST_EVENT.name].add_metric([], status.stream_time_s)
        if status.processing_lag_s is not None:
            families[PROCESSING_LAG.name].add_metric([], status.processing_lag_s)


def _add_totals(families: dict[str, Family], answer_times: HistogramMetricFamily, labels: list[str],
                totals: GroupTotals) -> None:
    for field_name, spec in TOTALS.items():
        families[spec.name].add_metric(labels, float(getattr(totals, field_name)))
    for field_name, band in BANDS.items():
        families[ANSWERED_BAND.name].add_metric(labels + [band], float(getattr(totals, field_name)))
    buckets = [(str(float(bound)), float(count)) for bound, count in totals.answer_time_buckets]
    buckets.append(("+Inf", float(totals.answered)))
    answer_times.add_metric(labels, buckets, totals.answer_time_sum_s)
