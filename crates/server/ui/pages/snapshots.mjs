// State snapshots: `/snapshots` lists them (with a button taking one now), and
// `/snapshots/<id>` shows one: why it was taken, the busiest processes, each PostgreSQL
// instance's lock tree, old transactions and top statements, each Redis instance's
// figures and slow log, and the bottleneck report.

import { apiData, el, relative, whoami } from "../common.mjs";

const page = document.getElementById("page");

function when(t) {
  return new Date(t * 1000).toLocaleString() + " (" + relative(t * 1000) + ")";
}

function why(reason) {
  if (reason.kind === "alert") return "alert " + (reason.labels.alertname || "") + (reason.labels.severity ? " (" + reason.labels.severity + ")" : "");
  return "taken by hand" + (reason.note ? ": " + reason.note : "");
}

function table(id, headers, rows) {
  return el("table", { id }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c === null || c === undefined ? "" : String(c)))))));
}

const mib = (b) => (b / 1048576).toFixed(1) + " MiB";
const secs = (s) => (s === null || s === undefined ? "" : s.toFixed(1) + " s");

export async function showSnapshots() {
  document.title = "Snapshots · Lookout";
  await whoami();
  const data = await apiData("/api/v1/lookout/snapshots");
  const take = el("button", { id: "take-snapshot", type: "button" }, "Take a snapshot now");
  take.addEventListener("click", async () => {
    take.disabled = true;
    const r = await fetch("/api/v1/lookout/snapshots", { method: "POST", credentials: "same-origin" }).then((x) => x.json());
    if (r.status === "success") location.href = "/snapshots/" + r.data.id;
    else { take.disabled = false; take.after(el("p", { class: "error" }, r.error)); }
  });
  page.replaceChildren(el("section", {}, el("h2", {}, "Snapshots"), take,
    el("table", { id: "snapshots" }, el("thead", {}, el("tr", {}, ...["Taken", "Why", "Performance score"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...data.snapshots.map((s) => el("tr", { "data-id": s.id },
        el("td", {}, el("a", { href: "/snapshots/" + s.id }, when(s.at))), el("td", {}, why(s.reason)),
        el("td", {}, s.performance_score === null ? "" : s.performance_score.toFixed(0)))))),
    data.damaged.length ? el("p", { class: "error small" }, "Unreadable: " + data.damaged.join("; ")) : ""));
  page.dataset.dashboardState = "settled";
}

export async function showSnapshot(id) {
  document.title = "Snapshot · Lookout";
  await whoami();
  const s = await apiData("/api/v1/lookout/snapshots/" + encodeURIComponent(id));
  const parts = [el("section", {}, el("h2", { id: "snapshot-title" }, "Snapshot of " + when(s.at)),
    el("p", { id: "snapshot-reason" }, why(s.reason)),
    s.errors.length ? el("p", { class: "error" }, s.errors.join("; ")) : "")];
  const p = s.sections.processes;
  if (p) {
    parts.push(el("section", {}, el("h3", {}, "Processes by CPU"),
      table("processes-cpu", ["PID", "Command", "CPU (cores)", "Memory"], p.by_cpu.map((x) => [x.pid, x.cmdline || x.comm, x.cpu_cores.toFixed(2), mib(x.rss_bytes)])),
      el("h3", {}, "Processes by memory"),
      table("processes-memory", ["PID", "Command", "Memory", "CPU (cores)"], p.by_memory.map((x) => [x.pid, x.cmdline || x.comm, mib(x.rss_bytes), x.cpu_cores.toFixed(2)]))));
  }
  for (const pg of s.sections.postgres || []) {
    const flat = [];
    const walk = (n, depth) => { flat.push(["  ".repeat(depth) + n.pid, n.state, n.wait_event_type + "/" + n.wait_event, secs(n.lock_wait_seconds), n.query]); for (const c of n.blocks) walk(c, depth + 1); };
    for (const n of pg.lock_tree) walk(n, 0);
    parts.push(el("section", { "data-postgres": pg.instance }, el("h3", {}, "PostgreSQL " + pg.instance),
      el("h4", {}, "Lock tree"), flat.length ? table("", ["PID", "State", "Waiting on", "Waited", "Statement"], flat) : el("p", {}, "No session waits on another."),
      el("h4", {}, "Transactions open over a minute"), table("", ["PID", "State", "Open for", "Statement"], pg.long_transactions.map((x) => [x.pid, x.state, secs(x.transaction_seconds), x.query])),
      el("h4", {}, "Top statements"), table("", ["Total", "Calls", "Mean", "Statement"], pg.top_statements.map((x) => [secs(x.total_seconds), x.calls, secs(x.mean_seconds), x.query]))));
  }
  for (const r of s.sections.redis || []) {
    parts.push(el("section", { "data-redis": r.instance }, el("h3", {}, "Redis " + r.instance),
      table("", ["Figure", "Value"], Object.entries(r.info || {})),
      el("h4", {}, "Slow log"), table("", ["When", "Command", "Duration", "Client"], r.slowlog.map((x) => [new Date(x.time * 1000).toLocaleString(), x.command, secs(x.duration_seconds), x.client])),
      el("pre", {}, r.latency_doctor), el("pre", {}, r.memory_doctor)));
  }
  const rep = s.sections.report;
  if (rep) {
    parts.push(el("section", { id: "snapshot-report" }, el("h3", {}, "Bottlenecks (performance score " + rep.performance_score.toFixed(0) + ")"),
      table("", ["Resource", "Score", "Summary"], rep.bottlenecks.map((b) => [b.resource, b.score.toFixed(0), b.summary]))));
  }
  page.replaceChildren(...parts);
  page.dataset.dashboardState = "settled";
}
