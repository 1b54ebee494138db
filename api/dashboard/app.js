// pgshot dashboard. Plain JavaScript, no build step: served by pgshot-api from the binary.
// Every piece of data (URLs, titles, error messages, options) goes into the page as text nodes,
// never as markup, so a hostile page title is shown, not run. The key (or the operator token)
// lives in this tab's sessionStorage and is sent as a bearer token on every call.
"use strict";

const TOKEN = "pgshot.dashboard.token";
const STATUSES = ["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"];
let session = null;      // {role: "key" | "operator", owner?}
let events = null;       // the live stream's AbortController
let onChange = null;     // what the current view does when the stream says something changed
const blobUrls = [];     // object URLs of the current view, revoked when it is left

// A URL fragment #token=... (how pgshot screenshots its own views) is taken out of the URL and
// only proposed: a link someone else made must not log this tab into their key (whatever one
// then captures or enters would be theirs to see). Nothing is stored until the user confirms.
let pendingLogin = null;  // {token, next}
(function tokenFromFragment() {
  const m = location.hash.match(/^#token=([^&]+)(?:&(.*))?$/);
  if (m) {
    pendingLogin = { token: decodeURIComponent(m[1]), next: m[2] ? "#" + decodeURIComponent(m[2]) : "#/jobs" };
    history.replaceState(null, "", location.pathname + (sessionStorage.getItem(TOKEN) ? pendingLogin.next : ""));
  }
})();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const main = () => document.getElementById("main");
let routeToken = 0;      // bumped at every route and at the login form

// What a view draws with: only while its route is still the current one, so that data arriving
// after the user moved on (a slow job page, a login in between) never replaces the newer view.
function viewOf(token) {
  const current = () => token === routeToken;
  return {
    show: (...nodes) => { if (current()) show(...nodes); },
    live: (fn) => { if (current()) onChange = fn; },
    error: (e) => { if (current()) showError(e); },
  };
}

function show(...nodes) {
  blobUrls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  main().replaceChildren(...nodes);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || (body.error && body.error.message))) || "HTTP " + status);
    this.status = status;
    this.code = body && (body.errorCode || (body.error && body.error.code));
  }
}

async function call(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + sessionStorage.getItem(TOKEN) }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) {
    logout("The key was refused. Enter it again.");
    throw new ApiError(401, null);
  }
  if (!resp.ok) {
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, body);
  }
  return options.raw ? resp : resp.json();
}

// A result or thumbnail fetched with the key, shown from a blob: URL.
async function blobUrl(path) {
  const resp = await call(path, { raw: true });
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  blobUrls.push(url);
  return { url, type: blob.type, blob };
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toLocaleString();
}

function seconds(n) {
  n = Math.round(n);
  if (n < 60) return n + " s";
  if (n < 3600) return Math.floor(n / 60) + " min " + (n % 60) + " s";
  return Math.floor(n / 3600) + " h " + Math.floor((n % 3600) / 60) + " min";
}

function badge(status) { return el("span", { class: "status " + status }, status); }

function logout(message) {
  sessionStorage.removeItem(TOKEN);
  session = null;
  stopEvents();
  renderLogin(message);
}

// ---------------------------------------------------------------- login

function renderLogin(message) {
  routeToken += 1;
  onChange = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  const input = el("input", { id: "login-token", type: "password", autocomplete: "off",
                              placeholder: "API key, or the operator token" });
  const error = el("p", { class: "error", id: "login-error" }, message || "");
  const form = el("form", { class: "card login", id: "login-form", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, input.value.trim());
    try { await start(); } catch (err) { error.textContent = err.status === 401 ? "That key is not valid." : err.message; }
  } },
    el("h2", {}, "pgshot dashboard"),
    el("p", { class: "muted" }, "An API key shows its own jobs. The operator token (PGSHOT_ADMIN_TOKEN) shows every owner, the workers and the queue. It is kept in this tab only."),
    input, el("button", { class: "primary", type: "submit", id: "login-submit" }, "Open"), error);
  show(form);
  input.focus();
}

