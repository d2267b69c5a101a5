// The escalations page: each policy's levels (who is paged, after how long) and the
// alerts going through it, with their level, since when, and when the next level is
// due (acknowledging stops it).

import { el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

export async function showEscalations() {
  document.title = "Escalations · Lookout";
  await whoami();
  const resp = await fetch("/api/v1/lookout/escalations", { credentials: "same-origin" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    page.replaceChildren(el("section", {}, el("h2", {}, "Escalations"), el("p", { class: "muted" }, body.error || resp.statusText)));
    page.dataset.dashboardState = "settled";
    return;
  }
  const sections = body.data.map((p) => el("section", { "data-policy": p.name },
    el("h2", {}, p.name),
    el("ol", { class: "levels" }, ...p.levels.map((l) => el("li", {}, l.receivers.join(", "), el("span", { class: "muted" }, ` then after ${l.timeout} without acknowledgement`)))),
    p.alerts.length
      ? el("table", {}, el("thead", {}, el("tr", {}, ...["Alert", "Level", "Since", "Next level"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...p.alerts.map((a) => el("tr", { "data-fingerprint": a.fingerprint },
          el("td", {}, el("strong", {}, a.labels.alertname || ""), el("div", { class: "muted small" }, Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}="${v}"`).join(", "))),
          el("td", { class: "level" }, `${a.level} of ${p.levels.length}`),
          el("td", {}, relative(a.since)),
          el("td", {}, a.acknowledged ? "stopped: acknowledged" : a.nextDue ? relative(a.nextDue) : "last level")))))
      : el("p", { class: "muted" }, "No alert is escalating.")));
  page.replaceChildren(...(sections.length ? sections : [el("section", {}, el("h2", {}, "Escalations"), el("p", { class: "muted" }, "No escalation policy is configured (notifier.escalations)."))]));
  page.dataset.dashboardState = "settled";
}
