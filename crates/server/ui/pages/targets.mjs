// The targets page: every scrape target and built-in collector by job, with its health,
// last scrape, duration and error, and its labels after relabeling next to the labels
// it was discovered with.

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

function labels(ls) {
  return el("div", { class: "small" }, ...Object.entries(ls || {}).map(([k, v]) => el("code", { class: "matcher" }, `${k}="${v}"`)));
}

export async function showTargets() {
  document.title = "Targets · Lookout";
  await whoami();
  const data = await apiData("/api/v1/targets");
  const byJob = new Map();
  for (const t of data.activeTargets || []) {
    const job = t.scrapePool || t.labels.job || "";
    if (!byJob.has(job)) byJob.set(job, []);
    byJob.get(job).push(t);
  }
  const sections = [...byJob.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([job, ts]) => {
    const up = ts.filter((t) => t.health === "up").length;
    return el("section", { "data-job": job }, el("h2", {}, job, el("span", { class: "muted" }, ` (${up}/${ts.length} up)`)),
      el("table", {}, el("thead", {}, el("tr", {}, ...["Endpoint", "Health", "Labels", "Discovered labels", "Last scrape", "Duration", "Error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...ts.map((t) => el("tr", { "data-health": t.health },
          el("td", {}, t.scrapeUrl || ""),
          el("td", {}, el("span", { class: "badge " + (t.health === "up" ? "healthy" : t.health === "down" ? "unhealthy" : "unknown") }, t.health)),
          el("td", {}, labels(t.labels)),
          el("td", {}, labels(t.discoveredLabels)),
          el("td", {}, t.lastScrape && !t.lastScrape.startsWith("0001") ? relative(t.lastScrape) : "never"),
          el("td", {}, t.lastScrapeDuration ? (t.lastScrapeDuration * 1000).toFixed(1) + " ms" : ""),
          el("td", { class: "error small" }, t.lastError || ""))))));
  });
  const dropped = (data.droppedTargets || []).length;
  page.replaceChildren(...sections, el("p", { class: "muted" }, `${dropped} target${dropped === 1 ? "" : "s"} dropped by relabeling.`));
  page.dataset.dashboardState = "settled";
}
