// Grafana's template variables: reading their definitions, finding their options through
// the API (`label_values`, `label_names`, `metrics`, `query_result`, custom lists,
// intervals…), and interpolating them into queries with Grafana's formats.

const VAR_RE = /\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}/g;
const ALL = "$__all";

// Escapes a value for a PromQL string literal.
function promString(v) {
  return v.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/"/g, '\\"');
}

// Escapes a value as a regular expression inside a PromQL string (`=~"…"`): the regex
// escape's backslash is itself escaped for the string literal, as Grafana does.
export function regexEscape(v) {
  return promString(v.replace(/[$^*{}[\]'+?.()|\\]/g, "\\$&"));
}

// Applies a format (`${var:format}`) to a value or list of values.
export function formatValue(value, format, variable) {
  const list = Array.isArray(value) ? value : [value];
  switch (format) {
    case "regex": return list.length === 1 ? regexEscape(list[0]) : "(" + list.map(regexEscape).join("|") + ")";
    case "pipe": return list.join("|");
    case "csv": return list.join(",");
    case "distributed": return list.join(",");
    case "raw": case "text": return list.join(",");
    case "json": return JSON.stringify(Array.isArray(value) ? list : list[0]);
    case "doublequote": return list.map((v) => `"${v.replace(/"/g, '\\"')}"`).join(",");
    case "singlequote": return list.map((v) => `'${v.replace(/'/g, "\\'")}'`).join(",");
    case "sqlstring": return list.map((v) => `'${v.replace(/'/g, "''")}'`).join(",");
    case "glob": return list.length === 1 ? list[0] : "{" + list.join(",") + "}";
    case "percentencode": case "queryparam":
      return format === "queryparam"
        ? list.map((v) => "var-" + encodeURIComponent(variable ? variable.name : "") + "=" + encodeURIComponent(v)).join("&")
        : encodeURIComponent(list.length === 1 ? list[0] : "{" + list.join(",") + "}");
    default:
      // Prometheus's data source: a single-value variable goes in as it is (string-escaped),
      // a multi-value or "All" variable as an escaped regex alternation.
      if (variable && (variable.multi || variable.includeAll)) {
        return list.length === 1 ? regexEscape(list[0]) : "(" + list.map(regexEscape).join("|") + ")";
      }
      return list.map(promString).join(",");
  }
}

// The values a variable stands for now: "All" expands to the custom all value (as it is)
// or every option.
function currentValues(v) {
  const cur = v.current ? v.current.value : undefined;
  const vals = cur === undefined || cur === null ? [] : Array.isArray(cur) ? cur : [cur];
  if (vals.includes(ALL)) {
    if (v.allValue !== undefined && v.allValue !== null && v.allValue !== "") return { raw: v.allValue };
    return { values: (v.options || []).map((o) => o.value).filter((x) => x !== ALL) };
  }
  return { values: vals.map(String) };
}

// Replaces variables in `text`. `vars` maps names to variable objects (with `current`);
// `builtins` maps `__interval`-style names to strings. Unknown names stay as written.
export function interpolate(text, vars, builtins, defaultFormat) {
  if (typeof text !== "string") return text;
  return text.replace(VAR_RE, (match, a, b, bFmt, c, _field, cFmt) => {
    const name = a || b || c;
    const format = bFmt || cFmt || defaultFormat;
    if (builtins && Object.prototype.hasOwnProperty.call(builtins, name)) return String(builtins[name]);
    const v = vars && vars[name];
    if (!v) return match;
    const cur = currentValues(v);
    // An interval variable set to "auto" follows the panel's own interval.
    if (cur.values && cur.values[0] === "$__auto_interval_" + name) return builtins && builtins.__interval ? String(builtins.__interval) : "1m";
    if (cur.raw !== undefined) return cur.raw;
    if (format === "text" && v.current && v.current.text !== undefined) {
      return Array.isArray(v.current.text) ? v.current.text.join(" + ") : String(v.current.text);
    }
    return formatValue(cur.values.length === 1 && !(v.multi || v.includeAll) ? cur.values[0] : cur.values, format, v);
  });
}

// Names of the variables `text` refers to.
export function referencedNames(text) {
  const out = new Set();
  if (typeof text !== "string") return out;
  for (const m of text.matchAll(VAR_RE)) out.add(m[1] || m[2] || m[4]);
  return out;
}

// The text of a query variable's definition (a string, or `{query: …}` in newer schemas).
export function queryText(v) {
  const q = v.query;
  if (q && typeof q === "object") return String(q.query || "");
  return q === undefined || q === null ? (v.definition || "") : String(q);
}

// Parses a Prometheus variable query into what to ask the API.
export function parseVariableQuery(q) {
  q = q.trim();
  let m;
  if ((m = /^label_names\(\s*(.*?)\s*\)$/s.exec(q))) return { kind: "label_names", match: m[1] || null };
  if ((m = /^label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][\w]*)\s*\)$/s.exec(q))) return { kind: "label_values", match: m[1], label: m[2] };
  if ((m = /^label_values\(\s*([a-zA-Z_][\w]*)\s*\)$/s.exec(q))) return { kind: "label_values", match: null, label: m[1] };
  if ((m = /^metrics\(\s*(.*?)\s*\)$/s.exec(q))) return { kind: "metrics", regex: m[1] };
  if ((m = /^query_result\(\s*(.+)\s*\)$/s.exec(q))) return { kind: "query_result", expr: m[1] };
  return { kind: "query_result", expr: q, bare: true };
}

