// The dashboard pages (routed by `app.mjs`): `/dashboards` (the list, and the import form) and Grafana's
// `/d/<uid>[/<slug>]?from=…&to=…&var-x=…&refresh=…` (one dashboard: variables, time
// picker, auto refresh, the panel grid). Each panel element carries `data-panel-id` and
// `data-panel-state` (`loading`, `ok`, `nodata`, `error` with `data-panel-error`); the
// page's `data-dashboard-state` turns `settled` when every panel has.

import { describeRange, parseDuration, parseTime } from "./time.mjs";
import { chooseCurrent, interpolate, referencedNames, resolveOptions, queryText } from "./vars.mjs";
import { QueryRunner, exemplarRequests, panelRequests, toExemplars, toSeries } from "./queries.mjs";
import { compact, visiblePanels } from "./layout.mjs";
import { RENDERERS, modernize } from "./panels/index.mjs";
import { apiData, el, whoami } from "../common.mjs";

const QUICK = [["now-5m", "Last 5 minutes"], ["now-15m", "Last 15 minutes"], ["now-30m", "Last 30 minutes"], ["now-1h", "Last 1 hour"], ["now-3h", "Last 3 hours"], ["now-6h", "Last 6 hours"], ["now-12h", "Last 12 hours"], ["now-24h", "Last 24 hours"], ["now-2d", "Last 2 days"], ["now-7d", "Last 7 days"], ["now-30d", "Last 30 days"]];
const REFRESH = ["", "5s", "10s", "30s", "1m", "5m", "15m", "30m", "1h"];
const page = document.getElementById("page");

// ---- The list ------------------------------------------------------------------

export async function showList() {
  document.title = "Dashboards · Lookout";
  const list = await apiData("/api/v1/lookout/dashboards");
  const table = el("table", { class: "dash-list" });
  table.createTHead().append(el("tr", {}, el("th", {}, "Dashboard"), el("th", {}, "Tags"), el("th", {}, "Source"), el("th", {}, "Problem")));
  const body = table.createTBody();
  for (const d of list) {
    const title = d.error ? el("span", {}, d.title || d.path) : el("a", { href: "/d/" + encodeURIComponent(d.uid) }, d.title);
    body.append(el("tr", { "data-uid": d.uid }, el("td", {}, title), el("td", {}, ...d.tags.map((t) => el("span", { class: "tag" }, t))), el("td", { class: "muted" }, d.source + (d.path ? " " + d.path : "")), el("td", { class: "error" }, d.error || "")));
  }
  const text = el("textarea", { id: "import-json", rows: "6", placeholder: "Paste Grafana dashboard JSON (or choose a file)", spellcheck: "false" });
  const file = el("input", { type: "file", accept: ".json,application/json", onchange: async () => { if (file.files[0]) text.value = await file.files[0].text(); } });
  const status = el("span", { id: "import-status", class: "muted", role: "status" });
  const button = el("button", { type: "button", id: "import", onclick: async () => {
    status.className = "muted";
    status.textContent = "importing…";
    const resp = await fetch("/api/v1/lookout/dashboards", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: text.value });
    const b = await resp.json().catch(() => ({}));
    if (resp.ok) location.assign("/d/" + encodeURIComponent(b.data.uid));
    else { status.className = "error"; status.textContent = resp.status + ": " + (b.error || resp.statusText); }
  } }, "Import");
  page.replaceChildren(
    el("section", {}, el("h2", {}, "Dashboards"), table),
    el("section", { "data-needs": "operate" }, el("h2", {}, "Import a dashboard"), text, el("div", { class: "row" }, file, button, status)),
  );
  await whoami();
}

// ---- One dashboard --------------------------------------------------------------

const S = { dash: null, meta: null, scrapeMs: 15000, from: "now-6h", to: "now", refresh: "", vars: [], collapsed: new Set(), timer: null, cells: [] };

function varsMap() { return Object.fromEntries(S.vars.map((v) => [v.name, v])); }

function absRange() {
  const now = Date.now();
  const from = parseTime(S.from, now, false), to = parseTime(S.to, now, true);
  if (from === null || to === null || from >= to) throw new Error(`invalid time range ${S.from} to ${S.to}`);
  return { from, to };
}

function timeBuiltins(r) {
  return { __from: String(r.from), __to: String(r.to), __range: Math.round((r.to - r.from) / 1000) + "s", __range_s: String(Math.round((r.to - r.from) / 1000)), __range_ms: String(r.to - r.from), __dashboard: S.dash.title };
}

function writeUrl() {
  const p = new URLSearchParams();
  p.set("from", S.from);
  p.set("to", S.to);
  for (const v of S.vars) {
    if (v.type === "datasource" || v.type === "constant" || v.skipUrlSync) continue;
    const cur = v.current ? v.current.value : "";
    for (const x of Array.isArray(cur) ? cur : [cur]) p.append("var-" + v.name, x === "$__all" ? "All" : x);
  }
  if (S.refresh) p.set("refresh", S.refresh);
  history.replaceState(null, "", location.pathname + "?" + p.toString());
}

