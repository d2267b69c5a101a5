// The notification history page: what was sent, when, to which receiver and through
// which integration, with which result, searchable by alert, receiver and result (from
// `GET /api/v1/lookout/notifications`).

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

async function search(form, out) {
  const q = { limit: "200" };
  for (const k of ["alert", "receiver", "result"]) {
    const v = form.querySelector(`[name=${k}]`).value.trim();
    if (v) q[k] = v;
  }
  history.replaceState(null, "", "/notifications?" + new URLSearchParams(q));
  try {
    const rows = await apiData("/api/v1/lookout/notifications", q);
    out.replaceChildren(rows.length
      ? el("table", { id: "history" }, el("thead", {}, el("tr", {}, ...["When", "Receiver", "Kind", "Status", "Alerts", "Result"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows.map((d) => el("tr", { "data-result": d.result },
          el("td", { title: d.time }, relative(d.time)),
          el("td", {}, d.receiver, el("span", { class: "muted small" }, " " + d.integration)),
          el("td", {}, d.kind),
          el("td", {}, d.status),
          el("td", {}, ...d.alerts.map((a) => el("div", { class: "small" }, el("strong", {}, a.alertname), ` ${a.status} `, el("span", { class: "muted" }, Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}="${v}"`).join(", "))))),
          el("td", { class: d.result === "failed" ? "error" : "" }, d.result, d.error ? el("div", { class: "small" }, d.error) : null)))))
      : el("p", { class: "muted", id: "history-none" }, "No notification matches."));
  } catch (e) {
    out.replaceChildren(el("p", { class: "error" }, e.message));
  }
  page.dataset.dashboardState = "settled";
}

export async function showHistory() {
  document.title = "Notifications · Lookout";
  await whoami();
  const params = new URLSearchParams(location.search);
  const input = (name, placeholder) => el("input", { name, placeholder, value: params.get(name) || "", size: "18" });
  const result = el("select", { name: "result" }, ...[["", "any result"], ["sent", "sent"], ["failed", "failed"]].map(([v, t]) => el("option", { value: v }, t)));
  result.value = params.get("result") || "";
  const out = el("div", { id: "history-results" });
  const form = el("form", { id: "history-form", class: "row", onsubmit: (ev) => { ev.preventDefault(); search(form, out); } },
    input("alert", "alert name or label value"), input("receiver", "receiver"), result, el("button", { type: "submit" }, "Search"));
  page.replaceChildren(el("section", {}, el("h2", {}, "Notification history"), form, out));
  await search(form, out);
}
