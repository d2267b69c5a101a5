// The dashboard grid: Grafana's 24 columns, panels placed by `gridPos` and floated up
// (vertical compaction, as Grafana's grid does), rows that collapse.

// Which panels show, given the rows' collapsed state: a collapsed row hides what it
// holds (`panels` inside it, or the panels after it up to the next row in newer files
// when the user collapses it here); an expanded row shows its stored panels below it.
export function visiblePanels(panels, collapsed) {
  const out = [];
  let hiding = false;
  for (const p of panels) {
    if (p.type === "row") {
      const isCollapsed = collapsed.has(p.id);
      out.push(p);
      hiding = isCollapsed;
      if (!isCollapsed && Array.isArray(p.panels)) {
        const base = p.gridPos.y + 1;
        const top = Math.min(...p.panels.map((q) => q.gridPos.y), Infinity);
        for (const q of p.panels) out.push({ ...q, gridPos: { ...q.gridPos, y: base + (q.gridPos.y - (top === Infinity ? 0 : top)) } });
      }
      continue;
    }
    if (!hiding) out.push(p);
  }
  return out;
}

// Places panels: each keeps its column and width and floats up as far as the panels
// already placed allow. Returns [{panel, x, y, w, h}] in reading order.
export function compact(panels) {
  const items = panels
    // A row is one grid line across the whole width, whatever its file says.
    .map((p, i) => ({ panel: p, i, ...p.gridPos, ...(p.type === "row" ? { x: 0, w: 24, h: 1 } : {}) }))
    .sort((a, b) => a.y - b.y || a.x - b.x || a.i - b.i);
  const placed = [];
  for (const it of items) {
    let y = 0;
    for (const q of placed) {
      if (q.x < it.x + it.w && it.x < q.x + q.w) y = Math.max(y, q.y + q.h);
    }
    // A row spans the grid: nothing before it floats below it.
    if (it.panel.type === "row") y = Math.max(y, ...placed.map((q) => q.y + q.h), 0);
    placed.push({ panel: it.panel, x: it.x, y, w: it.w, h: it.h });
  }
  return placed.sort((a, b) => a.y - b.y || a.x - b.x);
}

// Every panel that draws data (rows' stored panels included), for listing and tests.
export function allPanels(panels) {
  const out = [];
  for (const p of panels) {
    out.push(p);
    if (p.type === "row" && Array.isArray(p.panels)) out.push(...p.panels);
  }
  return out;
}
