"""Every generated artefact, built from code: the three dashboards' JSON, the Prometheus rule file,
the Grafana provisioning files and the metric list (docs/metrics.md). `artefacts()` maps each repository path to its bytes;
`write` puts them in place and `outdated` lists those whose committed copy differs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import grafana_alerts, metrics_doc, pipeline, trends, wallboard
from .alerts import PRODUCTION, Policy
from .grafana import Json
from .prometheus_rules import rule_file
from .render import to_json

DASHBOARDS: dict[str, Callable[[], Json]] = {
    wallboard.UID: wallboard.build,
    trends.UID: trends.build,
    pipeline.UID: pipeline.build,
}
DASHBOARD_DIR = "dashboards/json"
RULES_PATH = "deploy/prometheus/rules/callwatch.yml"
GRAFANA_DIR = "deploy/grafana/provisioning"


def dashboards() -> dict[str, Json]:
    return {uid: build() for uid, build in DASHBOARDS.items()}


def artefacts(policy: Policy = PRODUCTION) -> dict[str, str]:
    files = {f"{DASHBOARD_DIR}/{uid}.json": to_json(board) for uid, board in dashboards().items()}
    files[RULES_PATH] = rule_file(policy)
    files[f"{GRAFANA_DIR}/alerting/callwatch-alert-rules.yml"] = grafana_alerts.rules_file(policy)
    files[f"{GRAFANA_DIR}/datasources/callwatch.yml"] = grafana_alerts.datasource_file()
    files[f"{GRAFANA_DIR}/dashboards/callwatch.yml"] = grafana_alerts.dashboards_provider_file()
    files[metrics_doc.PATH] = metrics_doc.document()
    return files


def repository_root() -> Path | None:
    """The checkout this package lives in, when it is one (an editable install)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "deploy").is_dir() and (root / "dashboards").is_dir() else None


def write(root: Path) -> list[str]:
    """Writes every artefact under `root`; returns the paths whose content changed."""
    changed = []
    for relative, text in artefacts().items():
        path = root / relative
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(relative)
    return changed


def outdated(root: Path) -> list[str]:
    """Paths under `root` whose content is not what a rebuild gives (missing counts as outdated)."""
    return [relative for relative, text in artefacts().items()
            if not (root / relative).is_file() or (root / relative).read_text(encoding="utf-8") != text]
