// What every page of the web UI shares: the API fetch, element building, and who is
// signed in (elements marked `data-needs="operate"` or `"administer"` are hidden from
// roles that may not use them).

export async function apiData(path, params) {
  const url = params ? path + "?" + new URLSearchParams(params) : path;
  const resp = await fetch(url, { credentials: "same-origin" });
  let body;
  try { body = await resp.json(); } catch (e) { throw new Error(`${resp.status} ${resp.statusText}`); }
  if (body.status !== "success") throw new Error((body.errorType ? body.errorType + ": " : "") + (body.error || resp.status));
  return body.data;
}

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Who is signed in (`null` until asked, or without authentication) and what they may do.
export const session = { user: null, may: { operate: false, administer: false } };

export async function whoami() {
  try {
    const me = await apiData("/api/v1/lookout/whoami");
    session.may = me.may || session.may;
    session.user = me.user || null;
    if (me.authenticated) document.getElementById("whoami").textContent = me.user + " (" + me.role + ")";
  } catch (e) { /* shown elsewhere */ }
  applyRole(document);
}

// Hides what the signed-in role may not use.
export function applyRole(root) {
  for (const e of root.querySelectorAll("[data-needs]")) e.hidden = !session.may[e.dataset.needs];
}

// A write (same-origin: the browser adds Origin, which the server checks against its own
// address, and the basic-auth credentials it holds): the parsed JSON answer (or the
// text, when it is not JSON), or an Error naming the status and the server's message.
export async function send(method, path, body) {
  const resp = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* plain text */ }
  if (!resp.ok) throw new Error(resp.status + ": " + ((json && (json.error || json.message)) || text.trim()));
  return json ?? text;
}

// "5m ago", "in 2h": a time relative to now.
export function relative(t) {
  const d = (Date.now() - new Date(t).getTime()) / 1000;
  const a = Math.abs(d);
  const s = a < 90 ? Math.round(a) + "s" : a < 5400 ? Math.round(a / 60) + "m" : a < 172800 ? Math.round(a / 3600) + "h" : Math.round(a / 86400) + "d";
  return d >= 0 ? s + " ago" : "in " + s;
}

