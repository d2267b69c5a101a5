// The `bargauge` panel: one bar per series from min to max, coloured by thresholds
// (basic, gradient or LCD-style), horizontal or vertical.

import { reduced } from "../fields.mjs";

export function render(el, panel, series) {
  el.innerHTML = "";
  if (!series.length) return "nodata";
  const opts = panel.options || {};
  const vertical = opts.orientation === "vertical";
  const box = document.createElement("div");
  box.className = "bargauge " + (vertical ? "vertical" : "horizontal");
  let any = false;
  for (const { s, cfg, v, d } of reduced(panel, series)) {
    const min = cfg.min ?? 0, max = cfg.max ?? 100;
    any = any || !d.nodata;
    const frac = v === null || max === min ? 0 : Math.max(0, Math.min(1, (v - min) / (max - min)));
    const row = document.createElement("div");
    row.className = "bar-row";
    const name = document.createElement("span");
    name.className = "bar-name";
    name.textContent = s.name;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style[vertical ? "height" : "width"] = (frac * 100).toFixed(1) + "%";
    fill.style.background = opts.displayMode === "gradient" ? `linear-gradient(${vertical ? "0deg" : "90deg"}, ${d.color}55, ${d.color})` : d.color;
    track.appendChild(fill);
    const val = document.createElement("span");
    val.className = "bar-value";
    val.textContent = d.text;
    val.style.color = d.color;
    row.append(name, track, val);
    box.appendChild(row);
  }
  el.appendChild(box);
  return any ? "ok" : "nodata";
}