function renderConfirmLogin(pending) {
  routeToken += 1;
  onChange = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  const shown = pending.token.length > 12 ? pending.token.slice(0, 8) + "…" : "a token";
  const current = sessionStorage.getItem(TOKEN);
  const card = el("div", { class: "card login", id: "fragment-login" },
    el("h2", {}, "Open the dashboard with the key in this link?"),
    el("p", {}, "The link you followed carries a key (", shown, "). Continue only if you made this link yourself: "
      + "with someone else's key, what you capture or enter here would be theirs to see."),
    el("button", { class: "primary", type: "button", id: "fragment-login-confirm", onclick: async () => {
      sessionStorage.setItem(TOKEN, pending.token);
      history.replaceState(null, "", location.pathname + pending.next);
      try { await start(); } catch (err) { logout("That key is not valid."); }
    } }, "Open with this key"),
    el("button", { type: "button", id: "fragment-login-cancel", onclick: () => {
      if (current) start().catch(() => logout("")); else renderLogin("");
    } }, "Cancel"));
  show(card);
}

async function start() {
  session = await call("/dashboard/api/session");
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("nav-queue").hidden = session.role !== "operator";
  document.getElementById("nav-capture").hidden = session.role !== "key";
  // Schedules belong to API keys, and are read through the REST API with the key.
  document.getElementById("nav-schedules").hidden = session.role !== "key";
  document.getElementById("who").textContent = session.role === "operator" ? "operator: every owner" : "key " + session.owner;
  startEvents();
  route();
}

// ---------------------------------------------------------------- live updates

function stopEvents() {
  if (events) events.abort();
  events = null;
  document.getElementById("live").className = "";
}

// Server-sent events read with fetch (EventSource cannot send the key in a header).
async function startEvents() {
  stopEvents();
  const controller = new AbortController();
  events = controller;
  while (events === controller) {
    try {
      const resp = await fetch("/dashboard/api/events", {
        headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN), Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      document.getElementById("live").className = "on";
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: ?change$/m.test(block) && onChange) onChange();
        }
      }
    } catch (_) {
      if (events !== controller) return;
    }
    document.getElementById("live").className = "";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------------------------------------------------------------- routing

function route() {
  if (!session) return;
  const hash = location.hash || "#/jobs";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === parts[0]));
  onChange = null;
  const v = viewOf(++routeToken);
  if (parts[0] === "job" && parts[1]) return viewJob(v, parts[1]);
  if (parts[0] === "queue") return viewQueue(v);
  if (parts[0] === "capture") return viewCapture(v);
  // The REST API knows keys, not the operator token: the operator has no schedules view.
  if (session.role === "key" && parts[0] === "schedule" && parts[1]) return viewSchedule(v, parts[1]);
  if (session.role === "key" && parts[0] === "schedules") return viewSchedules(v);
  return viewJobs(v, params);
}

window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- jobs

function viewJobs(v, params) {
  const status = params.get("status") || "";
  const q = params.get("q") || "";
  const filter = el("select", { id: "status-filter", onchange: () => go(filter.value, search.value) },
    el("option", { value: "" }, "every status"),
    STATUSES.map((s) => el("option", { value: s, selected: s === status }, s)));
  const search = el("input", { id: "url-search", type: "search", placeholder: "search URLs", value: q,
                               onkeydown: (e) => { if (e.key === "Enter") go(filter.value, search.value); } });
  const go = (s, text) => {
    const p = new URLSearchParams();
    if (s) p.set("status", s);
    if (text) p.set("q", text);
    location.hash = "#/jobs" + (p.toString() ? "?" + p : "");
  };
  const body = el("tbody", { id: "jobs-body" });
  const more = el("button", { id: "more", hidden: true }, "More");
  const table = el("table", { id: "jobs" },
    el("thead", {}, el("tr", {}, ["", "Status", "URL", session.role === "operator" ? "Owner" : null, "Created", "Error"].filter((h) => h !== null).map((h) => el("th", {}, h)))),
    body);
  v.show(el("div", { class: "toolbar" }, filter, search, el("button", { onclick: () => go(filter.value, search.value) }, "Search")),
       el("div", { class: "card" }, table, more));
  let pages = 1;
  const load = async (cursor, append) => {
    const p = new URLSearchParams({ limit: "25" });
    if (status) p.set("status", status);
    if (q) p.set("q", q);
    if (cursor) p.set("cursor", cursor);
    const page = await call("/dashboard/api/jobs?" + p);
    const rows = page.jobs.map(jobRow);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
    if (!rows.length && !append) body.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No jobs.")));
    more.hidden = !page.nextCursor;
    more.onclick = () => { pages += 1; load(page.nextCursor, true); };
  };
  load(null, false).catch(v.error);
  // Live: the first page again (with the rows loaded so far) when something changed.
  v.live(() => { if (pages === 1) load(null, false).catch(() => {}); });
}

