// The health page: every check of `/health` with its status, message and duration, and
// the collectors' last runs.

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

export async function showHealth() {
  document.title = "Health · Lookout";
  await whoami();
  const h = await fetch("/health", { credentials: "same-origin" }).then((r) => r.json());
  let collectors = [];
  try { collectors = await apiData("/api/v1/lookout/collectors"); } catch (e) { /* none */ }
  page.replaceChildren(
    el("section", {}, el("h2", {}, "Health ", el("span", { class: "badge " + h.status, id: "overall" }, h.status)),
      el("table", { id: "checks" }, el("thead", {}, el("tr", {}, ...["Check", "Status", "Message", "Took"].map((x) => el("th", {}, x)))),
        el("tbody", {}, ...h.checks.map((c) => el("tr", { "data-check": c.name },
          el("td", {}, c.name), el("td", {}, el("span", { class: "badge " + c.status }, c.status)), el("td", {}, c.message), el("td", {}, c.duration_ms.toFixed(2) + " ms")))))),
    el("section", {}, el("h2", {}, "Collectors"),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Collector", "Last run", "Duration", "Samples", "Runs / failures", "Error"].map((x) => el("th", {}, x)))),
        el("tbody", {}, ...collectors.map((c) => el("tr", {},
          el("td", {}, c.name), el("td", {}, c.last_run == null ? "never" : relative(c.last_run * 1000)),
          el("td", {}, c.last_duration_seconds == null ? "" : (c.last_duration_seconds * 1000).toFixed(1) + " ms"),
          el("td", {}, String(c.last_samples)), el("td", {}, `${c.runs} / ${c.failures}`), el("td", { class: "error small" }, c.last_error || "")))))),
  );
  page.dataset.dashboardState = "settled";
}
