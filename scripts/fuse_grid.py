"""The grid of scripts/fuse_encoders.py: the auto mode's ranking recomputed from cached
arrays, for every fusion setting. Imported by fuse_encoders.py (``grid`` stage)."""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.index.lexical import BM25Index  # noqa: E402
from qa.index.manifest import current_generation  # noqa: E402
from qa.retrieve.fusion import SecondParams, fuse, top_rows  # noqa: E402
from qa.retrieve.search import FusionParams  # noqa: E402
from qa.retrieve.translate import term_weights, weighted_bm25  # noqa: E402

P = FusionParams()
S = SecondParams()


@dataclass
class Cached:
    name: str
    meta: list[dict]
    e5_para: np.ndarray   # questions x chunks
    e5_sent: np.ndarray   # questions x chunks, best sentence cosine
    u_para: np.ndarray
    u_sent: np.ndarray
    lex: np.ndarray
    hub: np.ndarray
    u_hub: np.ndarray
    questions: np.ndarray
    group: np.ndarray
    english: np.ndarray
    lex_w: np.ndarray
    lex_scale: np.ndarray
    translation: list[dict | None]
    bm25: BM25Index


def _maxsim(q: np.ndarray, sents: np.ndarray, off: np.ndarray) -> np.ndarray:
    return np.maximum.reduceat(q @ sents.T, off[:-1], axis=1)


def load(out: Path, name: str) -> Cached:
    d = out / name
    gen = current_generation(d / "index")
    off = np.load(gen / "sentence_offsets.npy")
    q5, qu = np.load(d / "q_e5.npy"), np.load(d / "q_use.npy")
    meta = json.loads((d / "questions.json").read_text("utf-8"))
    return Cached(
        name, meta, q5 @ np.load(gen / "vectors.npy").T,
        _maxsim(q5, np.load(gen / "sentences.npy"), off),
        qu @ np.load(d / "use_para.npy").T, _maxsim(qu, np.load(d / "use_sent.npy"), off),
        np.load(d / "lex.npy"), np.load(gen / "hub_en.npy"), np.load(d / "use_hub.npy"),
        np.load(gen / "question_rows.npy").astype(np.float32), np.load(d / "para_group.npy"),
        np.array([m["english"] for m in meta]), np.array([m["lex_w"] for m in meta]),
        np.array([m["lex_scale"] for m in meta]),
        json.loads((d / "translation.json").read_text("utf-8"))
        if (d / "translation.json").exists() else [None] * len(meta), BM25Index.load(gen))


def translated(c: Cached, i: int, floor: float, per_term: int) -> np.ndarray | None:
    """The translated lexical leg of question i over every chunk, as the service scales it."""
    t = c.translation[i]
    if not t:
        return None
    sims = np.array(t["sims"])[:, :per_term]
    cols = np.array(t["cols"])[:, :per_term]
    weights = term_weights(sims, np.arange(sims.size).reshape(sims.shape), cols.ravel(), floor)
    if not weights:
        return None
    scores, bound = weighted_bm25(c.bm25.weights, c.bm25.idf, c.bm25.k1, weights)
    best = float(scores.max())
    return scores / (0.5 * bound + 0.5 * best) if best > 0 else None


def rank_of(scores: np.ndarray, gold: set[int], group: np.ndarray, depth: int = 10) -> int | None:
    """The gold paragraph's rank among distinct paragraphs, as qa.evaluation counts it."""
    top = top_rows(scores, min(len(scores), 4 * depth))
    top = top[np.lexsort((top, -scores[top]))]
    seen: set[int] = set()
    for r in top:
        g = int(group[r])
        if g in seen:
            continue
        seen.add(g)
        if int(r) in gold:
            return len(seen)
        if len(seen) >= depth:
            return None
    return None


