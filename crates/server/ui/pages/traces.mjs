// The trace pages, over Jaeger's query API: `/traces` searches (service, operation, tags
// as `key=value` pairs, look-back, durations, limit; the address keeps the search) and
// lists the traces found; `/trace/<id>` draws one as a waterfall, each span a bar on the
// trace's time line under its parent, errors in red, a click showing its tags, process
// and events.

import { el, whoami } from "../common.mjs";

const page = document.getElementById("page");

async function jaeger(path, params) {
  const url = params ? path + "?" + new URLSearchParams(params) : path;
  const resp = await fetch(url, { credentials: "same-origin" });
  const body = await resp.json().catch(() => ({ errors: [{ msg: resp.statusText }] }));
  if (body.errors && body.errors.length) throw new Error(`${resp.status}: ${body.errors[0].msg}`);
  return body.data;
}

// "1.23 s", "45.6 ms", "789 µs" from microseconds.
export function formatMicros(us) {
  if (us >= 1e6) return (us / 1e6).toFixed(2) + " s";
  if (us >= 1e3) return (us / 1e3).toFixed(1) + " ms";
  return Math.round(us) + " µs";
}

const isError = (s) => (s.tags || []).some((t) => (t.key === "error" && t.value === true) || (t.key === "otel.status_code" && t.value === "ERROR"));

