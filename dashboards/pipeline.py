"""The engineers' pipeline view: is every callwatch process up and publishing, how many events flow,
how many are rejected (dead-lettered), late, duplicated, conflicting or unmatched, and how far
behind the clock and the sources the figures are."""

from __future__ import annotations

from .alerts import JOBS, PRODUCTION, RECEIVED_RATE, REJECT_SHARE
from .grafana import Cell, Json, dashboard, datasource_variable, layout, query_variable, row, stat, steps, target, timeseries

UID = "callwatch-pipeline"
SEL = 'job=~"$job", instance=~"$instance"'


def health() -> list[Cell]:
    return [
        Cell(stat("Targets up · now",
                  "Whether Prometheus can scrape each callwatch process (up): the embedded pipeline (callwatch-run) "
                  "and each worker (callwatch-worker). Down for 1 min pages the platform on-call.",
                  [target(f'up{{job=~"{"|".join(JOBS)}", {SEL}}}', "{{job}} {{instance}}")],
                  text_mode="value_and_name", graph_mode="none", thresholds=steps("red", (1, "green")),
                  mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0},
                                                          "1": {"text": "UP", "color": "green", "index": 1}}}]),
             6, 5),
        Cell(stat("Figures last computed · seconds ago",
                  "Clock time since each process last computed its figures (callwatch_last_publish_timestamp_seconds; "
                  f"normally every second). Frozen figures page after {PRODUCTION.publish_stale_s} s for 1 min.",
                  [target(f"time() - callwatch_last_publish_timestamp_seconds{{{SEL}}}", "{{instance}}")],
                  unit="s", decimals=1, text_mode="value_and_name", graph_mode="none",
                  thresholds=steps("green", (5, "orange"), (PRODUCTION.publish_stale_s, "red"))), 6, 5),
        Cell(stat("Processing lag · now",
                  "Clock time minus the event time of the newest event processed (callwatch_processing_lag_seconds): "
                  "how far behind its input the pipeline is (consumer lag in time). It also grows when a source is "
                  f"silent, so it alerts only while events keep arriving (limit {PRODUCTION.lag_limit_s} s).",
                  [target(f"callwatch_processing_lag_seconds{{{SEL}}}", "{{instance}}")],
                  unit="s", decimals=1, text_mode="value_and_name",
                  thresholds=steps("green", (10, "orange"), (PRODUCTION.lag_limit_s, "red"))), 6, 5),
        Cell(stat("Dead-letter share · 15 min",
                  "Share of the events read from each source in the last 15 minutes that were invalid and "
                  f"dead-lettered ({REJECT_SHARE}). Over {PRODUCTION.reject_share:.0%} (and at least "
                  f"{PRODUCTION.reject_min} events) for 5 min opens a ticket.",
                  [target(f"{REJECT_SHARE}{{{SEL}}}", "{{source}}")],
                  unit="percentunit", decimals=2, text_mode="value_and_name",
                  thresholds=steps("green", (PRODUCTION.reject_share, "red")), no_value="no events"), 6, 5),
    ]


def throughput() -> list[Cell]:
    return [
        Cell(timeseries("Events read · per second, by source",
                        f"Events read from each source, valid or not ({RECEIVED_RATE}: rate over 1 min).",
                        [target(f"{RECEIVED_RATE}{{{SEL}}}", "{{source}} · {{instance}}")], unit="ops"), 12, 8),
        Cell(timeseries("Events accepted · per second",
                        "Valid events accepted for processing (rate of callwatch_events_accepted_total).",
                        [target(f"rate(callwatch_events_accepted_total{{{SEL}}}[$__rate_interval])", "{{instance}}")],
                        unit="ops"), 12, 8),
    ]


def rejects() -> list[Cell]:
    per_minute = "60 * rate({}{{{}}}[$__rate_interval])"
    return [
        Cell(timeseries("Rejected (dead-lettered) · per minute, by source",
                        "Events that failed validation: counted, reported with their reason and sent to the dead-letter "
                        "topic (rate of callwatch_events_rejected_total).",
                        [target(per_minute.format("callwatch_events_rejected_total", SEL), "{{source}} · {{instance}}")],
                        unit="none", decimals=1), 12, 8),
        Cell(timeseries("Late, duplicate, conflicting, unmatched · per minute",
                        "Late: later than the allowed lateness, counted and not applied (live figures then differ from "
                        "a replay). Duplicate: an event_id already seen. Conflicting: a second outcome for a call leg. "
                        "Unmatched: an event for a call never offered.",
                        [target(per_minute.format("callwatch_events_late_total", SEL), "late · {{instance}}"),
                         target(per_minute.format("callwatch_events_duplicate_total", SEL), "duplicate · {{instance}}", "B"),
                         target(per_minute.format("callwatch_event_conflicts_total", SEL), "conflicting · {{instance}}", "C"),
                         target(per_minute.format("callwatch_events_unmatched_total", SEL), "unmatched · {{instance}}", "D")],
                        unit="none", decimals=1), 12, 8),
    ]


def lag() -> list[Cell]:
    stale = PRODUCTION.stale_after_s
    return [
        Cell(timeseries("Processing lag · seconds",
                        "Clock time minus the newest event's time (callwatch_processing_lag_seconds), with the alert "
                        "limit.",
                        [target(f"callwatch_processing_lag_seconds{{{SEL}}}", "{{instance}}")], unit="s",
                        thresholds=steps("transparent", (PRODUCTION.lag_limit_s, "red")), threshold_line=True), 8, 8),
        Cell(timeseries("Data age by line · stream seconds since last event",
                        "Stream time since each line's last event (callwatch_data_age_seconds, line totals). A busy "
                        f"line silent for {stale // 60} min raises the stale-data alert.",
                        [target(f'callwatch_data_age_seconds{{{SEL}, queue="*"}}', "{{site}} {{line}}")], unit="s",
                        thresholds=steps("transparent", (stale, "red")), threshold_line=True), 8, 8),
        Cell(timeseries("Events held for ordering",
                        "Events buffered to be applied in event-time order within the allowed lateness "
                        "(callwatch_events_pending).",
                        [target(f"callwatch_events_pending{{{SEL}}}", "{{instance}}")], unit="none", decimals=0), 8, 8),
    ]


def build() -> Json:
    panels = layout([
        row("Health"), health(),
        row("Throughput"), throughput(),
        row("Rejected and irregular events"), rejects(),
        row("Lag and freshness"), lag(),
    ])
    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(callwatch_events_accepted_total, job)", multi=True, include_all=True),
        query_variable("instance", "Instance", 'label_values(callwatch_events_accepted_total{job=~"$job"}, instance)',
                       multi=True, include_all=True),
    ]
    return dashboard(
        UID, "callwatch · Pipeline",
        "Health of the callwatch pipeline for engineers: targets up, throughput, rejected (dead-lettered), late and "
        "irregular events, processing lag and data age. See docs/engineer.md.",
        panels, variables, refresh="10s", time_from="now-1h")
