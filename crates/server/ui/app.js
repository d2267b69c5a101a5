// Lookout's status page (/status): alerts, health, collectors, vitals and a query box. An
// ES module over the Prometheus-compatible API; uPlot draws the charts.

import { applyRole, send, whoami } from "./common.mjs";

const VITALS = [
  { title: "CPU busy (%)", expr: '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m])))' },
  { title: "Memory used (%)", expr: "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)" },
  { title: "Load average", expr: '{__name__=~"node_load1|node_load5|node_load15"}' },
  { title: "Network receive (bytes/s)", expr: 'sum by (device) (rate(node_network_receive_bytes_total{device!="lo"}[1m]))' },
];
const VITALS_WINDOW = 900;
const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

async function api(path, params) {
  const url = params ? path + "?" + new URLSearchParams(params) : path;
  const resp = await fetch(url);
  const body = await resp.json();
  if (body.status === "error") throw new Error(body.errorType + ": " + body.error);
  return body;
}

function showAction(msg, failed) {
  const el = document.getElementById("action-status");
  el.className = failed ? "error" : "muted";
  text(el, msg);
}

function text(el, s) { el.textContent = s; return el; }
function cell(row, s, cls) { const td = row.insertCell(); text(td, s); if (cls) td.className = cls; return td; }
function badge(status) { const b = document.createElement("span"); b.className = "badge " + status; b.textContent = status; return b; }
function ago(secs) {
  if (secs == null) return "never";
  const d = Math.max(0, Date.now() / 1000 - secs);
  return d < 90 ? Math.round(d) + "s ago" : Math.round(d / 60) + "m ago";
}

function labelString(metric) {
  const parts = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
  const name = metric.__name__ || "";
  return parts.length ? `${name}{${parts.join(", ")}}` : (name || "{}");
}

// Range query results share the step grid, so align series on it (null for gaps).
function toUplot(result, start, end, step) {
  const xs = [];
  for (let t = start; t <= end + 1e-9; t += step) xs.push(Math.round(t * 1000) / 1000);
  const index = new Map(xs.map((t, i) => [t, i]));
  const data = [xs];
  for (const s of result) {
    const ys = new Array(xs.length).fill(null);
    for (const [t, v] of s.values) {
      const i = index.get(Math.round(t * 1000) / 1000);
      if (i !== undefined) ys[i] = parseFloat(v);
    }
    data.push(ys);
  }
  return data;
}

function drawChart(el, result, start, end, step, height) {
  el.innerHTML = "";
  if (!result.length) { text(el, "No data yet."); el.classList.add("muted"); return; }
  el.classList.remove("muted");
  const series = [{}].concat(result.map((s, i) => ({
    label: labelString(s.metric), stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
  })));
  const width = Math.max(300, el.clientWidth || 600);
  new uPlot({ width, height: height || 220, series, legend: { live: true } }, toUplot(result, start, end, step), el);
}

async function rangeQuery(expr, seconds) {
  const end = Date.now() / 1000;
  const start = end - seconds;
  const step = Math.max(15, Math.ceil(seconds / 240));
  const body = await api("/api/v1/query_range", { query: expr, start: start.toFixed(3), end: end.toFixed(3), step });
  return { result: body.data.result, end, step, rawStart: start };
}

async function refreshVitals() {
  const grid = document.getElementById("vitals");
  for (const [i, v] of VITALS.entries()) {
    let panel = grid.children[i];
    if (!panel) {
      panel = document.createElement("div");
      panel.className = "panel";
      panel.innerHTML = "<h3></h3><div class=chart></div>";
      text(panel.querySelector("h3"), v.title);
      grid.appendChild(panel);
    }
    const chart = panel.querySelector(".chart");
    try {
      const r = await rangeQuery(v.expr, VITALS_WINDOW);
      drawChart(chart, r.result, gridStart(r.rawStart), r.end, r.step, 180);
    } catch (e) { text(chart, e.message); chart.className = "chart error"; }
  }
}

// Prometheus evaluates range queries at start, start+step, …; the chart uses the same grid.
function gridStart(start) { return Math.round(start * 1000) / 1000; }

async function refreshHealth() {
  try {
    const resp = await fetch("/health");
    const h = await resp.json();
    const overall = document.getElementById("overall");
    overall.className = "badge " + h.status;
    overall.textContent = "health: " + h.status;
    const tbody = document.querySelector("#health tbody");
    tbody.innerHTML = "";
    for (const c of h.checks) {
      const row = tbody.insertRow();
      cell(row, c.name);
      row.insertCell().appendChild(badge(c.status));
      cell(row, c.message);
      cell(row, c.duration_ms.toFixed(2) + " ms");
    }
  } catch (e) { text(document.getElementById("overall"), "health: unreachable"); }
}

// The notifier's alerts (fingerprints and acknowledgements); empty when it does not run.
async function notifierAlerts() {
  try {
    const resp = await fetch("/api/v2/alerts");
    return resp.ok ? await resp.json() : [];
  } catch (e) { return []; }
}

