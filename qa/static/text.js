// Source text as a reader sees it, with quoted sentences marked at their exact offsets.
//
// The service gives offsets into the source file (source[char_start:char_end] == text),
// while the readable form re-joins lines the source broke mid-sentence. Both are needed at
// once: the marks are placed on the raw characters, then the line breaks are re-joined with
// the same rule as qa.retrieve.answer.display (CJK joins directly; Latin words get their
// space back), so a mark never drifts when the readable text is shorter than the source.

const BREAK = /[ \t\u3000]*\n[ \t\u3000\n]*/g;
const EDGE = /^[ \t\r\n\u3000\ufeff\u00a0]+|[ \t\r\n\u3000\ufeff\u00a0]+$/g;
const latin = (c) => c !== undefined && /^[A-Za-z0-9]$/.test(c);

/** [[rawOffset, readableText, rawEnd?], ...] for ``raw``: the source's pieces, breaks
 * re-joined; a re-joined break carries the offset where it ends in the source. */
function pieces(raw) {
  const out = [];
  let last = 0;
  for (const m of raw.matchAll(BREAK)) {
    if (m.index > last) out.push([last, raw.slice(last, m.index)]);
    const end = m.index + m[0].length;
    if (latin(raw[m.index - 1]) && latin(raw[end])) out.push([m.index, " ", end]);
    last = end;
  }
  if (last < raw.length) out.push([last, raw.slice(last)]);
  return out;
}

/** The readable text of ``raw`` (which starts at ``start`` in its source file), with each
 * ``[charStart, charEnd]`` of ``marks`` (source offsets) wrapped in a ``<mark>``. Returns a
 * DocumentFragment: text nodes only, so nothing from the corpus is ever parsed as HTML. */
export function readable(raw, start, marks = []) {
  const frag = document.createDocumentFragment();
  const lead = raw.length - raw.replace(/^[ \t\r\n\u3000\ufeff\u00a0]+/, "").length;
  const text = raw.replace(EDGE, "");
  const base = start + lead;
  const markOf = (pos) => marks.findIndex(([s, e]) => pos >= s && pos < e);
  let run = "";
  let runMark = -1;
  const flush = () => {
    if (!run) return;
    if (runMark < 0) {
      frag.append(run);
    } else {
      const m = document.createElement("mark");
      m.textContent = run;
      frag.append(m);
    }
    run = "";
  };
  for (const [offset, piece, breakEnd] of pieces(text)) {
    for (let i = 0; i < piece.length; i++) {
      let mark = markOf(base + offset + i);
      // A re-joined break belongs to a mark only when both of its sides do.
      if (breakEnd !== undefined) {
        const before = markOf(base + offset - 1);
        mark = before === markOf(base + breakEnd) ? before : -1;
      }
      if (mark !== runMark) { flush(); runMark = mark; }
      run += piece[i];
    }
  }
  flush();
  return frag;
}

/** The readable text of ``raw`` as a string (for titles and labels). */
export function readableString(raw) {
  return pieces(raw.replace(EDGE, "")).map(([, p]) => p).join("");
}