function jobRow(job) {
  const thumb = el("div", { class: "thumb" }, job.status === "COMPLETED" ? "…" : "");
  if (job.hasThumbnail) {
    blobUrl("/dashboard/api/jobs/" + encodeURIComponent(job.id) + "/thumbnail")
      .then(({ url }) => thumb.replaceChildren(el("img", { src: url, alt: "screenshot of " + job.url })))
      .catch(() => thumb.replaceChildren("no thumbnail"));
  } else if (job.status === "COMPLETED") {
    thumb.replaceChildren(job.outputs ? "outputs" : "no picture");
  }
  const error = job.errorCode
    ? [el("div", { class: "error-code" }, job.errorCode), el("div", { class: "error-message" }, job.errorMessage || "")]
    : job.lastError
      ? [el("div", { class: "muted" }, "retrying after " + job.lastError.errorCode), el("div", { class: "error-message" }, job.lastError.errorMessage)]
      : [];
  return el("tr", { class: "job-row", "data-id": job.id, "data-status": job.status },
    el("td", {}, el("a", { href: "#/job/" + encodeURIComponent(job.id) }, thumb)),
    el("td", {}, badge(job.status)),
    el("td", { class: "url" }, el("a", { href: "#/job/" + encodeURIComponent(job.id) }, job.url),
       job.metadata && job.metadata.title ? el("div", { class: "muted title" }, job.metadata.title) : null),
    session.role === "operator" ? el("td", { class: "muted" }, job.owner || "SQL") : null,
    el("td", { class: "muted" }, when(job.createdAt)),
    el("td", {}, error));
}

// ---------------------------------------------------------------- one job

