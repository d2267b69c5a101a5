// The `timeseries` panel (and legacy `graph`, mapped onto it): uPlot lines, bars or
// points, stacking, fill, per-series overrides, a legend with calculations, a tooltip,
// and zoom by dragging across the chart.

import { PALETTE, color, fieldConfigFor, reduce } from "../fields.mjs";
import { formatUnit } from "../units.mjs";

// All series on one time axis (the union of their times), values null where missing.
export function align(series) {
  const set = new Set();
  for (const s of series) for (const t of s.times) set.add(t);
  const xs = Array.from(set).sort((a, b) => a - b);
  const at = new Map(xs.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const col = new Array(xs.length).fill(null);
    s.times.forEach((t, i) => { const v = s.values[i]; col[at.get(t)] = Number.isFinite(v) ? v : null; });
    return col;
  });
  return { xs, ys };
}

// Stacks columns of each group (`custom.stacking.group`) on each other: returns the
// cumulative columns, and for each series the one below it (-1: the axis).
export function stack(ys, cfgs) {
  const out = ys.map((c) => c.slice());
  const below = ys.map(() => -1);
  const groups = new Map();
  ys.forEach((col, k) => {
    const st = (cfgs[k].custom && cfgs[k].custom.stacking) || {};
    if (!st.mode || st.mode === "none") return;
    const key = st.mode + "/" + (st.group || "A");
    const members = groups.get(key) || [];
    if (members.length) {
      const prev = members[members.length - 1];
      below[k] = prev;
      out[k] = col.map((v, i) => (v === null ? out[prev][i] : (out[prev][i] ?? 0) + v));
    }
    members.push(k);
    groups.set(key, members);
  });
  // Percent stacking: each group's cumulative columns as shares of its top.
  for (const [key, members] of groups) {
    if (!key.startsWith("percent/")) continue;
    const totals = out[members[members.length - 1]].slice();
    for (const k of members) out[k] = out[k].map((v, i) => (v === null || !totals[i] ? v : v / totals[i]));
  }
  return { out, below };
}

function legendRow(table, cells, swatch) {
  const tr = table.insertRow();
  const first = tr.insertCell();
  if (swatch) {
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = swatch;
    first.appendChild(sw);
  }
  first.appendChild(document.createTextNode(cells[0]));
  for (const c of cells.slice(1)) tr.insertCell().textContent = c;
  return tr;
}

// Exemplars as small diamonds over the chart, each a link to its trace (or a title with
// its labels when it names none); kept in place when the chart is redrawn.
// At most this many per chart (the newest): a diamond is a DOM element, and the store may
// hold 100,000 exemplars.
const MAX_EXEMPLARS = 2000;

// The y range of a chart: the field's min and max where set; otherwise from zero (or the
// lowest value, when negative) to the highest of the series' values and the exemplars'.
export function autoRange(cfg, lo, hi, exemplars) {
  for (const e of exemplars) {
    lo = lo === null || lo === undefined ? e.value : Math.min(lo, e.value);
    hi = hi === null || hi === undefined ? e.value : Math.max(hi, e.value);
  }
  const min = cfg.min ?? Math.min(0, lo ?? 0);
  const max = cfg.max ?? (hi === lo ? (hi || 0) + 1 : hi);
  return [min, max];
}

// The exemplars a chart draws: those inside its time range, the newest MAX_EXEMPLARS.
export function newestExemplars(all, range) {
  const inside = range ? all.filter((e) => e.t * 1000 >= range.from && e.t * 1000 <= range.to) : all;
  return inside.length > MAX_EXEMPLARS ? inside.slice().sort((a, b) => b.t - a.t).slice(0, MAX_EXEMPLARS) : inside;
}

function drawExemplars(u, exemplars) {
  if (!exemplars.length) return;
  const layer = document.createElement("div");
  layer.className = "exemplars";
  // Beside uPlot's plotting area, in the same positioned box.
  u.over.parentNode.appendChild(layer);
  const place = () => {
    layer.replaceChildren();
    const over = u.over;
    layer.style.left = over.offsetLeft + "px";
    layer.style.top = over.offsetTop + "px";
    for (const e of exemplars) {
      const x = u.valToPos(e.t, "x");
      const y = u.valToPos(e.value, "y");
      if (!(x >= 0 && x <= over.clientWidth && y >= 0 && y <= over.clientHeight)) continue;
      const a = document.createElement(e.traceId ? "a" : "span");
      a.className = "exemplar";
      if (e.traceId) a.href = "/trace/" + encodeURIComponent(e.traceId);
      a.title = Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join("\n") + `\nvalue ${e.value}\n${new Date(e.t * 1000).toLocaleString()}`;
      a.dataset.traceId = e.traceId;
      a.dataset.value = String(e.value);
      a.dataset.t = String(e.t);
      a.style.left = x + "px";
      a.style.top = y + "px";
      layer.appendChild(a);
    }
  };
  place();
  u.hooks.draw = (u.hooks.draw || []).concat([place]);
}

