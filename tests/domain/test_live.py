"""The live board: rolling windows evaluated at the time passed in, decaying without traffic."""

from streams.domain import CallFlow, FlowConfig, parse_event, parse_ts

GROUP = ("default", "101", "*")


def _event(kind, ts, call, queue="101-general", **extra):
    return parse_event({"v": 1, "event_id": f"{call}-{kind}-{ts}", "call_id": call, "type": kind,
                        "ts": ts, "line": "101", "queue": queue, **extra})


def _board(events, now):
    flow = CallFlow(FlowConfig(allowed_lateness_s=0), live=True)
    for event in events:
        flow.ingest(event)
    flow.advance(parse_ts(now))
    return flow


def test_rolling_figures_decay_when_traffic_stops():
    flow = _board([_event("offered", "2024-03-01T09:00:00Z", "a"),
                   _event("answered", "2024-03-01T09:00:20Z", "a", agent="x"),
                   _event("offered", "2024-03-01T09:01:00Z", "b"),
                   _event("abandoned", "2024-03-01T09:02:00Z", "b")], "2024-03-01T09:03:00Z")
    at = lambda text: flow.snapshot(parse_ts(text))  # noqa: E731
    now = at("2024-03-01T09:03:00Z")
    assert now.figures["15m"][GROUP]["offered"] == 2 and now.figures["60m"][GROUP]["offered"] == 2
    assert now.figures["15m"][GROUP]["abandonment_rate"] == 0.5
    later = at("2024-03-01T09:17:30Z")  # 15 minutes after the last outcome: out of the 15m window
    assert later.figures["15m"][GROUP]["offered"] == 0
    assert later.figures["15m"][GROUP]["abandonment_rate"] is None
    assert later.figures["60m"][GROUP]["offered"] == 2
    assert later.data_age_s[GROUP] == 15 * 60 + 30
    much_later = at("2024-03-01T10:05:00Z")
    assert much_later.figures["60m"][GROUP]["offered"] == 0
    assert much_later.figures["today"][GROUP]["offered"] == 2


def test_today_restarts_at_local_midnight():
    flow = _board([_event("offered", "2024-07-01T22:30:00Z", "a"),
                   _event("answered", "2024-07-01T22:30:05Z", "a", agent="x")], "2024-07-01T22:40:00Z")
    assert flow.snapshot(parse_ts("2024-07-01T22:50:00Z")).figures["today"][GROUP]["answered"] == 1
    # 23:00 UTC is midnight in London in summer (BST): a new day, nothing answered yet.
    assert flow.snapshot(parse_ts("2024-07-01T23:00:01Z")).figures["today"][GROUP]["answered"] == 0


def test_waiting_longest_wait_and_agents():
    flow = _board([_event("offered", "2024-03-01T09:00:00Z", "a"),
                   _event("offered", "2024-03-01T09:00:30Z", "b", queue="101-crime"),
                   _event("offered", "2024-03-01T09:00:40Z", "c"),
                   _event("answered", "2024-03-01T09:00:50Z", "c", agent="x"),
                   parse_event({"v": 1, "event_id": "s1", "type": "agent_state", "ts": "2024-03-01T09:00:50Z",
                                "agent": "x", "state": "busy", "line": "101", "queue": "101-general"}),
                   parse_event({"v": 1, "event_id": "s2", "type": "agent_state", "ts": "2024-03-01T09:00:51Z",
                                "agent": "y", "state": "available"})], "2024-03-01T09:01:00Z")
    snapshot = flow.snapshot(parse_ts("2024-03-01T09:01:00Z"))
    assert snapshot.queues[("default", "101", "101-general")].waiting == 1
    assert snapshot.queues[("default", "101", "101-general")].longest_wait_s == 60
    assert snapshot.queues[GROUP].waiting == 2
    assert snapshot.queues[GROUP].longest_wait_s == 60
    assert snapshot.agents == {("default", "101", "101-general", "busy"): 1, ("default", "", "", "available"): 1}
