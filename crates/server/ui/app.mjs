// The web UI's pages, by address: `/` (the host overview, or the dashboard list when it
// is not offered), `/dashboards`, Grafana's `/d/<uid>`, `/alerts`, `/silences`,
// `/notifications`, `/escalations`, `/rules`, `/targets`, `/health-checks`, `/explore`,
// `/traces`, `/trace/<id>`, `/diagnose`, `/snapshots`, `/snapshots/<id>` and
// `/remediations`.

import { el } from "./common.mjs";
import { showDashboard, showList } from "./dash/main.mjs";
import { showAlerts } from "./oncall/alerts.mjs";
import { showSilences } from "./oncall/silences.mjs";
import { showHistory } from "./oncall/history.mjs";
import { showEscalations } from "./oncall/escalations.mjs";
import { showRules } from "./pages/rules.mjs";
import { showTargets } from "./pages/targets.mjs";
import { showHealth } from "./pages/health.mjs";
import { showExplore } from "./pages/explore.mjs";
import { showTrace, showTraces } from "./pages/traces.mjs";
import { showDiagnose } from "./pages/diagnose.mjs";
import { showSnapshot, showSnapshots } from "./pages/snapshots.mjs";
import { showRemediations } from "./pages/remediations.mjs";

const page = document.getElementById("page");

async function route() {
  const path = location.pathname;
  const d = /^\/d\/([^/]+)/.exec(path);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("current", a.getAttribute("href") === path);
  if (d) return showDashboard(decodeURIComponent(d[1]));
  if (path === "/dashboards") return showList();
  if (path === "/alerts") return showAlerts();
  if (path.startsWith("/silences")) return showSilences();
  if (path === "/notifications") return showHistory();
  if (path === "/escalations") return showEscalations();
  if (path === "/rules") return showRules();
  if (path === "/targets") return showTargets();
  if (path === "/health-checks") return showHealth();
  if (path === "/explore") return showExplore();
  if (path === "/traces") return showTraces();
  if (path === "/diagnose") return showDiagnose();
  if (path === "/snapshots") return showSnapshots();
  if (path === "/remediations") return showRemediations();
  const snapshot = /^\/snapshots\/([^/]+)/.exec(path);
  if (snapshot) return showSnapshot(decodeURIComponent(snapshot[1]));
  const trace = /^\/trace\/([^/]+)/.exec(path);
  if (trace) return showTrace(decodeURIComponent(trace[1]));
  // The landing page: the host overview when it is offered.
  const list = await fetch("/api/v1/lookout/dashboards").then((r) => r.json()).catch(() => ({}));
  if ((list.data || []).some((x) => x.uid === "lookout-host" && !x.error)) return showDashboard("lookout-host");
  return showList();
}

route().catch((e) => {
  page.dataset.dashboardState = "error";
  page.replaceChildren(el("section", {}, el("h2", {}, "Cannot show this page"), el("p", { class: "error", id: "page-error" }, e.message), el("a", { href: "/dashboards" }, "All dashboards")));
});