def scores_for(c: Cached, i: int, w: float, s_u: float, hub_u: float, norm: str = "cand",
               s_e: float = P.sentence_weight, hub_e: float = P.hub_penalty_en,
               tr: tuple[float, int, float] | None = None, use_only: bool = False) -> np.ndarray:
    """The auto mode's score of every chunk for question i: e5 (+ w x USE), BM25, and with
    ``tr`` = (floor, per_term, weight) the translated leg; ``use_only``: USE instead of e5."""
    en = bool(c.english[i])
    e5 = (1 - s_e) * c.e5_para[i] + s_e * c.e5_sent[i] - (hub_e * c.hub if en else 0.0)
    if use_only:
        e5 = (1 - s_u) * c.u_para[i] + s_u * c.u_sent[i] - (hub_u * c.u_hub if en else 0.0)
    elif w:
        use = (1 - s_u) * c.u_para[i] + s_u * c.u_sent[i] - (hub_u * c.u_hub if en else 0.0)
        if norm == "all":
            e5 = fuse(e5, use, w)
        else:  # the service's candidates: each encoder's best 2k, and the lexical hits
            k = 2 * P.candidates
            rows = set(top_rows(e5, k).tolist()) | set(top_rows(use, k).tolist())
            rows |= set(np.flatnonzero(c.lex[i] > 0)[:10**6].tolist())
            rows_a = np.array(sorted(rows))
            out = np.full_like(e5, -1e9)
            out[rows_a] = fuse(e5[rows_a], use[rows_a], w)
            e5 = out
    lex = c.lex_w[i] * c.lex[i] / c.lex_scale[i] if c.lex_w[i] else 0.0
    out = e5 + lex - P.question_penalty * c.questions
    if tr is not None and en:
        leg = translated(c, i, tr[0], tr[1])
        if leg is not None:
            out = out + tr[2] * leg
    return out


def evaluate(c: Cached, **kw) -> dict[str, dict[str, float]]:
    by_slice: dict[str, list[int | None]] = {}
    for i, m in enumerate(c.meta):
        if m["gold"] is None:
            continue
        r = rank_of(scores_for(c, i, **kw), set(m["gold"]), c.group)
        by_slice.setdefault(m["slice"], []).append(r)
    return {s: {"n": len(rs), "R@1": sum(1 for r in rs if r == 1) / len(rs),
                "R@5": sum(1 for r in rs if r is not None and r <= 5) / len(rs)}
            for s, rs in by_slice.items()}


def _row(cached: list[Cached], label: str, english: bool, **kw) -> dict:
    res: dict[str, dict[str, float]] = {}
    for c in cached:
        res.update(evaluate(c, **kw))
    keep = {k: v for k, v in res.items() if ("en" in k.split("-")[-1] or "en->" in k) == english
            and k != "corpus-unanswerable"}
    cells = " | ".join(f"{v['R@1']:.3f} / {v['R@5']:.3f}" for v in keep.values())
    print(f"| {label} | {cells} |", flush=True)
    return {"label": label, "setting": {k: v for k, v in kw.items()}, "slices": keep}


def grid(out: Path, names: list[str]) -> None:
    """The tables of docs/EVAL.md, "Two encoders"."""
    cached = [load(out, n) for n in names]
    tr = (S.translate_floor, S.translate_per_term, S.translate_weight)
    rows = []
    print("English questions (XQuAD en->zh, own English): R@1 / R@5")
    rows.append(_row(cached, "e5 alone (today)", True, w=0.0, s_u=0.0, hub_u=0.0))
    for s_u in (0.0, 0.6):
        rows.append(_row(cached, f"USE alone, sentences {s_u}", True, w=0.0, s_u=s_u,
                         hub_u=0.3, use_only=True))
    for w, s_u, hub_u in itertools.product((0.3, 0.5, 0.7, 1.0), (0.0, 0.6), (0.0, 0.3)):
        rows.append(_row(cached, f"e5 + {w} USE, sentences {s_u}, hub {hub_u}", True, w=w,
                         s_u=s_u, hub_u=hub_u))
    for w, s_u in ((0.0, 0.0), (0.5, 0.0), (0.5, 0.6), (0.7, 0.6)):
        rows.append(_row(cached, f"e5 + {w} USE, sentences {s_u}, hub 0.3 + translated",
                         True, w=w, s_u=s_u, hub_u=0.3, tr=tr))
    for floor, per, weight in itertools.product((0.5, 0.6, 0.7), (2, 3, 5), (0.05, 0.1, 0.2)):
        rows.append(_row(cached, f"chosen dense + translated floor {floor}, {per} per word, "
                         f"weight {weight}", True, w=S.weight_en, s_u=S.sentence_weight,
                         hub_u=S.hub_penalty_en, tr=(floor, per, weight)))
    print("Chinese questions (CMRC, XQuAD zh->zh, own zh, own zh-Hant): R@1 / R@5")
    rows.append(_row(cached, "e5 alone (today)", False, w=0.0, s_u=0.0, hub_u=0.0))
    for w, s_u in itertools.product((0.1, 0.2, 0.3, 0.5), (0.0, 0.6)):
        rows.append(_row(cached, f"e5 + {w} USE, sentences {s_u}", False, w=w, s_u=s_u,
                         hub_u=0.0))
    (out / "grid.json").write_text(json.dumps(rows, indent=1), "utf-8")
