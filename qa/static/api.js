// Calls to the service, with every failure turned into a message a reader understands.
// The server answers errors as {"error": {"code", "message"}}; its message is written for
// developers, so the page shows its own words for the code or status and keeps the code only
// as a small reference.

import { t } from "./i18n.js";

export const MAX_QUESTION_CHARS = 2000;

export class FriendlyError extends Error {
  /** ``key`` names a string in i18n.js; ``status`` and ``code`` are kept as a reference. */
  constructor(key, { status = null, code = null, args = [] } = {}) {
    super(key);
    this.key = key;
    this.status = status;
    this.code = code;
    this.args = args;
  }

  text() { return t(this.key, ...this.args); }

  reference() {
    return [this.status, this.code].filter((x) => x !== null && x !== "").join(" ");
  }
}

// Error codes of qa.errors and qa.api.errors, by what a reader can do about them.
const BY_CODE = {
  index_not_ready: "err.loading",
  model_unavailable: "err.unavailable",
  index_mismatch: "err.unavailable",
  corpus_error: "err.no_index",
  unknown_document: "err.unknown_document",
  payload_too_large: "err.too_large",
  unsupported_media_type: "err.unsupported",
  invalid_request: "err.invalid",
  malformed_json: "err.invalid",
  internal: "err.server",
};

export function errorFor(status, code) {
  let key = BY_CODE[code];
  if (!key) {
    if (status === 503) key = "err.loading";
    else if (status === 413) key = "err.too_large";
    else if (status === 415) key = "err.unsupported";
    else if (status >= 500) key = "err.server";
    else if (status >= 400) key = "err.invalid";
    else key = "err.generic";
  }
  return new FriendlyError(key, { status, code });
}

async function errorCode(response) {
  try {
    const body = await response.json();
    return body?.error?.code ?? null;
  } catch {
    return null; // not our JSON (a proxy's page, say): the status alone decides
  }
}

/** ``fetch`` returning parsed JSON, or throwing a FriendlyError. */
export async function requestJSON(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new FriendlyError("err.network");
  }
  if (!response.ok) throw errorFor(response.status, await errorCode(response));
  try {
    return await response.json();
  } catch {
    throw new FriendlyError("err.server", { status: response.status });
  }
}

/** The answer to ``question``: passages, quoted sentences, answerable and confidence. */
export function ask(question, { mode, topK, signal }) {
  const q = question.trim();
  if (!q) return Promise.reject(new FriendlyError("err.empty"));
  if (q.length > MAX_QUESTION_CHARS) {
    return Promise.reject(new FriendlyError("err.too_long",
      { args: [q.length, MAX_QUESTION_CHARS] }));
  }
  return requestJSON("/answer", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ question: q, top_k: topK, mode, max_sentences: 3 }),
    signal,
  });
}

const documents = new Map();

/** A document's metadata and paragraphs, fetched once per page load. */
export async function getDocument(docId) {
  if (!documents.has(docId)) {
    const promise = requestJSON(`/documents/${encodeURIComponent(docId)}`);
    documents.set(docId, promise);
    promise.catch(() => documents.delete(docId));
  }
  return documents.get(docId);
}

export function forgetDocument(docId) { documents.delete(docId); }
