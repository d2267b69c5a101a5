// Unit tests of the dashboard UI's modules that need no browser, run by `node --test`
// (crates/server/tests/ui_modules.rs). Data-driven where a format exists.

import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { formatDuration, panelInterval, parseDuration, parseTime, rateInterval, roundInterval } from "../../ui/dash/time.mjs";
import { applyRegex, chooseCurrent, customOptions, interpolate, parseVariableQuery, resolveOptions, sortOptions } from "../../ui/dash/vars.mjs";
import { formatUnit } from "../../ui/dash/units.mjs";
import { display, fieldConfigFor, reduce, seriesName, thresholdColor } from "../../ui/dash/fields.mjs";
import { compact, visiblePanels } from "../../ui/dash/layout.mjs";
import { QueryRunner, builtinsFor, exemplarRequests, panelRequests, toExemplars, toSeries } from "../../ui/dash/queries.mjs";
import { renderMarkdown } from "../../ui/dash/markdown.mjs";
import { modernize } from "../../ui/dash/panels/index.mjs";
import { align, autoRange, newestExemplars, stack } from "../../ui/dash/panels/timeseries.mjs";
import { tableOf } from "../../ui/dash/panels/table.mjs";
import { buckets } from "../../ui/dash/panels/heatmap.mjs";

const data = JSON.parse(readFileSync(new URL("./interpolation.json", import.meta.url)));

test("variables interpolate as Grafana's Prometheus data source does", () => {
  for (const [template, want] of data.cases) {
    assert.equal(interpolate(template, data.variables, data.builtins), want, template);
  }
});

test("$__rate_interval follows Grafana's rule and intervals round to readable steps", () => {
  assert.equal(rateInterval(15e3, 15e3), 60e3);
  assert.equal(rateInterval(120e3, 15e3), 135e3);
  assert.equal(roundInterval(1234), 1e3);
  assert.equal(roundInterval(40e3), 30e3);
  // An hour over 1000 px is 3.6 s a point, rounded to 5 s, below the 15 s scrape: 15 s.
  assert.equal(panelInterval(3600e3, 1000, 15e3, 1), 15e3);
  assert.equal(panelInterval(7 * 86400e3, 1000, 15e3, 1), 600e3);
  assert.equal(panelInterval(3600e3, 1000, 15e3, 2), 30e3);
  // Never more than 11,000 points.
  assert.ok((365 * 86400e3) / panelInterval(365 * 86400e3, 1e9, 1, 1) <= 11000);
  const b = builtinsFor({ interval: "1m" }, { from: 0, to: 3600e3 }, 1000, 15e3);
  assert.deepEqual([b.__interval, b.__rate_interval, b.__range, b.__range_s], ["1m", "75s", "3600s", "3600"]);
});

test("durations and picker times parse like Grafana's", () => {
  assert.equal(parseDuration("1m30s"), 90e3);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("bogus"), null);
  assert.equal(formatDuration(90e3), "90s");
  assert.equal(formatDuration(3600e3), "1h");
  const now = Date.UTC(2026, 11, 2, 15, 30, 0);
  assert.equal(parseTime("now", now), now);
  assert.equal(parseTime("now-6h", now), now - 6 * 3600e3);
  assert.equal(parseTime("now-1d-2h", now), now - 26 * 3600e3);
  assert.equal(parseTime("now-5x", now), null);
  assert.equal(parseTime("1700000000000", now), 1700000000000);
  assert.equal(parseTime("2026-12-01T00:00:00Z", now), Date.UTC(2026, 11, 1));
  const dayStart = parseTime("now/d", now, false), dayEnd = parseTime("now/d", now, true);
  assert.equal(dayEnd - dayStart, 86400e3 - 1);
  assert.ok(dayStart <= now && now <= dayEnd);
  assert.equal(parseTime("not a time", now), null);
});

