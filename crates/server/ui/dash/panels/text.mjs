// The `text` panel: Markdown (escaped, so a dashboard cannot inject markup) or HTML kept
// to a safe subset, with the dashboard's variables filled in.

import { renderMarkdown } from "../markdown.mjs";

const SAFE = new Set(["A", "B", "BR", "CODE", "DIV", "EM", "H1", "H2", "H3", "H4", "H5", "H6", "HR", "I", "LI", "OL", "P", "PRE", "SPAN", "STRONG", "TABLE", "TBODY", "TD", "TH", "THEAD", "TR", "UL"]);

// Copies `node` keeping only safe elements (others become their text) and, of
// attributes, only http(s) or relative links.
function sanitize(node, into) {
  for (const c of Array.from(node.childNodes)) {
    if (c.nodeType === 3) { into.appendChild(document.createTextNode(c.textContent)); continue; }
    if (c.nodeType !== 1) continue;
    if (!SAFE.has(c.tagName)) { if (!["SCRIPT", "STYLE", "IFRAME", "OBJECT"].includes(c.tagName)) sanitize(c, into); continue; }
    const e = document.createElement(c.tagName);
    const href = c.getAttribute("href");
    if (c.tagName === "A" && href && /^(https?:|\/|#|mailto:)/i.test(href)) e.setAttribute("href", href);
    sanitize(c, e);
    into.appendChild(e);
  }
}

export function render(el, panel, _series, ctx) {
  el.innerHTML = "";
  const opts = panel.options || {};
  const content = ctx.interpolate(opts.content ?? panel.content ?? "");
  const div = document.createElement("div");
  div.className = "text-panel";
  if ((opts.mode || panel.mode) === "html") {
    const doc = new DOMParser().parseFromString(content, "text/html");
    sanitize(doc.body, div);
  } else {
    div.innerHTML = renderMarkdown(content);
  }
  el.appendChild(div);
  return "ok";
}
