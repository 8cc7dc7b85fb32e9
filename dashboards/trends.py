"""The manager's trends: the day in 15-minute intervals, today so far, police.uk answer-time bands
and month-to-date figures of the kind police.uk publishes, per line. Counts over a range of time
(an interval, an hour, the month so far) are increase() of the pipeline's counters; figures a
counter cannot give exactly (service level by the line's formula, nearest-rank percentiles) are
the rolling windows' gauges read at the end of each interval."""

from __future__ import annotations

from .grafana import Cell, Json, bargauge, dashboard, layout, row, site_and_line_variables, stat, steps, table, target, timeseries

UID = "callwatch-trends"
LINES = 'site="$site", line=~"$line"'
LINE_TOTALS = f'{LINES}, queue="*"'

INTERVAL_NOTE = (
    "Each bar is the rolling 15-minute figure read at the end of its quarter hour, which is the interval "
    "report's 15-minute window to within one scrape (2 s). The exact record is the interval report itself "
    "(callwatch run --report, or callwatch replay of the recorded events).")
COUNTER_NOTE = (
    "Counts are increase() of the pipeline's counters over each quarter hour (callwatch_calls_*_total, counted "
    "since the pipeline started; a restart is a counter reset, which increase() allows for).")


def _increase(counter: str, selector: str, over: str) -> str:
    return f"sum by (line) (increase({counter}{{{selector}}}[{over}]))"

BAND_NAMES = (("lt10", "under 10 s"), ("10_60", "10 to 60 s"), ("ge60", "60 s or longer"))


def _band_renames() -> list[Json]:
    return [{"id": "renameByRegex", "options": {"regex": f"^(.*) {band}$", "renamePattern": f"$1 {name}"}}
            for band, name in BAND_NAMES]


def _target_dashes() -> Json:
    return {"matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [{"id": "custom.drawStyle", "value": "line"},
                           {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "custom.fillOpacity", "value": 0},
                           {"id": "custom.lineWidth", "value": 2},
                           {"id": "custom.lineInterpolation", "value": "stepAfter"}]}


def intervals() -> list[Cell]:
    q15 = f'{LINES}, queue="*", window="15m"'
    return [
        Cell(timeseries(
            "Service level by 15-min interval",
            "Service level of each line by its formula (answered: within ÷ answered; offered: within ÷ (offered − "
            f"short abandons)), per quarter hour, with the line's target dashed. {INTERVAL_NOTE}",
            [target(f"callwatch_service_level_ratio{{{q15}}}", "{{line}}", interval="15m"),
             target(f"callwatch_service_level_target_ratio{{{LINES}}}", "{{line}} target", "B", interval="15m")],
            unit="percentunit", bars=True, minimum=0, maximum=1, interval="15m",
            overrides=[_target_dashes()]), 12, 9),
        Cell(timeseries(
            "Abandonment by 15-min interval",
            f"Abandoned ÷ offered per quarter hour, with the line's target dashed. {INTERVAL_NOTE}",
            [target(f"callwatch_abandonment_ratio{{{q15}}}", "{{line}}", interval="15m"),
             target(f"callwatch_abandonment_target_ratio{{{LINES}}}", "{{line}} target", "B", interval="15m")],
            unit="percentunit", bars=True, minimum=0, interval="15m", overrides=[_target_dashes()]), 12, 9),
        Cell(timeseries(
            "Calls offered and abandoned by 15-min interval",
            "Calls reaching an outcome in each quarter hour (offered = answered + abandoned + timed out; line "
            f"totals count calls, not legs) and those abandoned. {COUNTER_NOTE}",
            [target(_increase("callwatch_calls_offered_total", LINE_TOTALS, "15m"), "{{line}} offered",
                    interval="15m"),
             target(_increase("callwatch_calls_abandoned_total", LINE_TOTALS, "15m"), "{{line}} abandoned", "B",
                    interval="15m")],
            unit="none", bars=True, decimals=0, interval="15m"), 12, 9),
        Cell(timeseries(
            "Answer time by 15-min interval (mean, 90th percentile)",
            "Mean speed of answer and the 90th percentile (nearest rank) of answer times of the calls answered in "
            f"each quarter hour. {INTERVAL_NOTE}",
            [target(f"callwatch_answer_time_mean_seconds{{{q15}}}", "{{line}} mean", interval="15m"),
             target(f"callwatch_answer_time_p90_seconds{{{q15}}}", "{{line}} 90th percentile", "B",
                    interval="15m")],
            unit="s", bars=True, interval="15m"), 12, 9),
    ]