async function viewJob(v, id) {
  const load = async () => {
    const page = await call("/dashboard/api/jobs/" + encodeURIComponent(id));
    const job = page.job;
    const actions = el("div", { class: "toolbar" });
    if (job.status === "QUEUED" || job.status === "PROCESSING") {
      actions.append(el("button", { class: "danger", id: "cancel-button", onclick: async () => {
        try { await call("/dashboard/api/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST" }); load(); }
        catch (e) { v.error(e); }
      } }, job.status === "PROCESSING" ? "Cancel (stops at the next heartbeat)" : "Cancel"));
    }
    if (job.status === "FAILED" || job.status === "CANCELLED") {
      actions.append(el("button", { id: "retry-button", onclick: async () => {
        try {
          const again = await call("/dashboard/api/jobs/" + encodeURIComponent(id) + "/retry", { method: "POST" });
          location.hash = "#/job/" + encodeURIComponent(again.id);
        } catch (e) { v.error(e); }
      } }, "Retry as a new job"));
    }
    const head = el("div", { class: "card", id: "job-view", "data-id": job.id, "data-status": job.status },
      el("h2", {}, badge(job.status), " ", el("span", { class: "url" }, job.url)),
      job.metadata && job.metadata.title ? el("p", { class: "title" }, "Title: ", job.metadata.title) : null,
      job.errorCode ? el("p", {}, el("span", { class: "error-code" }, job.errorCode), " ", el("span", { class: "error-message" }, job.errorMessage || "")) : null,
      el("p", { class: "muted" }, "Job ", job.id, page.owner ? " · key " + page.owner : " · enqueued from SQL",
         page.enqueuedBy ? " by role " + page.enqueuedBy : ""),
      actions);
    const timeline = el("ul", { class: "timeline", id: "timeline" }, el("li", {}, "Created ", when(job.createdAt)));
    for (const a of job.attempts || []) {
      timeline.append(el("li", { class: "attempt" }, "Attempt ", a.attempt, " ", badge(a.status),
        a.worker ? " on " + a.worker : "", a.startedAt ? ", started " + when(a.startedAt) : "",
        a.endedAt ? ", ended " + when(a.endedAt) : "",
        a.errorCode ? el("div", {}, el("span", { class: "error-code" }, a.errorCode), " ", el("span", { class: "error-message" }, a.errorMessage || "")) : null));
    }
    if (job.completedAt) timeline.append(el("li", {}, job.status, " ", when(job.completedAt)));
    if (job.expiresAt) timeline.append(el("li", { class: "muted" }, "Result kept until ", when(job.expiresAt)));
    const outputs = el("div", { id: "outputs" });
    if (job.status === "COMPLETED") {
      const list = job.outputs
        ? Object.entries(job.outputs).map(([oid, o]) => ({ path: "/outputs/" + encodeURIComponent(oid), name: oid, type: o.contentType }))
        : [{ path: "/result", name: "result", type: null }];
      for (const o of list) outputs.append(preview(id, o));
    }
    const deliveries = el("div", {});
    if ((page.deliveries || []).length) {
      deliveries.append(el("table", { id: "deliveries" },
        el("thead", {}, el("tr", {}, ["Webhook", "Status", "Attempts"].map((h) => el("th", {}, h)))),
        el("tbody", {}, page.deliveries.map((d) => el("tr", {},
          el("td", { class: "url" }, d.event, el("div", { class: "muted" }, d.url)),
          el("td", {}, d.status),
          el("td", {}, d.attempts.map((a) => el("div", {}, "#", a.attempt, " ", when(a.at), " → ",
            a.statusCode ? "HTTP " + a.statusCode : a.error, " (", a.durationMs, " ms)"))))))));
    } else {
      deliveries.append(el("p", { class: "muted" }, "No webhook."));
    }
    v.show(head,
      el("div", { class: "card" }, el("h3", {}, "Timeline"), timeline),
      el("div", { class: "card" }, el("h3", {}, "Outputs"), job.status === "COMPLETED" ? outputs : el("p", { class: "muted" }, "None yet.")),
      el("div", { class: "card" }, el("h3", {}, "Webhook deliveries"), deliveries),
      el("div", { class: "card" }, el("h3", {}, "Request (secrets masked)"), el("pre", { id: "request" }, JSON.stringify(page.request, null, 2))));
    return job.status;
  };
  let status;
  try { status = await load(); } catch (e) { return v.error(e); }
  v.live(async () => {
    if (status === "QUEUED" || status === "PROCESSING") {
      try { status = await load(); } catch (_) { /* the next change tries again */ }
    }
  });
}

function preview(id, o) {
  const box = el("div", { class: "preview" }, el("p", { class: "muted" }, o.name, " loading…"));
  blobUrl("/dashboard/api/jobs/" + encodeURIComponent(id) + o.path).then(async ({ url, type, blob }) => {
    const download = el("a", { href: url, download: id + "-" + o.name }, "Download " + o.name + " (" + type + ", " + blob.size + " bytes)");
    let view;
    if (type.startsWith("image/")) view = el("img", { src: url, alt: o.name, class: "output-image" });
    else if (type === "application/pdf") view = el("iframe", { src: url, title: o.name, sandbox: "" });
    else if (type.startsWith("text/") || type.includes("json")) view = el("pre", {}, (await blob.text()).slice(0, 200000));
    box.replaceChildren(el("p", {}, download), view || "");
  }).catch((e) => box.replaceChildren(el("p", { class: "error" }, o.name, ": ", e.message)));
  return box;
}

// ---------------------------------------------------------------- queue and workers

