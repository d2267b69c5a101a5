// The rules page: each group (file, interval, last evaluation and how long it took) and
// its rules (query, health, last error, alert state and count).

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

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
        el("td", {}, r.type === "alerting" ? `${r.state} (${(r.alerts || []).length})` : ""),
        el("td", {}, r.lastEvaluation ? relative(r.lastEvaluation) : "never")))))));
  page.replaceChildren(...(sections.length ? sections : [el("section", {}, el("h2", {}, "Rules"), el("p", { class: "muted" }, "No rules are loaded (rule_files, rule_packs).")) ]));
  page.dataset.dashboardState = "settled";
}
