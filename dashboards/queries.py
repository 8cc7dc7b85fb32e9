"""Reading PromQL back out of what was built: every query of every panel, template variable and
rule, the metric names they use, and their Grafana variables replaced by concrete values so they
can be run on a real Prometheus (Grafana itself cannot run here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Mapping

from .alerts import PRODUCTION, Alert, Policy, Record, groups
from .grafana import Json

# A metric name: not inside a string, not a function or keyword (followed by "(" or listed).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_NOT_METRICS = frozenset({
    "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "by", "without", "bool", "offset",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "Inf", "NaN", "inf", "nan",
})
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?")


@dataclass(frozen=True, slots=True)
class Query:
    where: str  # "dashboard uid / panel title / refId", or "rule NAME"
    expr: str


def panel_queries(board: Json) -> Iterator[Query]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield Query(f"{board['uid']} / {panel['title']} / {target['refId']}", target["expr"])


def variable_queries(board: Json) -> Iterator[tuple[str, str]]:
    """(variable name, label_values(...) definition) of each query variable."""
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["name"], variable["query"]["query"]


def rule_queries(policy: Policy = PRODUCTION, *, grafana: bool = False) -> Iterator[Query]:
    for group in groups(policy):
        for rule in group.rules:
            if isinstance(rule, Record):
                yield Query(f"record {rule.record}", rule.expr)
            elif isinstance(rule, Alert):
                yield Query(f"alert {rule.name} {rule.labels.get('window', '')}".rstrip(),
                            rule.grafana_expr if grafana else rule.expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label values and function names excluded)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _NAME.finditer(text):
        name = match.group(1)
        rest = text[match.end():].lstrip()
        if name in _NOT_METRICS or rest.startswith("("):
            continue
        names.add(name)
    return names


def selectors(expr: str) -> list[str]:
    """Each `metric{matchers}` selector of an expression, as text that can be queried on its own."""
    found = []
    masked = _STRING.sub(lambda m: "\0" * len(m.group(0)), expr)
    for match in _SELECTOR.finditer(masked):
        name = match.group(1)
        if name in metric_names(expr) and not masked[match.end():].lstrip().startswith("("):
            found.append(expr[match.start():match.end()])
    return found


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Grafana's variables replaced: $name and ${name} (and ${__range_s}, $__rate_interval ...)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
