"""Pictures of the dashboards for the docs, without Grafana: each dashboard's grid drawn as HTML
from its JSON (rows repeated per line as Grafana repeats them), optionally filled with the values
its queries return on a live Prometheus, and screenshotted by headless Chromium.

    python -m dashboards.layout --out docs/images [--prometheus http://127.0.0.1:9090]"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from .build import dashboards
from .grafana import Json
from .queries import substitute

COLUMN_PX = 64
ROW_PX = 34
GAP = 6
COLOURS = {"green": "#299c46", "red": "#d44a3a", "orange": "#eb7b18", "blue": "#3274d9", "text": "#d8d9da",
           "transparent": "transparent", "yellow": "#e0b400"}
Series = list[tuple[dict[str, str], list[tuple[float, float]]]]
Fetch = Callable[[str, "float | None"], Series]  # (PromQL, step in seconds or None) -> series
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def prometheus_fetch(url: str, range_s: float, step_s: float) -> Fetch:
    def fetch(expr: str, step: float | None = None) -> Series:
        end = time.time()
        step_s_here = step or step_s
        query = urllib.parse.urlencode({"query": expr, "start": end - range_s, "end": end, "step": step_s_here})
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=10) as response:
            answer = json.load(response)
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in answer["data"]["result"]]
    return fetch


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt in ("", "__auto"):
        return labels.get("__name__", "")
    return str(re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt))


def _format(value: float | None, unit: str, decimals: int | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f} %"
    if unit == "s":
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 120:
            return f"{int(value // 60)} min {int(value % 60)} s"
        return f"{value:.{0 if decimals is None else decimals}f} s"
    if unit == "ops":
        return f"{value:.2f}/s"
    return f"{value:.{0 if decimals is None else decimals}f}"


def _colour(panel: Json, value: float | None, dynamic: float | None) -> str:
    steps = list(panel["fieldConfig"]["defaults"]["thresholds"]["steps"])
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "configFromData" and dynamic is not None:
            colour = transformation["options"]["mappings"][0]["handlerArguments"]["threshold"]["color"]
            steps.append({"color": colour, "value": dynamic})
    chosen = steps[0]["color"]
    for step in sorted(steps[1:], key=lambda s: s["value"]):
        if value is not None and value >= step["value"]:
            chosen = step["color"]
    return COLOURS.get(chosen, chosen)


def _renames(panel: Json, name: str) -> str:
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "renameByRegex":
            pattern = transformation["options"]["regex"]
            replacement = transformation["options"]["renamePattern"].replace("$1", r"\1")
            name = re.sub(pattern, replacement, name)
    return name


def _step(panel: Json, speed: float) -> float | None:
    """A panel's minimum interval (15m, 1h) in the seconds of a run `speed` times faster than real time."""
    interval = panel.get("interval", "")
    return int(interval[:-1]) * UNITS_S[interval[-1]] / speed if interval else None


def _expr(target: Json, values: dict[str, str], speed: float) -> str:
    """The query as the picture runs it. In a run `speed` times faster than real time, a range that
    stands for stream time (increase() over a quarter hour, an hour) is that much shorter."""
    expr = re.sub(r"\[(\d+)([smhd])\]", lambda m: f"[{max(1, round(int(m.group(1)) * UNITS_S[m.group(2)] / speed))}s]",
                  target["expr"])
    return substitute(expr, values)


def _panel_data(panel: Json, values: dict[str, str], fetch: Fetch | None,
                speed: float) -> tuple[Series, list[str], float | None]:
    """Series of the panel's displayed queries, their names, and the threshold from its config query."""
    if fetch is None:
        return [], [], None
    config_refs = {t["options"]["configRefId"] for t in panel.get("transformations", []) if t["id"] == "configFromData"}
    shown: Series = []
    names: list[str] = []
    dynamic = None
    for target in panel["targets"]:
        try:
            result = fetch(_expr(target, values, speed), _step(panel, speed))
        except (OSError, KeyError, ValueError):
            result = []
        if target["refId"] in config_refs:
            if result and result[0][1]:
                dynamic = result[0][1][-1][1]
            continue
        for labels, points in result:
            shown.append((labels, points))
            names.append(_renames(panel, _legend(target.get("legendFormat", ""), labels)))
    return shown, names, dynamic