// `a=b c="d e"` → {a: "b", c: "d e"}.
export function parseTags(text) {
  const out = {};
  for (const m of text.matchAll(/([^\s=]+)=("([^"]*)"|\S*)/g)) out[m[1]] = m[3] !== undefined ? m[3] : m[2];
  return out;
}

function summary(t) {
  const spans = t.spans;
  const start = Math.min(...spans.map((s) => s.startTime));
  const end = Math.max(...spans.map((s) => s.startTime + s.duration));
  const ids = new Set(spans.map((s) => s.spanID));
  const root = spans.find((s) => !(s.references || []).some((r) => ids.has(r.spanID))) || spans[0];
  const proc = t.processes[root.processID] || {};
  return { start, duration: end - start, root, service: proc.serviceName || "?", errors: spans.filter(isError).length };
}

async function search(form, out) {
  const v = (id) => form.querySelector(id).value.trim();
  const params = { service: v("#traces-service"), lookback: v("#traces-lookback"), limit: v("#traces-limit") || "20" };
  if (v("#traces-operation")) params.operation = v("#traces-operation");
  if (v("#traces-min")) params.minDuration = v("#traces-min");
  if (v("#traces-max")) params.maxDuration = v("#traces-max");
  const tags = parseTags(v("#traces-tags"));
  if (Object.keys(tags).length) params.tags = JSON.stringify(tags);
  history.replaceState(null, "", "/traces?" + new URLSearchParams(params));
  if (!params.service) return;
  let traces;
  try {
    traces = await jaeger("/api/traces", params);
  } catch (e) {
    out.replaceChildren(el("p", { class: "error", id: "traces-error" }, e.message));
    return;
  }
  const rows = traces.map((t) => {
    const s = summary(t);
    return el("tr", { class: "trace-result", "data-trace-id": t.traceID },
      el("td", {}, el("a", { href: "/trace/" + t.traceID }, `${s.service}: ${s.root.operationName}`)),
      el("td", {}, String(t.spans.length)),
      el("td", {}, s.errors ? el("span", { class: "badge unhealthy" }, `${s.errors} error${s.errors > 1 ? "s" : ""}`) : ""),
      el("td", {}, formatMicros(s.duration)),
      el("td", { class: "muted" }, new Date(s.start / 1000).toLocaleString()),
      el("td", { class: "muted mono" }, t.traceID.slice(0, 16)));
  });
  out.replaceChildren(
    el("p", { class: "muted", id: "traces-count" }, `${traces.length} trace${traces.length === 1 ? "" : "s"}`),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Trace", "Spans", "", "Duration", "Started", "ID"].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)));
}

export async function showTraces() {
  document.title = "Traces · Lookout";
  await whoami();
  const p = new URLSearchParams(location.search);
  const out = el("div", { id: "traces-result" });
  let services = [];
  try {
    services = await jaeger("/api/services");
  } catch (e) {
    page.replaceChildren(el("section", {}, el("h2", {}, "Traces"), el("p", { class: "error", id: "traces-error" }, e.message)));
    page.dataset.dashboardState = "settled";
    return;
  }
  const service = el("select", { id: "traces-service" }, ...services.map((s) => el("option", { value: s }, s)));
  if (p.get("service")) service.value = p.get("service");
  const operation = el("select", { id: "traces-operation" }, el("option", { value: "" }, "all operations"));
  const loadOps = async () => {
    const ops = service.value ? await jaeger(`/api/services/${encodeURIComponent(service.value)}/operations`).catch(() => []) : [];
    operation.replaceChildren(el("option", { value: "" }, "all operations"), ...ops.map((o) => el("option", { value: o }, o)));
  };
  service.addEventListener("change", loadOps);
  await loadOps();
  if (p.get("operation")) operation.value = p.get("operation");
  const input = (id, placeholder, value, size) => el("input", { id, placeholder, value: value || "", size: size || "8" });
  let tagText = "";
  try { tagText = Object.entries(JSON.parse(p.get("tags") || "{}")).map(([k, v]) => `${k}=${/\s/.test(v) ? `"${v}"` : v}`).join(" "); } catch (e) { /* ignored */ }
  const lookback = el("select", { id: "traces-lookback" }, ...[["15m", "15 minutes"], ["1h", "1 hour"], ["6h", "6 hours"], ["24h", "1 day"], ["168h", "7 days"]].map(([v, t]) => el("option", { value: v }, t)));
  lookback.value = p.get("lookback") || "1h";
  const form = el("form", { id: "traces-form", onsubmit: (ev) => { ev.preventDefault(); search(form, out).then(() => { page.dataset.dashboardState = "settled"; }); } },
    el("div", { class: "row" }, service, operation, lookback,
      input("traces-tags", "tags: error=true http.route=/kv", tagText, "28"),
      input("traces-min", "min, e.g. 10ms", p.get("minDuration")),
      input("traces-max", "max", p.get("maxDuration")),
      input("traces-limit", "limit", p.get("limit") || "20", "4"),
      el("button", { type: "submit", id: "traces-run" }, "Find traces")));
  page.replaceChildren(el("section", {}, el("h2", {}, "Traces"), services.length ? form : el("p", { class: "muted" }, "No spans received yet: send OTLP to /v1/traces."), out));
  if (services.length) await search(form, out);
  page.dataset.dashboardState = "settled";
}

// Spans in tree order (children under their parent, by start), with their depth.
export function treeOrder(spans) {
  const ids = new Set(spans.map((s) => s.spanID));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    const parent = (s.references || []).find((r) => r.refType === "CHILD_OF" && ids.has(r.spanID));
    if (parent) {
      if (!children.has(parent.spanID)) children.set(parent.spanID, []);
      children.get(parent.spanID).push(s);
    } else roots.push(s);
  }
  const out = [];
  const walk = (s, depth) => {
    out.push({ span: s, depth });
    for (const c of (children.get(s.spanID) || []).sort((a, b) => a.startTime - b.startTime)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.startTime - b.startTime)) walk(r, 0);
  return out;
}

function kv(rows) {
  return el("table", { class: "kv" }, el("tbody", {}, ...rows.map((t) => el("tr", {}, el("td", { class: "muted" }, t.key), el("td", { class: "mono" }, String(t.value))))));
}

function details(span, proc, t0) {
  const logs = (span.logs || []).map((l) => el("div", { class: "span-log" },
    el("span", { class: "muted" }, "+" + formatMicros(l.timestamp - t0) + " "),
    ...(l.fields || []).map((f) => el("span", {}, `${f.key}=${f.value} `))));
  return el("div", { class: "span-detail", "data-span-id": span.spanID },
    el("h3", {}, "Tags"), kv(span.tags || []),
    el("h3", {}, `Process: ${proc.serviceName || "?"}`), kv(proc.tags || []),
    logs.length ? el("h3", {}, "Events") : null, ...logs,
    el("p", { class: "muted mono" }, `span ${span.spanID}`));
}

export async function showTrace(id) {
  document.title = "Trace · Lookout";
  await whoami();
  let t;
  try {
    [t] = await jaeger("/api/traces/" + encodeURIComponent(id));
  } catch (e) {
    page.replaceChildren(el("section", {}, el("h2", {}, "Trace " + id), el("p", { class: "error", id: "trace-error" }, e.message), el("a", { href: "/traces" }, "Search traces")));
    page.dataset.dashboardState = "settled";
    return;
  }
  const s = summary(t);
  const rows = [];
  for (const { span, depth } of treeOrder(t.spans)) {
    const proc = t.processes[span.processID] || {};
    const left = ((span.startTime - s.start) / Math.max(1, s.duration)) * 100;
    const width = Math.max(0.3, (span.duration / Math.max(1, s.duration)) * 100);
    const err = isError(span);
    const row = el("div", { class: "span-row" + (err ? " span-error" : ""), "data-span-id": span.spanID, "data-depth": String(depth), "data-error": String(err) },
      el("div", { class: "span-name", style: `padding-left:${depth * 14}px` }, el("b", {}, proc.serviceName || "?"), " " + span.operationName),
      el("div", { class: "span-track" }, el("div", { class: "span-bar", style: `left:${left}%;width:${width}%` }), el("span", { class: "span-dur", style: `left:${Math.min(left + width, 92)}%` }, formatMicros(span.duration))));
    row.addEventListener("click", () => {
      const open = row.nextElementSibling && row.nextElementSibling.classList.contains("span-detail");
      if (open) row.nextElementSibling.remove(); else row.after(details(span, proc, s.start));
    });
    rows.push(row);
  }
  page.replaceChildren(el("section", {},
    el("h2", {}, `${s.service}: ${s.root.operationName} `, el("span", { class: "muted" }, `${t.spans.length} spans, ${formatMicros(s.duration)}, ${new Date(s.start / 1000).toLocaleString()}`)),
    el("p", { class: "muted mono", id: "trace-id" }, t.traceID),
    el("div", { class: "waterfall", id: "waterfall" }, ...rows),
    el("p", {}, el("a", { href: "/traces?service=" + encodeURIComponent(s.service) }, "More traces of " + s.service))));
  page.dataset.dashboardState = "settled";
}
