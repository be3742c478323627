// The document list with each document's status, and the upload form.
//
// Contract (the documents API): POST /documents (multipart: file; optional title, date,
// source, type; header Authorization: Bearer <key>; ?replace=true to overwrite) answers
// 202 {doc_id, status}; GET /documents lists {doc_id, title, status, reason?};
// DELETE /documents/{doc_id} with the key. 401 wrong or missing key, 403 uploads switched
// off, 409 exists, 413 too large. A server without the upload routes answers 404 or 405.

import { errorFor, FriendlyError, forgetDocument, requestJSON } from "./api.js";
import { errorBox, h } from "./dom.js";
import { t } from "./i18n.js";

const KEY_STORE = "qa.uploadKey"; // sessionStorage only: the key dies with the tab
const POLL_MS = 1000;
const POLL_LIMIT_MS = 10 * 60 * 1000;

const $ = (id) => document.getElementById(id);
const panel = $("docs-panel");
const list = $("docs-list");
const listStatus = $("docs-status");
const form = $("upload");
const fileInput = $("up-file");
const keyInput = $("up-key");
const submit = $("up-go");
const progress = $("up-progress");
const upStatus = $("up-status");

let documents = null; // the last list, re-rendered when the language changes
let upload = null; // {message, args, error, replace}: the upload state shown under the form

function uploadError(status, code) {
  if (status === 401) return new FriendlyError("err.unauthorized", { status, code });
  if (status === 403) return new FriendlyError("err.forbidden", { status, code });
  if (status === 404 && code !== "unknown_document") {
    return new FriendlyError("err.uploads_unavailable", { status, code });
  }
  if (status === 405) return new FriendlyError("err.uploads_unavailable", { status, code });
  return errorFor(status, code);
}

function statusBadge(doc) {
  const s = doc.status ?? "ready"; // a server without uploads lists indexed documents only
  return h("span", { class: `status status-${s}` }, t(`status.${s}`));
}

function renderList() {
  if (!documents) return;
  if (!documents.length) {
    list.replaceChildren(h("p", {}, t("docs.empty")));
    return;
  }
  const rows = documents.map((d) => h("tr", {},
    h("td", {}, d.title || d.doc_id),
    h("td", {}, d.date ?? ""),
    h("td", {}, statusBadge(d), d.status === "failed" && d.reason
      ? h("span", { class: "reason" }, ` ${d.reason}`) : null),
    h("td", {}, h("button", {
      type: "button", class: "secondary small",
      "aria-label": `${t("docs.delete")}: ${d.title || d.doc_id}`,
      onclick: () => remove(d),
    }, t("docs.delete")))));
  list.replaceChildren(h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["docs.title", "docs.date", "docs.status", "docs.actions"]
      .map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, rows))));
}

async function loadList() {
  listStatus.textContent = t("docs.loading");
  try {
    const body = await requestJSON("/documents");
    documents = body.documents ?? [];
    listStatus.textContent = "";
    renderList();
    return documents;
  } catch (err) {
    listStatus.textContent = "";
    list.replaceChildren(errorBox(err, t, loadList));
    return null;
  }
}

