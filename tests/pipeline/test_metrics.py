"""Metric names follow Prometheus conventions, are declared once, and undefined ratios are absent;
the counters and the answer-time histogram are what the board's totals say."""

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.domain import CallFlow, FlowConfig, parse_event, parse_ts
from streams.metrics import ALL_METRICS, RENAMED, FigureCollector, PipelineStatus, exported_names


def test_names_follow_prometheus_conventions():
    names = [m.name for m in ALL_METRICS]
    assert len(names) == len(set(names)), "a metric is declared twice"
    for metric in ALL_METRICS:
        assert metric.name.startswith("callwatch_")
        assert not metric.name.endswith("_total"), "counters get _total when exported"
        assert metric.kind in ("gauge", "counter", "histogram")
        assert not {"call_id", "caller", "agent", "event_id"} & set(metric.labels), "never label by call or caller"
        # Reserved by Prometheus: quantile for summaries, le for histogram buckets.
        assert not {"quantile", "le"} & set(metric.labels), metric.name
        if metric.kind == "histogram":
            assert metric.name.endswith("_seconds")
        if "ratio" in metric.name:
            assert metric.name.endswith("_ratio")
        if "seconds" in metric.name:
            assert metric.name.endswith("_seconds")


def _event(kind, ts, call, queue="q", **extra):
    return parse_event({"v": 1, "event_id": f"{call}-{kind}-{queue}", "call_id": call, "type": kind,
                        "ts": ts, "line": "999", "queue": queue, **extra})


def _scrape(events, now_ts, published_at_s=None):
    flow = CallFlow(FlowConfig(allowed_lateness_s=0), live=True)
    for event in sorted(events, key=lambda event: event.occurred_ms):
        assert flow.ingest(event) == "accepted"
    now = parse_ts(now_ts)
    flow.advance(now)
    registry = CollectorRegistry()
    collector = FigureCollector(flow.config, registry=registry)
    collector.publish(flow.snapshot(now), PipelineStatus({"test": len(events)}, {"test": 0}, len(events), 0, 0, 0, 0,
                                                         0, now / 1000, 0.0,
                                                         now / 1000 if published_at_s is None else published_at_s))
    return generate_latest(registry).decode()


def _samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_scrape_renders_declared_names_only_and_omits_undefined_ratios():
    text = _scrape([_event("offered", "2024-03-01T09:00:00Z", "c1"), _event("offered", "2024-03-01T09:00:01Z", "c2"),
                    _event("abandoned", "2024-03-01T09:00:30Z", "c2")], "2024-03-01T09:01:00Z")
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert series <= exported_names()
    assert {'callwatch_calls_abandoned_total', 'callwatch_answer_time_seconds_count'} <= series
    # 999 uses the 'answered' formula: with nothing answered its service level is undefined -> absent.
    assert 'callwatch_service_level_ratio{' not in text
    assert 'callwatch_abandonment_ratio{line="999",queue="q",site="default",window="15m"} 1.0' in text
    assert 'callwatch_calls_waiting{line="999",queue="q",site="default"} 1.0' in text
    assert 'callwatch_longest_wait_seconds{line="999",queue="q",site="default"} 60.0' in text
    assert "NaN" not in text


CALLS = [_event("offered", "2024-03-01T09:00:00Z", "c1"), _event("answered", "2024-03-01T09:00:10Z", "c1", agent="a"),
         _event("offered", "2024-03-01T09:00:01Z", "c2"), _event("transferred", "2024-03-01T09:00:04Z", "c2"),
         _event("offered", "2024-03-01T09:00:04Z", "c2", queue="r"),
         _event("answered", "2024-03-01T09:01:05Z", "c2", queue="r", agent="b"),
         _event("offered", "2024-03-01T09:02:00Z", "c3"), _event("abandoned", "2024-03-01T09:02:03Z", "c3")]
LINE = (("line", "999"), ("queue", "*"), ("site", "default"))


def test_counters_and_the_answer_time_histogram_count_since_the_start():
    samples = _samples(_scrape(CALLS, "2024-03-01T11:00:00Z"))  # after every rolling window
    count = lambda name, labels=LINE: samples[(name, labels)]  # noqa: E731
    assert count("callwatch_window_calls_answered", tuple(sorted(LINE + (("window", "60m"),)))) == 0
    # Line totals count calls: c2's transfer is one call waiting 64 s from its first offer.
    assert count("callwatch_calls_arrived_total") == 3 and count("callwatch_calls_offered_total") == 3
    assert (count("callwatch_calls_answered_total"), count("callwatch_calls_abandoned_total"),
            count("callwatch_calls_short_abandoned_total"), count("callwatch_calls_transferred_total")) == (2, 1, 1, 0)
    assert count("callwatch_calls_transferred_total", (("line", "999"), ("queue", "q"), ("site", "default"))) == 1
    assert count("callwatch_calls_answered_within_sl_total") == 0  # 10 s is not under 999's 10 s
    assert count("callwatch_calls_answered_band_total", tuple(sorted(LINE + (("band", "10_60"),)))) == 1
    assert count("callwatch_calls_answered_band_total", tuple(sorted(LINE + (("band", "ge60"),)))) == 1
    bucket = lambda le: count("callwatch_answer_time_seconds_bucket", tuple(sorted(LINE + (("le", le),))))  # noqa: E731
    assert (bucket("5.0"), bucket("10.0"), bucket("30.0"), bucket("60.0"), bucket("90.0"), bucket("+Inf")) == (0, 1, 1, 1, 2, 2)
    assert count("callwatch_answer_time_seconds_count") == 2 and count("callwatch_answer_time_seconds_sum") == 74.0


def test_no_gauge_carries_a_quantile_and_unix_times_are_named_timestamp_seconds():
    samples = _samples(_scrape(CALLS, "2024-03-01T09:03:00Z", published_at_s=time.time()))
    assert not [key for key in samples if dict(key[1]).keys() & {"quantile"}]
    assert samples[("callwatch_answer_time_max_seconds", tuple(sorted(LINE + (("window", "15m"),))))] == 64.0
    assert samples[("callwatch_answer_time_p50_seconds", tuple(sorted(LINE + (("window", "15m"),))))] == 10.0
    # Every value that is a Unix time (later than 2001) is in a series named so.
    unix_times = {name for (name, _), value in samples.items() if value > 1e9}
    assert unix_times == {"callwatch_newest_event_timestamp_seconds", "callwatch_last_publish_timestamp_seconds"}
    assert samples[("callwatch_newest_event_timestamp_seconds", ())] == parse_ts("2024-03-01T09:03:00Z") / 1000


def test_renamed_metrics_are_no_longer_exported():
    names = exported_names()
    for old, new in RENAMED.items():
        assert old not in names or old == "callwatch_answer_time_seconds", old  # now the histogram's base name
        assert new in names, new
