// Grafana's common units: a number and a unit id give the text a panel shows
// ("1.50 GiB", "42%", "3.2 ms", "1.2 K req/s").

function fixed(v, decimals) {
  if (decimals !== undefined && decimals !== null && decimals !== "auto") return v.toFixed(Math.max(0, Math.min(20, decimals)));
  const a = Math.abs(v);
  // Auto: about three significant digits, trailing zeros dropped.
  const d = a === 0 || a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : Math.min(10, 2 - Math.floor(Math.log10(a)));
  return String(parseFloat(v.toFixed(d)));
}

// Scales by powers of `base` through `units` (the first is the unscaled one).
function scaled(v, base, units, decimals, sep = " ") {
  let i = 0;
  let x = v;
  while (Math.abs(x) >= base && i < units.length - 1) { x /= base; i++; }
  return fixed(x, decimals) + sep + units[i];
}

// Below one, SI prefixes downwards (for seconds-like units handled elsewhere).
const SI = ["", " K", " M", " G", " T", " P", " E"];
const SHORT = ["", " K", " Mil", " Bil", " Tri", " Quadr", " Quint"];

function short(v, decimals, suffix = "") {
  return scaled(v, 1000, SHORT, decimals, "").replace(/\s+$/, "") + suffix;
}

function si(v, decimals, unit) {
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1000 && i < SI.length - 1) { x /= 1000; i++; }
  if (i === 0 && x !== 0 && Math.abs(x) < 1) {
    const small = [[1e-3, " m"], [1e-6, " µ"], [1e-9, " n"]];
    for (const [f, p] of small) if (Math.abs(x) >= f) return fixed(x / f, decimals) + p + unit;
  }
  return fixed(x, decimals) + (i ? SI[i] : " ") + unit;
}

const IEC_BYTES = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
const SI_BYTES = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
const IEC_BITS = ["b", "Kib", "Mib", "Gib", "Tib", "Pib", "Eib"];
const SI_BITS = ["b", "kb", "Mb", "Gb", "Tb", "Pb", "Eb"];

function plural(n, unit) {
  return Math.abs(n) === 1 ? unit : unit + "s";
}

// Durations: ns, µs, ms, s, then minutes, hours, days, as Grafana's time units.
function duration(v, decimals, unitMs) {
  const ms = v * unitMs;
  const a = Math.abs(ms);
  if (a === 0) return "0 " + (unitMs === 1e3 ? "s" : unitMs === 1 ? "ms" : unitMs === 1e-3 ? "µs" : "ns");
  if (a < 1e-3) return fixed(ms * 1e6, decimals) + " ns";
  if (a < 1) return fixed(ms * 1e3, decimals) + " µs";
  if (a < 1e3) return fixed(ms, decimals) + " ms";
  if (a < 60e3) return fixed(ms / 1e3, decimals) + " s";
  if (a < 3600e3) return fixed(ms / 60e3, decimals) + " min";
  if (a < 86400e3) return fixed(ms / 3600e3, decimals) + plural(ms / 3600e3, " hour");
  if (a < 7 * 86400e3) return fixed(ms / 86400e3, decimals) + plural(ms / 86400e3, " day");
  if (a < 365 * 86400e3) return fixed(ms / (7 * 86400e3), decimals) + plural(ms / (7 * 86400e3), " week");
  return fixed(ms / (365 * 86400e3), decimals) + plural(ms / (365 * 86400e3), " year");
}

const RATES = {
  ops: " ops/s", reqps: " req/s", rps: " rd/s", wps: " wr/s", iops: " io/s", opm: " ops/min",
  rpm: " rd/min", wpm: " wr/min", pps: " p/s", cps: " c/s", mps: " m/s",
};

// The text of `v` in `unit` with `decimals` (undefined: automatic).
export function formatUnit(v, unit, decimals) {
  if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  unit = unit || "short";
  if (unit.startsWith("suffix:")) return fixed(v, decimals) + unit.slice(7);
  if (unit.startsWith("prefix:")) return unit.slice(7) + fixed(v, decimals);
  if (RATES[unit]) return short(v, decimals, RATES[unit]);
  switch (unit) {
    case "none": return fixed(v, decimals);
    case "short": return short(v, decimals);
    case "percent": return fixed(v, decimals) + "%";
    case "percentunit": return fixed(v * 100, decimals) + "%";
    case "bytes": case "binbytes": return scaled(v, 1024, IEC_BYTES, decimals);
    case "decbytes": return scaled(v, 1000, SI_BYTES, decimals);
    case "kbytes": return scaled(v * 1024, 1024, IEC_BYTES, decimals);
    case "mbytes": return scaled(v * 1024 * 1024, 1024, IEC_BYTES, decimals);
    case "bits": case "binbits": return scaled(v, 1024, IEC_BITS, decimals);
    case "decbits": return scaled(v, 1000, SI_BITS, decimals);
    case "Bps": case "decBps": return scaled(v, 1000, SI_BYTES, decimals) + "/s";
    case "binBps": return scaled(v, 1024, IEC_BYTES, decimals) + "/s";
    case "bps": case "decbps": return scaled(v, 1000, SI_BITS, decimals) + "ps";
    case "binbps": return scaled(v, 1024, IEC_BITS, decimals) + "/s";
    case "KBs": return scaled(v * 1000, 1000, SI_BYTES, decimals) + "/s";
    case "MBs": return scaled(v * 1e6, 1000, SI_BYTES, decimals) + "/s";
    case "ns": return duration(v, decimals, 1e-6);
    case "µs": case "us": return duration(v, decimals, 1e-3);
    case "ms": return duration(v, decimals, 1);
    case "s": return duration(v, decimals, 1e3);
    case "m": return duration(v, decimals, 60e3);
    case "h": return duration(v, decimals, 3600e3);
    case "d": return duration(v, decimals, 86400e3);
    case "hertz": return si(v, decimals, "Hz");
    case "volt": return si(v, decimals, "V");
    case "watt": return si(v, decimals, "W");
    case "celsius": return fixed(v, decimals) + "°C";
    case "fahrenheit": return fixed(v, decimals) + "°F";
    case "dateTimeAsIso": return new Date(v).toISOString().replace("T", " ").slice(0, 19);
    case "dateTimeFromNow": {
      const d = (Date.now() - v) / 1000;
      return d >= 0 ? duration(d, 0, 1e3) + " ago" : "in " + duration(-d, 0, 1e3);
    }
    case "bool": return v ? "True" : "False";
    case "bool_yes_no": return v ? "Yes" : "No";
    case "bool_on_off": return v ? "On" : "Off";
    default: return fixed(v, decimals) + " " + unit;
  }
}
