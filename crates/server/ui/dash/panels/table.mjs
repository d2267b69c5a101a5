// The `table` panel: series as rows (labels as columns, the value last), as Grafana's
// `format: table` and instant queries give them; several queries are joined on their
// labels into `Value #A`, `Value #B`…; columns sort by clicking their header.

import { display, fieldConfigFor, reduce } from "../fields.mjs";

// Rows and columns of the table for `series`.
export function tableOf(series, calc) {
  const refIds = Array.from(new Set(series.map((s) => s.refId)));
  const valueCol = (r) => (refIds.length > 1 ? "Value #" + r : "Value");
  // Several queries are joined on their labels; their metric names would keep every row
  // apart, so the name is left out then.
  const labelCols = Array.from(new Set(series.flatMap((s) => Object.keys(s.metric))))
    .filter((k) => refIds.length === 1 || k !== "__name__")
    .sort((a, b) => (a === "__name__" ? -1 : b === "__name__" ? 1 : a.localeCompare(b)));
  const rows = new Map();
  const timed = series.some((s) => s.instant || s.format === "table");
  for (const s of series) {
    const key = labelCols.map((k) => s.metric[k] ?? "").join("\u0000");
    const row = rows.get(key) || { labels: s.metric, values: {}, time: null };
    row.values[valueCol(s.refId)] = reduce(s.values, calc || "lastNotNull");
    if (s.times.length) row.time = s.times[s.times.length - 1];
    rows.set(key, row);
  }
  const columns = (timed ? ["Time"] : []).concat(labelCols, refIds.map(valueCol));
  const values = new Set(refIds.map(valueCol));
  // A query without a row for these labels leaves its cell empty (null), not "".
  const cellOf = (r, c) => (c === "Time" ? r.time : values.has(c) ? (r.values[c] ?? null) : (r.labels[c] ?? ""));
  const out = Array.from(rows.values()).map((r) => columns.map((c) => cellOf(r, c)));
  return { columns, rows: out, valueColumns: values };
}

export function render(el, panel, series) {
  el.innerHTML = "";
  if (!series.length) return "nodata";
  const calc = (((panel.options || {}).reduceOptions || {}).calcs || [])[0];
  const t = tableOf(series, calc);
  let sortBy = -1, desc = false;
  const table = document.createElement("table");
  table.className = "data-table";
  const draw = () => {
    table.innerHTML = "";
    const head = table.createTHead().insertRow();
    t.columns.forEach((c, i) => {
      const th = document.createElement("th");
      const name = t.valueColumns.has(c) ? fieldConfigFor(panel, c, c.replace(/^Value #?/, "")).displayName || c : c;
      th.textContent = name + (i === sortBy ? (desc ? " ▼" : " ▲") : "");
      th.addEventListener("click", () => { desc = sortBy === i ? !desc : false; sortBy = i; draw(); });
      head.appendChild(th);
    });
    const rows = t.rows.slice();
    if (sortBy >= 0) rows.sort((a, b) => { const x = a[sortBy], y = b[sortBy]; const r = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y)); return desc ? -r : r; });
    const body = table.createTBody();
    for (const r of rows) {
      const tr = body.insertRow();
      r.forEach((v, i) => {
        const td = tr.insertCell();
        const col = t.columns[i];
        if (col === "Time") td.textContent = v === null ? "" : new Date(v * 1000).toLocaleString();
        else if (t.valueColumns.has(col)) {
          const d = display(v, fieldConfigFor(panel, col, col.replace(/^Value #?/, "")));
          td.textContent = d.text;
          td.className = "num";
        } else td.textContent = v;
      });
    }
  };
  draw();
  el.appendChild(table);
  return t.rows.length ? "ok" : "nodata";
}