def _stat(panel: Json, data: Series, names: list[str], dynamic: float | None, width: float) -> str:
    defaults = panel["fieldConfig"]["defaults"]
    if not data:
        return f'<div class="stat"><div class="value dim">{html.escape(defaults.get("noValue", "–"))}</div></div>'
    size = min(44, width / max(1, len(data)) / 4.2)
    parts = []
    colour_mode = panel["options"]["colorMode"]
    for (labels, points), name in zip(data, names):
        value = points[-1][1] if points else None
        colour = _colour(panel, value, dynamic)
        style = f"background:{colour}" if colour_mode == "background" else ""
        text = _format(value, defaults["unit"], defaults.get("decimals"))
        label = f'<div class="name">{html.escape(name)}</div>' if panel["options"]["textMode"] == "value_and_name" else ""
        parts.append(f'<div class="stat" style="{style}"><div class="value" style="font-size:{size:.0f}px">'
                     f'{html.escape(text)}</div>{label}</div>')
    direction = "column" if panel["options"].get("orientation") == "vertical" else "row"
    return f'<div class="stats" style="flex-direction:{direction}">{"".join(parts)}</div>'


def _bargauge(panel: Json, data: Series, names: list[str], dynamic: float | None) -> str:
    defaults = panel["fieldConfig"]["defaults"]
    values = [points[-1][1] if points else 0.0 for _, points in data]
    top = defaults.get("max") or max(values + [dynamic or 0, 1e-9])
    bars = []
    for value, name in sorted(zip(values, names), key=lambda x: x[1]):
        colour = _colour(panel, value, dynamic)
        width = max(0.0, min(1.0, value / top)) * 100
        bars.append(f'<div class="bar"><span class="bname">{html.escape(name)}</span>'
                    f'<span class="track"><span style="width:{width:.1f}%;background:{colour}"></span></span>'
                    f'<span class="bval" style="color:{colour}">{_format(value, defaults["unit"], defaults.get("decimals"))}</span></div>')
    return "".join(bars) or '<div class="dim center">–</div>'


PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0")


def _timeseries(panel: Json, data: Series, names: list[str], width: float, height: float) -> str:
    points = [(t, v) for _, series in data for t, v in series if not math.isnan(v)]
    if not points:
        return '<div class="dim center">–</div>'
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    defaults = panel["fieldConfig"]["defaults"]
    top = defaults.get("max", max(p[1] for p in points) * 1.1 or 1)
    plot_w, plot_h = width * 0.62, height - 20
    bars = panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] == "bars"
    svg: list[str] = []
    for i, (_, series) in enumerate(data):
        colour = PALETTE[i % len(PALETTE)]
        xy = [((t - t0) / ((t1 - t0) or 1) * plot_w, plot_h - v / top * plot_h) for t, v in series if not math.isnan(v)]
        if bars and len(data) <= 4:
            slot = plot_w / max(1, len(xy)) / (len(data) + 1)
            svg.extend(f'<rect x="{x - slot * (len(data) - i):.1f}" y="{y:.1f}" width="{max(1.5, slot * 0.9):.1f}" '
                       f'height="{plot_h - y:.1f}" fill="{colour}" opacity="0.8"/>' for x, y in xy)
        else:
            svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
    legend = "".join(f'<div><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>{html.escape(n)} '
                     f'<b>{_format(s[-1][1] if s else None, defaults["unit"], defaults.get("decimals"))}</b></div>'
                     for i, ((_, s), n) in enumerate(zip(data, names)))
    return (f'<div class="ts"><svg width="{plot_w:.0f}" height="{plot_h:.0f}">{"".join(svg)}</svg>'
            f'<div class="legend">{legend}</div></div>')


