/* streamd wallboard: follows /api/v1/stream (Server-Sent Events) and renders agents and queues.
 *
 * Settings (thresholds, stale markers, paging, saved views, reason labels) come from
 * /api/v1/wallboard, i.e. the config's `wallboard:` section.
 *
 * URL parameters:
 *   source, queue, state   filter (repeated or comma-separated); they replace a view's own filter
 *   view=NAME              a saved view (title, filters, sections, expanded counters, tile metrics)
 *   rotate=A,B&every=30s   show the views in turn (every: 500ms, 30s, 2m, 1h or seconds; default 30s)
 *   expand=logged_out,unknown   show these counters as columns (logged_out=1 as before)
 *   density=normal|compact|dense   fix the card size (default: the page picks it)
 *   title=...              the heading; token (or access_token) is passed on to the API
 *
 * The page never scrolls. Agent columns take as many card columns as they need; what does not fit
 * is paged every `page_seconds`, and while views rotate the pages turn faster when needed, so every
 * agent is on screen within each view's turn. The card density is the one needing the fewest pages.
 * The page reconnects by itself (resuming with the last event id) and says so while disconnected.
 */
(function () {
  "use strict";

  var STATES = [
    { id: "available", label: "Available", icon: "✔" },
    { id: "busy", label: "Busy", icon: "☎" },
    { id: "after_call_work", label: "After call", icon: "✎" },
    { id: "not_ready", label: "Not ready", icon: "⊘" },
    { id: "unknown", label: "Unknown", icon: "?", collapsed: true },
    { id: "logged_out", label: "Logged out", icon: "○", collapsed: true },
  ];
  var STATE_BY_ID = {};
  STATES.forEach(function (s) { STATE_BY_ID[s.id] = s; });

  // The canonical queue metrics, in tile order, and the vendor names read as them (until every
  // vendor publishes the canonical names). A name is matched exactly first, then by the loose
  // pattern on its snake_case form; one vendor metric stands for one canonical metric at most.
  var CANONICAL = [
    { name: "waiting", label: "Waiting", unit: "count",
      aliases: ["waiting_calls", "calls_waiting", "queueCount", "queue_count", "contacts_waiting", "in_queue", "Calls in Queue"],
      loose: /(^|_)waiting(_calls|_contacts)?$|queued|in_queue|queue_count/ },
    { name: "longest_wait_seconds", label: "Longest wait", unit: "seconds",
      aliases: ["longest_wait", "longest_waiting_time", "longest_waiting_time_in_list", "longestWaitingQueueTime",
                "maxQueueDur", "oldest_contact", "current_waiting_time"],
      loose: /longest|oldest|max_queue_dur/ },
    { name: "average_wait_seconds", label: "Average wait", unit: "seconds",
      aliases: ["average_wait", "avg_wait", "Average Wait", "averageWaitTime", "average_waiting_time"],
      loose: /(average|avg)_wait/ },
    { name: "service_level_percent", label: "Service level", unit: "percent",
      aliases: ["service_level", "serviceLevel"],
      loose: /^(?!.*(worst|best)).*service_level/ },
    { name: "answered", label: "Answered", unit: "count",
      aliases: ["answered_calls", "calls_answered", "answeredCount"], loose: /answered/ },
    { name: "abandoned", label: "Abandoned", unit: "count",
      aliases: ["abandoned_calls", "calls_abandoned", "abandonedCount"], loose: /abandon/ },
    { name: "agents_available", label: "Available", unit: "count",
      aliases: ["available_agents", "agents_ready"], loose: /^agents?_(available|ready|idle)$|^(available|ready|idle)_agents?$/ },
    { name: "agents_busy", label: "Busy agents", unit: "count",
      aliases: ["busy_agents"], loose: /^agents?_busy$|^busy_agents?$/ },
    { name: "agents_logged_in", label: "Logged in", unit: "count",
      aliases: ["logged_in_agents", "agents_logged_on"], loose: /^agents?_logged_(in|on)$|^logged_(in|on)_agents?$/ },
  ];

  // What the server sends when the settings endpoint is missing (an older daemon): today's alarms.
  var DEFAULT_SETTINGS = {
    stale_after: 120, stale_after_per_source: {}, page_seconds: 10, views: {}, reason_labels: {},
    thresholds: {
      metrics: { longest_wait_seconds: { warn: null, alert: 60, direction: "above" } },
      service_level_target: null, service_level_alert_margin: 10, queues: {},
      time_in_state: { busy: { alert: 900 }, after_call_work: { alert: 900 }, not_ready: { alert: 900 },
                       logged_out: { alert: 900 }, unknown: { alert: 900 } },
    },
  };
  var DENSITIES = ["normal", "compact", "dense"];
  var MIN_CARD_EM = { normal: 13, compact: 12, dense: 11 };  // a card's narrowest width, in its own font size
  var RENDER_MS = 250;
  var DEFAULT_EVERY = 30;

  var params = new URLSearchParams(window.location.search);
  var token = params.get("token") || params.get("access_token");
  var urlFilters = { source: listParam("source"), queue: listParam("queue"), state: listParam("state") };
  var urlExpand = listParam("expand");
  if (params.get("logged_out") === "1") urlExpand.push("logged_out");
  var urlDensity = params.get("density");

  var settings = DEFAULT_SETTINGS;
  var views = [];           // [{name, title, filters, sections, expand, metrics}]: one, or those rotated
  var viewIndex = 0;
  var every = DEFAULT_EVERY; // seconds per view while rotating
  var problemsOfConfig = []; // messages about the URL or the settings (unknown view names...)
  var toggled = {};          // counters expanded or collapsed by a click

  var agents = new Map();   // key -> AgentState
  var metrics = new Map();  // key -> QueueMetric
  var sources = new Map();  // name -> SourceStatus
  var feed = null;          // FeedStatus
  var lastId = null;
  var epoch = null;
  var clockOffset = 0;      // server time - local time, ms
  var es = null;
  var attempt = 0;
  var reconnectTimer = null;
  var watchdogTimer = null;
  var heartbeat = 10;
  var dirty = false;
  var lastRender = 0;
  var lastUpdate = null;
  var page = 0;             // the page on screen (agent columns and tiles page together)
  var pages = 1;
  var tilePages = 1;
  var viewStarted = Date.now();  // pages turn by the time since the view came on screen
  var rotateTimer = null;
  var turn = 0;             // views shown so far (a rotation's turns)

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

  function ago(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.floor(seconds / 60) + " min";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function parseDuration(text) {
    var m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text || "");
    if (!m) return null;
    var v = parseFloat(m[1]) * ({ ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] || "s"]);
    return v > 0 ? v : null;
  }

  function apiUrl(path, extra) {
    var q = new URLSearchParams(extra || {});
    if (token) q.set("access_token", token);
    var s = q.toString();
    return "api/v1/" + path + (s ? "?" + s : "");
  }

  // --- settings and views -----------------------------------------------------------------

  function loadSettings(then) {
    fetch(apiUrl("wallboard"), { cache: "no-store" }).then(function (r) {
      if (r.status === 404) return DEFAULT_SETTINGS;  // a daemon without the endpoint
      if (r.status === 401) throw new Error("unauthorized");
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (s) {
      settings = s;
      then();
    }).catch(function (err) {
      if (String(err.message) === "unauthorized") {
        showBanner("TOKEN REQUIRED — open this page as /wallboard?token=…");
        return;
      }
      offline();
      setTimeout(function () { loadSettings(then); }, Math.min(4000, 250 * Math.pow(2, attempt++)));
    });
  }

  function makeView(name, v) {
    v = v || {};
    var filters = {
      source: urlFilters.source.length ? urlFilters.source : (v.source || []),
      queue: urlFilters.queue.length ? urlFilters.queue : (v.queue || []),
      state: urlFilters.state.length ? urlFilters.state : (v.state || []),
    };
    return {
      name: name,
      title: params.get("title") || v.title || null,
      filters: filters,
      sections: v.sections || ["summary", "queues", "agents"],
      expand: (v.expand || []).concat(urlExpand),
      metrics: v.metrics || [],
    };
  }

  function setupViews() {
    problemsOfConfig = [];
    var configured = settings.views || {};
    var names = Object.keys(configured);
    function known(name) {
      if (Object.prototype.hasOwnProperty.call(configured, name)) return true;
      problemsOfConfig.push("Unknown view “" + name + "”: " +
        (names.length ? "the configured views are " + names.join(", ") : "no views are configured (wallboard.views)"));
      return false;
    }
    var wanted = [];
    if (params.get("rotate")) {
      wanted = listParam("rotate").filter(known);
      if (params.get("every")) {
        var e = parseDuration(params.get("every"));
        if (e == null) problemsOfConfig.push("every=" + params.get("every") + " is not a duration (like 30s or 2m): using " + DEFAULT_EVERY + " s");
        every = e || DEFAULT_EVERY;
      }
    } else if (params.get("view")) {
      wanted = [params.get("view")].filter(known);
    }
    views = wanted.length ? wanted.map(function (n) { return makeView(n, configured[n]); }) : [makeView(null, null)];
    viewIndex = 0;
  }

  function view() { return views[viewIndex] || views[0]; }

  function startRotation() {
    clearTimeout(rotateTimer);
    if (views.length < 2) return;
    rotateTimer = setTimeout(function () {
      viewIndex = (viewIndex + 1) % views.length;
      switchedView();
      startRotation();
    }, every * 1000);
  }

  function switchedView() {
    turn += 1;
    viewStarted = Date.now();
    page = 0;
    render();
  }

  // The stream's filter: every rotated view's entries (a dimension a view does not filter is not
  // filtered); each view then picks its own on the page (matches()).
  function streamFilters() {
    var out = {};
    ["source", "queue", "state"].forEach(function (dim) {
      var all = false, set = [];
      views.forEach(function (v) {
        if (!v.filters[dim].length) all = true;
        v.filters[dim].forEach(function (x) { if (set.indexOf(x) < 0) set.push(x); });
      });
      out[dim] = all ? [] : set;
    });
    return out;
  }

  function matches(value, kind) {  // as the server's Filter.matches
    var f = view().filters;
    if (f.source.length && f.source.indexOf(value.source) < 0) return false;
    if (kind === "agent") {
      if (f.state.length && f.state.indexOf(value.state) < 0) return false;
      if (!f.queue.length) return true;
      return (value.queue_ids || []).some(function (q) { return f.queue.indexOf(q) >= 0; });
    }
    return !f.queue.length || f.queue.indexOf(value.queue_id) >= 0;
  }

  // --- the feed ---------------------------------------------------------------------------

  function streamUrl() {
    var q = {};
    var f = streamFilters();
    ["source", "queue", "state"].forEach(function (n) { if (f[n].length) q[n] = f[n].join(","); });
    if (lastId) q.last_event_id = lastId;
    return apiUrl("stream", q);
  }

  function connect() {
    reconnectTimer = null;
    if (es) es.close();
    es = new EventSource(streamUrl());
    es.addEventListener("snapshot", function (e) {
      var snap = JSON.parse(e.data);
      lastId = e.lastEventId || snap.id;
      var newEpoch = String(lastId).split(".")[0];
      if (epoch !== null && newEpoch !== epoch) loadSettings(function () { setupViews(); changed(); });  // restarted
      epoch = newEpoch;
      clockOffset = Date.parse(snap.now) - Date.now();
      agents = new Map();
      metrics = new Map();
      sources = new Map();
      snap.agents.forEach(function (a) { agents.set(a.source + ":" + a.agent_id, a); });
      snap.metrics.forEach(function (m) { metrics.set(m.source + ":" + m.queue_id + ":" + m.metric, m); });
      (snap.sources || []).forEach(function (s) { sources.set(s.source, s); });
      feed = snap.feed || null;
      online();
      changed();
    });
    es.addEventListener("resumed", function (e) { lastId = e.lastEventId || lastId; online(); changed(); });
    es.addEventListener("delta", function (e) {
      var d = JSON.parse(e.data);
      lastId = e.lastEventId || lastId;
      if (d.kind === "feed") {
        feed = d.value;
      } else {
        var table = { agent: agents, metric: metrics, source: sources }[d.kind];
        if (!table) return;  // a kind this page does not know (a newer server)
        if (d.value === null) table.delete(d.key); else table.set(d.key, d.value);
      }
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
    showBanner("DISCONNECTED — reconnecting…" +
      (lastUpdate ? "  Last data " + new Date(lastUpdate).toLocaleTimeString() : ""));
    var status = $("status");
    status.className = "status offline";
    status.textContent = "OFFLINE";
  }

  function showBanner(text) {
    $("banner").hidden = false;
    $("banner-text").textContent = text;
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

  // --- sources: state and freshness -------------------------------------------------------

  function staleAfter(name) {
    var s = sources.get(name);
    if (s && s.stale_after) return s.stale_after;
    var per = settings.stale_after_per_source || {};
    return per[name] != null ? per[name] : settings.stale_after;
  }

  // Seconds since the source's last record when that is more than its stale_after, else null.
  function staleFor(name) {
    var s = sources.get(name);
    if (!s || !s.last_update) return null;
    var secs = (now() - Date.parse(s.last_update)) / 1000;
    return secs >= staleAfter(name) ? secs : null;
  }

  function sourceState(name) {
    var s = sources.get(name);
    return s && s.state ? s.state : null;
  }

  // Where a source runs (its status's placement): "" when not known (another producer).
  function placementText(name) {
    var s = sources.get(name);
    if (!s) return "";
    if (s.placement === "here") return "runs here";
    if (s.placement === "replica") return "runs on replica " + s.replica;
    if (s.placement === "unassigned") return "unassigned: no replica runs it now";
    return "";
  }

  // The footer's discreet line: how many sources run here, on other replicas, nowhere (a cluster
  // only: shown when some source runs on another replica or is unassigned); each in the tooltip.
  function renderSources() {
    var count = { here: 0, replica: 0, unassigned: 0 };
    var lines = [];
    Array.from(sources.values()).sort(function (a, b) { return a.source.localeCompare(b.source); }).forEach(function (s) {
      if (!(s.placement in count)) return;
      count[s.placement] += 1;
      lines.push(s.source + ": " + placementText(s.source));
    });
    var el = $("sources");
    var shown = count.replica + count.unassigned > 0;
    var text = !shown ? "" : "Sources: " + [
      count.here ? count.here + " here" : "",
      count.replica ? count.replica + " on other replicas" : "",
      count.unassigned ? count.unassigned + " unassigned" : "",
    ].filter(Boolean).join(" · ");
    if (el.textContent !== text) el.textContent = text;
    el.title = lines.join("\n");
    el.hidden = !shown;
  }

  function renderProblems() {
    var out = problemsOfConfig.map(function (text) {
      return '<span class="problem error">⚠ ' + esc(text) + "</span>";
    });
    if (feed && (feed.state === "retrying" || feed.state === "failed")) {  // "starting": no topic yet
      out.push('<span class="problem feed" data-feed="' + esc(feed.state) + '">⚠ Not receiving from Kafka: feed ' +
        esc(feed.state) + (feed.detail ? ' <span class="why">' + esc(feed.detail) + "</span>" : "") + "</span>");
    }
    var f = view().filters;
    Array.from(sources.values()).sort(function (a, b) { return a.source.localeCompare(b.source); }).forEach(function (s) {
      if (f.source.length && f.source.indexOf(s.source) < 0) return;
      var attrs = ' data-source="' + esc(s.source) + '"';
      var why = s.detail ? ' <span class="why">' + esc(s.detail) + "</span>" : "";
      if (s.state === "failed") {
        out.push('<span class="problem failed"' + attrs + ' data-state="failed">✖ ' + esc(s.source) + " failed" + why + "</span>");
      } else if (s.state === "retrying") {
        out.push('<span class="problem retrying"' + attrs + ' data-state="retrying">⟳ ' + esc(s.source) + " retrying" + why + "</span>");
      } else {
        var stale = staleFor(s.source);
        if (stale != null) {
          var where = placementText(s.source);
          out.push('<span class="problem stale"' + attrs + ' data-state="stale">◷ ' + esc(s.source) +
            ": no update for " + ago(stale) + (where ? ' <span class="why">' + esc(where) + "</span>" : "") + "</span>");
        }
      }
    });
    var html = out.join("");
    if ($("problems").innerHTML !== html) $("problems").innerHTML = html;
    $("problems").hidden = !out.length;
  }

  // --- rendering --------------------------------------------------------------------------

  function render() {
    var v = view();
    var title = v.title || "Contact centre";
    $("title").textContent = title;
    $("title").classList.toggle("long", title.length > 32);
    document.title = (v.title ? v.title + " · " : "") + "streamd wallboard";
    renderViews();
    renderFilters();
    renderProblems();
    renderSources();
    var show = {};
    v.sections.forEach(function (s) { show[s] = true; });
    $("summary").hidden = !show.summary;
    $("queues").hidden = !show.queues;
    $("board").hidden = !show.agents;
    var groups = byState();
    if (show.summary) renderSummary(groups);
    tilePages = show.queues ? renderQueues(show.agents) : 1;
    var boardPages = show.agents ? renderBoard(groups) : 1;
    pages = Math.max(tilePages, boardPages);
    if (page !== currentPage()) {  // the page count changed: the page it is now
      page = currentPage();
      if (show.queues) tilePages = renderQueues(show.agents);
      if (show.agents) renderBoard(groups);
    }
    var board = $("board");
    board.setAttribute("data-page", String(page));
    board.setAttribute("data-pages", String(pages));
    board.setAttribute("data-view", v.name || "");
    board.setAttribute("data-turn", String(turn));
    $("pager").textContent = pages > 1 ? "Page " + (page + 1) + " of " + pages : "";
    var shown = 0;
    agents.forEach(function (a) { if (matches(a, "agent")) shown += 1; });
    $("updated").textContent = (lastUpdate ? "Updated " + new Date(lastUpdate).toLocaleTimeString() + " · " : "") +
      shown + " agents · " + metrics.size + " queue metrics";
    tick();
  }

  function renderViews() {
    if (views.length < 2) { $("views").innerHTML = ""; return; }
    $("views").innerHTML = views.map(function (v, i) {
      return '<span class="v' + (i === viewIndex ? " current" : "") + '" data-view="' + esc(v.name) + '">' +
        esc(v.title || v.name) + "</span>";
    }).join("");
  }

  function renderFilters() {
    var parts = [];
    var f = view().filters;
    [["source", "Source"], ["queue", "Queue"], ["state", "State"]].forEach(function (d) {
      if (f[d[0]].length) parts.push('<span class="chip">' + d[1] + ": " + esc(f[d[0]].join(", ")) + "</span>");
    });
    if (parts.length && !view().name) parts.push('<a class="clear" href="' + esc(linkWith({})) + '">× clear</a>');
    $("filters").innerHTML = parts.join("");
  }

  function linkWith(extra) {
    var q = new URLSearchParams();
    if (token) q.set("token", token);
    if (params.get("title")) q.set("title", params.get("title"));
    if (urlExpand.length) q.set("expand", urlExpand.join(","));
    Object.keys(extra).forEach(function (k) { q.set(k, extra[k]); });
    var s = q.toString();
    return window.location.pathname + (s ? "?" + s : "");
  }

  function byState() {
    var groups = {};
    STATES.forEach(function (s) { groups[s.id] = []; });
    agents.forEach(function (a, key) {
      if (matches(a, "agent")) (groups[a.state] || groups.unknown).push({ key: key, a: a });
    });
    return groups;
  }

  function expanded(stateId) {
    if (Object.prototype.hasOwnProperty.call(toggled, stateId)) return toggled[stateId];
    return view().expand.indexOf(stateId) >= 0;
  }

  function renderSummary(groups) {
    $("summary").innerHTML = STATES.map(function (s) {
      var inner = '<span class="icon" aria-hidden="true">' + s.icon + '</span>' +
        '<span class="n">' + groups[s.id].length + '</span>' +
        '<span class="label">' + s.label + "</span>";
      if (s.collapsed && !view().filters.state.length) {
        var open = expanded(s.id);
        return '<button type="button" class="count s-' + s.id + '" data-state="' + s.id + '" aria-expanded="' + open +
          '" title="' + (open ? "Hide" : "Show") + ' these agents">' + inner +
          '<span class="more" aria-hidden="true">' + (open ? "▾" : "▸") + "</span></button>";
      }
      return '<div class="count s-' + s.id + '" data-state="' + s.id + '">' + inner + "</div>";
    }).join("");
  }

  $("summary").addEventListener("click", function (e) {
    var button = e.target.closest("button.count");
    if (!button) return;
    var id = button.getAttribute("data-state");
    toggled[id] = !expanded(id);
    render();
  });

  // --- queue tiles ------------------------------------------------------------------------

  function snake(name) {
    return String(name).replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9]+/g, "_").toLowerCase();
  }

  function queues() {
    var out = new Map();
    metrics.forEach(function (m) {
      if (!matches(m, "metric")) return;
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
      return (a.name || a.id).localeCompare(b.name || b.id) || a.source.localeCompare(b.source);
    });
  }

  // canonical name -> the metric standing for it in queue q (module comment of CANONICAL)
  function canonical(q) {
    var out = {}, used = {};
    function take(role, name) { out[role.name] = q.metrics.get(name); used[name] = true; }
    CANONICAL.forEach(function (role) { if (q.metrics.has(role.name)) take(role, role.name); });
    CANONICAL.forEach(function (role) {
      if (out[role.name]) return;
      for (var i = 0; i < role.aliases.length; i++) {
        var a = role.aliases[i];
        if (q.metrics.has(a) && !used[a]) { take(role, a); return; }
      }
    });
    CANONICAL.forEach(function (role) {
      if (out[role.name]) return;
      var found = null;
      q.metrics.forEach(function (m, name) { if (!found && !used[name] && role.loose.test(snake(name))) found = name; });
      if (found) take(role, found);
    });
    return out;
  }

  function seconds(m) {
    if (!m || m.value == null || m.value === "") return null;
    if (m.unit === "timestamp") {
      var t = typeof m.value === "number" ? m.value : Date.parse(m.value);
      if (typeof m.value === "number" && t < 1e12) t *= 1000;
      return isFinite(t) && t > 0 ? Math.max(0, (now() - t) / 1000) : null;
    }
    var v = Number(m.value);
    if (!isFinite(v)) return null;
    if (m.unit === "ms" || m.unit === "milliseconds") return v / 1000;
    if (m.unit === "minutes" || m.unit === "min") return v * 60;
    return v;
  }

  function valueIn(unit, m, canonicalName) {
    if (!m || m.value == null || m.value === "" || typeof m.value === "boolean") return null;
    if (unit === "seconds") return seconds(m);
    var v = Number(m.value);
    if (!isFinite(v)) return null;
    if (unit === "percent" && m.metric !== canonicalName && m.unit !== "percent" && m.unit !== "%" && Math.abs(v) <= 1) {
      v *= 100;  // a vendor's fraction
    }
    return v;
  }

  function formatted(unit, v) {
    if (v == null) return "–";
    if (unit === "seconds") return duration(v);
    if (unit === "percent") return Math.round(v) + "%";
    return String(Math.round(v * 10) / 10);
  }

  function queueSettings(q) {
    var per = settings.thresholds.queues || {};
    return per[q.source + ":" + q.id] || per[q.id] || (q.name && per[q.name]) || null;
  }

  function threshold(q, names) {
    var own = queueSettings(q);
    var all = settings.thresholds.metrics || {};
    for (var i = 0; i < names.length; i++) if (own && own.metrics && own.metrics[names[i]]) return own.metrics[names[i]];
    for (var j = 0; j < names.length; j++) if (all[names[j]]) return all[names[j]];
    return null;
  }

  function reached(v, level, below) {
    return level != null && (below ? v <= level : v >= level);
  }

  function levelOf(v, th) {
    if (v == null || !th) return null;
    var below = th.direction === "below";
    if (reached(v, th.alert, below)) return "alert";
    if (reached(v, th.warn, below)) return "warn";
    return null;
  }

  function serviceLevelOf(q, v, rawName) {
    var own = queueSettings(q);
    var target = own && own.service_level_target != null ? own.service_level_target : settings.thresholds.service_level_target;
    if (target == null) return levelOf(v, threshold(q, ["service_level_percent", rawName]));
    if (v == null) return null;
    if (v >= target) return "ok";
    return v <= target - settings.thresholds.service_level_alert_margin ? "alert" : "warn";
  }

  var MARKS = { warn: "▲", alert: "‼", ok: "✓" };
  var RANK = { alert: 2, warn: 1 };

  function kpi(name, value, label, level) {
    return '<div class="kpi' + (level ? " lvl-" + level : "") + '" data-metric="' + esc(name) + '"' +
      (level ? ' data-level="' + level + '"' : "") + '><span class="v">' + value +
      (level ? '<span class="mark" aria-label="' + level + '">' + MARKS[level] + "</span>" : "") + "</span>" +
      '<span class="k">' + esc(label) + "</span></div>";
  }

  function humanise(name) {
    return String(name).replace(/_/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/ ?Count$/i, "").toLowerCase();
  }

  function tile(q, availableByQueue) {
    var only = view().metrics;
    var wanted = function (names) {
      return !only.length || names.some(function (n) { return only.indexOf(n) >= 0; });
    };
    var roles = canonical(q);
    var kpis = [], worst = null;
    function add(name, value, label, level) {
      kpis.push(kpi(name, value, label, level));
      if (RANK[level] && (!worst || RANK[level] > RANK[worst])) worst = level;
    }
    var shownRaw = {};
    CANONICAL.forEach(function (role) {
      var m = roles[role.name];
      var v = m ? valueIn(role.unit, m, role.name) : null;
      if (role.name === "agents_available" && !m) {  // none published: count the queue's agents
        var n = availableByQueue[q.source + ":" + q.id];
        if (n === undefined || !wanted([role.name])) return;
        v = n;
      } else if (!m || !wanted([role.name, m.metric])) {
        return;
      }
      if (m) shownRaw[m.metric] = true;
      var level = role.name === "service_level_percent" ? serviceLevelOf(q, v, m && m.metric)
        : levelOf(v, threshold(q, m ? [role.name, m.metric] : [role.name]));
      add(role.name, formatted(role.unit, v), role.label, level);
    });
    if (only.length) {  // vendor metrics a view asks for by name
      only.forEach(function (name) {
        var m = q.metrics.get(name);
        if (!m || shownRaw[name] || typeof m.value !== "number") return;
        var v = m.unit === "ms" || m.unit === "seconds" || m.unit === "timestamp" ? seconds(m) : m.value;
        var unit = m.unit === "ms" || m.unit === "seconds" || m.unit === "timestamp" ? "seconds" : "count";
        add(name, formatted(unit, v), humanise(name), levelOf(v, threshold(q, [name])));
      });
    } else if (!kpis.length) {  // no queue-like metric (e.g. a team's agent counters): its largest numbers
      var numeric = [];
      q.metrics.forEach(function (m) { if (typeof m.value === "number") numeric.push(m); });
      numeric.sort(function (x, y) { return y.value - x.value; });
      numeric.slice(0, 3).forEach(function (m) {
        var timed = m.unit === "seconds" || m.unit === "ms";
        var v = timed ? seconds(m) : m.value;
        add(m.metric, timed ? duration(v) : esc(m.value), humanise(m.metric), levelOf(v, threshold(q, [m.metric])));
      });
    }
    var all = [];
    q.metrics.forEach(function (m) { all.push(m.metric + ": " + m.value + (m.unit ? " " + m.unit : "")); });
    var state = sourceState(q.source);
    var stale = staleFor(q.source);
    var note = "";
    var cls = "tile";
    var src = sources.get(q.source) || {};
    var detail = src.detail;
    var where = placementText(q.source);
    if (state === "failed") {
      cls += " failed";
      note = "✖ source failed" + (detail ? ": " + detail : "");
    } else if (stale != null) {
      cls += " stale";
      note = "◷ no update for " + ago(stale);
    } else if (state === "retrying") {
      note = "⟳ source retrying" + (detail ? ": " + detail : "");
    }
    if (worst) cls += " lvl-" + worst;
    var name = q.name || q.id;
    return '<article class="' + cls + '" data-queue="' + esc(q.source + ":" + q.id) + '"' +
      (worst ? ' data-level="' + worst + '"' : "") + (stale != null ? ' data-stale="' + Math.floor(stale) + '"' : "") +
      (state ? ' data-source-state="' + esc(state) + '"' : "") +
      ' title="' + esc(all.join("\n")) + '">' +
      '<div class="head"><h2' + (name.length > 22 ? ' class="long"' : "") + '><a href="' + esc(linkWith({ queue: q.id })) +
      '" title="Show only this queue">' + esc(name) + "</a></h2>" +
      '<span class="src"' + (where ? ' title="' + esc(where) + '" data-placement="' + esc(src.placement) + '"' : "") +
      ">" + esc(q.source) + "</span></div>" +
      '<div class="kpis">' + (kpis.join("") || '<span class="src">no numbers yet</span>') + "</div>" +
      (note ? '<div class="note">' + esc(note) + "</div>" : "") + "</article>";
  }

  // Renders the tiles of the current page; returns how many pages the tiles need.
  function renderQueues(withAgents) {
    var availableByQueue = {};
    agents.forEach(function (a) {
      if (a.state !== "available" || !matches(a, "agent")) return;
      (a.queue_ids || []).forEach(function (q) { var k = a.source + ":" + q; availableByQueue[k] = (availableByQueue[k] || 0) + 1; });
    });
    var list = queues();
    var el = $("queues");
    el.style.minHeight = "";
    el.innerHTML = list.map(function (q) { return tile(q, availableByQueue); }).join("");
    if (!list.length) return 1;
    // Page by whole rows of the grid: at most ~40 % of the screen beside the agents, else all of it.
    var tiles = el.children;
    var top = el.getBoundingClientRect().top;
    var room = withAgents ? window.innerHeight * 0.4 : window.innerHeight - top - document.querySelector(".foot").offsetHeight - 8;
    var rows = [];
    for (var i = 0; i < tiles.length; i++) {
      var t = tiles[i].offsetTop;
      if (!rows.length || rows[rows.length - 1].top !== t) rows.push({ top: t, first: i, bottom: 0 });
      var r = rows[rows.length - 1];
      r.bottom = Math.max(r.bottom, t + tiles[i].offsetHeight);
    }
    var pageOf = [], n = 0, start = rows[0].top, tallest = 0;
    rows.forEach(function (r) {
      if (r.bottom - start > room && r.top !== start) { n += 1; start = r.top; }
      pageOf.push(n);
      tallest = Math.max(tallest, r.bottom - start);
    });
    var count = n + 1;
    if (count > 1) {  // as tall as the tallest page, so the agents' room does not change with the page
      var style = getComputedStyle(el);
      el.style.minHeight = Math.ceil(tallest + parseFloat(style.paddingTop) + parseFloat(style.paddingBottom)) + "px";
    }
    var current = page % count;
    rows.forEach(function (r, k) {
      var end = k + 1 < rows.length ? rows[k + 1].first : tiles.length;
      for (var j = r.first; j < end; j++) tiles[j].hidden = pageOf[k] !== current;
    });
    return count;
  }

  // --- agent columns ----------------------------------------------------------------------

  function shownStates(groups) {
    var f = view().filters;
    return STATES.filter(function (s) {
      if (f.state.length) return f.state.indexOf(s.id) >= 0;
      return !s.collapsed || (expanded(s.id) && groups[s.id].length > 0);  // an empty counter stays one
    });
  }

  function reasonLabel(a) {
    if (!a.reason_code) return null;
    var labels = settings.reason_labels || {};
    var keys = [a.source, a.vendor, "*"];
    for (var i = 0; i < keys.length; i++) {
      var table = labels[keys[i]];
      if (table && table[a.reason_code] != null) return table[a.reason_code];
    }
    return a.reason_label || a.reason_code;  // the configured label, else the vendor's own
  }

  function card(key, a, s) {
    var name = a.agent_name || a.agent_id;
    var reason = reasonLabel(a);
    var why = reason || (s.id === "unknown" && a.vendor_state ? a.vendor_state : "");  // what "unknown" was
    var tip = [name + (a.agent_name ? " (" + a.agent_id + ")" : ""), s.label, a.reason_code ? "reason " + a.reason_code + (reason !== a.reason_code ? " = " + reason : "") : null,
               a.vendor_state ? "vendor state " + a.vendor_state : null, a.source].filter(Boolean).join(" · ");
    return '<div class="agent s-' + s.id + '" data-key="' + esc(key) + '" data-since="' + esc(a.since || "") + '"' +
      ' data-state="' + s.id + '" data-source="' + esc(a.source) + '" title="' + esc(tip) + '">' +
      '<span class="icon" aria-label="' + s.label + '">' + s.icon + "</span>" +
      '<span class="name">' + esc(name) + "</span>" +
      '<span class="time"></span>' +
      '<span class="sub"><span class="why">' + esc(why) + "</span>" +
      '<span class="src">' + (why ? " · " : "") + esc(a.source) + '</span><span class="stale-note"></span></span></div>';
  }

  // Sizes of one density, measured on a hidden probe with the page's own fonts.
  function measure(density) {
    var board = $("board");
    var probe = document.createElement("div");
    probe.className = "probe";
    board.classList.add("d-" + density);
    probe.innerHTML = '<section class="column s-busy"><h2><span class="icon">☎</span><span class="label">Busy</span>' +
      '<span class="n">0</span></h2><div class="cards" style="grid-template-rows: auto auto">' +
      card("p1", { agent_id: "p", agent_name: "Probe", source: "p", state: "busy", reason_code: "r" }, STATE_BY_ID.busy) +
      card("p2", { agent_id: "p", agent_name: "Probe", source: "p", state: "busy", reason_code: "r" }, STATE_BY_ID.busy) +
      "</div></section>";
    board.appendChild(probe);
    var head = probe.querySelector("h2").offsetHeight;
    var cards = probe.querySelector(".cards");
    var items = cards.children;
    var style = getComputedStyle(cards);
    var out = {
      head: head,
      pitch: items[1].offsetTop - items[0].offsetTop,
      cardH: items[0].offsetHeight,
      padV: parseFloat(style.paddingTop) + parseFloat(style.paddingBottom),
      padH: parseFloat(style.paddingLeft) + parseFloat(style.paddingRight),
      gap: parseFloat(style.columnGap) || 0,
      minW: MIN_CARD_EM[density] * parseFloat(style.fontSize),
    };
    board.removeChild(probe);
    board.classList.remove("d-" + density);
    return out;
  }

  // How to lay the columns out at one density: rows per card column, card columns per state
  // column (as many as the biggest columns need to take the fewest pages), and the pages needed.
  function plan(density, counts, width, height, colGap) {
    var m = measure(density);
    var rows = Math.max(1, Math.floor((height - m.head - m.padV - m.cardH) / m.pitch) + 1);
    var ncols = counts.length;
    var room = width - (ncols - 1) * colGap - ncols * (m.padH - m.gap);
    var total = Math.max(ncols, Math.floor(room / (m.minW + m.gap)));
    var sub = counts.map(function () { return 1; });
    function pagesOf(i) { return Math.max(1, Math.ceil(counts[i] / (rows * sub[i]))); }
    var used = ncols;
    while (used < total) {  // one more card column to the column needing the most pages
      var worst = -1;
      for (var i = 0; i < ncols; i++) {
        if (worst < 0 || pagesOf(i) > pagesOf(worst) || (pagesOf(i) === pagesOf(worst) && counts[i] > counts[worst])) worst = i;
      }
      if (worst < 0 || pagesOf(worst) <= 1) break;
      sub[worst] += 1;
      used += 1;
    }
    var most = 1;
    for (var k = 0; k < ncols; k++) most = Math.max(most, pagesOf(k));
    return { density: density, rows: rows, sub: sub, pages: most };
  }

  // Renders the agent columns of the current page; returns how many pages they need.
  function renderBoard(groups) {
    var board = $("board");
    if (!agents.size && !metrics.size) {
      board.className = "board";
      board.innerHTML = '<div class="empty">Waiting for agent state from Kafka…</div>';
      return 1;
    }
    var shown = shownStates(groups);
    if (!shown.length) { board.innerHTML = ""; return 1; }
    shown.forEach(function (s) {
      groups[s.id].sort(function (x, y) {
        return (Date.parse(x.a.since) || 0) - (Date.parse(y.a.since) || 0) || (x.key < y.key ? -1 : 1);
      });
    });
    var counts = shown.map(function (s) { return groups[s.id].length; });
    board.className = "board";
    board.innerHTML = "";
    var style = getComputedStyle(board);
    var width = board.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    var height = board.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    var colGap = parseFloat(style.columnGap) || 0;
    var best = null;
    var candidates = DENSITIES.indexOf(urlDensity) >= 0 ? [urlDensity] : DENSITIES;
    candidates.forEach(function (d) {
      var p = plan(d, counts, width, height, colGap);
      if (!best || p.pages < best.pages) best = p;  // the fewest pages; the roomiest card on a tie
    });
    board.className = "board d-" + best.density;
    board.setAttribute("data-density", best.density);
    board.innerHTML = shown.map(function (s, i) {
      var list = groups[s.id];
      var perPage = best.rows * best.sub[i];
      var colPages = Math.max(1, Math.ceil(list.length / perPage));
      var p = page % colPages;
      var slice = list.slice(p * perPage, (p + 1) * perPage);
      var cards = slice.map(function (item) { return card(item.key, item.a, s); }).join("");
      return '<section class="column s-' + s.id + '" data-state="' + s.id + '" data-count="' + list.length + '"' +
        ' style="flex-grow: ' + best.sub[i] + '">' +
        '<h2><span class="icon" aria-hidden="true">' + s.icon + '</span><span class="label">' + s.label + "</span>" +
        (colPages > 1 ? '<span class="pg" title="Page of this column">' + (p + 1) + "/" + colPages + "</span>" : "") +
        '<span class="n">' + list.length + "</span></h2>" +
        '<div class="cards" style="grid-template-rows: repeat(' + best.rows + ", auto); grid-template-columns: repeat(" +
        best.sub[i] + ', minmax(0, 1fr))">' + cards + "</div></section>";
    }).join("");
    fitNames(board);
    return best.pages;
  }

  // A name (or a column's title) wider than its room shrinks a step or two before it is cut.
  function fitNames(root) {
    var names = root.querySelectorAll(".agent .name, .column > h2 .label");
    var over = [];
    for (var i = 0; i < names.length; i++) if (names[i].scrollWidth > names[i].clientWidth) over.push(names[i]);
    over.forEach(function (el) { el.classList.add("long"); });
    over.forEach(function (el) { if (el.scrollWidth > el.clientWidth) el.classList.add("longer"); });
  }

  // --- paging and the clock ---------------------------------------------------------------

  // A page lasts page_seconds, or less while views rotate, so that every page is on screen within
  // each view's turn; which page is on screen follows from the time since the view came up.
  function pageInterval() {
    var interval = settings.page_seconds || 10;
    return views.length > 1 ? Math.min(interval, every / Math.max(1, pages)) : interval;
  }

  function currentPage() {
    return Math.floor((Date.now() - viewStarted) / 1000 / pageInterval()) % Math.max(1, pages);
  }

  function turnPage() {
    if (pages > 1 && !dirty && currentPage() !== page) {
      page = currentPage();
      render();
    }
  }

  function tick() {
    var t = new Date(now());
    $("clock").textContent = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    var limits = settings.thresholds.time_in_state || {};
    var staleBySource = {};
    var cards = document.querySelectorAll(".agent[data-since]");
    for (var i = 0; i < cards.length; i++) {
      var el = cards[i];
      var since = Date.parse(el.getAttribute("data-since"));
      var secs = isFinite(since) ? (now() - since) / 1000 : null;
      el.querySelector(".time").textContent = duration(secs);
      var level = levelOf(secs, limits[el.getAttribute("data-state")]);
      el.classList.toggle("lvl-warn", level === "warn");
      el.classList.toggle("lvl-alert", level === "alert");
      if (level) el.setAttribute("data-level", level); else el.removeAttribute("data-level");
      var src = el.getAttribute("data-source");
      if (!(src in staleBySource)) staleBySource[src] = staleFor(src);
      var stale = staleBySource[src];
      el.classList.toggle("stale", stale != null);
      if (stale != null) {
        el.setAttribute("data-stale", String(Math.floor(stale)));
        el.querySelector(".stale-note").textContent = "◷ no update for " + ago(stale);
      } else {
        el.removeAttribute("data-stale");
      }
    }
  }

  function everySecond() {
    // Live values (a longest wait given as a timestamp), stale markers and timers move with time.
    if (!dirty && (agents.size || metrics.size)) {
      var board = $("board");
      var top = board.getBoundingClientRect().top;
      renderProblems();
      if (!$("queues").hidden) {
        var count = renderQueues(!board.hidden);
        if (count !== tilePages) { changed(); return; }
      }
      if (board.getBoundingClientRect().top !== top) { changed(); return; }  // the agents' room changed
    }
    tick();
  }

  // --- start ------------------------------------------------------------------------------

  window.addEventListener("resize", function () { changed(); });
  $("board").innerHTML = '<div class="empty">Connecting…</div>';
  setInterval(everySecond, 1000);
  tick();
  loadSettings(function () {
    setupViews();
    viewStarted = Date.now();
    render();
    startRotation();
    setInterval(turnPage, 200);
    connect();
  });
})();
