"""Metric names follow Prometheus conventions, are declared once, and undefined ratios are absent."""

from prometheus_client import CollectorRegistry, generate_latest

from streams.domain import CallFlow, FlowConfig, parse_event, parse_ts
from streams.metrics import ALL_METRICS, FigureCollector, PipelineStatus, exported_names


def test_names_follow_prometheus_conventions():
    names = [m.name for m in ALL_METRICS]
    assert len(names) == len(set(names)), "a metric is declared twice"
    for metric in ALL_METRICS:
        assert metric.name.startswith("callwatch_")
        assert not metric.name.endswith("_total"), "counters get _total when exported"
        assert metric.kind in ("gauge", "counter")
        assert not {"call_id", "caller", "agent", "event_id"} & set(metric.labels), "never label by call or caller"
        if "ratio" in metric.name:
            assert metric.name.endswith("_ratio")
        if "seconds" in metric.name:
            assert metric.name.endswith("_seconds")


def _event(kind, ts, call, **extra):
    return parse_event({"v": 1, "event_id": f"{call}-{kind}", "call_id": call, "type": kind,
                        "ts": ts, "line": "999", "queue": "q", **extra})


def test_scrape_renders_declared_names_only_and_omits_undefined_ratios():
    flow = CallFlow(FlowConfig(allowed_lateness_s=0), live=True)
    flow.ingest(_event("offered", "2024-03-01T09:00:00Z", "c1"))
    flow.ingest(_event("offered", "2024-03-01T09:00:01Z", "c2"))
    flow.ingest(_event("abandoned", "2024-03-01T09:00:30Z", "c2"))
    now = parse_ts("2024-03-01T09:01:00Z")
    flow.advance(now)
    registry = CollectorRegistry()
    collector = FigureCollector(flow.config, registry=registry)
    collector.publish(flow.snapshot(now), PipelineStatus({"test": 3}, {"test": 0}, 3, 0, 0, 0, 0, 0,
                                                         now / 1000, 0.0, now / 1000))
    text = generate_latest(registry).decode()
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert series <= exported_names()
    # 999 uses the 'answered' formula: with nothing answered its service level is undefined -> absent.
    assert 'callwatch_service_level_ratio{' not in text
    assert 'callwatch_abandonment_ratio{line="999",queue="q",site="default",window="15m"} 1.0' in text
    assert 'callwatch_calls_waiting{line="999",queue="q",site="default"} 1.0' in text
    assert 'callwatch_longest_wait_seconds{line="999",queue="q",site="default"} 60.0' in text
    assert "NaN" not in text