def _table(panel: Json, values: dict[str, str], fetch: Fetch | None, speed: float) -> str:
    organize = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]
    headers = [h for h in organize["indexByName"]]
    rows: dict[str, dict[str, str]] = {}
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"]["overrides"]}
    for target in panel["targets"]:
        if fetch is None:
            break
        header = organize["renameByName"].get(f"Value #{target['refId']}")
        for labels, points in fetch(_expr(target, values, speed), None):
            unit = overrides.get(header, {})
            rows.setdefault(labels.get("line", ""), {"line": labels.get("line", "")})[header] = _format(
                points[-1][1] if points else None, unit.get("unit", "short"), unit.get("decimals"))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(row.get(h, '–'))}</td>" for h in headers) + "</tr>"
                   for _, row in sorted(rows.items()))
    return f'<table><tr>{head}</tr>{body}</table>'


def _expand(board: Json, lines: Sequence[str]) -> list[tuple[Json, dict[str, str]]]:
    """Panels in display order with the variables each is drawn with; a repeated row once per line."""
    out: list[tuple[Json, dict[str, str]]] = []
    panels = board["panels"]
    shift = 0
    i = 0
    while i < len(panels):
        panel = panels[i]
        if panel["type"] == "row" and panel.get("repeat") == "line":
            j = i + 1
            while j < len(panels) and panels[j]["type"] != "row":
                j += 1
            block = panels[i:j]
            height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in block) - panel["gridPos"]["y"]
            for n, line in enumerate(lines):
                for p in block:
                    moved = {**p, "gridPos": {**p["gridPos"], "y": p["gridPos"]["y"] + shift + n * height}}
                    if p["type"] == "row":
                        moved["title"] = p["title"].replace("$line", line)
                    out.append((moved, {"line": line}))
            shift += (len(lines) - 1) * height
            i = j
            continue
        out.append(({**panel, "gridPos": {**panel["gridPos"], "y": panel["gridPos"]["y"] + shift}},
                     {"line": "|".join(lines)}))
        i += 1
    return out


CSS = """
body{margin:0;background:#111217;font-family:Inter,'DejaVu Sans',Arial,sans-serif;color:#d8d9da}
.top{height:44px;padding:0 12px;display:flex;align-items:center;gap:16px;border-bottom:1px solid #2c3235}
.top h1{font-size:17px;margin:0;font-weight:500}.var{font-size:12px;background:#181b1f;border:1px solid #2c3235;padding:4px 8px;border-radius:2px}
.grid{position:relative;margin:8px}.panel{position:absolute;box-sizing:border-box;background:#181b1f;border:1px solid #2c3235;border-radius:2px;overflow:hidden}
.ptitle{font-size:12.5px;font-weight:500;padding:5px 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.body{position:absolute;top:26px;bottom:4px;left:4px;right:4px;overflow:hidden}
.row{position:absolute;font-size:15px;font-weight:500;color:#ccccdc;padding:6px 4px}
.stats{display:flex;gap:4px;height:100%}.stat{flex:1;display:flex;flex-direction:column;justify-content:center;align-items:center;border-radius:2px;min-height:0}
.value{font-size:44px;font-weight:500;color:#fff;line-height:1}.stats[style*=column] .value{font-size:20px!important}.stats[style*=column] .stat{flex-direction:row;gap:10px;justify-content:space-between;padding:0 10px}
.name{font-size:13px;margin-top:6px;color:#fff;opacity:.9}.dim{color:#8e8e8e}.center{text-align:center;margin-top:30px}
.bar{display:flex;align-items:center;gap:6px;font-size:12px;height:22px}.bname{width:34%;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.track{flex:1;height:14px;background:#22252b;position:relative}.track span{position:absolute;left:0;top:0;bottom:0}.bval{width:86px;text-align:right;font-weight:600}
.ts{display:flex;gap:8px}.legend{font-size:11px;line-height:16px;overflow:hidden}.swatch{display:inline-block;width:10px;height:4px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{border-bottom:1px solid #2c3235;padding:5px 6px;text-align:right}th:first-child,td:first-child{text-align:left}th{color:#6e9fff;font-weight:500}
"""


