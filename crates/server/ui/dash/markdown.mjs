// A small Markdown renderer for text panels: headings, paragraphs, emphasis, code, links
// and lists. Everything is escaped first, so a dashboard cannot inject markup; links are
// kept only for http(s), mailto and relative targets.

function escapeHtml(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function inline(s) {
  return escapeHtml(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/\*([^*]+)\*/g, "<em>$1</em>")
    .replace(/_([^_]+)_/g, "<em>$1</em>")
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (m, text, href) => {
      const h = href.replace(/&amp;/g, "&");
      return /^(https?:|mailto:|\/|#|\.)/i.test(h) ? `<a href="${escapeHtml(h)}">${text}</a>` : text;
    });
}

export function renderMarkdown(src) {
  const out = [];
  let list = null;
  let para = [];
  const flush = () => {
    if (para.length) { out.push("<p>" + inline(para.join(" ")) + "</p>"); para = []; }
    if (list) { out.push(`</${list}>`); list = null; }
  };
  let code = null;
  for (const line of String(src || "").split("\n")) {
    if (code !== null) {
      if (/^```/.test(line)) { out.push("<pre><code>" + escapeHtml(code.join("\n")) + "</code></pre>"); code = null; } else code.push(line);
      continue;
    }
    let m;
    if (/^```/.test(line)) { flush(); code = []; continue; }
    if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) { flush(); out.push(`<h${m[1].length}>${inline(m[2])}</h${m[1].length}>`); continue; }
    if ((m = /^\s*[-*+]\s+(.*)$/.exec(line)) || (m = /^\s*\d+[.)]\s+(.*)$/.exec(line))) {
      const kind = /^\s*\d/.test(line) ? "ol" : "ul";
      if (para.length) { out.push("<p>" + inline(para.join(" ")) + "</p>"); para = []; }
      if (list !== kind) { if (list) out.push(`</${list}>`); out.push(`<${kind}>`); list = kind; }
      out.push("<li>" + inline(m[1]) + "</li>");
      continue;
    }
    if (!line.trim()) { flush(); continue; }
    if (list) { out.push(`</${list}>`); list = null; }
    para.push(line.trim());
  }
  if (code !== null) out.push("<pre><code>" + escapeHtml(code.join("\n")) + "</code></pre>");
  flush();
  return out.join("\n");
}