function bearer() {
  const key = keyInput.value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

async function remove(doc) {
  if (!keyInput.value.trim()) {
    showUpload({ message: "upload.nokey" });
    keyInput.focus();
    return;
  }
  if (!window.confirm(t("docs.delete.confirm", doc.title || doc.doc_id))) return;
  let response;
  try {
    response = await fetch(`/documents/${encodeURIComponent(doc.doc_id)}`,
      { method: "DELETE", headers: bearer() });
  } catch {
    showUpload({ error: new FriendlyError("err.network") });
    return;
  }
  if (!response.ok) {
    let code = null;
    try { code = (await response.json())?.error?.code ?? null; } catch { /* status decides */ }
    showUpload({ error: uploadError(response.status, code) });
  } else {
    forgetDocument(doc.doc_id);
    showUpload({ message: "docs.deleted" });
  }
  loadList();
}

function showUpload(state) {
  upload = state;
  renderUpload();
}

function renderUpload() {
  if (!upload) { upStatus.replaceChildren(); return; }
  const { message, args = [], error, replace } = upload;
  const nodes = [];
  if (error) nodes.push(errorBox(error, t));
  if (message) nodes.push(h("p", {}, t(message, ...args)));
  if (replace) {
    nodes.push(h("button", { type: "button", class: "secondary", id: "up-replace",
      onclick: () => send(true) }, t("upload.replace")));
  }
  upStatus.replaceChildren(...nodes);
}

function send(replace = false) {
  const file = fileInput.files?.[0];
  if (!file) { showUpload({ message: "upload.nofile" }); fileInput.focus(); return; }
  if (!keyInput.value.trim()) { showUpload({ message: "upload.nokey" }); keyInput.focus(); return; }
  try { sessionStorage.setItem(KEY_STORE, keyInput.value.trim()); } catch { /* not kept */ }
  const data = new FormData();
  data.append("file", file);
  for (const [field, id] of [["title", "up-title"], ["date", "up-date"],
    ["source", "up-source"], ["type", "up-type"]]) {
    const value = $(id).value.trim();
    if (value) data.append(field, value);
  }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/documents${replace ? "?replace=true" : ""}`);
  for (const [name, value] of Object.entries(bearer())) xhr.setRequestHeader(name, value);
  submit.disabled = true;
  progress.hidden = false;
  progress.value = 0;
  showUpload({ message: "upload.progress", args: [0] });
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const pct = Math.round((e.loaded / e.total) * 100);
    progress.value = pct;
    showUpload({ message: "upload.progress", args: [pct] });
  });
  xhr.addEventListener("error", () => finish({ error: new FriendlyError("err.network") }));
  xhr.addEventListener("load", () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: the status decides */ }
    if (xhr.status === 202 || xhr.status === 200 || xhr.status === 201) {
      progress.value = 100;
      finish({ message: "upload.queued" });
      if (body?.doc_id) poll(body.doc_id);
      return;
    }
    const code = body?.error?.code ?? null;
    if (xhr.status === 401) {
      try { sessionStorage.removeItem(KEY_STORE); } catch { /* nothing kept */ }
    }
    if (xhr.status === 409) finish({ message: "upload.exists", replace: true });
    else finish({ error: uploadError(xhr.status, code) });
  });
  xhr.send(data);
}

function finish(state) {
  submit.disabled = false;
  progress.hidden = state.error !== undefined || state.replace === true;
  showUpload(state);
}

async function poll(docId) {
  const started = Date.now();
  for (;;) {
    const docs = await loadList();
    const doc = docs?.find((d) => d.doc_id === docId);
    const s = doc?.status;
    if (s === "ready" || (doc && s === undefined)) {
      forgetDocument(docId);
      showUpload({ message: "upload.ready" });
      progress.hidden = true;
      return;
    }
    if (s === "failed") {
      showUpload(doc.reason ? { message: "upload.failed", args: [doc.reason] }
        : { message: "upload.failed.noreason" });
      progress.hidden = true;
      return;
    }
    if (s === "indexing") showUpload({ message: "upload.indexing" });
    if (Date.now() - started > POLL_LIMIT_MS) { showUpload({ message: "upload.timeout" }); return; }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export function initDocuments() {
  try { keyInput.value = sessionStorage.getItem(KEY_STORE) ?? ""; } catch { /* none kept */ }
  form.addEventListener("submit", (e) => { e.preventDefault(); send(false); });
  $("docs-refresh").addEventListener("click", loadList);
  // The list is fetched when the panel is first opened, not on every page load.
  panel.addEventListener("toggle", () => { if (panel.open && documents === null) loadList(); });
  document.addEventListener("qa:language", () => { renderList(); renderUpload(); });
}
