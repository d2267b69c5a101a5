// Time ranges and intervals as Grafana computes them: `now-6h`, `now/d`, absolute times,
// the auto interval of a panel (range / width, rounded to a readable step, never below
// the panel's or the data source's minimum) and `$__rate_interval`.

const UNIT_MS = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3, M: 30 * 86400e3, y: 365 * 86400e3 };

// Parses a Prometheus-style duration ("1m30s", "250ms", "2d") into ms; null when it is not one.
export function parseDuration(s) {
  if (typeof s !== "string") return null;
  s = s.trim();
  if (!s) return null;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/gy;
  let total = 0, m, end = 0;
  while ((m = re.exec(s)) !== null) { total += parseFloat(m[1]) * UNIT_MS[m[2]]; end = re.lastIndex; }
  if (end !== s.length) return /^\d+$/.test(s) ? parseInt(s, 10) * 1e3 : null;
  return total;
}

// A duration in ms as Grafana writes intervals: the largest unit that divides it.
export function formatDuration(ms) {
  ms = Math.max(0, Math.round(ms));
  for (const [u, f] of [["y", UNIT_MS.y], ["w", UNIT_MS.w], ["d", UNIT_MS.d], ["h", UNIT_MS.h], ["m", UNIT_MS.m], ["s", UNIT_MS.s]]) {
    if (ms >= f && ms % f === 0) return ms / f + u;
  }
  return ms + "ms";
}

function startOf(d, unit) {
  const t = new Date(d);
  switch (unit) {
    case "y": t.setMonth(0, 1); t.setHours(0, 0, 0, 0); break;
    case "M": t.setDate(1); t.setHours(0, 0, 0, 0); break;
    case "w": t.setDate(t.getDate() - t.getDay()); t.setHours(0, 0, 0, 0); break;
    case "d": t.setHours(0, 0, 0, 0); break;
    case "h": t.setMinutes(0, 0, 0); break;
    case "m": t.setSeconds(0, 0); break;
    case "s": t.setMilliseconds(0); break;
    default: return null;
  }
  return t.getTime();
}

function endOf(d, unit) {
  const start = startOf(d, unit);
  if (start === null) return null;
  const t = new Date(start);
  switch (unit) {
    case "y": t.setFullYear(t.getFullYear() + 1); break;
    case "M": t.setMonth(t.getMonth() + 1); break;
    case "w": t.setDate(t.getDate() + 7); break;
    case "d": t.setDate(t.getDate() + 1); break;
    default: return start + UNIT_MS[unit] - 1;
  }
  return t.getTime() - 1;
}

// A time of the picker in ms: `now`, `now-6h`, `now-1d/d`, `now/w`, epoch ms, or an ISO
// date. `isEnd` rounds `/unit` up to the unit's end, as Grafana does for `to`. Returns
// null when the text is none of these.
export function parseTime(text, now, isEnd) {
  if (text === undefined || text === null) return null;
  const s = String(text).trim();
  if (/^\d{9,}$/.test(s)) return parseInt(s, 10);
  if (s.startsWith("now")) {
    let t = now;
    let rest = s.slice(3);
    const re = /^([+-])(\d+)(ms|s|m|h|d|w|M|y)/;
    let m;
    while ((m = re.exec(rest)) !== null) {
      const n = parseInt(m[2], 10) * (m[1] === "-" ? -1 : 1);
      if (m[3] === "M" || m[3] === "y") {
        const d = new Date(t);
        if (m[3] === "M") d.setMonth(d.getMonth() + n); else d.setFullYear(d.getFullYear() + n);
        t = d.getTime();
      } else t += n * UNIT_MS[m[3]];
      rest = rest.slice(m[0].length);
    }
    if (rest.startsWith("/")) {
      const r = isEnd ? endOf(t, rest.slice(1)) : startOf(t, rest.slice(1));
      if (r === null || rest.length !== 2) return null;
      return r;
    }
    return rest === "" ? t : null;
  }
  const d = Date.parse(s);
  return Number.isNaN(d) ? null : d;
}

// Grafana's readable steps: an interval is rounded to the nearest of these.
const STEPS = [
  [15, 10], [35, 20], [75, 50], [150, 100], [350, 200], [750, 500], [1500, 1e3], [3500, 2e3],
  [7500, 5e3], [12500, 10e3], [17500, 15e3], [25000, 20e3], [45000, 30e3], [90000, 60e3],
  [210000, 120e3], [450000, 300e3], [1050000, 600e3], [2100000, 1200e3], [5400000, 3600e3],
  [9000000, 7200e3], [16200000, 10800e3], [32400000, 21600e3], [86400000, 43200e3],
  [604800000, 86400e3], [1814400000, 604800e3], [3628800000, 2592000e3],
];

export function roundInterval(ms) {
  for (const [below, step] of STEPS) if (ms < below) return step;
  return 31536000e3;
}

// The interval of a panel: range / max data points rounded to a readable step, at least
// the minimum (the panel's `interval`, else the scrape interval), times `intervalFactor`,
// and never so small that a range query would exceed Prometheus's 11,000 points.
export function panelInterval(rangeMs, maxDataPoints, minIntervalMs, intervalFactor) {
  let ms = roundInterval(rangeMs / Math.max(1, maxDataPoints));
  if (minIntervalMs && ms < minIntervalMs) ms = minIntervalMs;
  ms *= Math.max(1, intervalFactor || 1);
  const floor = Math.ceil(rangeMs / 11000 / 1000) * 1000;
  return Math.max(ms, floor, 1);
}

// Grafana's $__rate_interval: max(interval + scrape interval, 4 × scrape interval).
export function rateInterval(intervalMs, scrapeMs) {
  return Math.max(intervalMs + scrapeMs, 4 * scrapeMs);
}

// Text for the picker: "Last 6 hours" for now-6h..now, else both ends.
export function describeRange(from, to) {
  const m = /^now-(\d+)([smhdwMy])$/.exec(from);
  if (m && to === "now") {
    const names = { s: "second", m: "minute", h: "hour", d: "day", w: "week", M: "month", y: "year" };
    const n = parseInt(m[1], 10);
    return `Last ${n} ${names[m[2]]}${n === 1 ? "" : "s"}`;
  }
  const fmt = (t) => (/^\d+$/.test(t) ? new Date(parseInt(t, 10)).toLocaleString() : t);
  return `${fmt(from)} to ${fmt(to)}`;
}