export function render(el, panel, series, ctx) {
  el.innerHTML = "";
  if (!series.length) return "nodata";
  const cfgs = series.map((s) => fieldConfigFor(panel, s.name, s.refId));
  const { xs, ys } = align(series);
  const signed = ys.map((col, k) => ((cfgs[k].custom || {}).transform === "negative-Y" ? col.map((v) => (v === null ? null : -v)) : col));
  const { out, below } = stack(signed, cfgs);
  const unit = cfgs[0].unit;
  const decimals = cfgs[0].decimals;
  const opts = panel.options || {};
  const legend = opts.legend || {};
  const showLegend = legend.showLegend !== false && legend.displayMode !== "hidden";
  const colors = series.map((s, k) => {
    const c = cfgs[k].color || {};
    return color(c.mode === "fixed" ? c.fixedColor : null) || PALETTE[k % PALETTE.length];
  });
  const uSeries = [{}];
  const bands = [];
  series.forEach((s, k) => {
    const custom = cfgs[k].custom || {};
    const fillOpacity = custom.fillOpacity ?? (custom.drawStyle === "bars" ? 80 : 0);
    const alpha = Math.round(Math.max(0, Math.min(100, fillOpacity)) * 2.55).toString(16).padStart(2, "0");
    const style = custom.drawStyle || "line";
    const ser = {
      label: s.name,
      stroke: colors[k],
      width: custom.lineWidth ?? 1,
      spanGaps: custom.spanNulls === true,
      dash: custom.lineStyle && custom.lineStyle.fill === "dash" ? custom.lineStyle.dash || [10, 10] : undefined,
      points: { show: style === "points" || custom.showPoints === "always", size: custom.pointSize || 5 },
      value: (u, v) => (v === null ? "–" : formatUnit(v, cfgs[k].unit || unit, cfgs[k].decimals ?? decimals)),
    };
    if (style === "bars" && typeof uPlot !== "undefined") ser.paths = uPlot.paths.bars({ size: [0.8, 64] });
    if (style === "points") ser.paths = () => null;
    if (custom.lineInterpolation === "smooth" && typeof uPlot !== "undefined") ser.paths = uPlot.paths.spline();
    if (custom.hideFrom && custom.hideFrom.viz) ser.show = false;
    if (fillOpacity > 0) {
      if (below[k] >= 0) bands.push({ series: [k + 1, below[k] + 1], fill: colors[k] + alpha });
      else ser.fill = colors[k] + alpha;
    }
    uSeries.push(ser);
  });
  // Exemplars are often the outliers a user came for (the slow request above the p99
  // line): the automatic y range takes them in, as it takes in the series.
    const ex = newestExemplars(ctx.exemplars || [], ctx.range);
  const yRange = (u, lo, hi) => autoRange(cfgs[0], lo, hi, ex);
  const chart = document.createElement("div");
  chart.className = "ts-chart";
  el.appendChild(chart);
  const tooltip = document.createElement("div");
  tooltip.className = "tooltip";
  tooltip.hidden = true;
  el.appendChild(tooltip);
  let legendEl = null;
  if (showLegend) {
    legendEl = document.createElement("table");
    legendEl.className = "legend " + (legend.displayMode === "table" ? "legend-table" : "legend-list");
    const calcs = legend.calcs || [];
    if (calcs.length && legend.displayMode === "table") legendRow(legendEl.createTHead(), ["Name"].concat(calcs));
    series.forEach((s, k) => {
      const row = legendRow(legendEl, [s.name].concat(calcs.map((c) => { const v = reduce(signed[k], c); return v === null ? "–" : formatUnit(v, cfgs[k].unit || unit, cfgs[k].decimals ?? decimals); })), colors[k]);
      row.addEventListener("click", () => { if (ctx.uplot) ctx.uplot.setSeries(k + 1, { show: !ctx.uplot.series[k + 1].show }); row.classList.toggle("off"); });
    });
  }
  const height = Math.max(60, ctx.height - (legendEl ? Math.min(ctx.height / 3, 22 * (series.length + 1)) : 0));
  const u = new uPlot({
    width: Math.max(100, ctx.width),
    height,
    series: uSeries,
    bands,
    legend: { show: false },
    // The x axis is the dashboard's time range, whatever the data covers (as Grafana).
    scales: { x: { time: true, range: ctx.range ? () => [ctx.range.from / 1000, ctx.range.to / 1000] : undefined }, y: { range: yRange } },
    axes: [{}, { values: (u, vals) => vals.map((v) => formatUnit(v, unit, cfgs[0].decimals)), size: 70 }],
    cursor: { drag: { x: true, y: false } },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 5) return;
        const from = u.posToVal(u.select.left, "x");
        const to = u.posToVal(u.select.left + u.select.width, "x");
        u.setSelect({ width: 0, height: 0 }, false);
        if (ctx.onZoom) ctx.onZoom(Math.round(from * 1000), Math.round(to * 1000));
      }],
      setCursor: [(u) => {
        const i = u.cursor.idx;
        if (i === null || i === undefined || (opts.tooltip && opts.tooltip.mode === "none")) { tooltip.hidden = true; return; }
        const lines = [new Date(xs[i] * 1000).toLocaleString()];
        series.forEach((s, k) => { if (signed[k][i] !== null) lines.push(s.name + ": " + formatUnit(signed[k][i], cfgs[k].unit || unit, cfgs[k].decimals ?? decimals)); });
        tooltip.textContent = lines.slice(0, 21).join("\n");
        tooltip.hidden = false;
        tooltip.style.left = Math.min(u.cursor.left + 60, Math.max(0, ctx.width - 220)) + "px";
      }],
    },
  }, [xs, ...out], chart);
  ctx.uplot = u;
  drawExemplars(u, ex);
  if (legendEl) el.appendChild(legendEl);
  return xs.length ? "ok" : "nodata";
}