async function viewQueue(v) {
  const load = async () => {
    const q = await call("/dashboard/api/queue");
    const stat = (label, value, id) => el("div", { class: "stat", id }, el("b", {}, value), label);
    const workers = el("table", { id: "workers" },
      el("thead", {}, el("tr", {}, ["Worker", "Host", "Concurrency", "In flight", "Last seen", "Browser restarts", "Version"].map((h) => el("th", {}, h)))),
      el("tbody", {}, q.workers.map((w) => el("tr", { class: "worker-row", "data-alive": String(w.alive) },
        el("td", {}, w.alive ? badge("RUNNING") : el("span", { class: "muted" }, "gone"), " ", w.id),
        el("td", {}, w.host), el("td", {}, w.concurrency), el("td", {}, w.inFlight + " (" + w.jobsHeld + " held)"),
        el("td", {}, seconds(w.lastSeenSeconds) + " ago"), el("td", {}, w.browserRestarts), el("td", {}, w.version)))));
    const errors = q.errors.length
      ? el("table", { id: "error-codes" }, el("thead", {}, el("tr", {}, ["Error", "Jobs", "Last", "Last message"].map((h) => el("th", {}, h)))),
          el("tbody", {}, q.errors.map((e) => el("tr", {}, el("td", { class: "error-code" }, e.errorCode), el("td", {}, e.jobs),
            el("td", {}, when(e.lastAt)), el("td", { class: "error-message" }, e.lastMessage || "")))))
      : el("p", { class: "muted" }, "No failures in the last hour.");
    v.show(el("div", { id: "queue-view" },
      el("div", { class: "grid" },
        stat("queued", q.queued, "stat-queued"), stat("processing", q.processing, "stat-processing"),
        stat("completed, last hour", q.lastHour.completed, "stat-completed"), stat("failed, last hour", q.lastHour.failed, "stat-failed"),
        stat("cancelled, last hour", q.lastHour.cancelled), stat("oldest queued", seconds(q.oldestQueuedSeconds), "stat-oldest")),
      el("div", { class: "card" }, el("h3", {}, "Last hour, per minute"), chart(q.activity),
        el("div", { class: "legend muted" }, el("span", {}, "bars: jobs finished (red: failed)"), el("span", {}, "blue: render p50"), el("span", {}, "orange: render p95"))),
      el("div", { class: "card" }, el("h3", {}, "Error codes, last hour"), errors),
      el("div", { class: "card" }, el("h3", {}, "Workers"), workers),
      el("div", { class: "card" }, el("h3", {}, "Last 24 hours (pgshot.hourly)"), q.hourly.length
        ? el("table", {}, el("tbody", {}, q.hourly.map((h) => el("tr", {}, el("td", {}, when(h.hour)), el("td", {}, h.completed + " completed"),
            el("td", {}, h.failed + " failed"), el("td", {}, h.cancelled + " cancelled")))))
        : el("p", { class: "muted" }, "No hour has ended since jobs ran."))));
  };
  try { await load(); } catch (e) { return v.error(e); }
  v.live(() => load().catch(() => {}));
}

// Jobs per minute as bars, render p50/p95 as lines, over the last hour. SVG built node by node.
function chart(activity) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("id", "activity-chart");
  svg.setAttribute("viewBox", "0 0 600 180");
  svg.setAttribute("preserveAspectRatio", "none");
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
  };
  const now = Date.now();
  const x = (t) => 30 + ((t - (now - 3600e3)) / 3600e3) * 560;
  const maxJobs = Math.max(1, ...activity.map((a) => a.completed + a.failed + a.cancelled));
  const maxMs = Math.max(1, ...activity.map((a) => a.renderMsP95 || 0));
  for (const a of activity) {
    const t = Date.parse(a.at);
    const total = a.completed + a.failed + a.cancelled;
    const h = (total / maxJobs) * 150;
    const hb = (a.failed / maxJobs) * 150;
    node("rect", { class: "bar-ok", x: x(t), y: 160 - h, width: 8, height: h });
    if (hb) node("rect", { class: "bar-bad", x: x(t), y: 160 - hb, width: 8, height: hb });
  }
  for (const [key, cls] of [["renderMsP50", "p50"], ["renderMsP95", "p95"]]) {
    const pts = activity.filter((a) => a[key] != null).map((a) => x(Date.parse(a.at)) + 4 + "," + (160 - (a[key] / maxMs) * 150));
    if (pts.length) node("polyline", { class: cls, points: pts.join(" ") });
  }
  node("text", { x: 2, y: 12 }, maxJobs + " jobs/min");
  node("text", { x: 520, y: 12 }, Math.round(maxMs) + " ms");
  node("text", { x: 30, y: 176 }, "-60 min");
  node("text", { x: 560, y: 176 }, "now");
  return svg;
}

