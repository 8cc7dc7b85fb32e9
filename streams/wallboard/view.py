"""The board as JSON, version 1: what the page draws and what other tools read from
/api/v1/board (docs/wallboard.md documents every field). Built from a BoardSnapshot, the line
settings and the call-back marks; never a caller hash or number."""

from __future__ import annotations

from typing import Any, Callable, Final

from streams.domain.call_legs import LINE_TOTAL
from streams.domain.config import FlowConfig, LineConfig
from streams.domain.events import AGENT_STATES, format_ts
from streams.domain.live import BoardSnapshot, Group

from .status import Bands, StatusMemory

VERSION: Final = 1
# Figure fields of a window as the interval report names them; the line's formula and threshold
# are given once per line under "rules".
_LINE_RULE_FIELDS: Final = ("sl_threshold_s", "sl_formula")
IsDone = Callable[[str, str, str], bool]


class UnknownBoard(LookupError):
    """A site or line the board does not have; `known` lists what it has: {site: [lines]}."""

    def __init__(self, what: str, known: dict[str, list[str]]) -> None:
        super().__init__(what)
        self.what = what
        self.known = known


def sl_in_words(line: LineConfig) -> str:
    within = f"answered in under {line.sl_threshold_s:g} s"
    if line.sl_formula == "answered":
        return f"calls {within} ÷ calls answered"
    if line.sl_formula == "offered":
        return (f"calls {within} ÷ calls offered, not counting callers who hung up within "
                f"{line.short_abandon_s:g} s")
    return f"calls {within} or abandoned in under {line.sl_threshold_s:g} s ÷ calls offered"


def _line_order(line: str) -> tuple[int, str]:
    return ({"999": 0, "101": 1}.get(line, 2), line)


def board_view(snapshot: BoardSnapshot, config: FlowConfig, is_done: IsDone, memory: StatusMemory,
               stale_after_s: float, speed: float = 1.0, bands: Bands = Bands()) -> dict[str, Any]:
    groups: set[Group] = set(snapshot.queues) | set(snapshot.data_age_s)
    for by_group in snapshot.figures.values():
        groups.update(by_group)
    lines_of: dict[str, set[str]] = {}
    queues_of: dict[tuple[str, str], set[str]] = {}
    for site, line, queue in groups:
        lines_of.setdefault(site, set()).add(line)
        if queue != LINE_TOTAL:
            queues_of.setdefault((site, line), set()).add(queue)
    for site, line in snapshot.callbacks:
        lines_of.setdefault(site, set()).add(line)
    agents = _agents_by_group(snapshot)
    builder = _Builder(snapshot, config, memory, stale_after_s, bands, agents)
    sites = []
    for site in sorted(lines_of):
        lines = []
        for line in sorted(lines_of[site], key=_line_order):
            block = builder.group(site, line, LINE_TOTAL)
            block["rules"] = _rules(config.line(line))
            block["queues"] = [builder.group(site, line, queue) for queue in sorted(queues_of.get((site, line), ()))]
            block["callbacks"], block["callbacks_done"] = _callbacks(snapshot, site, line, is_done)
            lines.append(block)
        sites.append({"site": site, "agents_without_line": agents.get((site, "", ""), _no_agents()),
                      "lines": lines})
    return {"version": VERSION, "at": format_ts(snapshot.now_ms), "now_ms": snapshot.now_ms, "tz": config.tz,
            "speed": speed, "stale_after_s": stale_after_s, "windows": list(snapshot.figures), "sites": sites}


def known_lines(view: dict[str, Any]) -> dict[str, list[str]]:
    return {site["site"]: [line["line"] for line in site["lines"]] for site in view["sites"]}


def select(view: dict[str, Any], site: str | None, line: str | None = None) -> dict[str, Any]:
    """The view narrowed to one site (and one line of it); UnknownBoard if it has none such."""
    if site is None:
        return view
    for one_site in view["sites"]:
        if one_site["site"] == site:
            break
    else:
        raise UnknownBoard(f"no site {site!r}", known_lines(view))
    if line is not None:
        lines = [one for one in one_site["lines"] if one["line"] == line]
        if not lines:
            raise UnknownBoard(f"no line {line!r} at site {site!r}", known_lines(view))
        one_site = {**one_site, "lines": lines}
    return {**view, "sites": [one_site]}


