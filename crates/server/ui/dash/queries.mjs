// Running the queries of a dashboard load: each target's PromQL with the variables and
// Grafana's built-ins filled in, as Prometheus range or instant queries; identical
// requests asked once, at most a few at a time.

import { formatDuration, panelInterval, parseDuration, rateInterval } from "./time.mjs";
import { interpolate } from "./vars.mjs";
import { seriesName } from "./fields.mjs";

// The built-in variables of one panel: `$__interval` and friends.
export function builtinsFor(panel, range, widthPx, scrapeMs) {
  const rangeMs = Math.max(1, range.to - range.from);
  const min = parseDuration(panel.interval || "") || scrapeMs;
  const maxPoints = panel.maxDataPoints || Math.max(100, Math.round(widthPx || 1000));
  const interval = panelInterval(rangeMs, maxPoints, min, 1);
  const rate = rateInterval(interval, scrapeMs);
  return {
    __interval: formatDuration(interval),
    __interval_ms: String(interval),
    __rate_interval: formatDuration(rate),
    __rate_interval_ms: String(rate),
    __range: Math.round(rangeMs / 1000) + "s",
    __range_s: String(Math.round(rangeMs / 1000)),
    __range_ms: String(rangeMs),
    __from: String(range.from),
    __to: String(range.to),
    intervalMs: interval,
  };
}

// The requests a panel makes: one per visible target.
export function panelRequests(panel, vars, range, widthPx, scrapeMs) {
  const b = builtinsFor(panel, range, widthPx, scrapeMs);
  const out = [];
  for (const t of panel.targets || []) {
    if (t.hide || typeof t.expr !== "string" || !t.expr.trim()) continue;
    const tb = { ...b };
    const own = parseDuration(t.interval || "");
    let step = b.intervalMs;
    if (own && own > step) step = own;
    step *= Math.max(1, Number(t.intervalFactor) || 1);
    tb.__interval = formatDuration(step);
    tb.__interval_ms = String(step);
    const expr = interpolate(t.expr, vars, tb);
    const instant = t.instant === true && t.range !== true;
    const stepS = Math.max(1, Math.round(step / 1000));
    const endS = Math.floor(range.to / 1000);
    const params = instant
      ? { query: expr, time: String(endS) }
      : {
          query: expr,
          start: String(Math.floor(range.from / 1000 / stepS) * stepS),
          end: String(Math.ceil(endS / stepS) * stepS),
          step: String(stepS),
        };
    out.push({ target: t, refId: t.refId || "A", path: instant ? "/api/v1/query" : "/api/v1/query_range", params, expr });
  }
  return out;
}

// Runs requests with at most `limit` in flight, asking each distinct one once.
export class QueryRunner {
  constructor(fetchJson, limit = 6) {
    this.fetchJson = fetchJson;
    this.limit = limit;
    this.active = 0;
    this.queue = [];
    this.cache = new Map();
    this.sent = 0;
  }

  run(req) {
    const key = req.path + "?" + new URLSearchParams(req.params).toString();
    if (!this.cache.has(key)) {
      this.cache.set(key, new Promise((resolve, reject) => {
        this.queue.push(() => {
          this.sent++;
          return this.fetchJson(req.path, req.params).then(resolve, reject);
        });
        this.pump();
      }));
    }
    return this.cache.get(key);
  }

  pump() {
    while (this.active < this.limit && this.queue.length) {
      const job = this.queue.shift();
      this.active++;
      job().finally(() => { this.active--; this.pump(); });
    }
  }
}

// A Prometheus query's `data` as series: name (legend), labels, times (s) and values.
export function toSeries(data, req) {
  const fmt = req.target.legendFormat;
  const rows = data.resultType === "matrix"
    ? data.result.map((r) => ({ metric: r.metric, points: r.values }))
    : data.resultType === "vector"
      ? data.result.map((r) => ({ metric: r.metric, points: [r.value] }))
      : data.resultType === "scalar"
        ? [{ metric: {}, points: [data.result] }]
        : [];
  return rows.map((r) => ({
    name: seriesName(r.metric, fmt, req.expr),
    metric: r.metric,
    refId: req.refId,
    format: req.target.format || "time_series",
    instant: req.path === "/api/v1/query",
    times: r.points.map((p) => p[0]),
    values: r.points.map((p) => parseFloat(p[1])),
  }));
}

// The exemplar requests of a panel's requests: one per range query whose target asks
// for exemplars (`exemplar: true`, Grafana's switch), over the same range.
export function exemplarRequests(reqs) {
  return reqs
    .filter((q) => q.target.exemplar === true && q.path === "/api/v1/query_range")
    .map((q) => ({
      target: q.target,
      refId: q.refId,
      path: "/api/v1/query_exemplars",
      params: { query: q.params.query, start: q.params.start, end: q.params.end },
      expr: q.expr,
    }));
}

// An exemplar answer as points: time (s), value, the exemplar's labels, its trace id.
export function toExemplars(data) {
  const out = [];
  for (const s of Array.isArray(data) ? data : []) {
    for (const e of s.exemplars || []) {
      const labels = e.labels || {};
      const value = parseFloat(e.value);
      if (!Number.isFinite(value) || !Number.isFinite(e.timestamp)) continue;
      out.push({ t: e.timestamp, value, labels, series: s.seriesLabels || {}, traceId: labels.trace_id || labels.traceID || labels.traceId || "" });
    }
  }
  return out;
}
