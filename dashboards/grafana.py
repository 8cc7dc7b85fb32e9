"""Small builders for Grafana dashboard JSON (schema 39, Grafana 10/11): Prometheus targets, stat,
bar gauge, time series and table panels, rows, template variables and a grid layout. Panels take
their data source from the dashboard's `datasource` variable, so a dashboard works with any
Prometheus data source it is imported into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

Json = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False,
           interval: str = "") -> Json:
    out: Json = {"datasource": DATASOURCE, "editorMode": "code", "expr": expr,
                 "legendFormat": legend or "__auto", "range": not instant, "instant": instant, "refId": ref}
    if table:
        out["format"] = "table"
    if interval:
        out["interval"] = interval
    return out


def steps(base: str, *rest: tuple[float, str]) -> Json:
    """Absolute thresholds: `base` colour below the first value, then each (value, colour)."""
    return {"mode": "absolute",
            "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in rest]}


def threshold_from(ref: str, field: str, color: str) -> Json:
    """Take the panel's threshold from query `ref` (a per-line target or limit the exporter
    publishes), so one panel colours each line against its own target."""
    return {"id": "configFromData", "options": {
        "configRefId": ref, "applyTo": {"id": "byType", "options": "number"},
        "mappings": [{"fieldName": field, "handlerKey": "threshold1", "reducerId": "lastNotNull",
                      "handlerArguments": {"threshold": {"color": color}}}]}}


def _field_config(unit: str, thresholds: Json | None, decimals: int | None, minimum: float | None,
                  maximum: float | None, no_value: str | None, mappings: Sequence[Json] = (),
                  color_mode: str = "thresholds", custom: Json | None = None) -> Json:
    defaults: Json = {"unit": unit, "color": {"mode": color_mode}, "mappings": list(mappings),
                      "thresholds": thresholds or steps("green")}
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if no_value is not None:
        defaults["noValue"] = no_value
    if custom is not None:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": []}


def _panel(kind: str, title: str, description: str, targets: Sequence[Json], field_config: Json,
           options: Json, transformations: Sequence[Json] = ()) -> Json:
    panel: Json = {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
                   "targets": list(targets), "fieldConfig": field_config, "options": options}
    if transformations:
        panel["transformations"] = list(transformations)
    return panel


def stat(title: str, description: str, targets: Sequence[Json], *, unit: str = "short",
         thresholds: Json | None = None, decimals: int | None = None, text_mode: str = "value",
         color_mode: str = "background", graph_mode: str = "area", transformations: Sequence[Json] = (),
         no_value: str | None = None, mappings: Sequence[Json] = (), orientation: str = "auto",
         minimum: float | None = None, maximum: float | None = None, fixed_color: str | None = None) -> Json:
    field_config = _field_config(unit, thresholds, decimals, minimum, maximum, no_value, mappings)
    if fixed_color:
        field_config["defaults"]["color"] = {"mode": "fixed", "fixedColor": fixed_color}
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "colorMode": color_mode, "graphMode": graph_mode, "justifyMode": "center",
               "textMode": text_mode, "orientation": orientation, "wideLayout": True,
               "showPercentChange": False}
    return _panel("stat", title, description, targets, field_config, options, transformations)


def bargauge(title: str, description: str, targets: Sequence[Json], *, unit: str = "short",
             thresholds: Json | None = None, decimals: int | None = None, transformations: Sequence[Json] = (),
             minimum: float | None = None, maximum: float | None = None, no_value: str | None = None) -> Json:
    field_config = _field_config(unit, thresholds, decimals, minimum, maximum, no_value)
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "displayMode": "basic", "orientation": "horizontal", "showUnfilled": True,
               "valueMode": "color", "namePlacement": "left", "sizing": "auto", "minVizHeight": 16,
               "maxVizHeight": 300, "minVizWidth": 8}
    return _panel("bargauge", title, description, targets, field_config, options, transformations)


def timeseries(title: str, description: str, targets: Sequence[Json], *, unit: str = "short",
               bars: bool = False, stacking: str = "none", thresholds: Json | None = None,
               threshold_line: bool = False, decimals: int | None = None, minimum: float | None = None,
               maximum: float | None = None, interval: str = "", overrides: Sequence[Json] = (),
               time_from: str = "", transformations: Sequence[Json] = ()) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line", "lineWidth": 1 if bars else 2,
        "fillOpacity": 70 if bars else 10, "gradientMode": "none", "showPoints": "never",
        "lineInterpolation": "stepAfter" if bars else "linear", "spanNulls": False,
        "stacking": {"group": "A", "mode": stacking}, "axisPlacement": "auto", "axisSoftMin": 0,
        "thresholdsStyle": {"mode": "line+area" if threshold_line else "off"},
        "barAlignment": -1,  # a bar is drawn ending at its timestamp: the window it closes
    }
    field_config = _field_config(unit, thresholds, decimals, minimum, maximum, None,
                                 color_mode="palette-classic", custom=custom)
    field_config["overrides"] = list(overrides)
    options = {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                          "calcs": ["lastNotNull", "min", "max"]},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    panel = _panel("timeseries", title, description, targets, field_config, options, transformations)
    if interval:
        panel["interval"] = interval
    if time_from:
        panel["timeFrom"] = time_from
    return panel


def table(title: str, description: str, targets: Sequence[Json], columns: Sequence[tuple[str, str, str, int | None]],
          *, index: Sequence[str] = ("line",)) -> Json:
    """A table of instant queries merged on their labels. `columns`: (refId, header, unit, decimals)."""
    renames = {f"Value #{ref}": header for ref, header, _, _ in columns}
    order = {name: i for i, name in enumerate([*index, *renames.values()])}
    keep = set(index) | set(renames)
    field_config = _field_config("short", None, None, None, None, "–")
    field_config["defaults"]["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}}
    field_config["overrides"] = [
        {"matcher": {"id": "byName", "options": header},
         "properties": [{"id": "unit", "value": unit}] + ([{"id": "decimals", "value": decimals}]
                                                          if decimals is not None else [])}
        for _, header, unit, decimals in columns]
    transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {
            "excludeByName": {},
            "includeByName": {name: True for name in sorted(keep)},
            "indexByName": order, "renameByName": renames}},
    ]
    options = {"showHeader": True, "cellHeight": "md", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return _panel("table", title, description, targets, field_config, options, transformations)


def row(title: str, repeat: str = "") -> Json:
    out: Json = {"type": "row", "title": title, "collapsed": False, "panels": []}
    if repeat:
        out["repeat"] = repeat
    return out


def datasource_variable() -> Json:
    return {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
            "regex": "", "skipUrlSync": False}


def query_variable(name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False) -> Json:
    return {"type": "query", "name": name, "label": label, "datasource": DATASOURCE,
            "definition": query, "query": {"qryType": 1, "query": query, "refId": f"{name}-variable"},
            "current": {}, "hide": 0, "includeAll": include_all, "multi": multi, "options": [],
            "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 3 if name == "line" else 1}


def site_and_line_variables() -> list[Json]:
    """The variables of the dashboards shown per line: the data source, one site, its lines."""
    return [
        datasource_variable(),
        query_variable("site", "Site", "label_values(callwatch_service_level_target_ratio, site)"),
        query_variable("line", "Line", 'label_values(callwatch_service_level_target_ratio{site="$site"}, line)',
                       multi=True, include_all=True),
    ]


@dataclass(frozen=True)
class Cell:
    panel: Json
    width: int
    height: int


def layout(blocks: Iterable[Json | Sequence[Cell]]) -> list[Json]:
    """Rows of the grid, top to bottom: a row panel (full width) or a strip of cells placed left to
    right. Panel ids are assigned in order, so they are stable from one build to the next."""
    panels: list[Json] = []
    y = 0
    for block in blocks:
        if isinstance(block, dict):
            panels.append({**block, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
            y += 1
            continue
        x = 0
        height = max(cell.height for cell in block)
        for cell in block:
            if x + cell.width > 24:
                raise ValueError(f"strip wider than 24 columns at {cell.panel['title']!r}")
            panels.append({**cell.panel, "gridPos": {"h": cell.height, "w": cell.width, "x": x, "y": y}})
            x += cell.width
        y += height
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[Json], variables: Sequence[Json], *,
              refresh: str, time_from: str, tags: Sequence[str] = ("callwatch",)) -> Json:
    return {
        "uid": uid, "title": title, "description": description, "tags": list(tags),
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "refresh": refresh, "time": {"from": time_from, "to": "now"}, "timepicker": {},
        "timezone": "browser", "weekStart": "monday", "fiscalYearStartMonth": 0, "liveNow": False,
        "id": None,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "links": [{"type": "dashboards", "tags": ["callwatch"], "asDropdown": False, "includeVars": True,
                   "keepTime": False, "title": "callwatch", "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": list(variables)},
        "panels": panels,
    }
