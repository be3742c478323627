// The document view: a cited paragraph in its document, with its neighbours, section,
// speaker, date and page, and a link to the original file.

import { FriendlyError, getDocument } from "./api.js";
import { errorBox, h } from "./dom.js";
import { t } from "./i18n.js";
import { readable } from "./text.js";

// Paragraphs shown on each side of the cited one at first; a long PDF can have thousands,
// and the reader came for one of them.
const NEIGHBOURS = 30;

const dialog = document.getElementById("doc");
const body = document.getElementById("doc-body");
const title = document.getElementById("doc-title");
const meta = document.getElementById("doc-meta");
const fileLink = document.getElementById("doc-file");
const fileStatus = document.getElementById("doc-file-status");
let opener = null;
let view = null; // {doc, paragraph, marks, from, to}

dialog.addEventListener("close", () => {
  body.replaceChildren();
  opener?.focus();
  opener = null;
  view = null;
});
// A click on the backdrop lands on the dialog element itself.
dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
document.getElementById("doc-close").addEventListener("click", () => dialog.close());
document.addEventListener("qa:language", () => { if (view) render(); });

/** Open ``docId`` at ``paragraph``, marking each [start, end] source span of ``marks``. */
export async function openDocument({ docId, paragraph, marks = [], opener: from = null }) {
  opener = from;
  view = null;
  title.textContent = "";
  meta.textContent = "";
  fileLink.hidden = true;
  fileStatus.textContent = "";
  body.replaceChildren(h("p", { class: "meta" }, t("doc.loading")));
  if (!dialog.open) dialog.showModal();
  try {
    const doc = await getDocument(docId);
    const index = Math.max(0, doc.paragraphs.findIndex((p) => p.paragraph === paragraph));
    view = {
      doc, paragraph, marks,
      from: Math.max(0, index - NEIGHBOURS),
      to: Math.min(doc.paragraphs.length, index + NEIGHBOURS + 1),
    };
    setupFileLink(docId);
    render();
    const cited = document.getElementById(`para-${paragraph}`);
    if (cited) {
      cited.focus({ preventScroll: true });
      cited.scrollIntoView({ block: "center" });
    }
  } catch (err) {
    if (!(err instanceof FriendlyError)) console.error(err);
    body.replaceChildren(errorBox(err, t,
      () => openDocument({ docId, paragraph, marks, opener: from })));
  }
}

function render() {
  const { doc, paragraph, marks, from, to } = view;
  title.textContent = doc.title;
  meta.textContent = [doc.date, doc.source, doc.type, t("doc.paragraphs", doc.paragraphs.length)]
    .filter(Boolean).join(" · ");
  const nodes = [];
  if (from > 0) {
    nodes.push(h("button", { type: "button", class: "secondary more",
      onclick: () => widen(-1) }, t("doc.earlier")));
  }
  let section = "";
  let speaker = "";
  // The heading and speaker in force at the first shown paragraph are shown too.
  for (const p of doc.paragraphs.slice(from, to)) {
    const crumb = p.section.join(" › ");
    if (crumb && crumb !== section) nodes.push(h("h3", { class: "doc-section" }, crumb));
    section = crumb;
    const who = p.speaker ? `${p.speaker}${p.speaker_role ? `（${p.speaker_role}）` : ""}` : "";
    if (who && who !== speaker) nodes.push(h("p", { class: "doc-speaker" }, who));
    speaker = who;
    const cited = p.paragraph === paragraph;
    nodes.push(h("div", {
      class: `para${cited ? " cited" : ""}`, id: `para-${p.paragraph}`, tabindex: "-1",
    },
    h("p", { class: "pnum" }, t("doc.paragraph", p.paragraph),
      p.page != null ? ` · ${t("passage.page", p.page)}` : "",
      cited ? h("span", { class: "badge" }, t("doc.cited")) : null),
    p.context ? h("p", { class: "ctx" }, h("span", {}, `${t("passage.reporter")}: `),
      p.context) : null,
    h("p", { class: "text" }, readable(p.text, p.char_start, cited ? marks : []))));
  }
  if (to < doc.paragraphs.length) {
    nodes.push(h("button", { type: "button", class: "secondary more",
      onclick: () => widen(1) }, t("doc.later")));
  }
  body.replaceChildren(...nodes);
}

function widen(direction) {
  const anchor = direction < 0 ? view.doc.paragraphs[view.from] : null;
  if (direction < 0) view.from = Math.max(0, view.from - NEIGHBOURS);
  else view.to = Math.min(view.doc.paragraphs.length, view.to + NEIGHBOURS);
  render();
  // Keep the reader where they were: the paragraph that was first stays in view.
  const keep = anchor ? document.getElementById(`para-${anchor.paragraph}`) : null;
  keep?.scrollIntoView({ block: "start" });
  keep?.focus({ preventScroll: true });
}

// The original file is served by GET /documents/{id}/file where the server has it. Asking
// before every open would log a failed request for each document without one, so the link
// is checked when it is used: a missing file says so here instead of leaving the page.
function setupFileLink(docId) {
  fileLink.href = `/documents/${encodeURIComponent(docId)}/file`;
  fileLink.target = "_blank";
  fileLink.rel = "noopener";
  fileLink.dataset.checked = "";
  fileLink.removeAttribute("aria-disabled");
  fileLink.hidden = false;
}

fileLink.addEventListener("click", async (e) => {
  if (fileLink.dataset.checked === "ok") return; // known to exist: let the browser open it
  e.preventDefault();
  if (fileLink.dataset.checked === "missing") return;
  fileStatus.textContent = t("doc.file.checking");
  const probe = new AbortController();
  let response = null;
  try {
    response = await fetch(fileLink.href, { signal: probe.signal });
  } catch {
    fileStatus.textContent = t("err.network");
    return;
  }
  probe.abort(); // only the status was needed; the browser fetches the file itself
  if (response.ok) {
    fileStatus.textContent = "";
    fileLink.dataset.checked = "ok";
    fileLink.click();
  } else {
    fileLink.dataset.checked = "missing";
    fileLink.setAttribute("aria-disabled", "true");
    fileStatus.textContent = t("doc.file.missing");
  }
});