test("variable queries are parsed and their options found through the API", async () => {
  assert.deepEqual(parseVariableQuery("label_values(up{job=\"a\"}, instance)"), { kind: "label_values", match: "up{job=\"a\"}", label: "instance" });
  assert.deepEqual(parseVariableQuery("label_values(job)"), { kind: "label_values", match: null, label: "job" });
  assert.deepEqual(parseVariableQuery("label_names()"), { kind: "label_names", match: null });
  assert.deepEqual(parseVariableQuery("metrics(node_.*)"), { kind: "metrics", regex: "node_.*" });
  assert.equal(parseVariableQuery("query_result(topk(3, up))").expr, "topk(3, up)");
  const asked = [];
  const api = async (path, params) => {
    asked.push([path, params]);
    if (path === "/api/v1/label/__name__/values") return ["node_load1", "up", "node_cpu"];
    if (path === "/api/v1/query") return { resultType: "vector", result: [{ metric: { __name__: "up", job: "b" }, value: [10, "1"] }] };
    return ["web-2", "web-10", "db-1"];
  };
  const ctx = { startS: 0, endS: 60, interpolate: (t) => t.replace("$job", "node") };
  const v = { type: "query", name: "i", query: { query: "label_values(up{job=\"$job\"}, instance)" }, regex: "/web-(\\d+)/", sort: 3, includeAll: true };
  const opts = await resolveOptions(v, api, ctx);
  assert.deepEqual(opts.map((o) => o.value), ["$__all", "2", "10"]);
  assert.deepEqual(asked[0], ["/api/v1/label/instance/values", { "match[]": "up{job=\"node\"}", start: "0", end: "60" }]);
  const m = await resolveOptions({ type: "query", name: "m", query: "metrics(^node_)" }, api, ctx);
  assert.deepEqual(m.map((o) => o.value), ["node_load1", "node_cpu"]);
  const q = await resolveOptions({ type: "query", name: "q", query: "query_result(up)", regex: "/job=\"(?<value>[^\"]+)\"/" }, api, ctx);
  assert.deepEqual(q.map((o) => o.value), ["b"]);
  assert.deepEqual((await resolveOptions({ type: "custom", query: "a, b\\,c, Label : val" }, api, ctx)).map((o) => [o.text, o.value]), [["a", "a"], ["b,c", "b,c"], ["Label", "val"]]);
  assert.deepEqual((await resolveOptions({ type: "constant", query: "k" }, api, ctx)).map((o) => o.value), ["k"]);
  await assert.rejects(resolveOptions({ type: "query", query: "metrics(()" }, api, ctx), /invalid metrics\(\) regex/);
});

test("the current value comes from the URL, then what was saved, then the first option", () => {
  const opts = [{ text: "a", value: "a" }, { text: "b", value: "b" }];
  assert.equal(chooseCurrent({}, opts, ["b"]).value, "b");
  assert.equal(chooseCurrent({ current: { value: "b" } }, opts, []).value, "b");
  assert.equal(chooseCurrent({ current: { value: "gone" } }, opts, null).value, "a");
  assert.deepEqual(chooseCurrent({ multi: true }, opts, ["a", "b"]).value, ["a", "b"]);
  assert.equal(chooseCurrent({ includeAll: true }, [{ text: "All", value: "$__all" }].concat(opts), ["All"]).value, "$__all");
  assert.equal(chooseCurrent({}, opts, ["not offered"]).value, "a");
  assert.deepEqual(sortOptions([{ text: "b" }, { text: "a10" }, { text: "a9" }], 7).map((o) => o.text), ["a9", "a10", "b"]);
  assert.deepEqual(sortOptions([{ text: "b" }, { text: "a" }], 2).map((o) => o.text), ["b", "a"]);
  assert.deepEqual(customOptions(""), []);
  assert.throws(() => applyRegex(["x"], "/(/"), /invalid regex/);
});

test("units format as Grafana's", () => {
  const cases = [
    [1536, "bytes", undefined, "1.5 KiB"], [1.5 * 1024 ** 3, "bytes", 2, "1.50 GiB"], [1500, "decbytes", undefined, "1.5 kB"],
    [42, "percent", undefined, "42%"], [0.4567, "percentunit", 1, "45.7%"], [0.0032, "s", undefined, "3.2 ms"],
    [90, "s", undefined, "1.5 min"], [7200, "s", undefined, "2 hours"], [0.5, "ms", undefined, "500 µs"], [1200, "reqps", undefined, "1.2 K req/s"],
    [2500000, "short", undefined, "2.5 Mil"], [12, "none", undefined, "12"], [1e6, "bps", undefined, "1 Mbps"], [3, "suffix: pods", undefined, "3 pods"],
    [Infinity, "short", undefined, "+Inf"], [NaN, "short", undefined, "NaN"], [1, "bool_on_off", undefined, "On"], [5, "widgets", undefined, "5 widgets"],
  ];
  for (const [v, unit, dec, want] of cases) assert.equal(formatUnit(v, unit, dec), want, `${v} ${unit}`);
});

