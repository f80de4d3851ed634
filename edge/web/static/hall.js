// Hall page: renders the board's picture and keeps it live from /events (server-sent events).
// No library, nothing fetched from anywhere but this gateway. Text comes from the message
// catalogue embedded in the page (Chinese first; the switch re-renders in place).
"use strict";

(() => {
  const catalogue = JSON.parse(document.getElementById("hw-messages").textContent);
  const LANG_COOKIE = "hw_lang";
  const BAD_KEYS = new Set(["3", "4", "5"]);
  let lang = document.documentElement.lang.startsWith("en") ? "en" : "zh";
  let picture = null; // the snapshot with every update merged in
  let skewMs = 0; // the gateway's clock minus this browser's: durations use the gateway's
  let source = null;
  let retryTimer = null;

  // -- text --------------------------------------------------------------------------------
  function t(key, params) {
    let text = (catalogue[lang] && catalogue[lang][key]) || catalogue.zh[key] || key;
    if (params) {
      text = text.replace(/\{(\w+)\}/g, (whole, name) =>
        Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole);
    }
    return text;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h) return t("duration.h", { h, m });
    if (m) return t("duration.m", { m, s: s % 60 });
    return t("duration.s", { s });
  }

  function secondsSince(utc) {
    return (Date.now() + skewMs - Date.parse(utc)) / 1000;
  }

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function since(utc, format) {
    // a span that tick() keeps current; format is a catalogue key with {duration}
    const el = node("span", "dur");
    el.dataset.since = utc;
    if (format) el.dataset.format = format;
    el.textContent = formatSince(el);
    return el;
  }

  function formatSince(el) {
    const text = duration(secondsSince(el.dataset.since));
    return el.dataset.format ? t(el.dataset.format, { duration: text }) : text;
  }

  function problemText(problem) {
    return t("problem." + problem.code, problem.params || {});
  }

  // -- tiles -------------------------------------------------------------------------------
  function tileNode(windowNo) {
    const tiles = document.getElementById("tiles");
    let el = tiles.querySelector(`[data-window="${windowNo}"]`);
    if (!el) {
      el = node("article", "tile");
      el.dataset.window = String(windowNo);
      const after = [...tiles.children].find((c) => Number(c.dataset.window) > windowNo);
      tiles.insertBefore(el, after || null);
      layoutTiles();
    }
    return el;
  }

  function renderTile(tile) {
    const el = tileNode(tile.window);
    const presence = tile.presence || "unknown";
    const faulty = tile.problems.length > 0;
    el.className = "tile tile--" + presence + (faulty ? " tile--fault" : "");
    el.dataset.evaluator = tile.evaluator.state;
    el.dataset.presence = presence;
    const body = node("div", "tile-body");

    const head = node("header", "tile-head");
    head.append(node("span", "tile-no", t("tile.window", { n: tile.window })));
    head.append(node("span", "presence presence--" + presence, t("presence." + presence)));
    body.append(head);

    // the staff member by name where the configuration gives one; the number beside it
    const staff = node("div", "tile-staff");
    if (!tile.staff) {
      staff.textContent = t("tile.nobody");
    } else if (tile.staff_name) {
      staff.append(node("span", "staff-name", tile.staff_name));
      const number = node("span", "staff-no", " " + tile.staff);
      number.dataset.optional = "1"; // first to go on a tile too narrow for everything
      staff.append(number);
    } else {
      staff.append(node("span", "staff-name", tile.staff));
    }
    if (tile.camera) {
      // the camera's own view of the seat (在岗 / 离岗), beside what the queue machine says
      const cam = node("span", "tile-camera");
      cam.dataset.camera = tile.camera.staff;
      const label = node("span", "camera-label", t("camera.label") + " ");
      label.dataset.optional = "2";
      cam.append(" ", label);
      const staffState = tile.camera.staff || "undecided";
      cam.append(node("span", "camera-" + staffState, t("camera." + staffState)));
      // the evidence pictures: the last presence decision's, the last calibration's
      for (const which of ["snapshot", "calibration"]) {
        if (!tile.camera[which]) continue;
        cam.append(" ");
        const link = node("a", "", t("camera." + which));
        link.href = `/api/windows/${tile.window}/${which}`;
        link.target = "_blank";
        link.rel = "noopener";
        link.dataset.optional = "3";
        cam.append(link);
      }
      if (mayManage) {
        // a manager takes the empty seat and counter as they are now (nobody there)
        cam.append(" ");
        const button = node("button", "camera-calibrate", t("camera.calibrate"));
        button.type = "button";
        button.dataset.optional = "3";
        button.addEventListener("click", () => calibrate(tile.window, button));
        cam.append(button);
      }
      staff.append(cam);
    }
    body.append(staff);

    const ticket = node("div", "tile-ticket");
    if (tile.ticket) {
      ticket.append(node("span", "ticket-no", t("tile.serving", { ticket: tile.ticket })));
      if (tile.serving_since) ticket.append(since(tile.serving_since));
    } else if (tile.called) {
      ticket.append(node("span", "ticket-no", t("tile.called", { ticket: tile.called })));
    } else {
      ticket.textContent = t("tile.idle");
    }
    body.append(ticket);

    if (faulty) {
      const problem = node("div", "tile-problem", tile.problems.map(problemText).join("；"));
      problem.setAttribute("role", "alert");
      body.append(problem);
    } else {
      const ev = node("div", "tile-eval");
      const state = node("span", "eval-now");
      state.append(node("span", "eval-label", t("evaluator.label")));
      state.append(node("span", "eval-state eval--" + tile.evaluator.state,
        t("evaluator." + tile.evaluator.state)));
      ev.append(state);
      ev.append(node("span", "eval-today", t("keys.label", { total: tile.keys_total })));
      body.append(ev);
    }

    const keys = node("div", "tile-keys");
    keys.dataset.total = String(tile.keys_total);
    for (const k of ["1", "2", "3", "4", "5", "6"]) {
      const item = node("span", "key key-" + k + (BAD_KEYS.has(k) ? " key-bad" : ""));
      item.dataset.key = k;
      item.append(node("span", "key-label", t("key." + k)));
      item.append(node("b", "", String(tile.keys[k] || 0)));
      keys.append(item);
    }
    body.append(keys);
    el.replaceChildren(body);
    fitTile(el);
  }

  function fitTile(el) {
    // Counts, names and tickets are never cut. Where a tile is too narrow for everything
    // (a long name beside the camera's view), the optional parts go, least useful first.
    for (const line of el.querySelectorAll(".tile-body > *")) {
      const optional = [...line.querySelectorAll("[data-optional]")]
        .sort((a, b) => a.dataset.optional - b.dataset.optional);
      for (const part of optional) {
        if (line.scrollWidth <= line.clientWidth) break;
        part.hidden = true;
      }
    }
  }

  function fitAllTiles() {
    for (const el of document.querySelectorAll(".tile")) {
      for (const part of el.querySelectorAll("[data-optional]")) part.hidden = false;
      fitTile(el);
    }
  }

  function layoutTiles() {
    // a grid that fills the area: as many columns as keep the tiles wider than tall
    const tiles = document.getElementById("tiles");
    const n = Math.max(1, tiles.children.length);
    const ratio = tiles.clientWidth / Math.max(1, tiles.clientHeight);
    let cols = Math.max(1, Math.round(Math.sqrt(n * ratio * 0.75)));
    cols = Math.min(cols, n);
    const rows = Math.ceil(n / cols);
    const changed = tiles.style.getPropertyValue("--cols") !== String(cols)
      || tiles.style.getPropertyValue("--rows") !== String(rows);
    tiles.style.setProperty("--cols", String(cols));
    tiles.style.setProperty("--rows", String(rows));
    if (changed) fitAllTiles(); // every tile has a new size
  }

  // -- health ------------------------------------------------------------------------------
  function renderHealth(health) {
    const panel = document.getElementById("health");
    panel.classList.toggle("health--fault", !health.ok);
    panel.dataset.ok = String(health.ok);
    const list = document.getElementById("health-problems");
    list.replaceChildren();
    if (health.ok) {
      list.append(node("li", "ok", t("health.ok")));
    }
    for (const problem of health.problems) {
      const item = node("li", "", problemText(problem));
      item.dataset.code = problem.code;
      list.append(item);
    }
    const values = document.getElementById("health-values");
    values.replaceChildren();
    const row = (label, value, good) => {
      values.append(node("dt", "", t(label)));
      const dd = node("dd", good === undefined ? "" : good ? "good" : "bad");
      if (value instanceof Node) dd.append(value); else dd.textContent = value;
      values.append(dd);
      return dd;
    };
    row("health.uplink", t(health.uplink.connected ? "health.connected" : "health.disconnected"),
      health.uplink.connected).dataset.field = "uplink";
    const backlog = node("span", "", t("health.backlog.value", { count: health.backlog.events }));
    if (health.backlog.events && health.backlog.oldest_utc) {
      backlog.append(" · ", since(health.backlog.oldest_utc, "health.backlog.oldest"));
    }
    if (health.backlog.events && health.backlog.per_s > 0) {  // 补传中: shrinking as we look
      backlog.append(" · ", t("health.backlog.draining", {
        rate: Math.round(health.backlog.per_s), minutes: health.backlog.minutes_left,
      }));
    }
    if (health.backlog.events && health.backlog.live_ahead) {
      backlog.append(" · ", t("health.backlog.live_first"));
    }
    row("health.backlog", backlog);
    row("health.clock", t(health.clock.synchronised ? "health.synced" : "health.unsynced"),
      health.clock.synchronised);
    row("health.disk", t("health.disk.value", {
      journal: health.disk.journal_pct,
      fs: health.disk.fs_used_pct === null ? "?" : health.disk.fs_used_pct,
    }));
    const d = health.devices;
    const parts = [];
    if (d.evaluators_total) {
      parts.push(t("health.devices.evaluators", {
        online: d.evaluators_total - d.evaluators_offline.length, total: d.evaluators_total,
      }));
    }
    if (d.queue_machine) {
      parts.push(t(d.queue_machine === "connected" ? "health.devices.queue_ok"
        : "health.devices.queue_down"));
    }
    if (d.cameras_total) {
      parts.push(t("health.devices.cameras", {
        online: d.cameras_total - d.cameras_offline.length, total: d.cameras_total,
      }));
    }
    const devicesOk = !d.evaluators_offline.length && d.queue_machine !== "disconnected"
      && !d.cameras_offline.length;
    row("health.devices", parts.join(" · ") || "—", devicesOk);
  }

  // -- queue -------------------------------------------------------------------------------
  function renderQueue(queue) {
    const summary = document.getElementById("queue-summary");
    summary.replaceChildren();
    if (!queue.waiting_total) {
      summary.textContent = t("queue.none");
    } else {
      summary.append(t("queue.total", { count: queue.waiting_total }));
      if (queue.oldest_since) {
        summary.append(" · ", since(queue.oldest_since, "queue.longest"));
      }
    }
    summary.dataset.total = String(queue.waiting_total);
    const body = document.querySelector("#queue-services tbody");
    body.replaceChildren();
    for (const service of queue.services) {
      const tr = node("tr");
      tr.dataset.service = service.service;
      tr.append(node("td", "name", service.name || service.service));
      tr.append(node("td", "num", t("queue.service.waiting", { count: service.waiting })));
      const wait = node("td", "wait");
      if (service.oldest_since) wait.append(since(service.oldest_since));
      tr.append(wait);
      body.append(tr);
    }
    if (queue.camera_waiting !== null && queue.camera_waiting !== undefined) {
      const tr = node("tr");
      const td = node("td", "", t("queue.camera", { count: queue.camera_waiting }));
      td.colSpan = 3;
      tr.append(td);
      body.append(tr);
    }
  }

  // -- the picture ---------------------------------------------------------------------------
  function renderAll() {
    if (!picture) return;
    document.getElementById("tiles").replaceChildren();
    for (const tile of picture.tiles) renderTile(tile);
    layoutTiles();
    renderHealth(picture.health);
    renderQueue(picture.queue);
  }

  function noteServerTime(message) {
    if (message.server_time) skewMs = Date.parse(message.server_time) - Date.now();
  }

  function onSnapshot(message) {
    noteServerTime(message);
    picture = message;
    renderAll();
    tick(); // the clock now in the hall's time zone
  }

  function onUpdate(message) {
    noteServerTime(message);
    if (!picture) return;
    for (const tile of message.tiles || []) {
      const i = picture.tiles.findIndex((old) => old.window === tile.window);
      if (i >= 0) picture.tiles[i] = tile; else picture.tiles.push(tile);
      renderTile(tile);
    }
    if (message.health) { picture.health = message.health; renderHealth(message.health); }
    if (message.queue) { picture.queue = message.queue; renderQueue(message.queue); }
  }

  // -- calibration (managers) ----------------------------------------------------------------
  let mayManage = false;

  function calibrate(number, button) {
    if (!confirm(t("camera.calibrate.confirm", { window: number }))) return;
    button.disabled = true;
    fetch(`/api/windows/${number}/calibrate`, { method: "POST", credentials: "same-origin" })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (!ok) {
          alert(t("camera.calibrate.failed", { error: body.detail || "" }));
        } else if (body.snapshot) {
          // the picture the references came from: the manager checks it was really empty
          window_open(`/api/windows/${number}/calibration`);
        }
      })
      .catch((e) => alert(t("camera.calibrate.failed", { error: String(e) })))
      .finally(() => { button.disabled = false; });
  }

  function window_open(url) {
    window.open(url, "_blank", "noopener");
  }

  fetch("/api/session", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((me) => {
      mayManage = Boolean(me && me.permissions.includes("manage"));
      if (mayManage && picture) renderAll();
    })
    .catch(() => {});

  // -- the live stream -----------------------------------------------------------------------
  function setStream(state) {
    const el = document.getElementById("stream-state");
    el.dataset.state = state;
    el.dataset.i18n = "stream." + state;
    el.textContent = t("stream." + state);
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = new EventSource("/events");
    source.onopen = () => setStream("live");
    source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
    source.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
    source.addEventListener("reload", () => connect()); // fell behind: start over
    source.addEventListener("logout", () => { window.location.assign("/login"); });
    source.onerror = () => {
      setStream("lost");
      if (source.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. 401): find out whether the session ended
        fetch("/api/session", { credentials: "same-origin" }).then((r) => {
          if (r.status === 401) window.location.assign("/login");
          else retryTimer = setTimeout(connect, 2000);
        }).catch(() => { retryTimer = setTimeout(connect, 2000); });
      }
    };
  }

  // -- language, clock -----------------------------------------------------------------------
  function applyStaticText() {
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    document.title = document.getElementById("hall-name").textContent + " · " + t("app.title");
    document.getElementById("lang-switch").title = t("lang.other.title");
  }

  function switchLanguage() {
    lang = lang === "en" ? "zh" : "en";
    document.cookie = `${LANG_COOKIE}=${lang}; path=/; max-age=31622400; samesite=strict`;
    applyStaticText();
    renderAll();
  }

  function tick() {
    const now = new Date(Date.now() + skewMs);
    const clock = document.getElementById("clock");
    clock.textContent = now.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", {
      hour12: false, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
      timeZone: picture ? picture.hall.timezone : undefined, // the hall's, not the browser's
    });
    for (const el of document.querySelectorAll("[data-since]")) el.textContent = formatSince(el);
  }

  document.getElementById("lang-switch").addEventListener("click", switchLanguage);
  window.addEventListener("resize", () => { layoutTiles(); fitAllTiles(); });
  applyStaticText();
  setInterval(tick, 1000);
  tick();
  connect();
})();
