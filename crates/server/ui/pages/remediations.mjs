// The remediation audit trail (`/api/v1/lookout/remediations`): every run of a
// remediation rule, the newest first — when, which rule and action, the alert that
// triggered it, whether it was a dry run, the outcome, what it did and to what.

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

const BADGE = { done: "healthy", dry_run: "unknown", nothing_to_do: "unknown", skipped: "degraded", failed: "unhealthy" };

export async function showRemediations() {
  document.title = "Remediations · Lookout";
  await whoami();
  const records = await apiData("/api/v1/lookout/remediations?limit=500");
  page.replaceChildren(el("section", {}, el("h2", {}, "Remediations"),
    records.length ? "" : el("p", { id: "no-remediations" }, "No remediation has run. Rules are configured under remediation: and are dry runs unless they say dry_run: false."),
    el("table", { id: "remediations" },
      el("thead", {}, el("tr", {}, ...["When", "Rule", "Action", "Alert", "Outcome", "What", "Targets"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...records.map((r) => el("tr", { "data-rule": r.rule, "data-outcome": r.outcome },
        el("td", {}, relative(r.at * 1000)),
        el("td", {}, r.rule),
        el("td", {}, r.action),
        el("td", {}, r.alert.alertname || ""),
        el("td", {}, el("span", { class: "badge " + (BADGE[r.outcome] || "unknown") }, r.dry_run && r.outcome !== "dry_run" ? r.outcome + " (dry run)" : r.outcome)),
        el("td", {}, r.detail),
        el("td", { class: "small" }, r.targets.join("\n"))))))));
  page.dataset.dashboardState = "settled";
}
