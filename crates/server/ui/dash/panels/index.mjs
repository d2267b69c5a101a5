// Panel types by name, and the legacy ones mapped onto them: `graph` onto `timeseries`,
// `singlestat` onto `stat`, `table-old` onto `table`. Any other type gets a placeholder
// that names it.

import * as timeseries from "./timeseries.mjs";
import * as stat from "./stat.mjs";
import * as gauge from "./gauge.mjs";
import * as bargauge from "./bargauge.mjs";
import * as table from "./table.mjs";
import * as text from "./text.mjs";
import * as heatmap from "./heatmap.mjs";

export const RENDERERS = { timeseries, stat, gauge, bargauge, table, text, heatmap, graph: timeseries, singlestat: stat, "table-old": table };

// A legacy panel in the modern model (a copy; the input is not changed).
export function modernize(p) {
  if (p.type === "graph") {
    const defaults = { ...((p.fieldConfig || {}).defaults || {}) };
    const custom = { ...(defaults.custom || {}) };
    custom.drawStyle = p.bars ? "bars" : p.points && !p.lines ? "points" : "line";
    custom.fillOpacity = p.fill !== undefined ? p.fill * 10 : custom.fillOpacity;
    custom.lineWidth = p.linewidth ?? custom.lineWidth;
    if (p.stack) custom.stacking = { mode: p.percentage ? "percent" : "normal", group: "A" };
    defaults.custom = custom;
    const y = (p.yaxes || [])[0] || {};
    if (y.format && !defaults.unit) defaults.unit = y.format;
    if (y.min !== undefined && y.min !== null && y.min !== "") defaults.min = parseFloat(y.min);
    if (y.max !== undefined && y.max !== null && y.max !== "") defaults.max = parseFloat(y.max);
    if (y.decimals !== undefined && y.decimals !== null) defaults.decimals = y.decimals;
    const overrides = ((p.fieldConfig || {}).overrides || []).slice();
    for (const o of p.seriesOverrides || []) {
      const props = [];
      if (o.transform === "negative-Y") props.push({ id: "custom.transform", value: "negative-Y" });
      if (o.color) props.push({ id: "color", value: { mode: "fixed", fixedColor: o.color } });
      if (o.fill !== undefined) props.push({ id: "custom.fillOpacity", value: o.fill * 10 });
      if (o.linewidth !== undefined) props.push({ id: "custom.lineWidth", value: o.linewidth });
      if (o.stack === false) props.push({ id: "custom.stacking", value: { mode: "none" } });
      const alias = String(o.alias || "");
      const re = /^\/(.*)\/$/.exec(alias);
      overrides.push({ matcher: re ? { id: "byRegexp", options: re[1] } : { id: "byName", options: alias }, properties: props });
    }
    const legend = p.legend || {};
    const calcs = ["min", "max", "avg", "current", "total"].filter((k) => legend[k]).map((k) => ({ avg: "mean", current: "lastNotNull", total: "sum" }[k] || k));
    return {
      ...p,
      fieldConfig: { defaults, overrides },
      options: { ...(p.options || {}), legend: { showLegend: legend.show !== false, displayMode: legend.alignAsTable ? "table" : "list", calcs } },
    };
  }
  if (p.type === "singlestat") {
    const defaults = { ...((p.fieldConfig || {}).defaults || {}) };
    if (p.format && !defaults.unit) defaults.unit = p.format;
    if (p.decimals !== undefined && p.decimals !== null) defaults.decimals = p.decimals;
    if (typeof p.thresholds === "string" && p.thresholds.trim()) {
      const colors = p.colors || ["green", "orange", "red"];
      const vals = p.thresholds.split(",").map((x) => parseFloat(x));
      defaults.thresholds = { mode: "absolute", steps: [{ color: colors[0], value: null }].concat(vals.map((v, i) => ({ color: colors[i + 1] || colors[colors.length - 1], value: v }))) };
    }
    if (p.gauge && p.gauge.show) {
      defaults.min = p.gauge.minValue; defaults.max = p.gauge.maxValue;
      return { ...p, type: "gauge", fieldConfig: { defaults, overrides: [] }, options: { reduceOptions: { calcs: [p.valueName === "avg" ? "mean" : p.valueName === "current" ? "lastNotNull" : p.valueName || "lastNotNull"] } } };
    }
    const calc = { avg: "mean", current: "lastNotNull", total: "sum" }[p.valueName] || p.valueName || "lastNotNull";
    return {
      ...p,
      fieldConfig: { defaults, overrides: [] },
      options: { reduceOptions: { calcs: [calc] }, colorMode: p.colorBackground ? "background" : p.colorValue ? "value" : "none", graphMode: p.sparkline && p.sparkline.show ? "area" : "none" },
    };
  }
  return p;
}