def today() -> list[Cell]:
    q = f'{LINES}, queue="*", window="today"'
    columns = (("A", "offered", "none", 0), ("B", "answered", "none", 0), ("C", "abandoned", "none", 0),
               ("D", "service level", "percentunit", 1), ("E", "abandonment", "percentunit", 1),
               ("F", "mean answer", "s", 1), ("G", "90th pct answer", "s", 1), ("H", "longest answer", "s", 0))
    exprs = (f"callwatch_window_calls_offered{{{q}}}", f"callwatch_window_calls_answered{{{q}}}",
             f"callwatch_window_calls_abandoned{{{q}}}", f"callwatch_service_level_ratio{{{q}}}",
             f"callwatch_abandonment_ratio{{{q}}}", f"callwatch_answer_time_mean_seconds{{{q}}}",
             f"callwatch_answer_time_p90_seconds{{{q}}}", f"callwatch_answer_time_max_seconds{{{q}}}")
    return [
        Cell(table(
            "Today by line · since local midnight",
            "Figures of each line since local midnight (window \"today\"; days start at midnight in the configured "
            "time zone, Europe/London by default): calls offered, answered and abandoned, service level by the "
            "line's formula, abandonment (abandoned ÷ offered), mean, 90th-percentile and longest answer time.",
            [target(expr, "", ref, instant=True, table=True) for (ref, *_), expr in zip(columns, exprs)],
            columns), 14, 7),
        Cell(bargauge(
            "police.uk answer-time bands · today",
            "Share of today's answered calls answered in under 10 s, 10 to under 60 s, and 60 s or longer: the "
            "bands police.uk publishes per force and month (callwatch_window_calls_answered_band ÷ "
            "callwatch_window_calls_answered, window \"today\").",
            [target(f"callwatch_window_calls_answered_band{{{q}}}\n  / ignoring(band) group_left()\n"
                    f"callwatch_window_calls_answered{{{q}}}", "{{line}} {{band}}")],
            unit="percentunit", decimals=1, minimum=0, maximum=1,
            thresholds=steps("blue"), transformations=_band_renames()), 10, 7),
    ]


def hourly_bands() -> list[Cell]:
    return [Cell(timeseries(
        "police.uk answer-time bands by hour",
        "Answered calls of each hour by police.uk band (under 10 s, 10 to 60 s, 60 s or longer): increase() over "
        "each hour of callwatch_calls_answered_band_total.",
        [target(f"sum by (line, band) (increase(callwatch_calls_answered_band_total{{{LINE_TOTALS}}}[1h]))",
                "{{line}} {{band}}", interval="1h")],
        unit="none", bars=True, stacking="normal", decimals=0, interval="1h",
        transformations=_band_renames()), 24, 8)]


def month_to_date() -> list[Cell]:
    month = "${__range_s}s"  # the panels' time range is the month so far (timeFrom now/M)
    note = ("Month to date (this calendar month so far): increase() of the pipeline's counters since the month "
            "began, exact but for calls within a scrape of its start. The exact monthly return is "
            "`callwatch replay` of the month's events with --window 1d.")

    def count(counter: str, selector: str = LINE_TOTALS) -> str:
        return _increase(counter, selector, month)

    def band(name: str) -> str:
        return count("callwatch_calls_answered_band_total", f'{LINE_TOTALS}, band="{name}"')

    def share(title: str, numerator: str, denominator: str, what: str, colour: Json) -> Cell:
        return Cell(stat(title, f"{what} {note}", [target(f"{numerator}\n/\n{denominator}", "{{line}}", instant=True)],
                         unit="percentunit", decimals=1, text_mode="value_and_name", graph_mode="none",
                         thresholds=colour, minimum=0, maximum=1), 4, 6)

    answered = count("callwatch_calls_answered_total")
    cells = [
        Cell(stat("Calls offered · month to date",
                  f"Calls reaching an outcome this month (increase of callwatch_calls_offered_total). {note}",
                  [target(count("callwatch_calls_offered_total"), "{{line}}", instant=True)],
                  unit="none", decimals=0, text_mode="value_and_name", graph_mode="none", color_mode="none"), 4, 6),
        share("Answered under 10 s · month to date", band("lt10"), answered,
              "Share of answered calls answered in under 10 s (police.uk's first band; the 999 standard is 90 %).",
              steps("red", (0.9, "green"))),
        share("Answered in 10–60 s · month to date", band("10_60"), answered,
              "Share of answered calls answered in 10 to under 60 s.", steps("blue")),
        share("Answered in 60 s or more · month to date", band("ge60"), answered,
              "Share of answered calls answered after 60 s or longer.", steps("blue")),
        share("Abandoned · month to date", count("callwatch_calls_abandoned_total"),
              count("callwatch_calls_offered_total"), "Abandoned ÷ offered this month.", steps("green", (0.05, "red"))),
        Cell(stat("Mean and median answer time · month to date",
                  "Mean time to answer of the calls answered this month (the answer-time histogram's sum ÷ count), "
                  "and the median as police.uk publishes it, estimated from the histogram's buckets (interpolated "
                  "within the bucket it falls in: 5 to 10 s, 10 to 15 s ...; `callwatch replay` of the recorded "
                  f"events gives exact nearest-rank medians). {note}",
                  [target(f"{count('callwatch_answer_time_seconds_sum')}\n/\n"
                          f"{count('callwatch_answer_time_seconds_count')}", "{{line}} mean", instant=True),
                   target("histogram_quantile(0.5, sum by (line, le) "
                          f"(increase(callwatch_answer_time_seconds_bucket{{{LINE_TOTALS}}}[{month}])))",
                          "{{line}} median", "B", instant=True)],
                  unit="s", decimals=1, text_mode="value_and_name", graph_mode="none", color_mode="none"), 4, 6),
    ]
    for cell in cells:
        cell.panel["timeFrom"] = "now/M"
        cell.panel["hideTimeOverride"] = False
    return cells


def build() -> Json:
    interval_cells = intervals()
    panels = layout([
        row("15-minute intervals"), interval_cells[:2], interval_cells[2:],
        row("Today"), today(),
        row("police.uk bands"), hourly_bands(),
        row("Month to date"), month_to_date(),
    ])
    variables = site_and_line_variables()
    return dashboard(
        UID, "callwatch · Manager's trends",
        "Service level, abandonment and answer times per 15-minute interval, today, police.uk answer-time bands "
        "and month-to-date figures per line. See docs/manager.md.",
        panels, variables, refresh="1m", time_from="now-24h")