test("field config: overrides, thresholds, mappings, reducers and legends", () => {
  const panel = { fieldConfig: {
    defaults: { unit: "bytes", custom: { fillOpacity: 10 }, thresholds: { mode: "absolute", steps: [{ color: "green", value: null }, { color: "red", value: 80 }] },
      mappings: [{ type: "value", options: { "1": { text: "up", color: "green" } } }, { type: "range", options: { from: 100, to: 200, result: { text: "high" } } }] },
    overrides: [{ matcher: { id: "byName", options: "total" }, properties: [{ id: "custom.fillOpacity", value: 0 }, { id: "unit", value: "percent" }] },
      { matcher: { id: "byRegexp", options: "/disk.*/" }, properties: [{ id: "decimals", value: 3 }] }] } };
  assert.equal(fieldConfigFor(panel, "total").custom.fillOpacity, 0);
  assert.equal(fieldConfigFor(panel, "used").custom.fillOpacity, 10, "an override leaves the defaults alone");
  assert.equal(fieldConfigFor(panel, "total").unit, "percent");
  assert.equal(fieldConfigFor(panel, "disk0").decimals, 3);
  const cfg = fieldConfigFor(panel, "used");
  assert.equal(thresholdColor(50, cfg), "#73bf69");
  assert.equal(thresholdColor(90, cfg), "#f2495c");
  assert.equal(thresholdColor(90, { thresholds: { mode: "percentage", steps: [{ color: "green", value: null }, { color: "red", value: 50 }] }, min: 0, max: 200 }), "#73bf69");
  assert.equal(display(1, cfg).text, "up");
  assert.equal(display(150, cfg).text, "high");
  assert.equal(display(2048, cfg).text, "2 KiB");
  assert.equal(display(null, { noValue: "n/a" }).text, "n/a");
  assert.equal(reduce([1, null, 3, 2], "max"), 3);
  assert.equal(reduce([1, null, 3, 2], "mean"), 2);
  assert.equal(reduce([1, 2, null], "last"), null);
  assert.equal(reduce([1, 2, null], "lastNotNull"), 2);
  assert.equal(reduce([], "max"), null);
  assert.equal(seriesName({ __name__: "up", job: "a", instance: "h" }, "{{job}} on {{ instance }}"), "a on h");
  assert.equal(seriesName({ __name__: "up", job: "a" }, ""), 'up{job="a"}');
  assert.equal(seriesName({}, "", "sum(x)"), "sum(x)");
});

test("layout floats panels up and collapsed rows hide what they hold", () => {
  const panels = [
    { id: 1, type: "row", gridPos: { x: 0, y: 0, w: 24, h: 1 }, panels: [] },
    { id: 2, type: "stat", gridPos: { x: 0, y: 1, w: 12, h: 4 } },
    { id: 3, type: "stat", gridPos: { x: 12, y: 1, w: 12, h: 8 } },
    { id: 4, type: "row", collapsed: true, gridPos: { x: 0, y: 9, w: 24, h: 1 }, panels: [{ id: 5, type: "graph", gridPos: { x: 0, y: 40, w: 24, h: 6 } }] },
    { id: 6, type: "row", gridPos: { x: 0, y: 10, w: 24, h: 1 }, panels: [] },
    { id: 7, type: "table", gridPos: { x: 0, y: 11, w: 24, h: 5 } },
  ];
  const ids = (c) => compact(visiblePanels(panels, c)).map((it) => [it.panel.id, it.y]);
  assert.deepEqual(ids(new Set([4])), [[1, 0], [2, 1], [3, 1], [4, 9], [6, 10], [7, 11]]);
  // Expanding row 4 shows its panel under it; collapsing row 1 hides 2 and 3 and lifts the rest.
  assert.deepEqual(ids(new Set()), [[1, 0], [2, 1], [3, 1], [4, 9], [5, 10], [6, 16], [7, 17]]);
  assert.deepEqual(ids(new Set([1, 4])), [[1, 0], [4, 1], [6, 2], [7, 3]]);
});

