"""The control-room wallboard: per line, big numbers readable across a room. Service level and
abandonment over the rolling 15 and 60 minutes, calls waiting, the longest wait and agents now,
each coloured against the line's own target or limit, with the window (and for service level the
line's formula) named on the panel, and the data age so a frozen board is visible."""

from __future__ import annotations

from .alerts import PRODUCTION
from .grafana import Cell, Json, bargauge, dashboard, layout, row, site_and_line_variables, stat, steps, target, threshold_from

UID = "callwatch-wallboard"
LINE = 'site="$site", line="$line"'

SL_FORMULAS = (
    "Service level by the line's formula (callwatch_service_level_ratio), shown under the number:\n"
    "- answered (999 default): answered within the threshold ÷ answered;\n"
    "- offered (101 default): answered within the threshold ÷ (offered − short abandons);\n"
    "- positive: (answered within + abandoned within the threshold) ÷ offered.\n"
    "\"Within\" is strictly under the line's threshold (callwatch_service_level_threshold_seconds: "
    "10 s for 999, 30 s for 101 by default). Counted by outcome time; line totals count calls, "
    "not legs. Green at or above the line's target (callwatch_service_level_target_ratio), red "
    "under it. No value: no call was answered in the window.")


def _with_formula(window: str) -> str:
    # The formula is a label of the threshold metric; joining it on shows it under the number.
    return (f'callwatch_service_level_ratio{{{LINE}, queue="*", window="{window}"}}\n'
            "  * on(job, instance, site, line) group_left(formula)\n"
            f"(callwatch_service_level_threshold_seconds{{{LINE}}} > bool 0)")


def service_level(window: str, minutes: int) -> Json:
    return stat(
        f"Service level · rolling {minutes} min", f"Over the last {minutes} minutes, as of now. {SL_FORMULAS}",
        [target(_with_formula(window), "{{formula}} formula"),
         target(f"callwatch_service_level_target_ratio{{{LINE}}}", "target", "B")],
        unit="percentunit", decimals=1, text_mode="value_and_name", thresholds=steps("red"),
        transformations=[threshold_from("B", "target", "green")], no_value="no calls answered",
        minimum=0, maximum=1)


def abandonment(window: str, minutes: int) -> Json:
    return stat(
        f"Abandoned · rolling {minutes} min",
        f"Abandoned ÷ offered over the last {minutes} minutes (callwatch_abandonment_ratio): callers who hung up "
        "before an answer, of all calls that reached an outcome (answered, abandoned, timed out). Red over the "
        "line's target (callwatch_abandonment_target_ratio, 5 % by default). No value: no call reached an "
        "outcome in the window.",
        [target(f'callwatch_abandonment_ratio{{{LINE}, queue="*", window="{window}"}}', "abandoned ÷ offered"),
         target(f"callwatch_abandonment_target_ratio{{{LINE}}}", "target", "B")],
        unit="percentunit", decimals=1, text_mode="value_and_name", thresholds=steps("green"),
        transformations=[threshold_from("B", "target", "red")], no_value="no calls", minimum=0, maximum=1)


def calls_waiting() -> Json:
    return stat(
        "Calls waiting · now",
        "Calls offered to the line and not yet answered, abandoned or otherwise closed "
        "(callwatch_calls_waiting, line total). Red at the line's limit (callwatch_calls_waiting_limit).",
        [target(f'callwatch_calls_waiting{{{LINE}, queue="*"}}', "waiting"),
         target(f"callwatch_calls_waiting_limit{{{LINE}}}", "limit", "B")],
        unit="none", decimals=0, thresholds=steps("green"), transformations=[threshold_from("B", "limit", "red")])


def longest_wait() -> Json:
    return stat(
        "Longest wait · now",
        "How long the caller who has waited longest on the line has been waiting (callwatch_longest_wait_seconds, "
        "0 when nobody waits). Red at the line's limit (callwatch_longest_wait_limit_seconds: 30 s for 999, "
        "10 min for 101 by default).",
        [target(f'callwatch_longest_wait_seconds{{{LINE}, queue="*"}}', "longest wait"),
         target(f"callwatch_longest_wait_limit_seconds{{{LINE}}}", "limit", "B")],
        unit="s", decimals=0, thresholds=steps("green"), transformations=[threshold_from("B", "limit", "red")])