function sameAlert(ruleLabels, notified) {
  return Object.entries(ruleLabels).every(([k, v]) => notified.labels[k] === v);
}

function ackCell(row, notified) {
  const td = row.insertCell();
  if (!notified) return;
  const fp = notified.fingerprint;
  const button = (label, action) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.needs = "operate";
    b.dataset.fingerprint = fp;
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await action(); showAction(label + ": done"); } catch (e) { showAction(label + " failed: " + e.message, true); }
      refreshAlerts();
    });
    td.appendChild(b);
  };
  const ack = notified.acknowledged;
  if (ack) {
    td.appendChild(text(document.createElement("span"), "by " + ack.by + (ack.comment ? " (" + ack.comment + ")" : "") + " "));
    button("Unacknowledge", () => send("DELETE", "/api/v1/lookout/alerts/" + fp + "/ack"));
  } else {
    button("Acknowledge", () => send("POST", "/api/v1/lookout/alerts/" + fp + "/ack", { comment: "from the web UI" }));
  }
}

async function refreshAlerts() {
  try {
    const [body, notified] = await Promise.all([api("/api/v1/alerts"), notifierAlerts()]);
    const tbody = document.querySelector("#alerts tbody");
    tbody.innerHTML = "";
    const alerts = body.data.alerts.slice().sort((a, b) =>
      (a.state === b.state ? 0 : a.state === "firing" ? -1 : 1) || a.labels.alertname.localeCompare(b.labels.alertname));
    document.getElementById("alerts-none").hidden = alerts.length > 0;
    for (const a of alerts) {
      const row = tbody.insertRow();
      cell(row, a.labels.alertname);
      row.insertCell().appendChild(badge(a.state === "firing" ? "unhealthy" : "degraded")).textContent = a.state;
      const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => k + "=" + v).join(", ");
      cell(row, labels, "muted");
      cell(row, a.annotations.summary || "");
      cell(row, new Date(a.activeAt).toLocaleString());
      const rb = row.insertCell();
      if (a.annotations.runbook_url) {
        const link = document.createElement("a");
        link.href = a.annotations.runbook_url;
        link.textContent = "runbook";
        rb.appendChild(link);
      }
      ackCell(row, a.state === "firing" ? notified.find((n) => sameAlert(a.labels, n)) : undefined);
    }
    applyRole(tbody);
  } catch (e) { /* shown by health */ }
}

async function refreshCollectors() {
  try {
    const body = await api("/api/v1/lookout/collectors");
    const tbody = document.querySelector("#collectors tbody");
    tbody.innerHTML = "";
    for (const c of body.data) {
      const row = tbody.insertRow();
      cell(row, c.name);
      const status = c.last_run == null ? "unknown" : (c.last_error ? "degraded" : "healthy");
      const st = row.insertCell();
      st.appendChild(badge(status));
      if (c.last_error) { st.appendChild(document.createElement("br")); st.appendChild(text(document.createElement("small"), c.last_error)); }
      cell(row, ago(c.last_run));
      cell(row, c.last_duration_seconds == null ? "–" : (c.last_duration_seconds * 1000).toFixed(1) + " ms");
      cell(row, String(c.last_samples));
      cell(row, c.runs + " / " + c.failures);
    }
  } catch (e) { /* shown by health */ }
}

async function runQuery(ev) {
  if (ev) ev.preventDefault();
  const expr = document.getElementById("expr").value.trim();
  const seconds = parseInt(document.getElementById("range").value, 10);
  const err = document.getElementById("query-error");
  const status = document.getElementById("query-status");
  err.hidden = true;
  status.textContent = "running…";
  const t0 = performance.now();
  try {
    const r = await rangeQuery(expr, seconds);
    drawChart(document.getElementById("query-chart"), r.result, gridStart(r.rawStart), r.end, r.step, 300);
    status.textContent = `${r.result.length} series in ${Math.round(performance.now() - t0)} ms`;
  } catch (e) {
    err.hidden = false;
    text(err, e.message);
    status.textContent = "";
  }
}

async function init() {
  try {
    const b = await api("/api/v1/status/buildinfo");
    text(document.getElementById("version"), "v" + b.data.version);
  } catch (e) { /* optional */ }
  // Who is signed in and what they may do; the page offers only what the role allows
  // (elements marked data-needs="operate" or "administer" are hidden otherwise).
  await whoami();
  document.getElementById("reload").addEventListener("click", async () => {
    try { showAction((await send("POST", "/-/reload")).trim()); } catch (e) { showAction("reload failed: " + e.message, true); }
  });
  document.getElementById("query-form").addEventListener("submit", runQuery);
  const tick = () => { refreshAlerts(); refreshHealth(); refreshCollectors(); refreshVitals(); };
  tick();
  runQuery();
  setInterval(tick, 15000);
}

init();
