"""dashboards.layout draws each dashboard's grid (rows repeated per line, as Grafana repeats them)
as HTML for the docs' pictures, with or without live values."""

from __future__ import annotations

from dashboards.build import dashboards
from dashboards.layout import render_html

VALUES = {"site": "default", "job": "callwatch-run", "instance": "127.0.0.1:9108", "__range_s": "600",
          "__rate_interval": "15s", "datasource": "Prometheus"}


def test_every_panel_is_drawn_and_the_wallboard_row_repeats_per_line():
    for uid, board in dashboards().items():
        page, height = render_html(board, ["999", "101"], VALUES, None, "")
        titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
        repeats = 2 if uid == "callwatch-wallboard" else 1
        for title in titles:
            assert page.count(f">{title}<") + page.count(f">{title} (panel time") == repeats, (uid, title)
        assert height > 300
    page, _ = render_html(dashboards()["callwatch-wallboard"], ["999", "101"], VALUES, None, "")
    assert "⌄ Line 999" in page and "⌄ Line 101" in page


def test_live_values_are_formatted_and_coloured_against_the_line_target():
    queries: list[tuple[str, float | None]] = []

    def fetch(expr: str, step: float | None):
        queries.append((expr, step))
        if expr.startswith("callwatch_service_level_target_ratio"):
            return [({"line": "999"}, [(0.0, 0.9)])]
        if expr.startswith("callwatch_service_level_ratio"):
            return [({"line": "999", "formula": "answered"}, [(0.0, 0.853)])]
        return []

    page, _ = render_html(dashboards()["callwatch-wallboard"], ["999"], VALUES, fetch, "")
    assert "85.3 %" in page and "answered formula" in page
    assert "background:#d44a3a" in page  # red: under the 90 % target
    assert all('line="999"' in expr for expr, _ in queries if "$line" not in expr)