def agents() -> Json:
    return stat(
        "Agents · now",
        "Call handlers of the line by their last reported state (callwatch_agents): available, busy on a call, "
        "in wrap-up, away. Logged-out handlers are not shown.",
        [target(f'sum by (state) (callwatch_agents{{{LINE}, state!="logged_out"}})', "{{state}}")],
        unit="none", decimals=0, text_mode="value_and_name", color_mode="none", graph_mode="none",
        orientation="vertical", no_value="no agents reported")


def threshold() -> Json:
    return stat(
        "Answered within · SL threshold",
        "The line's service-level threshold (callwatch_service_level_threshold_seconds): a call counts as "
        "answered within the service level when answered in strictly less than this. The formula in use is "
        "named under it.",
        [target(f"callwatch_service_level_threshold_seconds{{{LINE}}}", "{{formula}} formula", instant=True)],
        unit="s", decimals=0, text_mode="value_and_name", color_mode="none", graph_mode="none",
        fixed_color="text")


def data_age() -> Json:
    stale = PRODUCTION.stale_after_s
    return stat(
        "Data age · since last event",
        "Stream time since the line's last event (callwatch_data_age_seconds). A busy line normally shows "
        f"seconds; amber from 1 min, red from {stale // 60} min (when a busy line also raises the stale-data "
        "alert): the figures on this row may then be stale.",
        [target(f'callwatch_data_age_seconds{{{LINE}, queue="*"}}', "data age")],
        unit="s", decimals=0, thresholds=steps("green", (60, "orange"), (stale, "red")), graph_mode="none")


def by_queue_waiting() -> Json:
    return bargauge(
        "Waiting by queue · now",
        "Calls waiting in each queue of the line (callwatch_calls_waiting). Red at the line's calls-waiting limit.",
        [target(f'callwatch_calls_waiting{{{LINE}, queue!="*"}}', "{{queue}}"),
         target(f"callwatch_calls_waiting_limit{{{LINE}}}", "limit", "B")],
        unit="none", decimals=0, thresholds=steps("green"), transformations=[threshold_from("B", "limit", "red")],
        minimum=0)


def by_queue_longest_wait() -> Json:
    return bargauge(
        "Longest wait by queue · now",
        "The longest current wait in each queue of the line (callwatch_longest_wait_seconds). Red at the line's "
        "longest-wait limit.",
        [target(f'callwatch_longest_wait_seconds{{{LINE}, queue!="*"}}', "{{queue}}"),
         target(f"callwatch_longest_wait_limit_seconds{{{LINE}}}", "limit", "B")],
        unit="s", decimals=0, thresholds=steps("green"), transformations=[threshold_from("B", "limit", "red")],
        minimum=0)


def by_queue_service_level() -> Json:
    return bargauge(
        "Service level by queue · rolling 15 min",
        "Service level of each queue of the line over the last 15 minutes, by the line's formula (legs, not "
        "calls: a transferred call counts in each queue it waited in). Red under the line's target.",
        [target(f'callwatch_service_level_ratio{{{LINE}, queue!="*", window="15m"}}', "{{queue}}"),
         target(f"callwatch_service_level_target_ratio{{{LINE}}}", "target", "B")],
        unit="percentunit", decimals=0, thresholds=steps("red"),
        transformations=[threshold_from("B", "target", "green")], minimum=0, maximum=1,
        no_value="no calls answered")


def build() -> Json:
    panels = layout([
        row("Line $line", repeat="line"),
        [Cell(service_level("15m", 15), 5, 8), Cell(service_level("60m", 60), 4, 8),
         Cell(abandonment("15m", 15), 4, 8), Cell(calls_waiting(), 3, 8), Cell(longest_wait(), 4, 8),
         Cell(agents(), 4, 8)],
        [Cell(threshold(), 4, 5), Cell(data_age(), 4, 5), Cell(by_queue_waiting(), 5, 5),
         Cell(by_queue_longest_wait(), 5, 5), Cell(by_queue_service_level(), 6, 5)],
    ])
    variables = site_and_line_variables()
    return dashboard(
        UID, "callwatch · Control-room wallboard",
        "Live figures per line for the control room: service level and abandonment over the rolling 15 and 60 "
        "minutes, calls waiting, longest wait and agents now, against each line's own targets. See "
        "docs/supervisor.md.",
        panels, variables, refresh="5s", time_from="now-30m")
