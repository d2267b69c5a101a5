// The explore page: one PromQL query, instant or range, as a graph (the dashboards'
// timeseries panel) or a table, with the API's warnings and notes shown; the address
// keeps the query (`/explore?query=…&range=1h&mode=range`). Range queries start and end
// on multiples of their step, as the dashboards' do, so steps that are multiples of a
// downsampling tier's resolution read the tier; `resolution=raw` reads samples only.

import { el, whoami } from "../common.mjs";
import { render as drawSeries } from "../dash/panels/timeseries.mjs";
import { render as drawTable } from "../dash/panels/table.mjs";
import { toSeries } from "../dash/queries.mjs";
import { formatDuration, parseDuration, roundInterval } from "../dash/time.mjs";

const page = document.getElementById("page");

async function run(form, out, notes) {
  const expr = form.querySelector("#explore-expr").value.trim();
  const mode = form.querySelector("#explore-mode").value;
  const range = form.querySelector("#explore-range").value;
  const resolution = form.querySelector("#explore-resolution").value;
  history.replaceState(null, "", "/explore?" + new URLSearchParams({ query: expr, mode, range, resolution }));
  if (!expr) return;
  const now = Date.now();
  const span = parseDuration(range) || 3600e3;
  // About 300 points, on a readable step (Grafana's), so long ranges step by whole
  // minutes and hours.
  const step = Math.max(1, Math.round(roundInterval(span / 300) / 1000));
  const end = Math.ceil(now / 1000 / step) * step * 1000;
  const params = mode === "range"
    ? { query: expr, start: String(Math.floor((now - span) / 1000 / step) * step), end: String(end / 1000), step: String(step), resolution }
    : { query: expr, time: String(now / 1000), resolution };
  const t0 = performance.now();
  const resp = await fetch((mode === "range" ? "/api/v1/query_range?" : "/api/v1/query?") + new URLSearchParams(params), { credentials: "same-origin" });
  const body = await resp.json().catch(() => ({ status: "error", error: resp.statusText }));
  notes.replaceChildren(...[...(body.warnings || []).map((w) => el("div", { class: "warning" }, "⚠ " + w)), ...(body.infos || []).map((w) => el("div", { class: "muted" }, "ℹ " + w))]);
  if (body.status !== "success") {
    out.replaceChildren(el("pre", { class: "error", id: "explore-error" }, `${body.errorType || resp.status}: ${body.error}`));
    return;
  }
  const req = { target: { legendFormat: "" }, refId: "A", path: mode === "range" ? "/api/v1/query_range" : "/api/v1/query", expr };
  const series = toSeries(body.data, req);
  const panel = { type: "timeseries", fieldConfig: { defaults: {}, overrides: [] }, options: { legend: { displayMode: "list" } } };
  const box = el("div", { class: "explore-out" });
  out.replaceChildren(el("p", { class: "muted", id: "explore-status" }, `${series.length} series, ${Math.round(performance.now() - t0)} ms${mode === "range" ? `, step ${formatDuration(step * 1000)}` : ""}`), box);
  const view = form.querySelector("#explore-view").value;
  if (view === "graph" && mode === "range") {
    drawSeries(box, panel, series, { width: box.clientWidth || 1000, height: 360, range: { from: end - span, to: end } });
  } else {
    drawTable(box, { ...panel, type: "table" }, series.map((s) => ({ ...s, instant: true })));
  }
}

export async function showExplore() {
  document.title = "Explore · Lookout";
  await whoami();
  const p = new URLSearchParams(location.search);
  const expr = el("textarea", { id: "explore-expr", rows: "3", spellcheck: "false", placeholder: "PromQL, e.g. rate(node_cpu_seconds_total[5m])" });
  expr.value = p.get("query") || "";
  const select = (id, opts, value) => { const s = el("select", { id }, ...opts.map(([v, t]) => el("option", { value: v }, t))); s.value = value; return s; };
  const out = el("div", { id: "explore-result" });
  const notes = el("div", { id: "explore-notes" });
  const form = el("form", { id: "explore-form", onsubmit: (ev) => { ev.preventDefault(); run(form, out, notes); } }, expr,
    el("div", { class: "row" },
      select("explore-mode", [["range", "Range"], ["instant", "Instant"]], p.get("mode") || "range"),
      select("explore-range", [["15m", "15 minutes"], ["1h", "1 hour"], ["6h", "6 hours"], ["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"], ["90d", "90 days"]], p.get("range") || "1h"),
      select("explore-resolution", [["auto", "Tiers where they line up"], ["raw", "Raw samples"]], p.get("resolution") || "auto"),
      select("explore-view", [["graph", "Graph"], ["table", "Table"]], p.get("view") || "graph"),
      el("button", { type: "submit", id: "explore-run" }, "Run")));
  page.replaceChildren(el("section", {}, el("h2", {}, "Explore"), form, notes, out));
  if (expr.value) await run(form, out, notes);
  page.dataset.dashboardState = "settled";
}