test("a dashboard load asks each distinct query once, a few at a time", async () => {
  let inFlight = 0, most = 0;
  const runner = new QueryRunner(async () => { inFlight++; most = Math.max(most, inFlight); await new Promise((r) => setTimeout(r, 5)); inFlight--; return { resultType: "vector", result: [] }; }, 3);
  const panel = { interval: "", targets: [{ refId: "A", expr: "up{job=\"$job\"}" }, { refId: "B", expr: "x", hide: true }, { refId: "C", expr: "up", instant: true }] };
  const range = { from: 1_000_000_000_000, to: 1_000_003_600_000 };
  const reqs = panelRequests(panel, data.variables, range, 1000, 15e3);
  assert.equal(reqs.length, 2);
  assert.equal(reqs[0].path, "/api/v1/query_range");
  assert.equal(reqs[0].params.query, 'up{job="node"}');
  assert.equal(reqs[0].params.step, "15");
  assert.equal(reqs[1].path, "/api/v1/query");
  const all = [];
  for (let i = 0; i < 20; i++) all.push(...reqs.map((r) => runner.run(r)));
  for (let i = 0; i < 10; i++) all.push(runner.run({ path: "/api/v1/query", params: { query: "q" + i } }));
  await Promise.all(all);
  assert.equal(runner.sent, 12);
  assert.ok(most <= 3, `at most 3 in flight, saw ${most}`);
  const s = toSeries({ resultType: "matrix", result: [{ metric: { job: "a" }, values: [[1, "2"], [2, "NaN"]] }] }, { target: { legendFormat: "{{job}}" }, refId: "A", path: "/api/v1/query_range" });
  assert.equal(s[0].name, "a");
  assert.ok(Number.isNaN(s[0].values[1]));
});

test("markdown is rendered with everything escaped", () => {
  const html = renderMarkdown("# Title\n\nSome **bold** and `code` <script>alert(1)</script>\n\n- [ok](https://x.org)\n- [bad](javascript:alert(1))");
  assert.match(html, /<h1>Title<\/h1>/);
  assert.match(html, /<strong>bold<\/strong>/);
  assert.match(html, /&lt;script&gt;/);
  assert.match(html, /<a href="https:\/\/x.org">ok<\/a>/);
  assert.doesNotMatch(html, /javascript:/);
});

test("legacy graph and singlestat panels map onto the modern model", () => {
  const g = modernize({ type: "graph", bars: false, lines: true, fill: 3, linewidth: 2, stack: true, percentage: false, yaxes: [{ format: "bytes", min: "0" }], seriesOverrides: [{ alias: "/out/", transform: "negative-Y" }], legend: { show: true, alignAsTable: true, max: true, current: true } });
  assert.equal(g.fieldConfig.defaults.unit, "bytes");
  assert.equal(g.fieldConfig.defaults.min, 0);
  assert.equal(g.fieldConfig.defaults.custom.fillOpacity, 30);
  assert.deepEqual(g.fieldConfig.defaults.custom.stacking, { mode: "normal", group: "A" });
  assert.deepEqual(g.fieldConfig.overrides[0], { matcher: { id: "byRegexp", options: "out" }, properties: [{ id: "custom.transform", value: "negative-Y" }] });
  assert.deepEqual(g.options.legend, { showLegend: true, displayMode: "table", calcs: ["max", "lastNotNull"] });
  const s = modernize({ type: "singlestat", format: "percent", thresholds: "80,90", colors: ["green", "orange", "red"], valueName: "avg" });
  assert.equal(s.fieldConfig.defaults.unit, "percent");
  assert.deepEqual(s.fieldConfig.defaults.thresholds.steps.map((x) => x.value), [null, 80, 90]);
  assert.deepEqual(s.options.reduceOptions.calcs, ["mean"]);
  assert.equal(modernize({ type: "singlestat", gauge: { show: true, minValue: 0, maxValue: 10 } }).type, "gauge");
});

test("series align on time, stack, and become tables and heatmap buckets", () => {
  const a = { name: "a", refId: "A", metric: { i: "1" }, times: [1, 2, 3], values: [1, 2, 3] };
  const b = { name: "b", refId: "A", metric: { i: "2" }, times: [2, 3, 4], values: [10, 20, 30] };
  const { xs, ys } = align([a, b]);
  assert.deepEqual(xs, [1, 2, 3, 4]);
  assert.deepEqual(ys, [[1, 2, 3, null], [null, 10, 20, 30]]);
  const st = (mode) => ({ custom: { stacking: { mode, group: "A" } } });
  const { out, below } = stack(ys, [st("normal"), st("normal")]);
  assert.deepEqual(out[1], [1, 12, 23, 30]);
  assert.deepEqual(below, [-1, 0]);
  assert.deepEqual(stack([[1, 1], [3, 1]], [st("percent"), st("percent")]).out, [[0.25, 0.5], [1, 1]]);
  const t = tableOf([a, { ...b, refId: "B", metric: { i: "1" } }], "lastNotNull");
  assert.deepEqual(t.columns, ["i", "Value #A", "Value #B"]);
  assert.deepEqual(t.rows, [["1", 3, 30]]);
  const h = buckets([
    { metric: { le: "+Inf" }, times: [1], values: [10] },
    { metric: { le: "0.5" }, times: [1], values: [4] },
    { metric: { le: "0.1" }, times: [1], values: [1] },
  ]);
  assert.deepEqual(h.bounds, [0.1, 0.5, Infinity]);
  assert.deepEqual(h.cells.map((c) => c[0]), [1, 3, 6]);
});

