// The search page: the form, the shareable URL, the answer and its passages.

import { ask, FriendlyError } from "./api.js";
import { openDocument } from "./docview.js";
import { initDocuments } from "./documents.js";
import { errorBox, h } from "./dom.js";
import { applyStatic, lang, setLang, t } from "./i18n.js";
import { readable } from "./text.js";

const MODES = ["auto", "hybrid", "dense", "lexical"];
const TOP_KS = ["3", "5", "10"];
const DEFAULT_K = "5";
// Passages far below the best are folded away. The default modes' scores are cosine-like
// and compressed: over the shipped corpus the 8th passage still scores 0.91-0.99 of the
// best in auto and dense mode, so "0.8 x best" would never fold anything, while 0.95 x best
// keeps the passages that stand out together (BM25 and RRF scores spread far wider, and
// fold sooner). A passage the answer quotes is never folded.
const CLOSE_TO_BEST = 0.95;
const HIGH_CONFIDENCE = 0.8;

const $ = (id) => document.getElementById(id);
const form = $("search");
const input = $("q");
const modeSelect = $("mode");
const kSelect = $("k");
const button = $("go");
const status = $("status");
const results = $("results");

let shown = null; // the last response, re-rendered when the language changes
let inflight = null;

function setBusy(busy) {
  button.disabled = busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
  results.classList.toggle("stale", busy);
  $("go-label").textContent = t(busy ? "form.busy" : "form.submit");
}

function readUrl() {
  const params = new URLSearchParams(location.search);
  const mode = params.get("mode");
  const k = params.get("k");
  input.value = params.get("q") ?? "";
  modeSelect.value = MODES.includes(mode) ? mode : "auto";
  kSelect.value = TOP_KS.includes(k) ? k : DEFAULT_K;
  return input.value.trim() !== "";
}

function writeUrl(push) {
  const params = new URLSearchParams();
  params.set("q", input.value.trim());
  if (modeSelect.value !== "auto") params.set("mode", modeSelect.value);
  if (kSelect.value !== DEFAULT_K) params.set("k", kSelect.value);
  const url = `${location.pathname}?${params}`;
  if (url === `${location.pathname}${location.search}`) return;
  history[push ? "pushState" : "replaceState"](null, "", url);
}

async function search({ push = true } = {}) {
  inflight?.abort();
  const mine = new AbortController();
  inflight = mine;
  setBusy(true);
  status.textContent = t("form.busy");
  if (input.value.trim()) writeUrl(push);
  try {
    const response = await ask(input.value, {
      mode: modeSelect.value, topK: Number(kSelect.value), signal: mine.signal,
    });
    shown = response;
    render();
  } catch (err) {
    if (err?.name === "AbortError") return;
    if (!(err instanceof FriendlyError)) console.error(err);
    shown = { error: err };
    render();
  } finally {
    if (inflight === mine) {
      inflight = null;
      setBusy(false);
    }
  }
}

function confidenceText(res) {
  const pct = `${Math.round(res.confidence * 100)}%`;
  const word = t(res.confidence >= HIGH_CONFIDENCE ? "conf.high" : "conf.medium");
  return `${t("conf.label")}: ${word} (${pct})`;
}

/** Source offsets to mark in passage ``rank``: the sentences the answer quotes from it. */
function marksOf(res, rank) {
  return res.sentences.filter((s) => s.passage === rank).map((s) => [s.char_start, s.char_end]);
}

function citationButton(res, passage, label, extra = {}) {
  const marks = marksOf(res, passage.rank);
  // Without a quoted sentence, mark the passage itself when it is a window of a longer
  // paragraph, so the document view still shows exactly what was retrieved.
  const spans = marks.length ? marks : [[passage.char_start, passage.char_end]];
  return h("button", {
    type: "button", class: extra.class ?? "cite", "aria-label": extra.label ?? null,
    onclick: (e) => openDocument({
      docId: passage.doc_id, paragraph: passage.paragraph, marks: spans,
      opener: e.currentTarget,
    }),
  }, label);
}