def render_html(board: Json, lines: Sequence[str], values: dict[str, str], fetch: Fetch | None, note: str,
                speed: float = 1.0) -> tuple[str, int]:
    cells = []
    bottom = 0
    for panel, variables in _expand(board, lines):
        pos = panel["gridPos"]
        x, y = pos["x"] * COLUMN_PX, pos["y"] * ROW_PX
        w, h = pos["w"] * COLUMN_PX - GAP, pos["h"] * ROW_PX - GAP
        bottom = max(bottom, y + h)
        if panel["type"] == "row":
            cells.append(f'<div class="row" style="left:{x}px;top:{y}px">⌄ {html.escape(panel["title"])}</div>')
            continue
        scope = {**values, **variables}
        if panel["type"] == "table":
            content = _table(panel, scope, fetch, speed)
        else:
            data, names, dynamic = _panel_data(panel, scope, fetch, speed)
            if panel["type"] == "stat":
                content = _stat(panel, data, names, dynamic, w)
            elif panel["type"] == "bargauge":
                content = _bargauge(panel, data, names, dynamic)
            else:
                content = _timeseries(panel, data, names, w, h - 30)
        title = panel["title"] + (f" (panel time: {panel['timeFrom']})" if panel.get("timeFrom") else "")
        cells.append(f'<div class="panel" style="left:{x}px;top:{y}px;width:{w}px;height:{h}px">'
                     f'<div class="ptitle">{html.escape(title)}</div><div class="body">{content}</div></div>')
    top_bar = " ".join(f'<span class="var">{html.escape(v["label"])}: '
                         f'{html.escape(values.get(v["name"], "All") if v["name"] != "line" else ", ".join(lines))}</span>'
                         for v in board["templating"]["list"])
    page = (f"<!doctype html><meta charset=utf-8><style>{CSS}</style>"
            f'<div class="top"><h1>{html.escape(board["title"])}</h1>{top_bar}'
            f'<span class="var dim">{html.escape(note)}</span></div>'
            f'<div class="grid" style="height:{bottom + 10}px">{"".join(cells)}</div>')
    return page, bottom + 70


def screenshot(page: str, height: int, out: Path, chromium: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "board.html"
        source.write_text(page, encoding="utf-8")
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp}/profile", f"--screenshot={out}",
                        f"--window-size={24 * COLUMN_PX + 16},{height}", source.as_uri()],
                       check=True, capture_output=True, timeout=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.layout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for <uid>.png")
    parser.add_argument("--prometheus", help="fill the panels with the values on this Prometheus")
    parser.add_argument("--range", type=float, default=3600, help="seconds of history for time series panels")
    parser.add_argument("--site", default="default")
    parser.add_argument("--lines", default="999,101")
    parser.add_argument("--instance", default="127.0.0.1:9108")
    parser.add_argument("--note", default="", help="text shown in the top bar")
    parser.add_argument("--speed", type=float, default=1.0, help="the run's --speed (stream seconds per second)")
    parser.add_argument("--only", help="render only this dashboard uid")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.stderr.write("dashboards.layout: no chromium on PATH (apt-get install chromium)\n")
        return 1
    fetch = prometheus_fetch(args.prometheus, args.range, max(1.0, args.range / 120)) if args.prometheus else None
    lines = args.lines.split(",")
    values = {"site": args.site, "job": "callwatch-run", "instance": args.instance, "datasource": "Prometheus",
              "__range_s": str(int(args.range)), "__rate_interval": "15s"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for uid, board in dashboards().items():
        if args.only and uid != args.only:
            continue
        page, height = render_html(board, lines, values, fetch, args.note, args.speed)
        screenshot(page, height, out / f"{uid}.png", chromium)
        print(f"wrote {out / f'{uid}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
