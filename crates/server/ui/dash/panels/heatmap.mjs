// The `heatmap` panel over classic histogram buckets: series with an `le` label (counts
// per bucket, cumulative as Prometheus exposes them) drawn as cells per time and bucket,
// darker where more observations fell.

import { formatUnit } from "../units.mjs";
import { align } from "./timeseries.mjs";

// Buckets sorted by bound, de-cumulated: for each bucket and time, the count in it alone.
export function buckets(series) {
  const bs = series.filter((s) => s.metric.le !== undefined).map((s) => ({ le: s.metric.le === "+Inf" ? Infinity : parseFloat(s.metric.le), s }));
  bs.sort((a, b) => a.le - b.le);
  const { xs, ys } = align(bs.map((b) => b.s));
  const cells = ys.map((col, k) => col.map((v, i) => (v === null ? null : Math.max(0, v - (k > 0 && ys[k - 1][i] !== null ? ys[k - 1][i] : 0)))));
  return { xs, bounds: bs.map((b) => b.le), cells };
}

export function render(el, panel, series, ctx) {
  el.innerHTML = "";
  const h = buckets(series);
  if (!h.bounds.length || !h.xs.length) return "nodata";
  const unit = ((panel.fieldConfig || {}).defaults || {}).unit || (((panel.options || {}).yAxis || {}).unit) || "short";
  const canvas = document.createElement("canvas");
  const W = Math.max(100, ctx.width), H = Math.max(60, ctx.height - 16);
  canvas.width = W;
  canvas.height = H;
  const left = 60;
  const g = canvas.getContext("2d");
  let max = 0;
  for (const col of h.cells) for (const v of col) if (v !== null && v > max) max = v;
  const cw = (W - left) / h.xs.length, ch = H / h.bounds.length;
  h.cells.forEach((col, k) => col.forEach((v, i) => {
    if (v === null || v === 0) return;
    g.fillStyle = `rgba(234, 88, 12, ${0.1 + 0.9 * (v / (max || 1))})`;
    g.fillRect(left + i * cw, H - (k + 1) * ch, Math.ceil(cw), Math.ceil(ch));
  }));
  g.fillStyle = "#6b7280";
  g.font = "10px sans-serif";
  const every = Math.max(1, Math.ceil(h.bounds.length / Math.max(1, H / 14)));
  h.bounds.forEach((b, k) => { if (k % every === 0) g.fillText(b === Infinity ? "+Inf" : formatUnit(b, unit), 2, H - k * ch - 2); });
  el.appendChild(canvas);
  return max > 0 ? "ok" : "nodata";
}