function renderAnswer(res) {
  const byRank = new Map(res.passages.map((p) => [p.rank, p]));
  const quotes = res.sentences.map((s) => {
    const p = byRank.get(s.passage);
    const marker = h("button", {
      type: "button", class: "marker", "aria-label": t("passage.cites", s.passage),
      onclick: (e) => openDocument({
        docId: s.doc_id, paragraph: s.paragraph, marks: [[s.char_start, s.char_end]],
        opener: e.currentTarget,
      }),
    }, `[${s.passage}]`);
    return h("li", {}, h("span", { class: "quote" }, s.display_text), " ", marker,
      p ? h("span", { class: "quote-src" }, p.citation) : null);
  });
  return h("section", { class: "answer", "aria-labelledby": "answer-h" },
    h("div", { class: "answer-head" },
      h("h2", { id: "answer-h" }, t("answer.heading")),
      h("span", {
        class: `conf ${res.confidence >= HIGH_CONFIDENCE ? "conf-high" : "conf-medium"}`,
      }, confidenceText(res))),
    quotes.length ? h("ol", { class: "quotes" }, quotes) : h("p", {}, t("answer.none")),
    quotes.length ? h("p", { class: "help" }, t("answer.note")) : null);
}

function renderPassage(res, p) {
  const marks = marksOf(res, p.rank);
  const who = p.speaker ? `${p.speaker}${p.speaker_role ? `（${p.speaker_role}）` : ""}` : null;
  return h("li", {},
    h("article", {
      class: `passage${marks.length ? " quoted" : ""}`, id: `passage-${p.rank}`,
      "aria-labelledby": `passage-${p.rank}-h`,
    },
    h("h3", { id: `passage-${p.rank}-h`, class: "passage-h" },
      h("span", { class: "num" }, `[${p.rank}]`), " ",
      citationButton(res, p, p.citation, { label: `[${p.rank}] ${p.citation} · ${t("passage.open")}` })),
    p.section.length ? h("p", { class: "crumb" }, p.section.join(" › ")) : null,
    who && !p.citation.includes(p.speaker) ? h("p", { class: "crumb" }, who) : null,
    p.page != null ? h("p", { class: "crumb" }, t("passage.page", p.page)) : null,
    p.context ? h("p", { class: "ctx" }, h("span", {}, `${t("passage.reporter")}: `),
      p.context) : null,
    h("p", { class: "text" }, readable(p.text, p.char_start, marks)),
    h("p", { class: "loc" },
      `${p.doc_id} · ${t("passage.location")} ${p.char_start}–${p.char_end}`,
      marks.length ? h("span", { class: "badge" }, t("passage.quoted")) : null)));
}

function renderPassages(res) {
  const best = res.passages.length ? res.passages[0].score : 0;
  const quoted = new Set(res.sentences.map((s) => s.passage));
  const close = (p) => p.rank === 1 || quoted.has(p.rank) || p.score >= CLOSE_TO_BEST * best;
  const strong = res.passages.filter(close);
  const weak = res.passages.filter((p) => !close(p));
  const heading = t(res.answerable ? "passages.heading" : "passages.closest");
  return h("section", {
    class: `passages${res.answerable ? "" : " closest"}`, "aria-labelledby": "passages-h",
  },
  h("h2", { id: "passages-h" }, heading),
  h("ol", { class: "plist" }, strong.map((p) => renderPassage(res, p))),
  weak.length ? h("details", { class: "weaker" },
    h("summary", {}, t("passages.weaker", weak.length)),
    h("ol", { class: "plist" }, weak.map((p) => renderPassage(res, p)))) : null);
}

function render() {
  if (!shown) return;
  if (shown.error) {
    status.textContent = "";
    results.replaceChildren(errorBox(shown.error, t, () => search({ push: false })));
    return;
  }
  const res = shown;
  status.textContent = t("passages.meta", res.passages.length, res.took_ms);
  const parts = [];
  if (!res.answerable) {
    parts.push(h("div", { class: "notice", id: "no-answer" },
      h("p", { class: "notice-title" }, t("noanswer.title")),
      h("p", {}, t("noanswer.body"))));
  } else {
    parts.push(renderAnswer(res));
  }
  parts.push(renderPassages(res));
  results.replaceChildren(...parts);
}

function switchLanguage() {
  setLang(lang() === "zh" ? "en" : "zh");
  setBusy(inflight !== null);
  render();
  document.dispatchEvent(new CustomEvent("qa:language"));
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  search({ push: true });
});
$("lang").addEventListener("click", switchLanguage);
window.addEventListener("popstate", () => {
  if (readUrl()) search({ push: false });
  else { shown = null; results.replaceChildren(); status.textContent = ""; }
});

applyStatic();
initDocuments();
if (readUrl()) search({ push: false });
else input.focus();
