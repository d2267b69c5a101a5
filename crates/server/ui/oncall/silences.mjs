// The silences page: every silence by state (active, pending, expired) with Edit and
// Expire; and the silence form (`/silences/new?matcher=…`, or `?edit=<id>`) with a
// matcher editor that shows which current alerts the silence would cover before it is
// saved.

import { applyRole, el, send, session, whoami } from "../common.mjs";
import { formatMatcher, parseMatcher } from "./matchers.mjs";

const page = document.getElementById("page");
const DURATIONS = [["1h", 3600e3], ["2h", 7200e3], ["4h", 4 * 3600e3], ["12h", 12 * 3600e3], ["1d", 86400e3], ["1w", 7 * 86400e3]];

async function list() {
  const resp = await fetch("/api/v2/silences", { credentials: "same-origin" });
  if (!resp.ok) throw new Error(resp.status === 503 ? "The notifier is not configured (notifier.config_file): there are no silences." : `${resp.status}: ${await resp.text()}`);
  const all = await resp.json();
  const sections = [];
  for (const state of ["active", "pending", "expired"]) {
    const these = all.filter((s) => s.status.state === state).sort((a, b) => (a.endsAt < b.endsAt ? 1 : -1));
    const rows = these.map((s) => el("tr", { "data-silence-id": s.id },
      el("td", {}, ...s.matchers.map((m) => el("code", { class: "matcher" }, formatMatcher(m)))),
      el("td", {}, s.createdBy), el("td", {}, s.comment),
      el("td", {}, new Date(s.startsAt).toLocaleString()), el("td", {}, new Date(s.endsAt).toLocaleString()),
      el("td", {}, state === "expired" ? "" : el("span", { "data-needs": "operate" },
        el("a", { href: "/silences/new?edit=" + encodeURIComponent(s.id), class: "edit" }, "Edit"), " ",
        el("button", { type: "button", class: "expire", onclick: async () => {
          try { await send("DELETE", "/api/v2/silence/" + encodeURIComponent(s.id)); } catch (e) { alert("Expire failed: " + e.message); }
          showSilences();
        } }, "Expire")))));
    sections.push(el("section", { "data-state": state }, el("h2", {}, `${state[0].toUpperCase()}${state.slice(1)} (${these.length})`),
      these.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["Matchers", "Created by", "Comment", "Starts", "Ends", ""].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)) : el("p", { class: "muted" }, "None.")));
  }
  page.replaceChildren(el("p", {}, el("a", { href: "/silences/new", class: "button", "data-needs": "operate" }, "New silence")), ...sections);
}

function matcherRow(m, onchange) {
  const name = el("input", { class: "m-name", value: m.name, placeholder: "label", size: "14" });
  const op = el("select", { class: "m-op" }, ...["=", "!=", "=~", "!~"].map((o) => el("option", { value: o }, o)));
  op.value = m.isRegex ? (m.isEqual === false ? "!~" : "=~") : m.isEqual === false ? "!=" : "=";
  const value = el("input", { class: "m-value", value: m.value, placeholder: "value", size: "28" });
  const row = el("div", { class: "matcher-row" }, name, op, value, el("button", { type: "button", class: "m-remove", onclick: () => { row.remove(); onchange(); } }, "×"));
  for (const e of [name, op, value]) e.addEventListener("input", onchange);
  return row;
}

function readMatchers(box) {
  return [...box.querySelectorAll(".matcher-row")].map((r) => {
    const o = r.querySelector(".m-op").value;
    return { name: r.querySelector(".m-name").value.trim(), value: r.querySelector(".m-value").value, isRegex: o.includes("~"), isEqual: !o.startsWith("!") };
  }).filter((m) => m.name);
}

async function form(params) {
  let editing = null;
  if (params.get("edit")) {
    const resp = await fetch("/api/v2/silence/" + encodeURIComponent(params.get("edit")), { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`silence ${params.get("edit")}: ${resp.status}`);
    editing = await resp.json();
  }
  const initial = editing ? editing.matchers : params.getAll("matcher").map(parseMatcher).filter(Boolean);
  const box = el("div", { id: "matchers" });
  const preview = el("div", { id: "silence-preview", class: "muted" });
  let timer = null;
  const update = () => { clearTimeout(timer); timer = setTimeout(showPreview, 150); };
  async function showPreview() {
    const ms = readMatchers(box);
    if (!ms.length) { preview.textContent = "Add at least one matcher."; preview.dataset.count = "0"; return; }
    const q = new URLSearchParams();
    for (const m of ms) q.append("filter", formatMatcher(m));
    q.set("silenced", "true");
    q.set("inhibited", "true");
    try {
      const resp = await fetch("/api/v2/alerts?" + q, { credentials: "same-origin" });
      if (!resp.ok) throw new Error(`${resp.status}: ${await resp.text()}`);
      const alerts = await resp.json();
      preview.dataset.count = String(alerts.length);
      preview.replaceChildren(el("strong", {}, `Would silence ${alerts.length} alert${alerts.length === 1 ? "" : "s"} now`),
        el("ul", {}, ...alerts.slice(0, 50).map((a) => el("li", {}, `${a.labels.alertname} ${Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}="${v}"`).join(", ")}`))));
    } catch (e) { preview.textContent = "Preview failed: " + e.message; preview.dataset.count = ""; }
  }
  for (const m of initial.length ? initial : [{ name: "alertname", value: "", isRegex: false, isEqual: true }]) box.append(matcherRow(m, update));
  const duration = el("select", { id: "silence-duration" }, ...DURATIONS.map(([t, ms]) => el("option", { value: String(ms) }, t)));
  const createdBy = el("input", { id: "silence-by", value: editing ? editing.createdBy : session.user || localStorage.getItem("lookout.who") || "", size: "20" });
  const comment = el("input", { id: "silence-comment", value: editing ? editing.comment : "", size: "48", placeholder: "why (required)" });
  const result = el("span", { id: "silence-status", role: "status" });
  const save = async (ev) => {
    ev.preventDefault();
    const now = new Date();
    const body = {
      matchers: readMatchers(box),
      startsAt: now.toISOString(),
      endsAt: new Date(now.getTime() + Number(duration.value)).toISOString(),
      createdBy: createdBy.value.trim(),
      comment: comment.value.trim(),
    };
    if (editing) body.id = editing.id;
    try {
      await send("POST", "/api/v2/silences", body);
      location.assign("/silences");
    } catch (e) { result.className = "error"; result.textContent = e.message; }
  };
  page.replaceChildren(el("section", {}, el("h2", {}, editing ? "Edit silence" : "New silence"),
    el("form", { id: "silence-form", onsubmit: save },
      box, el("button", { type: "button", id: "add-matcher", onclick: () => { box.append(matcherRow({ name: "", value: "", isRegex: false, isEqual: true }, update)); } }, "Add matcher"),
      el("div", { class: "row" }, el("label", {}, "Duration ", duration), el("label", {}, "Created by ", createdBy)),
      el("div", { class: "row" }, el("label", {}, "Comment ", comment)),
      el("div", { class: "row" }, el("button", { type: "submit", id: "silence-save" }, "Save"), el("a", { href: "/silences" }, "Cancel"), result)),
    preview));
  await showPreview();
}

export async function showSilences() {
  document.title = "Silences · Lookout";
  await whoami();
  const params = new URLSearchParams(location.search);
  if (location.pathname === "/silences/new") await form(params); else await list();
  applyRole(page);
  page.dataset.dashboardState = "settled";
}
