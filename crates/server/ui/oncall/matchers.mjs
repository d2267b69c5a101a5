// Alertmanager matchers as the silence form edits them: `name="value"`, `name!="value"`,
// `name=~"regex"`, `name!~"regex"`, to and from the API's `{name, value, isRegex,
// isEqual}`.

const RE = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$/;

export function parseMatcher(text) {
  const m = RE.exec(text || "");
  if (!m) return null;
  let value = m[3];
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    try { value = JSON.parse(value); } catch (e) { value = value.slice(1, -1); }
  }
  return { name: m[1], value, isRegex: m[2].includes("~"), isEqual: !m[2].startsWith("!") };
}

export function formatMatcher(m) {
  const o = m.isRegex ? (m.isEqual === false ? "!~" : "=~") : m.isEqual === false ? "!=" : "=";
  return `${m.name}${o}${JSON.stringify(m.value)}`;
}

// Matchers that pick out exactly one alert: each of its labels, equal.
export function matchersOf(labels) {
  return Object.entries(labels).sort(([a], [b]) => (a === "alertname" ? -1 : b === "alertname" ? 1 : a.localeCompare(b))).map(([name, value]) => ({ name, value, isRegex: false, isEqual: true }));
}