// Finds the options and current value of each variable in `which` (all by default), in
// order, so a chained variable sees those before it.
async function resolveVars(which, urlParams) {
  const r = absRange();
  const names = varsMap();
  for (const v of S.vars) {
    if (which && !which(v)) continue;
    const ctx = { startS: Math.floor(r.from / 1000), endS: Math.ceil(r.to / 1000), interpolate: (t) => interpolate(t, names, timeBuiltins(r)) };
    try { v.options = await resolveOptions(v, apiData, ctx); v.error = null; } catch (e) { v.options = []; v.error = e.message; }
    v.current = chooseCurrent(v, v.options, urlParams ? urlParams.getAll("var-" + v.name) : null);
  }
}

// Variables whose query uses one of `changed` (and, in turn, those using them).
function dependents(changed) {
  const out = new Set();
  let grew = true;
  while (grew) {
    grew = false;
    for (const v of S.vars) {
      if (out.has(v.name) || changed.has(v.name)) continue;
      const refs = referencedNames(queryText(v));
      if ([...refs].some((n) => changed.has(n) || out.has(n))) { out.add(v.name); grew = true; }
    }
  }
  return out;
}

function toolbar() {
  const bar = el("div", { class: "toolbar" }, el("h2", {}, S.dash.title));
  for (const v of S.vars) {
    if (v.hide === 2 || v.type === "datasource" || v.type === "constant") continue;
    const label = v.label || v.name;
    let input;
    if (v.type === "textbox") {
      input = el("input", { value: v.current ? v.current.value : "", "data-var": v.name, onchange: () => changeVar(v, input.value) });
    } else {
      input = el("select", { "data-var": v.name, onchange: () => changeVar(v, v.multi ? [...input.selectedOptions].map((o) => o.value) : input.value) });
      if (v.multi) input.multiple = true;
      const cur = new Set([].concat(v.current ? v.current.value : []));
      for (const o of v.options || []) { const opt = el("option", { value: o.value }, o.text); opt.selected = cur.has(o.value); input.append(opt); }
    }
    bar.append(el("label", { title: v.error || v.description || "" }, v.hide === 1 ? "" : label, input, v.error ? el("span", { class: "error" }, " ⚠ " + v.error) : null));
  }
  const quick = el("select", { id: "time-range", onchange: () => { if (quick.value) setRange(quick.value, "now"); } });
  quick.append(el("option", { value: "" }, describeRange(S.from, S.to)));
  for (const [f, name] of QUICK) { const o = el("option", { value: f }, name); o.selected = S.from === f && S.to === "now"; quick.append(o); }
  const from = el("input", { id: "time-from", value: S.from, size: "14" });
  const to = el("input", { id: "time-to", value: S.to, size: "14" });
  const apply = el("button", { type: "button", id: "time-apply", onclick: () => setRange(from.value.trim(), to.value.trim()) }, "Apply");
  const refresh = el("select", { id: "refresh", onchange: () => { S.refresh = refresh.value; schedule(); writeUrl(); } });
  for (const r of REFRESH) { const o = el("option", { value: r }, r || "Off"); o.selected = r === S.refresh; refresh.append(o); }
  bar.append(el("label", {}, "Time", quick), from, to, apply, el("label", {}, "Refresh", refresh), el("span", { id: "dash-status", class: "muted" }));
  return bar;
}

async function changeVar(v, value) {
  v.current = chooseCurrent(v, v.options || [], [].concat(value));
  const deps = dependents(new Set([v.name]));
  if (deps.size) await resolveVars((x) => deps.has(x.name));
  writeUrl();
  await draw();
}

async function setRange(from, to) {
  const saved = [S.from, S.to];
  S.from = from; S.to = to;
  try { absRange(); } catch (e) { [S.from, S.to] = saved; document.getElementById("dash-status").textContent = e.message; return; }
  await resolveVars((v) => v.refresh === 2);
  writeUrl();
  await draw();
}

function schedule() {
  if (S.timer) clearInterval(S.timer);
  S.timer = null;
  const ms = parseDuration(S.refresh);
  if (ms) S.timer = setInterval(() => refreshPanels(), Math.max(1000, ms));
}