// Grafana's variable regex: "/pattern/flags"; a capture group (or groups named `text`
// and `value`) picks the part kept; values that do not match are dropped.
export function applyRegex(values, regex) {
  if (!regex) return values.map((v) => ({ text: v, value: v }));
  let re;
  const m = /^\/(.*)\/([gimsuy]*)$/s.exec(regex);
  try { re = m ? new RegExp(m[1], m[2].replace("g", "")) : new RegExp(regex); } catch (e) { throw new Error("invalid regex " + regex + ": " + e.message); }
  const out = [];
  const seen = new Set();
  for (const v of values) {
    const r = re.exec(v);
    if (!r) continue;
    let value = r[1] !== undefined ? r[1] : r[0];
    let text = value;
    if (r.groups) {
      if (r.groups.value !== undefined) value = r.groups.value;
      if (r.groups.text !== undefined) text = r.groups.text;
      if (r.groups.value !== undefined && r.groups.text === undefined) text = value;
      if (r.groups.text !== undefined && r.groups.value === undefined) value = text;
    }
    if (!seen.has(value)) { seen.add(value); out.push({ text, value }); }
  }
  return out;
}

function natural(a, b) { return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" }); }

// Grafana's `sort`: 1/2 alphabetical, 3/4 numerical, 5/6 case-insensitive, 7/8 natural
// (odd ascending, even descending); 0 keeps the order found.
export function sortOptions(opts, sort) {
  if (!sort) return opts;
  const num = (o) => { const m = /-?\d+(\.\d+)?/.exec(o.text); return m ? parseFloat(m[0]) : -Infinity; };
  const cmp = {
    1: (a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0),
    3: (a, b) => num(a) - num(b),
    5: (a, b) => a.text.toLowerCase().localeCompare(b.text.toLowerCase()),
    7: (a, b) => natural(a.text, b.text),
  }[sort % 2 === 1 ? sort : sort - 1];
  if (!cmp) return opts;
  const sorted = opts.slice().sort(cmp);
  return sort % 2 === 0 ? sorted.reverse() : sorted;
}

// Options of a `custom` variable: "a,b,c" or "text : value" pairs, commas escaped as "\,".
export function customOptions(query) {
  return String(query || "")
    .split(/(?<!\\),/)
    .map((s) => s.replace(/\\,/g, ",").trim())
    .filter((s) => s !== "")
    .map((s) => {
      const m = /^(.*?)\s+:\s+(.*)$/.exec(s);
      return m ? { text: m[1], value: m[2] } : { text: s, value: s };
    });
}

// A series' text for `query_result`: `name{a="b"} value timestamp`, as Grafana builds it.
function resultText(s) {
  const labels = Object.entries(s.metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`).join(",");
  return `${s.metric.__name__ || ""}{${labels}} ${s.value[1]} ${s.value[0] * 1000}`;
}

// Finds the options of variable `v` with `api(path, params)` (an async fetch of the
// Prometheus API's `data`), in the time range [startS, endS]. `ctx` interpolates the
// query with the variables before it.
export async function resolveOptions(v, api, ctx) {
  let values;
  switch (v.type) {
    case "custom": return withAll(v, customOptions(v.query));
    case "constant": return [{ text: String(v.query ?? ""), value: String(v.query ?? "") }];
    case "textbox": {
      const cur = v.current && v.current.value !== undefined ? v.current.value : v.query;
      return [{ text: String(cur ?? ""), value: String(cur ?? "") }];
    }
    case "interval": {
      const opts = customOptions(v.query);
      if (v.auto) opts.unshift({ text: "auto", value: "$__auto_interval_" + v.name });
      return opts;
    }
    case "datasource": return [{ text: "Lookout", value: "lookout" }];
    case "query": break;
    default: return [];
  }
  const q = parseVariableQuery(ctx.interpolate(queryText(v)));
  const range = { start: String(ctx.startS), end: String(ctx.endS) };
  switch (q.kind) {
    case "label_names":
      values = await api("/api/v1/labels", q.match ? { "match[]": q.match, ...range } : range);
      break;
    case "label_values":
      values = await api("/api/v1/label/" + encodeURIComponent(q.label) + "/values", q.match ? { "match[]": q.match, ...range } : range);
      break;
    case "metrics": {
      const names = await api("/api/v1/label/__name__/values", range);
      let re;
      try { re = new RegExp(q.regex || ".*"); } catch (e) { throw new Error("invalid metrics() regex: " + e.message); }
      values = names.filter((n) => re.test(n));
      break;
    }
    default: {
      const r = await api("/api/v1/query", { query: q.expr, time: String(ctx.endS) });
      const rows = r.resultType === "vector" ? r.result : r.resultType === "scalar" ? [{ metric: {}, value: r.result }] : [];
      values = rows.map(resultText);
    }
  }
  return withAll(v, sortOptions(applyRegex(values, v.regex), v.sort));
}

function withAll(v, opts) {
  return v.includeAll ? [{ text: "All", value: ALL }].concat(opts) : opts;
}

// Picks the current value after options change: the URL's values, else the saved
// current if still offered, else the first option (or All).
export function chooseCurrent(v, opts, fromUrl) {
  const offered = new Set(opts.map((o) => o.value));
  const textOf = (val) => (opts.find((o) => o.value === val) || { text: val }).text;
  const pick = (vals) => ({ text: v.multi ? vals.map(textOf) : textOf(vals[0]), value: v.multi ? vals : vals[0] });
  if (fromUrl && fromUrl.length) {
    const vals = fromUrl.map((x) => (x === "All" || x === ALL) && v.includeAll ? ALL : x);
    if (v.type === "textbox" || v.type === "constant" || vals.every((x) => offered.has(x) || x === ALL)) return pick(v.multi ? vals : [vals[0]]);
  }
  const saved = v.current && v.current.value !== undefined ? (Array.isArray(v.current.value) ? v.current.value : [v.current.value]) : [];
  const kept = saved.filter((x) => offered.has(x));
  if (kept.length) return pick(v.multi ? kept : [kept[0]]);
  if (!opts.length) return { text: "", value: v.multi ? [] : "" };
  return pick([opts[0].value]);
}
