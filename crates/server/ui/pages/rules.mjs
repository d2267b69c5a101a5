// The rules page: each group (file, interval, last evaluation and how long it took) and
// its rules (query, health, last error, alert state and count); each alerting rule has a
// button that backtests it over the last 7 days (`/api/v1/lookout/rules/backtest`).

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

// Seconds as the shortest readable duration.
function human(s) {
  if (s < 60) return s.toFixed(0) + "s";
  if (s < 3600) return (s / 60).toFixed(0) + "m";
  if (s < 86400) return (s / 3600).toFixed(1) + "h";
  return (s / 86400).toFixed(1) + "d";
}

// A backtest button for an alerting rule of group `g`: the rule alone, as a rule file
// (JSON is YAML), over the last 7 days at the group's interval.
function backtestButton(g, r) {
  const out = el("div", { class: "small backtest-result" });
  const b = el("button", { type: "button", class: "backtest" }, "Backtest 7d");
  b.addEventListener("click", async () => {
    b.disabled = true;
    out.textContent = "Evaluating…";
    const rule = { alert: r.name, expr: r.query, for: r.duration ? r.duration + "s" : "0s", labels: r.labels || {} };
    if (r.keepFiringFor) rule.keep_firing_for = r.keepFiringFor + "s";
    const file = { groups: [{ name: g.name, interval: g.interval + "s", rules: [rule] }] };
    const to = Date.now() / 1000;
    try {
      const res = await fetch(`/api/v1/lookout/rules/backtest?from=${to - 7 * 86400}&to=${to}`, { method: "POST", credentials: "same-origin", body: JSON.stringify(file) }).then((x) => x.json());
      if (res.status !== "success") throw new Error(res.error);
      const x = res.data[0];
      out.textContent = `would have fired ${x.firings} time(s) over 7 days, for ${human(x.firing_seconds)} in all (longest ${human(x.longest_firing_seconds)}, ${(x.firing_share * 100).toFixed(2)}% of the time); ${x.pending_only} pending only` + (x.last_error ? `; ${x.errors} failed evaluations: ${x.last_error}` : "");
    } catch (e) {
      out.textContent = "Backtest failed: " + e.message;
      out.classList.add("error");
    }
    b.disabled = false;
  });
  return el("div", {}, b, out);
}

function health(h) {
  return el("span", { class: "badge " + (h === "ok" ? "healthy" : h === "err" ? "unhealthy" : "unknown") }, h || "unknown");
}

export async function showRules() {
  document.title = "Rules · Lookout";
  await whoami();
  let data;
  try { data = await apiData("/api/v1/rules"); } catch (e) { data = { groups: [] }; }
  const sections = data.groups.map((g) => el("section", { class: "rule-group", "data-group": g.name },
    el("h2", {}, g.name, el("span", { class: "muted" }, ` ${g.file} · every ${g.interval}s · last ${g.lastEvaluation ? relative(g.lastEvaluation) : "never"} in ${((g.evaluationTime || 0) * 1000).toFixed(1)} ms`)),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Rule", "Query", "Health", "State", "Last evaluation"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...g.rules.map((r) => el("tr", { "data-rule": r.name, "data-health": r.health },
        el("td", {}, el("strong", {}, r.name), el("div", { class: "muted small" }, r.type === "alerting" ? "alert" : "record")),
        el("td", {}, el("code", {}, r.query)),
        el("td", {}, health(r.health), r.lastError ? el("div", { class: "error small" }, r.lastError) : null),
        el("td", {}, r.type === "alerting" ? `${r.state} (${(r.alerts || []).length})` : "", r.type === "alerting" ? backtestButton(g, r) : null),
        el("td", {}, r.lastEvaluation ? relative(r.lastEvaluation) : "never")))))));
  page.replaceChildren(...(sections.length ? sections : [el("section", {}, el("h2", {}, "Rules"), el("p", { class: "muted" }, "No rules are loaded (rule_files, rule_packs).")) ]));
  page.dataset.dashboardState = "settled";
}
