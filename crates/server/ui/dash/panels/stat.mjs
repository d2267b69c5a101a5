// The `stat` panel (and legacy `singlestat`): one reduced value per series, coloured by
// thresholds or mappings, with an optional sparkline.

import { reduced } from "../fields.mjs";

function sparkline(values, stroke) {
  const nums = values.map((v) => (Number.isFinite(v) ? v : null));
  const real = nums.filter((v) => v !== null);
  if (real.length < 2) return null;
  const min = Math.min(...real), max = Math.max(...real);
  const pts = nums.map((v, i) => (v === null ? null : `${(i / (nums.length - 1)) * 100},${30 - (max === min ? 15 : ((v - min) / (max - min)) * 28 + 1)}`)).filter(Boolean);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "sparkline");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", stroke);
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.appendChild(line);
  return svg;
}

export function render(el, panel, series, ctx) {
  el.innerHTML = "";
  const opts = panel.options || {};
  const items = reduced(panel, series);
  const box = document.createElement("div");
  box.className = "stat-grid";
  let any = false;
  for (const { s, d } of items) {
    any = any || !d.nodata;
    const cell = document.createElement("div");
    cell.className = "stat";
    const bg = opts.colorMode === "background" && !d.nodata;
    if (bg) { cell.style.background = d.color; cell.style.color = "#fff"; }
    const val = document.createElement("div");
    val.className = "stat-value";
    val.textContent = d.text;
    if (!bg && opts.colorMode !== "none") val.style.color = d.color;
    // As large as the cell allows: its height, and its width for the text's length.
    const across = items.length > 1 ? 2 : 1;
    const byHeight = ctx.height / (items.length > 1 ? 2.5 * Math.ceil(items.length / 2) : 2.5);
    const byWidth = (ctx.width / across) / Math.max(2, d.text.length * 0.62);
    val.style.fontSize = Math.max(10, Math.min(48, byHeight, byWidth)) + "px";
    if (s && items.length > 1 && opts.textMode !== "value") {
      const name = document.createElement("div");
      name.className = "stat-name";
      name.textContent = s.name;
      cell.appendChild(name);
    }
    cell.appendChild(val);
    if (s && opts.graphMode !== "none" && !s.instant) {
      const sl = sparkline(s.values, bg ? "#ffffffaa" : d.color);
      if (sl) cell.appendChild(sl);
    }
    box.appendChild(cell);
  }
  el.appendChild(box);
  return any ? "ok" : "nodata";
}
