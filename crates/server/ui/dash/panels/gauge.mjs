// The `gauge` panel: an arc from min to max per series, coloured by thresholds, with the
// threshold bands drawn outside it.

import { reduced, thresholdColor } from "../fields.mjs";

const NS = "http://www.w3.org/2000/svg";

function arc(cx, cy, r, a0, a1) {
  const p = (a) => [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  const [x0, y0] = p(a0), [x1, y1] = p(a1);
  return `M ${x0} ${y0} A ${r} ${r} 0 ${a1 - a0 > Math.PI ? 1 : 0} 1 ${x1} ${y1}`;
}

function path(d, stroke, width) {
  const e = document.createElementNS(NS, "path");
  e.setAttribute("d", d);
  e.setAttribute("stroke", stroke);
  e.setAttribute("stroke-width", width);
  e.setAttribute("fill", "none");
  return e;
}

export function render(el, panel, series, ctx) {
  el.innerHTML = "";
  const opts = panel.options || {};
  const items = reduced(panel, series);
  const box = document.createElement("div");
  box.className = "stat-grid";
  let any = false;
  for (const { s, cfg, v, d } of items) {
    const min = cfg.min ?? 0, max = cfg.max ?? 100;
    any = any || !d.nodata;
    const frac = v === null || max === min ? 0 : Math.max(0, Math.min(1, (v - min) / (max - min)));
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 100 80");
    svg.setAttribute("class", "gauge");
    const a0 = Math.PI * 0.75, span = Math.PI * 1.5;
    svg.appendChild(path(arc(50, 50, 38, a0, a0 + span), "#e5e7eb", 10));
    if (frac > 0) svg.appendChild(path(arc(50, 50, 38, a0, a0 + span * Math.max(frac, 0.001)), d.color, 10));
    if (opts.showThresholdMarkers !== false && cfg.thresholds && cfg.thresholds.steps) {
      const steps = cfg.thresholds.steps;
      steps.forEach((st, i) => {
        const lo = st.value === null || st.value === undefined ? min : st.value;
        const hi = i + 1 < steps.length ? steps[i + 1].value : max;
        const pct = cfg.thresholds.mode === "percentage";
        const f = (x) => Math.max(0, Math.min(1, pct ? x / 100 : (x - min) / (max - min || 1)));
        if (f(hi) > f(lo)) svg.appendChild(path(arc(50, 50, 46, a0 + span * f(lo), a0 + span * f(hi)), thresholdColor(pct ? lo * (max - min) / 100 + min : lo, cfg), 3));
      });
    }
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", "50");
    t.setAttribute("y", "56");
    t.setAttribute("text-anchor", "middle");
    t.setAttribute("font-size", "14");
    t.setAttribute("fill", d.color);
    t.textContent = d.text;
    svg.appendChild(t);
    const cell = document.createElement("div");
    cell.className = "stat";
    if (s && items.length > 1) { const n = document.createElement("div"); n.className = "stat-name"; n.textContent = s.name; cell.appendChild(n); }
    svg.style.maxHeight = Math.max(40, ctx.height - 20) + "px";
    cell.appendChild(svg);
    box.appendChild(cell);
  }
  el.appendChild(box);
  return any ? "ok" : "nodata";
}
