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

from qa.index.manifest import current_generation  # noqa: E402
from qa.retrieve.fusion import fuse, top_rows  # noqa: E402
from qa.retrieve.search import FusionParams  # noqa: E402

P = FusionParams()


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
        np.array([m["lex_scale"] for m in meta]))


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


def scores_for(c: Cached, i: int, w: float, s_u: float, hub_u: float, norm: str,
               s_e: float = P.sentence_weight, hub_e: float = P.hub_penalty_en) -> np.ndarray:
    en = bool(c.english[i])
    e5 = (1 - s_e) * c.e5_para[i] + s_e * c.e5_sent[i] - (hub_e * c.hub if en else 0.0)
    if w:
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
    return e5 + lex - P.question_penalty * c.questions


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


def grid(out: Path, names: list[str]) -> None:
    cached = [load(out, n) for n in names]
    settings = [dict(w=0.0, s_u=0.0, hub_u=0.0, norm="all")]
    for w, s_u, hub_u, norm in itertools.product(
            (0.3, 0.5, 0.7, 1.0, 1.5), (0.0, 0.4), (0.0, 0.3), ("all", "cand")):
        settings.append(dict(w=w, s_u=s_u, hub_u=hub_u, norm=norm))
    rows = []
    for kw in settings:
        res = {}
        for c in cached:
            res.update(evaluate(c, **kw))
        rows.append({"setting": kw, "slices": res})
        cells = " ".join(f"{s} {v['R@1']:.3f}/{v['R@5']:.3f}" for s, v in res.items())
        print(f"w={kw['w']:.1f} s_u={kw['s_u']:.1f} hub_u={kw['hub_u']:.1f} {kw['norm']:4s} "
              f"{cells}", flush=True)
    (out / "grid.json").write_text(json.dumps(rows, indent=1), "utf-8")
