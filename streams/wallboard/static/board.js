// callwatch wallboard: draws /api/v1/stream (server-sent events, JSON view version 1; see
// docs/wallboard.md). The server decides every colour (with hysteresis); the page only ticks the
// longest wait, the data age and the clock between updates, and reconnects by itself.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const kiosk = params.has("kiosk") && params.get("kiosk") !== "0";
  const path = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const wantSite = path[0] === "board" ? path[1] : undefined;
  const wantLine = path[0] === "board" ? path[2] : undefined;
  const board = document.getElementById("board");
  const connection = document.getElementById("connection");
  const clock = document.getElementById("clock");
  if (kiosk) document.body.classList.add("kiosk");
  document.getElementById("kiosk-link").href = location.pathname + "?kiosk=1";

  const WORDS = {
    higher: { green: "✓ on target", amber: "▲ near target", red: "✖ under target", none: "– no calls" },
    lower: { green: "✓ under target", amber: "▲ near target", red: "✖ over target", none: "– no calls" },
    limit: { green: "✓ under limit", amber: "▲ near limit", red: "✖ over limit", none: "–" },
  };
  const SYMBOL = { green: "✓", amber: "▲", red: "✖", none: "–" };
  const STATES = [["available", "available"], ["busy", "busy"], ["wrapup", "wrap-up"], ["away", "away"]];

  let view = null;          // the latest view
  let receivedAt = 0;       // performance.now() when it came
  let layoutKey = "";
  let formatters = {};

  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const windowName = (w) => (w === "today" ? "today" : w.replace(/m$/, " min").replace(/s$/, " s"));
  const pct = (v) => (v === null || v === undefined ? "—" : (v * 100).toFixed(1));
  const pctText = (v) => (v === null || v === undefined ? "—" : `${pct(v)} %`);

  function duration(s, html) {
    const whole = Math.max(0, Math.floor(s));
    const small = (u) => (html ? `<small> ${u}</small>` : ` ${u}`);
    if (whole < 60) return `${whole}${small("s")}`;
    const two = (n) => String(n).padStart(2, "0");
    if (whole < 3600) return `${Math.floor(whole / 60)}:${two(whole % 60)}${small("min")}`;
    return `${Math.floor(whole / 3600)}:${two(Math.floor(whole / 60) % 60)}:${two(whole % 60)}${small("h")}`;
  }

  function formatter(kind) {
    const tz = (view && view.tz) || undefined;
    const key = `${kind}/${tz}`;
    if (!formatters[key]) {
      const options = kind === "time" ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
        : { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" };
      formatters[key] = new Intl.DateTimeFormat("en-GB", { ...options, timeZone: tz });
    }
    return formatters[key];
  }
  const timeOf = (ms) => formatter("time").format(new Date(ms));

  function sitesShown(v) {
    return v.sites
      .filter((s) => wantSite === undefined || s.site === wantSite)
      .map((s) => ({ ...s, lines: s.lines.filter((l) => wantLine === undefined || l.line === wantLine) }));
  }

  function skeleton(v, sites) {
    const [first, ...rest] = v.windows;
    return sites.map((site) => `
      <section class="site" data-site="${esc(site.site)}">
        <h1>site <b>${esc(site.site)}</b></h1>
        <div class="lines">${site.lines.map((line) => `
          <section class="line" data-site="${esc(site.site)}" data-line="${esc(line.line)}">
            <div class="stale-banner" data-k="stale-banner" role="alert"></div>
            <div class="line-body">
              <h2 class="line-head"><span class="line-name">${esc(line.line)}</span>
                <span class="rule" data-k="rule"></span><span class="age" data-k="age"></span></h2>
              <div class="tiles">
                ${tile("sl", `Service level ${windowName(first)}`, rest, "sl")}
                ${tile("ab", `Abandoned ${windowName(first)}`, rest, "ab")}
                ${tile("waiting", "Waiting", [], "")}
                ${tile("longest", "Longest wait", [], "")}
              </div>
              <div class="agents" data-k="agents"></div>
              <table class="queues"><thead><tr><th>Queue</th><th class="num">Waiting</th>
                <th class="num">Longest wait</th><th class="num">Service level ${windowName(first)}</th>
                <th class="num">Abandoned ${windowName(first)}</th><th class="num agents-col">Agents free / busy</th></tr></thead>
                <tbody>${line.queues.map((q) => `
                  <tr data-queue="${esc(q.queue)}"><td>${esc(q.queue)}</td><td class="num" data-k="waiting"></td>
                  <td class="num" data-k="longest"></td><td class="num" data-k="sl"></td>
                  <td class="num" data-k="ab"></td><td class="num agents-col" data-k="agents"></td></tr>`).join("")}
                </tbody></table>
              <div class="callbacks"><h3><span data-k="cb-head"></span> <span class="more" data-k="cb-more"></span></h3>
                <div class="list" data-k="cb-list"></div></div>
            </div>
          </section>`).join("")}
        </div>
      </section>`).join("");
  }

  function tile(key, label, chips, prefix) {
    return `<div class="tile" data-k="${key}"><div class="label">${esc(label)}</div>
      <div class="value" data-v></div><div class="word" data-w></div>
      <div class="note" data-n></div>
      ${chips.length ? `<div class="chips">${chips.map((w) => `<span class="chip" data-k="${prefix}-${esc(w)}"></span>`).join("")}</div>` : ""}
    </div>`;
  }

  function setStatus(el, status) {
    el.classList.remove("green", "amber", "red", "none");
    el.classList.add(status);
    el.dataset.status = status;
  }

  // A big number never overflows its tile (a cut-off figure would be misread across a room): it
  // shrinks to fit, from the style sheet's size.
  function setValue(el, valueHtml) {
    if (el.dataset.html === valueHtml) return;
    el.dataset.html = valueHtml;
    el.innerHTML = valueHtml;
    el.style.fontSize = "";
    if (el.scrollWidth > el.clientWidth) {
      const size = parseFloat(getComputedStyle(el).fontSize);
      el.style.fontSize = `${Math.floor(size * (el.clientWidth / el.scrollWidth) * 0.97)}px`;
    }
  }

  function fillTile(el, valueHtml, status, words, note) {
    setValue(el.querySelector("[data-v]"), valueHtml);
    el.querySelector("[data-w]").textContent = words[status];
    const n = el.querySelector("[data-n]");
    if (n) n.textContent = note;
    setStatus(el, status);
  }

  function percentHtml(v) {
    return v === null || v === undefined ? "—" : `${pct(v)}<small> %</small>`;
  }

  function fill(v, sites) {
    const [first, ...rest] = v.windows;
    for (const site of sites) {
      for (const line of site.lines) {
        const el = board.querySelector(`.line[data-site="${CSS.escape(site.site)}"][data-line="${CSS.escape(line.line)}"]`);
        const q = (k) => el.querySelector(`[data-k="${k}"]`);
        const r = line.rules;
        q("rule").textContent = `Service level = ${r.sl_in_words}`;
        const f = line.windows[first] || {};
        const offered = f.offered || 0;
        const target = (share) => ` (${Math.round(share * 1000) / 10}\u00a0%)`;
        fillTile(q("sl"), percentHtml(f.service_level), line.status.service_level[first] || "none", WORDS.higher,
          `${offered} calls · ${f.answered_within_sl || 0} in time`);
        q("sl").querySelector("[data-w]").textContent += target(r.sl_target);
        fillTile(q("ab"), percentHtml(f.abandonment_rate), line.status.abandonment_rate[first] || "none", WORDS.lower,
          `${f.abandoned || 0} of ${offered} calls`);
        q("ab").querySelector("[data-w]").textContent += target(r.abandon_target);
        for (const w of rest) {
          const fw = line.windows[w] || {};
          const sl = q(`sl-${w}`);
          const slStatus = line.status.service_level[w] || "none";
          sl.textContent = `${windowName(w)} ${pctText(fw.service_level)} ${SYMBOL[slStatus]}`;
          setStatus(sl, slStatus);
          const ab = q(`ab-${w}`);
          const abStatus = line.status.abandonment_rate[w] || "none";
          ab.textContent = `${windowName(w)} ${pctText(fw.abandonment_rate)} ${SYMBOL[abStatus]}`;
          setStatus(ab, abStatus);
        }
        fillTile(q("waiting"), `${line.waiting}`, line.status.waiting, WORDS.limit, `limit ${r.waiting_limit}`);
        setStatus(q("longest"), line.status.longest_wait_s);
        q("longest").querySelector("[data-w]").textContent = WORDS.limit[line.status.longest_wait_s];
        q("longest").querySelector("[data-n]").textContent = `limit ${duration(r.longest_wait_limit_s, false)}`;
        q("agents").innerHTML = "Agents: " + STATES.map(([s, name]) => `<b>${line.agents[s] || 0}</b> ${name}`).join(" · ");
        el.classList.toggle("stale", line.stale);
        if (line.stale) {
          q("stale-banner").textContent = line.last_event_at === null ? "⚠ No data yet for this line"
            : `⚠ No data since ${formatter("day").format(new Date(line.last_event_at))}: these figures are stale`;
        }
        for (const queue of line.queues) {
          const row = el.querySelector(`tr[data-queue="${CSS.escape(queue.queue)}"]`);
          const c = (k) => row.querySelector(`[data-k="${k}"]`);
          const qf = queue.windows[first] || {};
          c("waiting").textContent = `${SYMBOL[queue.status.waiting]} ${queue.waiting}`;
          setStatus(c("waiting"), queue.status.waiting);
          setStatus(c("longest"), queue.status.longest_wait_s);
          c("sl").textContent = `${SYMBOL[queue.status.service_level[first] || "none"]} ${pctText(qf.service_level)}`;
          setStatus(c("sl"), queue.status.service_level[first] || "none");
          c("ab").textContent = `${SYMBOL[queue.status.abandonment_rate[first] || "none"]} ${pctText(qf.abandonment_rate)}`;
          setStatus(c("ab"), queue.status.abandonment_rate[first] || "none");
          c("agents").textContent = `${queue.agents.available || 0} / ${queue.agents.busy || 0}`;
          row.classList.toggle("stale", queue.stale);
        }
        // Platforms that report agents per line, not per queue: no column of zeros.
        const queueAgents = line.queues.some((queue) => Object.values(queue.agents).some((n) => n > 0));
        el.querySelector(".queues").classList.toggle("no-agents", !queueAgents);
        fillCallbacks(site.site, line, q("cb-head"), q("cb-list"));
        fitList(q("cb-list"), q("cb-more"));
      }
    }
    tick();
  }

  function fillCallbacks(site, line, head, list) {
    const done = line.callbacks_done ? ` · ${line.callbacks_done} marked done` : "";
    head.innerHTML = `Callers to call back: <b>${line.callbacks.length}</b>${esc(done)}`;
    const key = JSON.stringify(line.callbacks);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    if (!line.callbacks.length) {
      list.innerHTML = '<p class="nobody">Nobody to call back.</p>';
      return;
    }
    const shown = line.callbacks.slice(0, 200);
    const more = line.callbacks.length - shown.length;
    list.innerHTML = `<table><tbody>${shown.map((cb) => `
      <tr data-call-id="${esc(cb.call_id)}"><td>${esc(timeOf(new Date(cb.abandoned_at)))}</td><td>${esc(cb.queue)}</td>
      <td class="num">waited ${esc(duration(cb.wait_s, false))}</td><td>call ${esc(cb.call_id)}</td>
      <td class="num"><button class="done" type="button" data-site="${esc(site)}" data-line="${esc(line.line)}"
        data-call-id="${esc(cb.call_id)}">done</button></td></tr>`).join("")}</tbody></table>`
      + (more > 0 ? `<p class="nobody">and ${more} more</p>` : "");
  }

  // The list takes the room left down to the bottom of the screen, in whole rows, and says how
  // many callers are below it (on a kiosk nobody scrolls).
  function fitList(list, more) {
    const rows = list.querySelectorAll("tr");
    if (!rows.length) {
      list.style.maxHeight = "";
      more.textContent = "";
      return;
    }
    const rowHeight = rows[0].getBoundingClientRect().height || 1;
    const room = window.innerHeight - list.getBoundingClientRect().top - 0.03 * window.innerHeight;
    const fit = Math.max(3, Math.floor(room / rowHeight));
    list.style.maxHeight = `${fit * rowHeight}px`;
    const hidden = rows.length - Math.min(fit, rows.length);
    more.textContent = hidden > 0 ? `${hidden} more below${kiosk ? "" : " (scroll)"}` : "";
  }

  board.addEventListener("click", async (event) => {
    const button = event.target.closest("button.done");
    if (!button) return;
    button.disabled = true;
    const { site, line, callId } = button.dataset;
    const url = `/api/v1/callbacks/${encodeURIComponent(site)}/${encodeURIComponent(line)}/${encodeURIComponent(callId)}/done`;
    try {
      const response = await fetch(url, { method: "POST", headers: { "X-Callwatch-Board": "1" }, credentials: "same-origin" });
      if (!response.ok) throw new Error((await response.json()).error || response.statusText);
      button.closest("tr").remove();
    } catch (error) {
      button.disabled = false;
      button.textContent = "retry";
      button.title = String(error.message || error);
    }
  });

  // Between updates the waits and ages grow at the stream's pace (speed: stream s per wall s).
  function tick() {
    if (!view) return;
    const elapsed = ((performance.now() - receivedAt) / 1000) * (view.speed || 0);
    clock.textContent = formatter("day").format(new Date(view.now_ms + elapsed * 1000));
    for (const site of sitesShown(view)) {
      for (const line of site.lines) {
        const el = board.querySelector(`.line[data-site="${CSS.escape(site.site)}"][data-line="${CSS.escape(line.line)}"]`);
        if (!el) continue;
        const grow = (base, waiting) => (waiting > 0 ? base + elapsed : base);
        setValue(el.querySelector('.tiles [data-k="longest"] [data-v]'), duration(grow(line.longest_wait_s, line.waiting), true));
        el.querySelector('[data-k="age"]').textContent = line.data_age_s === null ? "no data yet"
          : `data ${duration(line.data_age_s + elapsed, false)} old`;
        for (const queue of line.queues) {
          const cell = el.querySelector(`tr[data-queue="${CSS.escape(queue.queue)}"] [data-k="longest"]`);
          if (cell) cell.textContent = `${SYMBOL[queue.status.longest_wait_s]} ${duration(grow(queue.longest_wait_s, queue.waiting), false)}`;
        }
      }
    }
  }

  function update(v) {
    // A frame repeated while the pipeline has nothing new must not restart the ticking.
    if (!view || v.now_ms !== view.now_ms) receivedAt = performance.now();
    view = v;
    const sites = sitesShown(v);
    const key = JSON.stringify([v.windows, sites.map((s) => [s.site, s.lines.map((l) => [l.line, l.queues.map((q) => q.queue)])])]);
    if (key !== layoutKey) {
      layoutKey = key;
      formatters = {};
      const lines = sites.reduce((n, s) => n + s.lines.length, 0);
      board.innerHTML = lines ? skeleton(v, sites)
        : `<p class="empty">${wantSite === undefined ? "No calls yet." : "Nothing on this board yet for "
          + esc([wantSite, wantLine].filter(Boolean).join(" / ")) + "."}</p>`;
    }
    fill(v, sites);
    board.dataset.seq = String(Number(board.dataset.seq || 0) + 1);
  }

  window.addEventListener("resize", () => {  // sizes follow the window: fit the numbers afresh
    layoutKey = "";
    if (view) update(view);
  });

  // --- the stream, and reconnecting by itself -------------------------------------------------
  let source = null;
  let lastMessage = 0;
  let lostAt = null;
  let attempts = 0;
  let retry = null;

  function connected() {
    lastMessage = performance.now();
    if (lostAt !== null) {
      lostAt = null;
      attempts = 0;
      board.classList.remove("offline");
    }
    connection.className = "connection live";
    connection.textContent = "● live";
  }

  function connect() {
    retry = null;
    source = new EventSource("/api/v1/stream");
    source.addEventListener("board", (event) => {
      connected();
      update(JSON.parse(event.data));
    });
    source.addEventListener("waiting", () => {
      connected();
      if (!view) board.innerHTML = '<p class="empty">Connected: waiting for the first figures…</p>';
    });
    source.addEventListener("error", lost);
  }

  function lost() {
    if (source) source.close();
    source = null;
    if (lostAt === null) lostAt = new Date();
    attempts += 1;
    board.classList.add("offline");
    connection.className = "connection lost";
    connection.textContent = `⚠ Connection to callwatch lost at ${timeOf(lostAt)}: reconnecting`
      + ` (attempt ${attempts})… figures below are not live`;
    if (retry === null) retry = setTimeout(connect, Math.min(5000, 500 * 2 ** Math.min(attempts - 1, 4)));
  }

  // The server sends at least once a second; five seconds of silence is a dead connection even
  // when the browser has not noticed (a proxy or a suspended laptop).
  setInterval(() => {
    if (source && performance.now() - lastMessage > 5000) lost();
    tick();
  }, 1000);
  lastMessage = performance.now();
  connect();
})();
