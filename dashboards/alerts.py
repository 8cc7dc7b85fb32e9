"""The alerts callwatch raises, declared once. The Prometheus rule files and the Grafana-managed
copies are both rendered from these specs, so expressions, durations and labels agree.

Targets and limits are never repeated here: every figure rule compares a figure with the per-line
target the exporter publishes (callwatch_service_level_target_ratio, ..._limit_...), joined on
job, instance, site and line. What is chosen here is how an alert behaves around the target:
`for` (how long the condition must hold before it pages), `keep_firing_for` (how long it keeps
firing after the condition clears, so a dip back over the line does not resolve and re-page), a
hysteresis margin (once firing, the figure must recover past target + margin, not just to the
target) and a minimum volume (one late call among seven is not a service-level incident)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final, Mapping

from streams.metrics import CONSUMER_LAG, READ_LOOP_AGE

WINDOWS: Final = ("15m", "60m")
RUN_JOB: Final = "callwatch-run"
WORKER_JOB: Final = "callwatch-worker"
JOBS: Final = (RUN_JOB, WORKER_JOB)
TARGET_JOIN: Final = "on(job, instance, site, line)"


@dataclass(frozen=True, slots=True)
class Policy:
    """Every tunable of the rules. Durations are seconds of wall-clock time; `time_scale` divides
    the `for` and `keep_firing_for` durations (a test run at --speed 60 uses 60, so five minutes
    of stream time become five seconds); thresholds on stream-time figures need no scaling."""

    time_scale: float = 1.0
    # Figure alerts, by rolling window: (for, keep_firing_for).
    figure_timing: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({"15m": (300, 600), "60m": (600, 900)}))
    sl_margin: float = 0.02
    abandon_margin: float = 0.01
    min_offered: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({"15m": 10, "60m": 20}))
    min_abandoned: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({"15m": 3, "60m": 5}))
    longest_wait_timing: tuple[int, int] = (30, 300)
    waiting_timing: tuple[int, int] = (120, 300)
    # Stale data: no event on a line for stale_after_s of stream time, while the line's arrivals in
    # the rest of its rolling 15-minute window say stale_expected_calls or more would have arrived.
    stale_after_s: int = 300
    stale_expected_calls: int = 5
    stale_timing: tuple[int, int] = (60, 120)
    down_timing: tuple[int, int] = (60, 0)
    publish_stale_s: int = 30
    publish_timing: tuple[int, int] = (60, 0)
    lag_limit_s: int = 60
    lag_timing: tuple[int, int] = (300, 300)
    # A worker's loop reading the events topic goes round ten times a second; a rebalance can hold
    # it for seconds, never minutes.
    read_loop_limit_s: int = 120
    read_loop_timing: tuple[int, int] = (60, 0)
    # A worker behind by this many messages of one partition for 10 minutes is not keeping up (a
    # busy centre sends a few events a second: 10,000 is most of an hour behind).
    consumer_lag_limit: int = 10_000
    consumer_lag_timing: tuple[int, int] = (600, 300)
    reject_share: float = 0.01
    reject_min: int = 10
    reject_timing: tuple[int, int] = (300, 900)
    late_timing: tuple[int, int] = (0, 900)

    def scaled(self, seconds: int) -> int:
        return 0 if seconds == 0 else max(1, round(seconds / self.time_scale))


PRODUCTION: Final = Policy()


def accelerated(speed: float) -> Policy:
    """The production policy for a pipeline running `speed` times faster than real time."""
    return replace(PRODUCTION, time_scale=speed)


@dataclass(frozen=True, slots=True)
class Record:
    record: str
    expr: str


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    uid: str  # stable id of the Grafana-managed copy
    expr: str  # the Prometheus rule, with its hysteresis latch on ALERTS where it has one
    grafana_expr: str  # the same condition without the latch (Grafana cannot see its own state)
    for_s: int
    keep_firing_for_s: int
    labels: Mapping[str, str]
    summary: str
    description: str
    value_format: str = ""  # template filter for the value: humanizePercentage, humanizeDuration

    def annotations(self, value: str) -> dict[str, str]:
        shown = f"{{{{ {value} | {self.value_format} }}}}" if self.value_format else f"{{{{ {value} }}}}"
        return {"summary": self.summary, "description": self.description.replace("VALUE", shown)}


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    rules: tuple[Record | Alert, ...]


STALE_EXPECTED: Final = "site_line:callwatch_window_calls_arrived:expected_in_silence_15m"
REJECT_SHARE: Final = "source:callwatch_events_rejected:ratio_rate15m"
RECEIVED_RATE: Final = "source:callwatch_events_received:rate1m"


def _latched(name: str, condition: str, latch: str, extra_on: str = "") -> str:
    on = f"on(job, instance, site, line{extra_on})"
    return (f"(\n{_indent(condition)}\n)\nor\n(\n{_indent(latch)}\n  and {on}\n"
            f"  ALERTS{{alertname=\"{name}\", alertstate=\"firing\"}}\n)")


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _figure(window: str) -> str:
    return f'{{queue="*", window="{window}"}}'


def service_level(policy: Policy, window: str) -> Alert:
    name = "CallwatchServiceLevelBelowTarget"
    sl = f"callwatch_service_level_ratio{_figure(window)}"
    condition = (f"{sl}\n  < {TARGET_JOIN} group_left()\ncallwatch_service_level_target_ratio\n"
                 f"and {TARGET_JOIN}\n"
                 f"callwatch_window_calls_offered{_figure(window)} >= {policy.min_offered[window]}")
    latch = f"{sl}\n  < {TARGET_JOIN} group_left()\n(callwatch_service_level_target_ratio + {policy.sl_margin:g})"
    for_s, keep_s = policy.figure_timing[window]
    return Alert(
        name=name, uid=f"callwatch-sl-below-{window}", expr=_latched(name, condition, latch, ", window"),
        grafana_expr=condition, for_s=policy.scaled(for_s), keep_firing_for_s=policy.scaled(keep_s),
        labels={"severity": "page", "team": "control-room", "window": window},
        summary="{{ $labels.line }} service level below target ({{ $labels.window }} rolling, site {{ $labels.site }})",
        description=(f"Service level of line {{{{ $labels.line }}}} over the last {window} is VALUE, under the "
                     f"line's target (callwatch_service_level_target_ratio), with at least "
                     f"{policy.min_offered[window]} calls in the window. It resolves once back above target "
                     f"+ {policy.sl_margin * 100:g} points."),
        value_format="humanizePercentage")


def abandonment(policy: Policy, window: str) -> Alert:
    name = "CallwatchAbandonmentAboveTarget"
    ratio = f"callwatch_abandonment_ratio{_figure(window)}"
    condition = (f"{ratio}\n  > {TARGET_JOIN} group_left()\ncallwatch_abandonment_target_ratio\n"
                 f"and {TARGET_JOIN}\n"
                 f"callwatch_window_calls_abandoned{_figure(window)} >= {policy.min_abandoned[window]}")
    latch = f"{ratio}\n  > {TARGET_JOIN} group_left()\n(callwatch_abandonment_target_ratio - {policy.abandon_margin:g})"
    for_s, keep_s = policy.figure_timing[window]
    return Alert(
        name=name, uid=f"callwatch-abandon-above-{window}", expr=_latched(name, condition, latch, ", window"),
        grafana_expr=condition, for_s=policy.scaled(for_s), keep_firing_for_s=policy.scaled(keep_s),
        labels={"severity": "page", "team": "control-room", "window": window},
        summary="{{ $labels.line }} abandonment above target ({{ $labels.window }} rolling, site {{ $labels.site }})",
        description=(f"Abandonment (abandoned / offered) of line {{{{ $labels.line }}}} over the last {window} is "
                     f"VALUE, over the line's target (callwatch_abandonment_target_ratio), with at least "
                     f"{policy.min_abandoned[window]} callers abandoning. It resolves once back under target "
                     f"- {policy.abandon_margin * 100:g} point."),
        value_format="humanizePercentage")


def longest_wait(policy: Policy) -> Alert:
    expr = ('callwatch_longest_wait_seconds{queue="*"}\n'
            f"  > {TARGET_JOIN} group_left()\ncallwatch_longest_wait_limit_seconds")
    for_s, keep_s = policy.longest_wait_timing
    return Alert(
        name="CallwatchLongestWaitOverLimit", uid="callwatch-longest-wait", expr=expr, grafana_expr=expr,
        for_s=policy.scaled(for_s), keep_firing_for_s=policy.scaled(keep_s),
        labels={"severity": "page", "team": "control-room"},
        summary="{{ $labels.line }} caller waiting longer than the limit (site {{ $labels.site }})",
        description=("The longest-waiting caller on line {{ $labels.line }} has waited VALUE, over the line's "
                     "limit (callwatch_longest_wait_limit_seconds)."),
        value_format="humanizeDuration")


def calls_waiting(policy: Policy) -> Alert:
    expr = ('callwatch_calls_waiting{queue="*"}\n'
            f"  > {TARGET_JOIN} group_left()\ncallwatch_calls_waiting_limit")
    for_s, keep_s = policy.waiting_timing
    return Alert(
        name="CallwatchCallsWaitingOverLimit", uid="callwatch-calls-waiting", expr=expr, grafana_expr=expr,
        for_s=policy.scaled(for_s), keep_firing_for_s=policy.scaled(keep_s),
        labels={"severity": "warning", "team": "control-room"},
        summary="{{ $labels.line }} calls waiting over the limit (site {{ $labels.site }})",
        description=("VALUE calls are waiting on line {{ $labels.line }}, over the line's limit "
                     "(callwatch_calls_waiting_limit)."))


def data_stale(policy: Policy) -> Alert:
    name = "CallwatchDataStale"
    age = 'callwatch_data_age_seconds{queue="*"}'
    condition = (f"{age} > {policy.stale_after_s}\n"
                 "and on(job, instance, site, line)\n"
                 f"{STALE_EXPECTED} >= {policy.stale_expected_calls}")
    latch = f"{age} > {policy.stale_after_s}"
    for_s, keep_s = policy.stale_timing
    return Alert(
        name=name, uid="callwatch-data-stale", expr=_latched(name, condition, latch), grafana_expr=condition,
        for_s=policy.scaled(for_s), keep_firing_for_s=policy.scaled(keep_s),
        labels={"severity": "page", "team": "platform"},
        summary="No events from line {{ $labels.line }} while it should be busy (site {{ $labels.site }})",
        description=(f"No event for line {{{{ $labels.line }}}} for VALUE of stream time, while the calls that "
                     f"arrived just before say at least {policy.stale_expected_calls} would have arrived "
                     "meanwhile. The line's figures are stale: its figure alerts are inhibited until events "
                     "flow again."),
        value_format="humanizeDuration")


def _platform_alert(policy: Policy, name: str, uid: str, expr: str, timing: tuple[int, int], severity: str,
                    summary: str, description: str, value_format: str = "") -> Alert:
    """A pipeline alert for the platform team: one condition, the same for Prometheus and Grafana."""
    for_s, keep_s = timing
    return Alert(
        name=name, uid=uid, expr=expr, grafana_expr=expr,
        for_s=policy.scaled(for_s), keep_firing_for_s=policy.scaled(keep_s),
        labels={"severity": severity, "team": "platform"},
        summary=summary, description=description, value_format=value_format)


def pipeline_down(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchPipelineDown", "callwatch-pipeline-down", f'up{{job=~"{"|".join(JOBS)}"}} == 0',
        policy.down_timing, "page",
        summary="callwatch {{ $labels.job }} at {{ $labels.instance }} is down",
        description="Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}: no figures reach the "
                    "wallboards from it.")


def figures_not_published(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchFiguresNotPublished", "callwatch-not-published",
        f"time() - callwatch_last_publish_timestamp_seconds > {policy.publish_stale_s}", policy.publish_timing, "page",
        summary="callwatch {{ $labels.instance }} has stopped computing figures",
        description="{{ $labels.job }} at {{ $labels.instance }} answers scrapes but last computed its figures "
                    "VALUE ago: the wallboards are frozen.",
        value_format="humanizeDuration")


def processing_lag(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchProcessingLagging", "callwatch-processing-lag",
        (f"callwatch_processing_lag_seconds > {policy.lag_limit_s}\n"
         "and on(job, instance)\n"
         "sum by (job, instance) (rate(callwatch_events_received_total[5m])) > 0"),
        policy.lag_timing, "ticket",
        summary="callwatch {{ $labels.instance }} is processing events late",
        description=(f"Events are arriving, but the newest one processed is VALUE behind the clock (limit "
                     f"{policy.lag_limit_s} s): the pipeline is not keeping up with its input (consumer lag)."),
        value_format="humanizeDuration")


def worker_not_reading(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchWorkerNotReading", "callwatch-worker-not-reading",
        f"{READ_LOOP_AGE.name} > {policy.read_loop_limit_s}", policy.read_loop_timing, "page",
        summary="callwatch worker {{ $labels.instance }} has stopped reading events",
        description=("The worker's loop reading the events topic last went round VALUE ago (limit "
                     f"{policy.read_loop_limit_s} s): it reads no events, though it still publishes, so the "
                     "figures freeze where they are. Its log names where the loop waits; restart it."),
        value_format="humanizeDuration")


def consumer_lag(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchWorkerConsumerLag", "callwatch-worker-consumer-lag",
        f"{CONSUMER_LAG.name} > {policy.consumer_lag_limit}", policy.consumer_lag_timing, "ticket",
        summary="callwatch worker {{ $labels.instance }} is behind on {{ $labels.topic }} partition {{ $labels.partition }}",
        description=(f"VALUE messages of {{{{ $labels.topic }}}} partition {{{{ $labels.partition }}}} are not read "
                     f"yet (limit {policy.consumer_lag_limit}) and have not been for 10 minutes: the worker holding "
                     "it is not keeping up. One partition carries whole sites: a busy site needs a worker to itself."),
        value_format='printf "%.0f"')


def dead_letters(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchDeadLettersRising", "callwatch-dead-letters",
        (f"{REJECT_SHARE} > {policy.reject_share:g}\n"
         "and on(job, instance, source)\n"
         f"sum by (job, instance, source) (increase(callwatch_events_rejected_total[15m])) >= {policy.reject_min}"),
        policy.reject_timing, "ticket",
        summary="Events from {{ $labels.source }} are being rejected (dead-lettered)",
        description=(f"VALUE of the events read from source {{{{ $labels.source }}}} over 15 minutes were invalid "
                     f"and dead-lettered (at least {policy.reject_min}); a connector or its source format has "
                     "probably changed."),
        value_format="humanizePercentage")


def late_events(policy: Policy) -> Alert:
    return _platform_alert(
        policy, "CallwatchEventsLate", "callwatch-events-late",
        "sum by (job, instance) (increase(callwatch_events_late_total[15m])) > 0", policy.late_timing, "ticket",
        summary="callwatch {{ $labels.instance }} received events later than the allowed lateness",
        description=("About VALUE events in 15 minutes arrived later than allowed_lateness_s: they were counted, "
                     "not applied, so the live figures differ from a replay of the same events."),
        value_format='printf "%.0f"')


def recordings() -> tuple[Record, ...]:
    return (
        # Calls the line would have had during its current silence (data age a) at the rate of the
        # rest of the rolling 15-minute window: arrivals x a / (900 s - a). Recent, so the tail of a
        # surge does not make an ordinary gap look like an outage; 0 once the window is empty.
        Record(STALE_EXPECTED,
               'max without (queue, window) (\n'
               '  callwatch_window_calls_arrived{queue="*", window="15m"}\n'
               '    * on(job, instance, site, line, queue) group_left()\n'
               '  (\n'
               '    callwatch_data_age_seconds{queue="*"}\n'
               '    / clamp_min(900 - callwatch_data_age_seconds{queue="*"}, 60)\n'
               '  )\n)'),
        Record(RECEIVED_RATE, "sum by (job, instance, source) (rate(callwatch_events_received_total[1m]))"),
        Record(REJECT_SHARE,
               "sum by (job, instance, source) (rate(callwatch_events_rejected_total[15m]))\n"
               "/\nsum by (job, instance, source) (rate(callwatch_events_received_total[15m]))"),
    )


def groups(policy: Policy = PRODUCTION) -> tuple[Group, ...]:
    """Rule groups in evaluation order: a recording rule comes before the alerts that use it."""
    stale_expected, received_rate, reject_share = recordings()
    return (
        Group("callwatch-figures", (
            *(service_level(policy, w) for w in WINDOWS),
            *(abandonment(policy, w) for w in WINDOWS),
            longest_wait(policy),
            calls_waiting(policy),
        )),
        Group("callwatch-data", (stale_expected, data_stale(policy))),
        Group("callwatch-pipeline", (
            received_rate, reject_share,
            pipeline_down(policy), figures_not_published(policy), processing_lag(policy),
            worker_not_reading(policy), consumer_lag(policy), dead_letters(policy), late_events(policy),
        )),
    )


def alerts(policy: Policy = PRODUCTION) -> tuple[Alert, ...]:
    return tuple(rule for group in groups(policy) for rule in group.rules if isinstance(rule, Alert))


def recorded_names() -> frozenset[str]:
    return frozenset(r.record for r in recordings())