test("a table row missing from one query leaves that cell empty", () => {
  const a = { refId: "A", metric: { t: "x" }, times: [1], values: [5], instant: true, format: "table" };
  const b = { refId: "B", metric: { t: "y" }, times: [1], values: [7], instant: true, format: "table" };
  const t = tableOf([a, b], "lastNotNull");
  assert.deepEqual(t.columns, ["Time", "t", "Value #A", "Value #B"]);
  assert.deepEqual(t.rows, [[1, "x", 5, null], [1, "y", null, 7]]);
});

test("queries of different metrics join on their other labels", () => {
  const a = { refId: "A", metric: { __name__: "dead", rel: "t" }, times: [1], values: [5], instant: true, format: "table" };
  const b = { refId: "B", metric: { __name__: "size", rel: "t" }, times: [1], values: [7], instant: true, format: "table" };
  const t = tableOf([a, b], "lastNotNull");
  assert.deepEqual(t.columns, ["Time", "rel", "Value #A", "Value #B"]);
  assert.deepEqual(t.rows, [[1, "t", 5, 7]]);
  assert.deepEqual(tableOf([a], "lastNotNull").columns, ["Time", "__name__", "rel", "Value"]);
});

test("targets asking for exemplars get them over the same range, as trace links", () => {
  const panel = { type: "timeseries", targets: [
    { refId: "A", expr: "histogram_quantile(0.99, rate(lat_bucket[5m]))", exemplar: true },
    { refId: "B", expr: "rate(x[5m])" },
    { refId: "C", expr: "y", exemplar: true, instant: true },
  ] };
  const reqs = panelRequests(panel, {}, { from: 0, to: 3600e3 }, 1000, 15e3);
  const ex = exemplarRequests(reqs);
  assert.equal(ex.length, 1, "only range targets with exemplar: true");
  assert.equal(ex[0].path, "/api/v1/query_exemplars");
  assert.deepEqual(ex[0].params, { query: reqs[0].params.query, start: reqs[0].params.start, end: reqs[0].params.end });
  const points = toExemplars([
    { seriesLabels: { __name__: "lat_bucket", le: "0.1" }, exemplars: [
      { labels: { trace_id: "abc", span_id: "d" }, value: "0.05", timestamp: 10.5 },
      { labels: {}, value: "NaN", timestamp: 11 },
      { labels: { traceID: "def" }, value: "0.07", timestamp: 12 },
    ] },
  ]);
  assert.deepEqual(points.map((p) => [p.t, p.value, p.traceId]), [[10.5, 0.05, "abc"], [12, 0.07, "def"]]);
  assert.deepEqual(toExemplars(null), []);
});

test("a chart's automatic y range takes in its exemplars, the newest inside its time range", () => {
  const ex = [{ t: 10, value: 0.9 }, { t: 20, value: 0.02 }, { t: 5000, value: 7 }];
  const inside = newestExemplars(ex, { from: 0, to: 3600e3 });
  assert.deepEqual(inside.map((e) => e.t), [10, 20], "the one after the range is left out");
  // The p99 line peaks at 0.4; the slow request at 0.9 stays on the chart.
  assert.deepEqual(autoRange({}, 0.1, 0.4, inside), [0, 0.9]);
  assert.deepEqual(autoRange({}, 0.1, 0.4, []), [0, 0.4]);
  assert.deepEqual(autoRange({}, null, null, inside), [0, 0.9], "exemplars alone set the range");
  assert.deepEqual(autoRange({ max: 0.5 }, 0.1, 0.4, inside), [0, 0.5], "a field's max wins");
  const many = Array.from({ length: 2500 }, (_, k) => ({ t: k, value: 1 }));
  const drawn = newestExemplars(many, null);
  assert.equal(drawn.length, 2000);
  assert.equal(Math.min(...drawn.map((e) => e.t)), 500, "the newest are kept");
});
