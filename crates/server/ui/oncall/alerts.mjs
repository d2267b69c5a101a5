// The alerts page: firing alerts grouped as the notifier groups them (labels,
// annotations, runbook, since when, silenced, inhibited and acknowledged state) with
// Acknowledge (comment and expiry), Unacknowledge and Silence (the silence form with the
// alert's labels); then the rules' pending alerts.

import { apiData, applyRole, el, relative, send, session, whoami } from "../common.mjs";
import { formatMatcher, matchersOf } from "./matchers.mjs";

const page = document.getElementById("page");
const EXPIRY = [["", "no expiry"], ["1h", "1 hour"], ["4h", "4 hours"], ["12h", "12 hours"], ["24h", "1 day"]];

function labelText(labels, skip) {
  return Object.entries(labels).filter(([k]) => !skip.has(k)).map(([k, v]) => `${k}="${v}"`).join(", ");
}

function badge(text, cls) { return el("span", { class: "badge " + cls }, text); }

function status(msg, failed) {
  const s = document.getElementById("alerts-status");
  s.className = failed ? "error" : "muted";
  s.textContent = msg;
}

function ackForm(a, cell) {
  // Signed-in users are who the server records; without sign-in, the form asks (and
  // remembers the name in this browser).
  const who = session.user ? null : el("input", { class: "ack-who", placeholder: "your name", size: "10", required: "", value: localStorage.getItem("lookout.who") || "" });
  const comment = el("input", { class: "ack-comment", placeholder: "comment", size: "24" });
  const expiry = el("select", { class: "ack-expiry" }, ...EXPIRY.map(([v, t]) => el("option", { value: v }, t)));
  const form = el("form", { class: "ack-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      if (who) localStorage.setItem("lookout.who", who.value.trim());
      await send("POST", `/api/v1/lookout/alerts/${a.fingerprint}/ack`, { who: who ? who.value.trim() : undefined, comment: comment.value, expires: expiry.value || undefined });
      status(`${a.labels.alertname} acknowledged`);
    } catch (e) { status("Acknowledge failed: " + e.message, true); }
    refresh();
  } }, who, comment, expiry, el("button", { type: "submit" }, "OK"));
  cell.replaceChildren(form);
  (who || comment).focus();
}

function alertRow(a, groupLabels) {
  const s = a.status || {};
  const states = [badge("firing", "unhealthy")];
  if ((s.silencedBy || []).length) states.push(badge("silenced", "unknown"));
  if ((s.inhibitedBy || []).length) states.push(badge("inhibited", "unknown"));
  if (a.acknowledged) {
    const k = a.acknowledged;
    states.push(el("span", { class: "acked", title: k.comment || "" }, badge("acknowledged", "degraded"), ` by ${k.by}${k.comment ? ": " + k.comment : ""}${k.expiresAt ? " until " + new Date(k.expiresAt).toLocaleString() : ""}`));
  }
  const ann = a.annotations || {};
  const actions = el("td", { class: "actions" });
  if (a.acknowledged) {
    actions.append(el("button", { type: "button", class: "unack", "data-needs": "operate", onclick: async () => {
      try { await send("DELETE", `/api/v1/lookout/alerts/${a.fingerprint}/ack`); status("acknowledgement withdrawn"); } catch (e) { status("failed: " + e.message, true); }
      refresh();
    } }, "Unacknowledge"));
  } else {
    actions.append(el("button", { type: "button", class: "ack", "data-needs": "operate", onclick: () => ackForm(a, actions) }, "Acknowledge"));
  }
  const silence = "/silences/new?" + matchersOf(a.labels).map((m) => "matcher=" + encodeURIComponent(formatMatcher(m))).join("&");
  actions.append(" ", el("a", { class: "silence", href: silence, "data-needs": "operate" }, "Silence"));
  return el("tr", { "data-fingerprint": a.fingerprint },
    el("td", {}, el("strong", {}, a.labels.alertname || ""), el("div", { class: "muted small" }, labelText(a.labels, new Set(["alertname", ...groupLabels])))),
    el("td", {}, ...states),
    el("td", {}, ann.summary || "", ann.description ? el("div", { class: "muted small" }, ann.description) : null),
    el("td", { title: new Date(a.startsAt).toLocaleString() }, relative(a.startsAt)),
    el("td", {}, ann.runbook_url ? el("a", { href: ann.runbook_url }, "runbook") : ""),
    actions);
}

async function refresh() {
  const box = document.getElementById("alert-groups");
  const resp = await fetch("/api/v2/alerts/groups", { credentials: "same-origin" });
  if (resp.status === 503) {
    box.replaceChildren(el("p", { class: "muted" }, "The notifier is not configured (notifier.config_file): alerts are evaluated (below) but not grouped, acknowledged or sent."));
  } else if (!resp.ok) {
    box.replaceChildren(el("p", { class: "error" }, `${resp.status}: ${await resp.text()}`));
  } else {
    const groups = await resp.json();
    const nodes = [];
    for (const g of groups) {
      const keys = Object.keys(g.labels || {});
      const table = el("table", { class: "alert-table" }, el("thead", {}, el("tr", {}, ...["Alert", "State", "Summary", "Since", "Runbook", ""].map((h) => el("th", {}, h)))));
      const body = el("tbody");
      for (const a of g.alerts) body.append(alertRow(a, keys));
      table.append(body);
      nodes.push(el("div", { class: "alert-group", "data-receiver": g.receiver.name },
        el("h3", {}, keys.length ? labelText(g.labels, new Set()) : "(all alerts)", el("span", { class: "muted" }, ` → ${g.receiver.name} · ${g.alerts.length} alert${g.alerts.length === 1 ? "" : "s"}`)),
        table));
    }
    box.replaceChildren(...(nodes.length ? nodes : [el("p", { class: "muted", id: "no-firing" }, "Nothing is firing.")]));
  }
  let pending = [];
  try { pending = (await apiData("/api/v1/alerts")).alerts.filter((a) => a.state === "pending"); } catch (e) { /* no rules */ }
  const pend = document.getElementById("pending");
  pend.replaceChildren(pending.length
    ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Alert"), el("th", {}, "Summary"), el("th", {}, "Pending since"))),
      el("tbody", {}, ...pending.map((a) => el("tr", {}, el("td", {}, el("strong", {}, a.labels.alertname), el("div", { class: "muted small" }, labelText(a.labels, new Set(["alertname"])))), el("td", {}, (a.annotations || {}).summary || ""), el("td", {}, relative(a.activeAt))))))
    : el("p", { class: "muted" }, "No alert is pending."));
  applyRole(page);
  page.dataset.dashboardState = "settled";
}

export async function showAlerts() {
  document.title = "Alerts · Lookout";
  page.replaceChildren(
    el("section", {}, el("h2", {}, "Firing ", el("span", { id: "alerts-status", class: "muted", role: "status" })), el("div", { id: "alert-groups" }, "Loading…")),
    el("section", {}, el("h2", {}, "Pending"), el("div", { id: "pending" })),
  );
  await whoami();
  await refresh();
  setInterval(() => refresh().catch(() => {}), 15000);
}