class _Builder:
    def __init__(self, snapshot: BoardSnapshot, config: FlowConfig, memory: StatusMemory, stale_after_s: float,
                 bands: Bands, agents: dict[tuple[str, str, str], dict[str, int]]) -> None:
        self._snapshot = snapshot
        self._config = config
        self._memory = memory
        self._stale_after_s = stale_after_s
        self._bands = bands
        self._agents = agents

    def group(self, site: str, line: str, queue: str) -> dict[str, Any]:
        snapshot = self._snapshot
        group = (site, line, queue)
        now = snapshot.queues.get(group)
        waiting = now.waiting if now is not None else 0
        longest_wait_s = now.longest_wait_s if now is not None else 0.0
        age = snapshot.data_age_s.get(group)
        windows = {}
        for window, by_group in snapshot.figures.items():
            figures = by_group.get(group)
            if figures is not None:
                windows[window] = {k: v for k, v in figures.items() if k not in _LINE_RULE_FIELDS}
        rules = self._config.line(line)
        key = (site, line, queue)
        judge = self._memory.judge
        status: dict[str, Any] = {
            "service_level": {w: judge(key + ("service_level", w), f.get("service_level"),  # type: ignore[arg-type]
                                       self._bands.service_level(rules)) for w, f in windows.items()},
            "abandonment_rate": {w: judge(key + ("abandonment_rate", w), f.get("abandonment_rate"),  # type: ignore[arg-type]
                                          self._bands.abandonment(rules)) for w, f in windows.items()},
            "waiting": judge(key + ("waiting",), waiting, self._bands.waiting(rules)),
            "longest_wait_s": judge(key + ("longest_wait_s",), longest_wait_s, self._bands.longest_wait(rules)),
        }
        return {
            "line" if queue == LINE_TOTAL else "queue": line if queue == LINE_TOTAL else queue,
            "waiting": waiting, "longest_wait_s": round(longest_wait_s, 3),
            "data_age_s": None if age is None else round(age, 3),
            "last_event_at": None if age is None else format_ts(snapshot.now_ms - round(age * 1000)),
            "stale": age is None or age >= self._stale_after_s,
            "agents": self._agents.get((site, line, queue), _no_agents()),
            "windows": windows, "status": status,
        }


def _rules(line: LineConfig) -> dict[str, Any]:
    return {"sl_formula": line.sl_formula, "sl_threshold_s": line.sl_threshold_s,
            "short_abandon_s": line.short_abandon_s, "sl_target": line.sl_target,
            "abandon_target": line.abandon_target, "longest_wait_limit_s": line.longest_wait_limit_s,
            "waiting_limit": line.waiting_limit, "sl_in_words": sl_in_words(line)}


def _no_agents() -> dict[str, int]:
    return dict.fromkeys(AGENT_STATES, 0)


def _agents_by_group(snapshot: BoardSnapshot) -> dict[tuple[str, str, str], dict[str, int]]:
    """Agents per queue, and per line total (the sum of its queues)."""
    counts: dict[tuple[str, str, str], dict[str, int]] = {}
    for (site, line, queue, state), number in snapshot.agents.items():
        keys = [(site, line, queue)]
        if line and queue != LINE_TOTAL:
            keys.append((site, line, LINE_TOTAL))
        for key in keys:
            by_state = counts.setdefault(key, _no_agents())
            by_state[state] = by_state.get(state, 0) + number
    return counts


def _callbacks(snapshot: BoardSnapshot, site: str, line: str, is_done: IsDone) -> tuple[list[dict[str, Any]], int]:
    listed, done = [], 0
    for callback in snapshot.callbacks.get((site, line), ()):
        if is_done(site, line, callback.call_id):
            done += 1
            continue
        # Never callback.caller: the hash is for matching a caller who rang back, not for the board.
        listed.append({"call_id": callback.call_id, "queue": callback.queue,
                       "abandoned_at": format_ts(callback.abandoned_ms), "wait_s": round(callback.wait_s, 3)})
    return listed, done