// ---------------------------------------------------------------- capture

function viewCapture(v) {
  const url = el("input", { id: "capture-url", type: "url", required: true, placeholder: "https://example.com", size: 60 });
  const device = el("select", { id: "capture-device" }, el("option", { value: "" }, "viewport below"),
    ["Desktop HD", "Desktop", "Laptop", "iPhone 14", "iPhone 14 Pro Max", "iPad", "iPad Pro"].map((d) => el("option", { value: d }, d)));
  const width = el("input", { id: "capture-width", type: "number", value: 1280, min: 100, max: 3840 });
  const height = el("input", { id: "capture-height", type: "number", value: 800, min: 100, max: 3840 });
  const fullPage = el("input", { id: "capture-full-page", type: "checkbox" });
  const dark = el("input", { id: "capture-dark", type: "checkbox" });
  const format = el("select", { id: "capture-format" }, ["png", "jpeg", "webp", "pdf"].map((f) => el("option", { value: f }, f)));
  const extra = el("select", { id: "capture-outputs" }, el("option", { value: "" }, "the screenshot only"),
    el("option", { value: "markdown" }, "screenshot + markdown"), el("option", { value: "html" }, "screenshot + HTML"));
  const error = el("p", { class: "error", id: "capture-error" });
  const form = el("form", { class: "card capture", id: "capture-form", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = { url: url.value, format: format.value, fullPage: fullPage.checked, darkMode: dark.checked };
    if (device.value) body.device = device.value; else body.viewport = { width: +width.value, height: +height.value };
    if (extra.value) body.outputs = [{ id: "screenshot", type: "screenshot" }, { id: extra.value, type: extra.value }];
    try {
      const created = await call("/v1/screenshots/async", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      location.hash = "#/job/" + encodeURIComponent(created.id);
    } catch (err) { error.textContent = err.message; }
  } },
    el("h2", {}, "Capture"),
    el("label", {}, "URL ", url),
    el("label", {}, "Device ", device, " or viewport ", width, " × ", height),
    el("label", {}, fullPage, " full page"), el("label", {}, dark, " dark mode"),
    el("label", {}, "Format ", format), el("label", {}, "Outputs ", extra),
    el("button", { class: "primary", type: "submit", id: "capture-submit" }, "Capture"), error);
  v.show(form);
}

// ---------------------------------------------------------------- schedules

// A run's capture (or its diff image), fetched with the key from its resultUrl.
function runImage(url, alt, cls) {
  const box = el("div", { class: cls || "thumb" }, "…");
  blobUrl(new URL(url).pathname).then(({ url: u, type }) => box.replaceChildren(
    type.startsWith("image/") ? el("img", { src: u, alt }) : el("span", { class: "muted" }, type)))
    .catch(() => box.replaceChildren(el("span", { class: "muted" }, "expired")));
  return box;
}

function scheduleActions(s, reload) {
  const act = (op, label) => el("button", { class: "schedule-" + op, onclick: async () => {
    try { await call("/v1/schedules/" + encodeURIComponent(s.id) + "/" + op, { method: "POST" }); } catch (e) { return showError(e); }
    reload();
  } }, label);
  return el("span", { class: "actions" },
    s.status === "ACTIVE" ? act("pause", "Pause") : s.status === "PAUSED" ? act("resume", "Resume") : null,
    act("trigger", "Run now"));
}