// Draws one panel's data into its cell.
async function drawPanel(cell, runner, r) {
  const panel = modernize(cell.panel);
  const body = cell.body;
  const renderer = RENDERERS[panel.type];
  if (!renderer) {
    body.replaceChildren(el("div", { class: "placeholder" }, `Panel type "${panel.type}" is not supported by Lookout`));
    cell.root.dataset.panelUnsupported = panel.type;
    cell.root.dataset.panelState = "ok";
    return;
  }
  cell.root.dataset.panelState = "loading";
  delete cell.root.dataset.panelError;
  try {
    const width = body.clientWidth, height = body.clientHeight;
    const names = varsMap();
    const reqs = panel.type === "text" ? [] : panelRequests(panel, names, r, width, S.scrapeMs);
    const results = await Promise.all(reqs.map((q) => runner.run(q).then((d) => toSeries(d, q))));
    // Exemplars are extra: a failed request draws the panel without them.
    const exemplars = await Promise.all(exemplarRequests(reqs).map((q) => runner.run(q).then(toExemplars, () => [])));
    const ctx = { width, height, range: r, exemplars: exemplars.flat(), interpolate: (t) => interpolate(t, names, timeBuiltins(r)), onZoom: (f, t) => setRange(String(f), String(t)) };
    cell.root.dataset.panelState = renderer.render(body, panel, results.flat(), ctx) || "ok";
  } catch (e) {
    cell.root.dataset.panelState = "error";
    cell.root.dataset.panelError = e.message;
    body.textContent = e.message;
  }
}

async function refreshPanels() {
  let r;
  try { r = absRange(); } catch (e) { return; }
  const runner = new QueryRunner(apiData, 6);
  const t0 = performance.now();
  page.dataset.dashboardState = "loading";
  await Promise.all(S.cells.map((c) => drawPanel(c, runner, r)));
  page.dataset.dashboardState = "settled";
  page.dataset.settleMs = String(Math.round(performance.now() - t0));
  // Since the page's navigation started: what a user waits for a dashboard to open.
  page.dataset.settledAt = String(Math.round(performance.now()));
  page.dataset.requests = String(runner.sent);
  const status = document.getElementById("dash-status");
  if (status) status.textContent = `${S.cells.length} panels, ${runner.sent} queries, ${page.dataset.settleMs} ms`;
}

// Lays out the grid (rows, panels) and draws every panel.
async function draw() {
  const names = varsMap();
  let r;
  try { r = absRange(); } catch (e) { r = null; }
  const grid = el("div", { class: "dash-grid" });
  S.cells = [];
  for (const it of compact(visiblePanels(S.dash.panels, S.collapsed))) {
    const style = `grid-column: ${it.x + 1} / span ${it.w}; grid-row: ${it.y + 1} / span ${it.h};`;
    const title = interpolate(it.panel.title || "", names, r ? timeBuiltins(r) : {});
    if (it.panel.type === "row") {
      const collapsed = S.collapsed.has(it.panel.id);
      const inner = (it.panel.panels || []).length;
      grid.append(el("div", { class: "dash-row", style, "data-row-id": it.panel.id, onclick: () => { if (collapsed) S.collapsed.delete(it.panel.id); else S.collapsed.add(it.panel.id); draw(); } }, collapsed ? "▸" : "▾", title, collapsed && inner ? el("span", { class: "count" }, `(${inner} panels)`) : null));
      continue;
    }
    const body = el("div", { class: "body" });
    const root = el("div", { class: "dash-panel", style, "data-panel-id": it.panel.id, "data-panel-type": it.panel.type, "data-panel-state": "loading", title: it.panel.description || "" }, el("h3", {}, title), body);
    grid.append(root);
    S.cells.push({ panel: it.panel, root, body });
  }
  const old = page.querySelector(".dash-grid");
  if (old) old.replaceWith(grid); else page.append(grid);
  const bar = page.querySelector(".toolbar");
  if (bar) bar.replaceWith(toolbar()); else page.prepend(toolbar());
  await refreshPanels();
}

export async function showDashboard(uid) {
  const body = await apiData("/api/v1/lookout/dashboards/" + encodeURIComponent(uid));
  S.dash = body.dashboard;
  S.meta = body.meta;
  S.scrapeMs = parseDuration(body.meta.scrapeInterval || "") || 15000;
  document.title = S.dash.title + " · Lookout";
  const params = new URLSearchParams(location.search);
  S.from = params.get("from") || (S.dash.time && S.dash.time.from) || "now-6h";
  S.to = params.get("to") || (S.dash.time && S.dash.time.to) || "now";
  S.refresh = params.has("refresh") ? params.get("refresh") : (typeof S.dash.refresh === "string" ? S.dash.refresh : "");
  S.collapsed = new Set((S.dash.panels || []).filter((p) => p.type === "row" && p.collapsed).map((p) => p.id));
  S.vars = ((S.dash.templating && S.dash.templating.list) || []).map((v) => ({ ...v }));
  try { absRange(); } catch (e) { S.from = "now-6h"; S.to = "now"; }
  page.replaceChildren();
  await resolveVars(null, params);
  writeUrl();
  schedule();
  await draw();
  await whoami();
}

