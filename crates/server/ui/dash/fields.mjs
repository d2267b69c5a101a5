// Field config: what a panel's `fieldConfig` (defaults and overrides), thresholds, value
// mappings and reducers make of each series, the same for every panel type.

import { formatUnit } from "./units.mjs";

// Grafana's named colours (the common ones) and a palette for series without one.
const NAMED = {
  green: "#73bf69", "dark-green": "#37872d", "semi-dark-green": "#56a64b", "light-green": "#96d98d",
  red: "#f2495c", "dark-red": "#c4162a", "semi-dark-red": "#e02f44", "light-red": "#ff7383",
  orange: "#ff9830", "dark-orange": "#fa6400", "light-orange": "#ffb357",
  yellow: "#fade2a", "dark-yellow": "#e0b400", "light-yellow": "#ffee52",
  blue: "#5794f2", "dark-blue": "#1f60c4", "light-blue": "#8ab8ff",
  purple: "#b877d9", "dark-purple": "#8f3bb8", "light-purple": "#ca95e5",
  text: "#1d2330", transparent: "transparent",
};
export const PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17"];

export function color(c) {
  if (!c) return null;
  return NAMED[c] || c;
}

// Sets `obj.a.b.c = value` for an override property id such as `custom.fillOpacity`.
function setPath(obj, path, value) {
  const parts = path.split(".");
  let o = obj;
  for (const p of parts.slice(0, -1)) { if (typeof o[p] !== "object" || o[p] === null) o[p] = {}; o = o[p]; }
  o[parts[parts.length - 1]] = value;
}

function matches(matcher, name, refId) {
  if (!matcher) return false;
  const opt = matcher.options;
  switch (matcher.id) {
    case "byName": return opt === name;
    case "byRegexp": try { return new RegExp("^(?:" + String(opt).replace(/^\/(.*)\/$/, "$1") + ")$").test(name); } catch (e) { return false; }
    case "byFrameRefID": return opt === refId;
    case "byType": return opt === "number";
    default: return false;
  }
}

// The field config of one series: defaults, then every override that matches its
// display name (or query), in order.
export function fieldConfigFor(panel, name, refId) {
  const fc = panel.fieldConfig || {};
  // A copy: overrides must not change the defaults other series read.
  const cfg = structuredClone(fc.defaults || {});
  for (const o of fc.overrides || []) {
    if (!matches(o.matcher, name, refId)) continue;
    for (const p of o.properties || []) {
      if (p.id === "custom" || typeof p.id !== "string") continue;
      setPath(cfg, p.id, p.value);
    }
  }
  return cfg;
}

// Grafana's reducers (`calcs`), over the values of one series (nulls are skipped except
// by `last` and `first`).
export function reduce(values, calc) {
  const nums = values.filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
  switch (calc || "lastNotNull") {
    case "last": return values.length ? values[values.length - 1] : null;
    case "first": return values.length ? values[0] : null;
    case "firstNotNull": return nums.length ? nums[0] : null;
    case "min": return nums.length ? Math.min(...nums) : null;
    case "max": return nums.length ? Math.max(...nums) : null;
    case "mean": case "avg": return nums.length ? nums.reduce((a, b) => a + b, 0) / nums.length : null;
    case "sum": case "total": return nums.reduce((a, b) => a + b, 0);
    case "count": return nums.length;
    case "range": return nums.length ? Math.max(...nums) - Math.min(...nums) : null;
    case "delta": { let d = 0; for (let i = 1; i < nums.length; i++) d += Math.max(0, nums[i] - nums[i - 1]); return d; }
    case "diff": return nums.length ? nums[nums.length - 1] - nums[0] : null;
    case "current": case "lastNotNull": default: return nums.length ? nums[nums.length - 1] : null;
  }
}

// The threshold step colour of `v` (absolute, or percentage of min..max).
export function thresholdColor(v, cfg) {
  const th = cfg.thresholds;
  const steps = (th && th.steps) || [{ color: "green", value: null }];
  let x = v;
  if (th && th.mode === "percentage") {
    const min = cfg.min ?? 0, max = cfg.max ?? 100;
    x = max === min ? 0 : ((v - min) / (max - min)) * 100;
  }
  let c = steps[0] ? steps[0].color : "green";
  for (const s of steps) if (s.value === null || s.value === undefined || x >= s.value) c = s.color;
  return color(c);
}

// Value mappings (value, range, regex, special): the text and colour they give `v`.
export function mapValue(v, cfg) {
  for (const m of cfg.mappings || []) {
    const o = m.options || {};
    let res = null;
    if (m.type === "value" && o[String(v)]) res = o[String(v)];
    else if (m.type === "range" && v !== null && (o.from === null || o.from === undefined || v >= o.from) && (o.to === null || o.to === undefined || v <= o.to)) res = o.result;
    else if (m.type === "regex") { try { if (new RegExp(o.pattern).test(String(v))) res = o.result; } catch (e) { /* ignored */ } }
    else if (m.type === "special") {
      const hit = { null: v === null, nan: Number.isNaN(v), "null+nan": v === null || Number.isNaN(v), true: v === 1 || v === true, false: v === 0 || v === false, empty: v === "" }[o.match];
      if (hit) res = o.result;
    }
    if (res) return { text: res.text, color: color(res.color) };
  }
  return null;
}

// What a panel shows for a value: mapping text or unit-formatted number, and its colour.
export function display(v, cfg) {
  if (v === null || v === undefined) {
    const m = mapValue(null, cfg);
    return { text: m && m.text !== undefined ? m.text : (cfg.noValue ?? "No data"), color: (m && m.color) || "#8e8e8e", nodata: true };
  }
  const m = mapValue(v, cfg);
  const text = m && m.text !== undefined && m.text !== "" ? m.text : formatUnit(v, cfg.unit, cfg.decimals);
  return { text, color: (m && m.color) || thresholdColor(v, cfg) };
}

// What each series shows in a panel that reduces it to one value (stat, gauge,
// bargauge): the panel's reducer over it, its field config and its display. Without
// series, one empty entry (`s` null) so the panel can say "No data".
export function reduced(panel, series) {
  const calc = (((panel.options || {}).reduceOptions || {}).calcs || [])[0] || "lastNotNull";
  return (series.length ? series : [null]).map((s) => {
    const cfg = fieldConfigFor(panel, s ? s.name : "", s ? s.refId : "");
    const v = s ? reduce(s.values, calc) : null;
    return { s, cfg, v, d: display(v, cfg) };
  });
}

// A legend from `legendFormat`: `{{label}}` replaced by the series' label values; without
// one, the series as Prometheus writes it.
export function seriesName(metric, legendFormat, expr) {
  if (legendFormat && legendFormat !== "__auto") {
    return legendFormat.replace(/\{\{\s*(.+?)\s*\}\}/g, (_, k) => (metric[k] !== undefined ? metric[k] : ""));
  }
  const labels = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
  const name = metric.__name__ || "";
  if (!labels.length) return name || expr || "{}";
  return `${name}{${labels.join(", ")}}`;
}