async function viewSchedules(v) {
  const load = async () => {
    const list = await call("/v1/schedules");
    const rows = await Promise.all(list.schedules.map(async (s) => {
      const h = await call("/v1/schedules/" + encodeURIComponent(s.id) + "/history?limit=1");
      const last = h.executions[0];
      return el("tr", { class: "schedule-row", "data-id": s.id, "data-status": s.status },
        el("td", {}, last && last.resultUrl ? runImage(last.resultUrl, "last capture of " + s.url) : el("div", { class: "thumb" }, "no capture")),
        el("td", {}, el("a", { href: "#/schedule/" + encodeURIComponent(s.id) }, s.name), el("div", { class: "url muted" }, s.url)),
        el("td", {}, badge(s.status), s.pausedReason ? el("div", { class: "error-message" }, s.pausedReason) : null),
        el("td", {}, s.scheduleDescription, el("div", { class: "muted" }, s.schedule + " · " + s.timezone)),
        el("td", { class: "muted" }, s.nextExecutionAt ? when(s.nextExecutionAt) : "—"),
        el("td", { class: "muted" }, s.successCount + " ok, " + s.failureCount + " failed"),
        el("td", {}, scheduleActions(s, () => load().catch(v.error))));
    }));
    v.show(el("div", { class: "card", id: "schedules-view" },
      el("h2", {}, "Schedules"),
      rows.length
        ? el("table", { id: "schedules" }, el("thead", {}, el("tr", {}, ["Last capture", "Name", "Status", "When", "Next run", "Runs", ""].map((h) => el("th", {}, h)))),
            el("tbody", {}, rows))
        : el("p", { class: "muted" }, "No schedules. Create one with POST /v1/schedules or screenshot_schedule_create().")));
  };
  try { await load(); } catch (e) { return v.error(e); }
  v.live(() => load().catch(() => {}));
}

async function viewSchedule(v, id) {
  const load = async () => {
    const s = await call("/v1/schedules/" + encodeURIComponent(id));
    const h = await call("/v1/schedules/" + encodeURIComponent(id) + "/history?limit=50");
    const runs = h.executions.map((r) => el("tr", { class: "run-row", "data-id": r.id, "data-status": r.status, "data-changed": String(r.changed) },
      el("td", {}, r.resultUrl ? runImage(r.resultUrl, "capture") : el("div", { class: "thumb" }, r.status)),
      el("td", {}, r.diffUrl ? runImage(r.diffUrl, "difference from the previous capture", "thumb diff") : el("div", { class: "thumb muted" }, "nothing to compare")),
      el("td", {}, badge(r.status), r.triggered ? el("div", { class: "muted" }, "run now") : null),
      el("td", {}, r.changed === true ? el("b", { class: "changed" }, "changed") : r.changed === false ? "unchanged" : el("span", { class: "muted" }, "first capture"),
         r.diffScore != null ? el("div", { class: "muted" }, (r.diffScore * 100).toFixed(2) + "% of pixels") : null),
      el("td", { class: "muted" }, when(r.executedAt)),
      el("td", {}, r.errorCode ? [el("div", { class: "error-code" }, r.errorCode), el("div", { class: "error-message" }, r.errorMessage || "")] : "",
         r.jobId ? el("div", {}, el("a", { href: "#/job/" + encodeURIComponent(r.jobId) }, "job")) : null)));
    v.show(el("div", { id: "schedule-view", "data-id": s.id },
      el("div", { class: "card" },
        el("h2", {}, s.name, " ", badge(s.status)),
        s.pausedReason ? el("p", { class: "error", id: "paused-reason" }, s.pausedReason) : null,
        el("p", { class: "url" }, s.url),
        el("p", {}, s.scheduleDescription, " (", s.schedule, ", ", s.timezone, ") · next run ", s.nextExecutionAt ? when(s.nextExecutionAt) : "none",
           " · ", s.onlyOnChange ? "delivered when over " + (s.diffThreshold * 100) + "% of pixels change" : "every capture delivered"),
        scheduleActions(s, () => load().catch(v.error))),
      el("div", { class: "card" }, el("h3", {}, "History (" + h.totalExecutions + " runs)"),
        runs.length
          ? el("table", { id: "runs" }, el("thead", {}, el("tr", {}, ["Capture", "Difference", "Status", "Change", "Started", ""].map((t) => el("th", {}, t)))),
              el("tbody", {}, runs))
          : el("p", { class: "muted" }, "No runs yet."))));
  };
  try { await load(); } catch (e) { return v.error(e); }
  v.live(() => load().catch(() => {}));
}

function showError(e) {
  if (e && e.status === 401) return;
  show(el("div", { class: "card error", id: "view-error" }, e.status === 403 ? "Not allowed: " : "Error: ", e.message));
}

window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout(""));
  if (pendingLogin) renderConfirmLogin(pendingLogin);
  else if (sessionStorage.getItem(TOKEN)) start().catch(() => logout("The key was refused. Enter it again."));
  else renderLogin("");
});
