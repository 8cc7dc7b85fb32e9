"""The wallboard page in a real headless Chromium (Debian's, driven by Playwright), against a real
board server fed by a real CallFlow whose clock the test moves. Every wait is for something on the
page; none is a sleep."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import ROUND_HALF_UP, Decimal

import pytest

from streams.wallboard.server import BoardOptions
from tests.ports import free_port

from .conftest import START_MS, FlowSource, call_event, serving

T = START_MS


def fetch_json(url: str, headers: dict[str, str] | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
        return json.loads(response.read())


def pct(value: float | None) -> str:
    # As the page's toFixed(1): half away from zero on the float's exact value.
    if value is None:
        return "—"
    return f"{Decimal(value * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


def duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d} min"
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d} h"


def busy_centre(source: FlowSource, queues_per_line: int = 2) -> int:
    """Two lines with answered, abandoned and waiting calls, agents, callers to call back; returns
    the time of the snapshot it publishes."""
    events = []
    for line, prefix in (("999", "999"), ("101", "101")):
        for q in range(queues_per_line):
            queue = f"{prefix}-q{q}"
            for i in range(7 + q):
                call = f"{line}-{q}-{i}"
                offered = T + i * 20_000 + q * 1000
                events.append(call_event("offered", call, offered, line=line, queue=queue, caller=f"h:{call}"))
                if i % 4 == 3:
                    events.append(call_event("abandoned", call, offered + 7000 + i * 500, line=line, queue=queue,
                                             caller=f"h:{call}"))
                elif i < 6:
                    events.append(call_event("answered", call, offered + 3000 + i * 2100 + q * 700, line=line,
                                             queue=queue))
            events.append(call_event("agent_state", "", T, line=line, queue=queue, agent=f"{queue}-a", state="busy"))
            events.append(call_event("agent_state", "", T, line=line, queue=queue, agent=f"{queue}-b",
                                     state="available"))
    source.feed(*sorted(events, key=lambda e: e.occurred_ms))
    now = T + 200_000
    source.publish_at(now)
    return now


def line_block(page, line: str):
    return page.locator(f'.line[data-site="default"][data-line="{line}"]')


def wait_for_update(page, after: int = 0) -> None:
    page.wait_for_function("n => Number(document.getElementById('board').dataset.seq || 0) > n", arg=after)


def test_numbers_on_the_page_equal_the_snapshot_endpoint(page):
    source = FlowSource()
    busy_centre(source)
    with serving(source) as server:
        base = f"http://127.0.0.1:{server.port}"
        page.goto(base + "/")
        wait_for_update(page)
        view = fetch_json(base + "/api/v1/board")
        lines = view["sites"][0]["lines"]
        assert [line["line"] for line in lines] == ["999", "101"]
        for line in lines:
            block = line_block(page, line["line"])
            tile = lambda key: block.locator(f'.tiles [data-k="{key}"]')  # noqa: E731
            f15 = line["windows"]["15m"]
            assert tile("sl").locator("[data-v]").inner_text() == pct(f15["service_level"])
            assert tile("ab").locator("[data-v]").inner_text() == pct(f15["abandonment_rate"])
            assert tile("waiting").locator("[data-v]").inner_text() == str(line["waiting"])
            assert tile("longest").locator("[data-v]").inner_text() == duration(line["longest_wait_s"])
            for window in ("60m", "today"):
                chip = tile(f"sl-{window}").inner_text()
                assert pct(line["windows"][window]["service_level"]) in chip
                assert tile(f"sl-{window}").get_attribute("data-status") == line["status"]["service_level"][window]
            assert tile("sl").get_attribute("data-status") == line["status"]["service_level"]["15m"]
            assert tile("waiting").get_attribute("data-status") == line["status"]["waiting"]
            agents = block.locator('.agents').inner_text()
            assert f"{line['agents']['available']} available" in agents and f"{line['agents']['busy']} busy" in agents
            assert tile("sl").locator("[data-w]").inner_text().endswith(f"({round(line['rules']['sl_target'] * 100)}\u00a0%)")
            assert tile("ab").locator("[data-w]").inner_text().endswith(f"({round(line['rules']['abandon_target'] * 100)}\u00a0%)")
            assert line["rules"]["sl_in_words"] in block.locator('[data-k="rule"]').inner_text()
            for queue in line["queues"]:
                row = block.locator(f'tr[data-queue="{queue["queue"]}"]')
                assert row.locator('[data-k="waiting"]').inner_text().endswith(f" {queue['waiting']}")
                assert row.locator('[data-k="longest"]').inner_text().endswith(duration(queue["longest_wait_s"]))
                assert row.locator('[data-k="sl"]').inner_text().endswith(pct(queue["windows"]["15m"]["service_level"]))
                assert row.locator('[data-k="ab"]').inner_text().endswith(pct(queue["windows"]["15m"]["abandonment_rate"]))
            shown = [row.get_attribute("data-call-id") for row in block.locator(".callbacks tr").all()]
            assert shown == [c["call_id"] for c in line["callbacks"]] and shown
        assert "h:" not in page.content()  # never a caller's hash, let alone a number


def test_a_new_event_is_on_the_page_within_two_seconds(page):
    source = FlowSource()
    now = busy_centre(source)
    with serving(source) as server:
        page.goto(f"http://127.0.0.1:{server.port}/")
        wait_for_update(page)
        waiting = line_block(page, "999").locator('.tiles [data-k="waiting"] [data-v]')
        before = int(waiting.inner_text())
        source.feed(call_event("offered", "new-call", now + 500, queue="999-q0"))
        source.publish_at(now + 1000)
        page.wait_for_function("([el, n]) => el.textContent === String(n)",
                               arg=[waiting.element_handle(), before + 1], timeout=2000)


def test_colours_change_at_the_line_limits_with_hysteresis_and_a_word(page):
    source = FlowSource()
    waiting_calls: list[str] = []
    clock = [T]

    def hold(count: int) -> None:
        clock[0] += 1000
        while len(waiting_calls) < count:
            call = f"w{clock[0]}-{len(waiting_calls)}"
            waiting_calls.append(call)
            source.feed(call_event("offered", call, clock[0] - 500))
        while len(waiting_calls) > count:
            source.feed(call_event("answered", waiting_calls.pop(0), clock[0] - 500))
        source.publish_at(clock[0])

    with serving(source) as server:
        hold(3)
        page.goto(f"http://127.0.0.1:{server.port}/")
        tile = line_block(page, "999").locator('.tiles [data-k="waiting"]')
        seen = []
        # 999's limit is 5 calls waiting: amber from 4, red over 5; back a whole call to look better.
        for count in (3, 4, 6, 5, 4, 3, 2):
            hold(count)
            page.wait_for_function("([el, n]) => el.querySelector('[data-v]').textContent === String(n)",
                                   arg=[tile.element_handle(), count])
            seen.append((tile.get_attribute("data-status"), tile.locator("[data-w]").inner_text()))
    assert seen == [("green", "✓ under limit"), ("amber", "▲ near limit"), ("red", "✖ over limit"),
                    ("red", "✖ over limit"), ("amber", "▲ near limit"), ("amber", "▲ near limit"),
                    ("green", "✓ under limit")]
    colours = {"green": "rgb(30, 125, 63)", "amber": "rgb(242, 183, 5)", "red": "rgb(201, 48, 44)"}
    assert tile.evaluate("el => getComputedStyle(el).backgroundColor") == colours["green"]


def test_a_stale_line_greys_out_and_says_since_when(page):
    source = FlowSource()
    source.feed(call_event("offered", "a", T), call_event("offered", "b", T + 1000, line="101", queue="101-general"))
    source.publish_at(T + 2000)
    with serving(source) as server:
        page.goto(f"http://127.0.0.1:{server.port}/")
        block = line_block(page, "999")
        block.locator('[data-k="waiting"] [data-v]').wait_for()
        assert "stale" not in block.get_attribute("class")
        source.feed(call_event("offered", "c", T + 301_000, line="101", queue="101-general"))
        source.publish_at(T + 302_000)  # 999 has been silent for 302 s: more than the stale-data alert's 300 s
        page.wait_for_function("el => el.classList.contains('stale')", arg=block.element_handle())
        banner = block.locator('[data-k="stale-banner"]')
        assert banner.is_visible()
        assert banner.inner_text() == "⚠ No data since Fri 1 Mar, 08:00:00: these figures are stale"
        assert "grayscale(1)" in block.locator(".line-body").evaluate("el => getComputedStyle(el).filter")
        assert "stale" not in line_block(page, "101").get_attribute("class")


def test_the_page_says_it_is_reconnecting_and_recovers_after_the_server_restarts(page):
    source = FlowSource()
    now = busy_centre(source)
    port = free_port()
    connection = page.locator("#connection")
    with serving(source, port=port):
        page.goto(f"http://127.0.0.1:{port}/")
        wait_for_update(page)
        assert connection.inner_text() == "● live"
    page.wait_for_function("() => document.getElementById('connection').textContent.includes('reconnecting')")
    assert "Connection to callwatch lost at" in connection.inner_text()
    assert "offline" in page.locator("#board").get_attribute("class")
    source.feed(call_event("offered", "after-restart", now + 500, queue="999-q0"))
    source.publish_at(now + 1000)
    waiting = line_block(page, "999").locator('.tiles [data-k="waiting"] [data-v]')
    with serving(source, port=port) as server:
        expected = fetch_json(f"http://127.0.0.1:{server.port}/api/v1/board")["sites"][0]["lines"][0]["waiting"]
        page.wait_for_function("([el, n]) => el.textContent === String(n)", arg=[waiting.element_handle(), expected],
                               timeout=15_000)
        page.wait_for_function("() => document.getElementById('connection').textContent === '● live'")
        assert "offline" not in (page.locator("#board").get_attribute("class") or "")


def test_the_callback_list_drops_a_caller_who_rang_back_and_was_answered_and_one_marked_done(page):
    source = FlowSource()
    source.feed(call_event("offered", "gave-up", T, caller="h:111"), call_event("abandoned", "gave-up", T + 30_000, caller="h:111"),
                call_event("offered", "other", T + 1000, caller="h:222"), call_event("abandoned", "other", T + 12_000, caller="h:222"))
    source.publish_at(T + 40_000)
    with serving(source) as server:
        base = f"http://127.0.0.1:{server.port}"
        page.goto(base + "/")
        rows = line_block(page, "999").locator(".callbacks tr")
        rows.first.wait_for()
        assert [r.get_attribute("data-call-id") for r in rows.all()] == ["gave-up", "other"]
        assert rows.first.inner_text().split("\t")[:4] == ["08:00:30", "999-police", "waited 30 s", "call gave-up"]
        # The caller rings back and is answered on the same line: nobody to call back any more.
        source.feed(call_event("offered", "rang-back", T + 60_000, caller="h:111"),
                    call_event("answered", "rang-back", T + 64_000, caller="h:111"))
        source.publish_at(T + 70_000)
        page.wait_for_function("() => !document.querySelector('tr[data-call-id=\"gave-up\"]')")
        assert [r.get_attribute("data-call-id") for r in rows.all()] == ["other"]
        # A supervisor rang the other one back: "done" takes them off, for every page and the JSON.
        rows.first.locator("button.done").click()
        page.wait_for_function("() => !document.querySelector('tr[data-call-id=\"other\"]')")
        line = fetch_json(base + "/api/v1/board/default/999")["sites"][0]["lines"][0]
        assert line["callbacks"] == [] and line["callbacks_done"] == 1
        page.reload()
        page.locator(".callbacks .nobody").wait_for()


def test_an_unknown_site_or_line_gets_a_clear_page_listing_what_exists(page):
    source = FlowSource()
    busy_centre(source)
    with serving(source) as server:
        base = f"http://127.0.0.1:{server.port}"
        response = page.goto(base + "/board/nowhere")
        assert response.status == 404
        assert page.locator("h1").inner_text() == "This wallboard has no site 'nowhere'"
        assert page.locator("a[href='/board/default/999']").inner_text() == "999"
        response = page.goto(base + "/board/default/777")
        assert response.status == 404 and "no line '777' at site 'default'" in page.locator("h1").inner_text()
        response = page.goto(base + "/no/such/page")
        assert response.status == 404 and page.locator("h1").inner_text() == "No such page on this wallboard"
        assert "Traceback" not in page.content()
        with pytest.raises(urllib.error.HTTPError) as error:
            fetch_json(base + "/api/v1/board/default/777")
        assert error.value.code == 404
        assert json.loads(error.value.read()) == {"error": "no line '777' at site 'default'",
                                                  "known": {"default": ["999", "101"]}}
        response = page.goto(base + "/board/default/101")  # one line on its own screen
        assert response.status == 200
        line_block(page, "101").wait_for()
        assert page.locator(".line").count() == 1


def test_with_a_token_the_board_needs_it_and_the_browser_keeps_it(page):
    source = FlowSource()
    busy_centre(source)
    with serving(source, BoardOptions(token="s3cret-board")) as server:
        base = f"http://127.0.0.1:{server.port}"
        response = page.goto(base + "/")
        assert response.status == 401 and "needs its access token" in page.locator("h1").inner_text()
        with pytest.raises(urllib.error.HTTPError) as error:
            fetch_json(base + "/api/v1/board")
        assert error.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            fetch_json(base + "/api/v1/board", {"Authorization": "Bearer wrong"})
        assert fetch_json(base + "/api/v1/board", {"Authorization": "Bearer s3cret-board"})["version"] == 1
        response = page.goto(base + "/?token=s3cret-board&kiosk=1")
        assert response.status == 200
        wait_for_update(page)  # the stream got through with the cookie
        page.goto(base + "/board/default/999")
        wait_for_update(page)


@pytest.mark.parametrize("width, height", [(1920, 1080), (1366, 768)])
@pytest.mark.parametrize("kiosk", [False, True])
def test_two_lines_with_four_queues_each_fit_without_scrolling(browser, width, height, kiosk):
    source = FlowSource()
    busy_centre(source, queues_per_line=4)
    with serving(source) as server:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.port}/" + ("?kiosk=1" if kiosk else ""))
        wait_for_update(page)
        assert page.locator("tr[data-queue]").count() == 8
        assert page.evaluate("document.scrollingElement.scrollHeight") <= height
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        for row in page.locator("tr[data-queue]").all():
            box = row.bounding_box()
            assert box["y"] + box["height"] <= height
        # Nothing overflows its tile (a cut-off number would be misread across a room).
        overflowing = page.evaluate("""[...document.querySelectorAll('.tile [data-v]')]
            .filter(el => el.scrollWidth > el.clientWidth + 1).length""")
        assert overflowing == 0
        assert page.locator("button.done").first.is_visible() is (not kiosk)
        context.close()


def test_the_longest_wait_ticks_every_second_between_updates(page):
    source = FlowSource(speed=1.0)
    source.feed(call_event("offered", "waiting", T))
    source.publish_at(T + 10_000)
    with serving(source) as server:
        page.goto(f"http://127.0.0.1:{server.port}/")
        value = line_block(page, "999").locator('.tiles [data-k="longest"] [data-v]')
        value.wait_for()
        assert value.inner_text() in ("10 s", "11 s")
        # No new snapshot: the page's own ticking moves it on.
        page.wait_for_function("el => parseInt(el.textContent) >= 12", arg=value.element_handle(), timeout=4000)


def test_the_service_level_turns_red_under_target_and_amber_again_only_a_point_above_it(page):
    source = FlowSource()
    clock = [T]

    def answer(in_time: int, late: int) -> None:
        for waited_s in [2] * in_time + [12] * late:
            clock[0] += 20_000
            call = f"c{clock[0]}"
            source.feed(call_event("offered", call, clock[0] - waited_s * 1000), call_event("answered", call, clock[0]))
        source.publish_at(clock[0] + 1000)

    with serving(source) as server:
        answer(10, 0)
        page.goto(f"http://127.0.0.1:{server.port}/")
        tile = line_block(page, "999").locator('.tiles [data-k="sl"]')
        seen = []
        # 999: target 90 %, amber up to 92 %; back from red needs 91 %.
        for in_time, late, shown in ((0, 0, 1.0), (0, 1, 10 / 11), (0, 1, 10 / 12), (9, 0, 19 / 21), (2, 0, 21 / 23)):
            answer(in_time, late)
            page.wait_for_function("([el, text]) => el.querySelector('[data-v]').textContent === text",
                                   arg=[tile.element_handle(), pct(shown)])
            seen.append((pct(shown), tile.get_attribute("data-status")))
    assert seen == [("100.0 %", "green"), ("90.9 %", "amber"), ("83.3 %", "red"), ("90.5 %", "red"), ("91.3 %", "amber")]
