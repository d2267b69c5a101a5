// The diagnose page: the bottleneck report of `/api/v1/lookout/diagnose` over a chosen
// window — the performance score, every measured resource ranked with its score, the
// evidence (each PromQL linked to Explore) and what to do.

import { apiData, el, whoami } from "../common.mjs";

const page = document.getElementById("page");

const WINDOWS = ["5m", "15m", "1h", "6h", "24h"];

function fmt(v, unit) {
  if (v === null || v === undefined) return "–";
  switch (unit) {
    case "ratio": return (v * 100).toFixed(1) + "%";
    case "seconds": return v < 1 ? (v * 1000).toFixed(1) + " ms" : v.toFixed(1) + " s";
    case "bytes": return (v / 1048576).toFixed(1) + " MiB";
    case "per_second": return v.toFixed(2) + "/s";
    case "per_minute": return v.toFixed(2) + "/min";
    default: return v.toFixed(2);
  }
}

function level(score) {
  return score >= 70 ? "unhealthy" : score > 0 ? "degraded" : "healthy";
}

export async function showDiagnose() {
  document.title = "Diagnose · Lookout";
  await whoami();
  const params = new URLSearchParams(location.search);
  const window = WINDOWS.includes(params.get("window")) ? params.get("window") : "15m";
  const r = await apiData("/api/v1/lookout/diagnose?window=" + encodeURIComponent(window));
  const picker = el("select", { id: "diagnose-window" }, ...WINDOWS.map((w) => el("option", w === window ? { value: w, selected: "" } : { value: w }, "last " + w)));
  picker.addEventListener("change", () => { location.search = "?window=" + picker.value; });
  const rows = r.bottlenecks.map((b) => el("section", { class: "bottleneck", "data-resource": b.resource, "data-score": String(b.score) },
    el("h3", {}, b.resource.replace("_", " "), " ", el("span", { class: "badge " + level(b.score) }, b.score.toFixed(0))),
    el("p", { class: "summary" }, b.summary),
    el("table", { class: "evidence" },
      el("thead", {}, el("tr", {}, ...["Signal", "Value", "Score", "Query"].map((x) => el("th", {}, x)))),
      el("tbody", {}, ...b.evidence.map((e) => el("tr", {},
        el("td", {}, e.description), el("td", {}, fmt(e.value, e.unit)), el("td", {}, e.score.toFixed(0)),
        el("td", { class: "small" }, el("a", { href: "/explore?query=" + encodeURIComponent(e.query) }, e.query)))))),
    b.score > 0 ? el("ul", { class: "recommendations" }, ...b.recommendations.map((x) => el("li", {}, x))) : el("p", { class: "small" }, "Nothing to do."),
  ));
  page.replaceChildren(
    el("section", {}, el("h2", {}, "Diagnose ", el("span", { class: "badge " + level(100 - r.performance_score), id: "performance-score" }, r.performance_score.toFixed(0))),
      el("p", {}, "Performance score over the ", picker, ": 100 minus the most limiting resource's score. Resources, the most likely bottleneck first."),
      r.not_measured.length ? el("p", { class: "small", id: "not-measured" }, "Not measured (no data): " + r.not_measured.join(", ")) : ""),
    ...rows,
  );
  page.dataset.dashboardState = "settled";
}
