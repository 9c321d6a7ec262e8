/* streamd wallboard: follows /api/v1/stream (Server-Sent Events) and renders agents and queues.
 *
 * URL parameters: source, queue, state (repeated or comma-separated) filter the feed on the
 * server; token (or access_token) is passed on as access_token; logged_out=1 shows the logged-out
 * column; title=... sets the heading.
 * The page reconnects by itself (resuming with the last event id) and says so while disconnected.
 */
(function () {
  "use strict";

  var STATES = [
    { id: "available", label: "Available", icon: "✔" },
    { id: "busy", label: "Busy", icon: "☎" },
    { id: "after_call_work", label: "After call", icon: "✎" },
    { id: "not_ready", label: "Not ready", icon: "⊘" },
    { id: "unknown", label: "Unknown", icon: "?" },
    { id: "logged_out", label: "Logged out", icon: "○" },
  ];
  var STATE_BY_ID = {};
  STATES.forEach(function (s) { STATE_BY_ID[s.id] = s; });
  var MAX_CARDS = 200;          // per column: a TV shows no more anyway
  var LONG_IN_STATE = 15 * 60;  // seconds before a not-available agent's timer turns red
  var WARN_WAIT = 60;           // seconds of longest wait before a queue tile turns red

  // Canonical metric names differ per vendor: which ones mean "waiting", "longest wait", "service level".
  var ROLES = {
    waiting: {
      exact: ["waiting_calls", "calls_waiting", "waiting", "queueCount", "queue_count", "contacts_waiting",
              "in_queue", "K0QUEUED"],
      loose: /(^|_)waiting(_calls|_contacts)?$|queued|in_queue|queue_?count/i,
    },
    longest: {
      exact: ["longest_wait", "longest_waiting_time", "longest_waiting_time_in_list", "longestWaitingQueueTime",
              "maxQueueDur", "oldest_contact", "current_waiting_time", "K0LONGWT"],
      loose: /longest|oldest|max_?queue_?dur/i,
    },
    service_level: {
      exact: ["service_level"],
      loose: /^(?!.*(worst|best)).*service_?level/i,
    },
  };

  var params = new URLSearchParams(window.location.search);
  var token = params.get("token") || params.get("access_token");
  var showLoggedOut = params.get("logged_out") === "1";
  var filters = { source: listParam("source"), queue: listParam("queue"), state: listParam("state") };

  var agents = new Map();   // key -> AgentState
  var metrics = new Map();  // key -> QueueMetric
  var lastId = null;
  var clockOffset = 0;      // server time - local time, ms
  var es = null;
  var attempt = 0;
  var reconnectTimer = null;
  var watchdogTimer = null;
  var heartbeat = 10;
  var dirty = false;
  var lastRender = 0;
  var RENDER_MS = 250;
  var lastUpdate = null;

  var $ = function (id) { return document.getElementById(id); };

  function listParam(name) {
    var out = [];
    params.getAll(name).forEach(function (v) {
      v.split(",").forEach(function (p) { p = p.trim(); if (p) out.push(p); });
    });
    return out;
  }

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function now() { return Date.now() + clockOffset; }

  function duration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "–";
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }

  // --- the feed ---------------------------------------------------------------------------

  function streamUrl() {
    var q = new URLSearchParams();
    ["source", "queue", "state"].forEach(function (n) { if (filters[n].length) q.set(n, filters[n].join(",")); });
    if (token) q.set("access_token", token);
    if (lastId) q.set("last_event_id", lastId);
    return "api/v1/stream?" + q.toString();
  }

  function connect() {
    reconnectTimer = null;
    if (es) es.close();
    es = new EventSource(streamUrl());
    es.addEventListener("snapshot", function (e) {
      var snap = JSON.parse(e.data);
      lastId = e.lastEventId || snap.id;
      clockOffset = Date.parse(snap.now) - Date.now();
      agents = new Map();
      metrics = new Map();
      snap.agents.forEach(function (a) { agents.set(a.source + ":" + a.agent_id, a); });
      snap.metrics.forEach(function (m) { metrics.set(m.source + ":" + m.queue_id + ":" + m.metric, m); });
      online();
      changed();
    });
    es.addEventListener("resumed", function (e) { lastId = e.lastEventId || lastId; online(); changed(); });
    es.addEventListener("delta", function (e) {
      var d = JSON.parse(e.data);
      lastId = e.lastEventId || lastId;
      var table = d.kind === "agent" ? agents : metrics;
      if (d.value === null) table.delete(d.key); else table.set(d.key, d.value);
      alive();
      changed();
    });
    es.addEventListener("ping", function (e) {
      try { heartbeat = JSON.parse(e.data).heartbeat || heartbeat; } catch (err) { /* keep the default */ }
      alive();
    });
    es.onerror = function () {
      // Take reconnection into our own hands: EventSource gives up for good on some errors.
      es.close();
      es = null;
      offline();
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    attempt += 1;
    var delay = Math.min(4000, 250 * Math.pow(2, attempt - 1));
    reconnectTimer = setTimeout(connect, delay);
  }

  function alive() {
    clearTimeout(watchdogTimer);
    watchdogTimer = setTimeout(function () {  // no ping for three heartbeats: the connection is dead
      if (es) { es.close(); es = null; }
      offline();
      scheduleReconnect();
    }, heartbeat * 3000 + 2000);
  }

  function online() {
    attempt = 0;
    alive();
    document.body.classList.remove("offline", "connecting");
    document.body.classList.add("online");
    $("banner").hidden = true;
    var status = $("status");
    status.className = "status live";
    status.textContent = "LIVE";
  }

  function offline() {
    clearTimeout(watchdogTimer);
    document.body.classList.remove("online", "connecting");
    document.body.classList.add("offline");
    $("banner").hidden = false;
    $("banner-text").textContent = "DISCONNECTED — reconnecting…" +
      (lastUpdate ? "  Last data " + new Date(lastUpdate).toLocaleTimeString() : "");
    var status = $("status");
    status.className = "status offline";
    status.textContent = "OFFLINE";
  }

  function changed() {
    // Render at most every RENDER_MS, so a burst of changes (or a big board) costs one render.
    lastUpdate = Date.now();
    if (dirty) return;
    dirty = true;
    var wait = Math.max(0, RENDER_MS - (Date.now() - lastRender));
    setTimeout(function () {
      dirty = false;
      lastRender = Date.now();
      window.requestAnimationFrame(render);
    }, wait);
  }

  // --- rendering --------------------------------------------------------------------------

  function render() {
    renderFilters();
    renderSummary();
    renderQueues();
    renderBoard();
    $("updated").textContent = "Updated " + new Date(lastUpdate).toLocaleTimeString() +
      " · " + agents.size + " agents · " + metrics.size + " queue metrics";
  }

  function renderFilters() {
    var parts = [];
    [["source", "Source"], ["queue", "Queue"], ["state", "State"]].forEach(function (f) {
      if (filters[f[0]].length) parts.push('<span class="chip">' + f[1] + ": " + esc(filters[f[0]].join(", ")) + "</span>");
    });
    if (parts.length) parts.push('<a class="clear" href="' + esc(linkWith({})) + '">× clear</a>');
    $("filters").innerHTML = parts.join("");
  }

  function linkWith(extra) {
    var q = new URLSearchParams();
    if (token) q.set("token", token);
    if (showLoggedOut) q.set("logged_out", "1");
    if (params.get("title")) q.set("title", params.get("title"));
    Object.keys(extra).forEach(function (k) { q.set(k, extra[k]); });
    var s = q.toString();
    return window.location.pathname + (s ? "?" + s : "");
  }

  function byState() {
    var groups = {};
    STATES.forEach(function (s) { groups[s.id] = []; });
    agents.forEach(function (a, key) {
      (groups[a.state] || groups.unknown).push({ key: key, a: a });
    });
    return groups;
  }

  function renderSummary() {
    var groups = byState();
    $("summary").innerHTML = STATES.map(function (s) {
      return '<div class="count s-' + s.id + '" data-state="' + s.id + '">' +
        '<span class="icon" aria-hidden="true">' + s.icon + '</span>' +
        '<span class="n">' + groups[s.id].length + '</span>' +
        '<span class="label">' + s.label + "</span></div>";
    }).join("");
  }

  function roleMetric(queue, role) {
    var spec = ROLES[role];
    for (var i = 0; i < spec.exact.length; i++) {
      if (queue.metrics.has(spec.exact[i])) return queue.metrics.get(spec.exact[i]);
    }
    var found = null;
    queue.metrics.forEach(function (m, name) { if (!found && spec.loose.test(name)) found = m; });
    return found;
  }

  function waitSeconds(m) {
    if (!m || m.value == null || m.value === "") return null;
    if (m.unit === "timestamp") {
      var t = typeof m.value === "number" ? m.value : Date.parse(m.value);
      if (typeof m.value === "number" && t < 1e12) t *= 1000;
      return isFinite(t) && t > 0 ? (now() - t) / 1000 : null;
    }
    var v = Number(m.value);
    if (!isFinite(v)) return null;
    return m.unit === "ms" ? v / 1000 : v;
  }

  function percent(m) {
    if (!m || m.value == null || m.value === "") return "–";
    var v = Number(m.value);
    if (!isFinite(v)) return esc(m.value);
    return Math.round(v <= 1 && m.unit !== "percent" ? v * 100 : v) + "%";
  }

  function queues() {
    var out = new Map();
    metrics.forEach(function (m) {
      var id = m.source + ":" + m.queue_id;
      var q = out.get(id);
      if (!q) {
        q = { id: m.queue_id, source: m.source, vendor: m.vendor, name: null, metrics: new Map() };
        out.set(id, q);
      }
      if (m.queue_name) q.name = m.queue_name;
      q.metrics.set(m.metric, m);
    });
    return Array.from(out.values()).sort(function (a, b) {
      return (a.name || a.id).localeCompare(b.name || b.id);
    });
  }

  function kpi(cls, value, label, attrs) {
    return '<div class="kpi ' + cls + '"><span class="v"' + (attrs || "") + ">" + value + "</span>" +
      '<span class="k">' + esc(label) + "</span></div>";
  }

  function humanise(name) {
    return String(name).replace(/_/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/ ?Count$/i, "").toLowerCase();
  }

  function renderQueues() {
    var available = {};
    agents.forEach(function (a) {
      if (a.state !== "available") return;
      (a.queue_ids || []).forEach(function (q) { var k = a.source + ":" + q; available[k] = (available[k] || 0) + 1; });
    });
    $("queues").innerHTML = queues().map(function (q) {
      var waiting = roleMetric(q, "waiting");
      var longest = roleMetric(q, "longest");
      var sl = roleMetric(q, "service_level");
      var longestS = waitSeconds(longest);
      var warn = longestS != null && longestS >= WARN_WAIT;
      var kpis = "";
      if (waiting) kpis += kpi("waiting", waiting.value != null ? esc(waiting.value) : "–", "Waiting");
      if (longest) {
        kpis += kpi("longest", duration(longestS), "Longest wait", ' data-wait="' + esc(JSON.stringify(longest)) + '"');
      }
      if (sl) kpis += kpi("sl", percent(sl), "Service level");
      if (!kpis) {  // no queue-like metric (e.g. a team's agent counters): show its largest numbers
        var numeric = [];
        q.metrics.forEach(function (m) { if (typeof m.value === "number") numeric.push(m); });
        numeric.sort(function (x, y) { return y.value - x.value; });
        numeric.slice(0, 3).forEach(function (m) {
          var v = m.unit === "seconds" || m.unit === "ms" ? duration(waitSeconds(m)) : esc(m.value);
          kpis += kpi("other", v, humanise(m.metric));
        });
      }
      var avail = available[q.source + ":" + q.id];
      if (avail !== undefined) kpis += kpi("avail", String(avail), "Available");
      var all = [];
      q.metrics.forEach(function (m) { all.push(m.metric + ": " + m.value + (m.unit ? " " + m.unit : "")); });
      return '<article class="tile' + (warn ? " warn" : "") + '" data-queue="' + esc(q.source + ":" + q.id) + '"' +
        ' title="' + esc(all.join("\n")) + '">' +
        '<div class="head"><h2><a href="' + esc(linkWith({ queue: q.id })) + '" title="Show only this queue">' +
        esc(q.name || q.id) + "</a></h2>" +
        '<span class="src">' + esc(q.source) + "</span></div>" +
        '<div class="kpis">' + (kpis || '<span class="src">no numbers yet</span>') + "</div></article>";
    }).join("");
  }

  function renderBoard() {
    var groups = byState();
    var shown = STATES.filter(function (s) {
      if (filters.state.length) return filters.state.indexOf(s.id) >= 0;
      if (s.id === "logged_out") return showLoggedOut;
      if (s.id === "unknown") return groups.unknown.length > 0;
      return true;
    });
    if (!agents.size && !metrics.size) {
      $("board").innerHTML = '<div class="empty">Waiting for agent state from Kafka…</div>';
      return;
    }
    $("board").innerHTML = shown.map(function (s) {
      var list = groups[s.id];
      list.sort(function (x, y) { return (Date.parse(x.a.since) || 0) - (Date.parse(y.a.since) || 0); });
      var cards = list.slice(0, MAX_CARDS).map(function (item) { return card(item.key, item.a, s); }).join("");
      if (list.length > MAX_CARDS) cards += '<div class="overflow">+' + (list.length - MAX_CARDS) + " more</div>";
      return '<section class="column s-' + s.id + '" data-state="' + s.id + '">' +
        '<h2><span class="icon" aria-hidden="true">' + s.icon + "</span>" + s.label +
        '<span class="n">' + list.length + "</span></h2>" +
        '<div class="cards">' + cards + "</div></section>";
    }).join("");
    tick();
  }

  function card(key, a, s) {
    var sub = [a.reason_code, a.vendor_state, a.source].filter(Boolean).map(esc).join(" · ");
    return '<div class="agent s-' + s.id + '" data-key="' + esc(key) + '" data-since="' + esc(a.since || "") + '"' +
      ' title="' + esc(s.label + ": " + (a.agent_name || a.agent_id)) + '">' +
      '<span class="icon" aria-label="' + s.label + '">' + s.icon + "</span>" +
      '<span class="name">' + esc(a.agent_name || a.agent_id) + "</span>" +
      '<span class="time"></span>' +
      '<span class="sub">' + sub + "</span></div>";
  }

  function tick() {
    var t = new Date(now());
    $("clock").textContent = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    var cards = document.querySelectorAll(".agent[data-since]");
    for (var i = 0; i < cards.length; i++) {
      var el = cards[i];
      var since = Date.parse(el.getAttribute("data-since"));
      var secs = isFinite(since) ? (now() - since) / 1000 : null;
      el.querySelector(".time").textContent = duration(secs);
      el.classList.toggle("long", secs != null && secs > LONG_IN_STATE && !el.classList.contains("s-available"));
    }
    var waits = document.querySelectorAll(".kpi.longest .v[data-wait]");
    for (var j = 0; j < waits.length; j++) {
      var raw = waits[j].getAttribute("data-wait");
      if (raw) {
        var m = JSON.parse(raw);
        if (m.unit === "timestamp") waits[j].textContent = duration(waitSeconds(m));
      }
    }
  }

  // --- start ------------------------------------------------------------------------------

  if (params.get("title")) {
    $("title").textContent = params.get("title");
    document.title = params.get("title") + " · streamd";
  }
  renderFilters();
  $("board").innerHTML = '<div class="empty">Connecting…</div>';
  setInterval(tick, 1000);
  tick();
  connect();
})();
