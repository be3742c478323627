"""Choosing the second encoder's fusion weights on data (docs/EVAL.md, "Two encoders").

Two stages, so that the expensive part runs once:

    python scripts/fuse_encoders.py cache   # index each benchmark with e5, embed it with USE
    python scripts/fuse_encoders.py grid    # re-score every question under every setting

``cache`` builds each benchmark's index through the project's own pipeline (chunker, e5,
sentence vectors, hubness, BM25), embeds the same chunks, sentences and questions with USE,
and stores, per question, what the auto mode's score is made of: the e5 and USE query
vectors, the BM25 score of every chunk, the lexical weight and scale the searcher would use.
``grid`` recomputes the auto mode's ranking from those arrays with
:func:`qa.retrieve.fusion.fuse_second` (the function the service runs), for each weight,
and prints R@1 / R@5 per slice. With USE switched off it reproduces the figures of
``qa eval`` (the first row it prints), which checks the replica.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.encoders.base import embed  # noqa: E402
from qa.evaluation.retrieval import named_benchmark  # noqa: E402
from qa.index.build import build_index  # noqa: E402
from qa.index.embedding import sentence_texts as _sentence_texts  # noqa: E402
from qa.index.hubness import hub_scores, reference_queries  # noqa: E402
from qa.index.load import open_index  # noqa: E402
from qa.ingest.tokenize import script_of, to_simplified  # noqa: E402
from qa.retrieve.search import Searcher  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402

BENCHES = ("xquad", "cmrc", "corpus")


def cache(out: Path, data_dir: Path, names: list[str]) -> None:
    from qa.encoders.use import UseEmbedder

    e5 = make_embedder(Settings(allow_download=False, second_encoder="none"))
    use = UseEmbedder()
    for name in names:
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        bench = named_benchmark(name, data_dir, ROOT / "corpus", ROOT / "tests/data")
        if not (d / "index" / "CURRENT").exists():
            print(f"{name}: indexing with e5", flush=True)
            build_index(bench.corpus_dir, d / "index", e5)
        idx = open_index(d / "index", e5)
        searcher = Searcher(idx, e5)
        n = idx.vectors.count()
        chunks = idx.store.get(list(range(n)))
        if not (d / "use_para.npy").exists():
            print(f"{name}: {n} chunks with USE", flush=True)
            texts = [chunks[r].clean_text for r in range(n)]
            para = embed(use, texts, "passage")
            off = idx.sentence_offsets
            sents = np.zeros((int(off[-1]), use.dim), np.float32)
            extra, slots = [], []
            for r in range(n):
                st = _sentence_texts(chunks[r])
                if off[r + 1] - off[r] == 1 and len(st) <= 1:
                    sents[off[r]] = para[r]
                else:
                    extra.extend(st)
                    slots.extend(range(off[r], off[r] + len(st)))
            sents[slots] = embed(use, extra, "passage")
            hub = hub_scores(use.embed_batch(reference_queries(), "query"), para, (sents, off))
            np.save(d / "use_para.npy", para)
            np.save(d / "use_sent.npy", sents)
            np.save(d / "use_hub.npy", hub)
        questions = [(sl.name, q) for sl in bench.slices for q in sl.questions]
        texts = [to_simplified(q.text.strip()) for _, q in questions]
        print(f"{name}: {len(texts)} questions", flush=True)
        np.save(d / "q_e5.npy", embed(e5, texts, "query"))
        np.save(d / "q_use.npy", embed(use, texts, "query"))
        lex = np.zeros((len(questions), n), np.float32)
        meta = []
        for i, (slice_name, q) in enumerate(questions):
            tokens = idx.tokenizer(q.text.strip())
            english = script_of(q.text) == "en"
            coverage = idx.lexical.coverage(tokens)
            lex[i] = idx.lexical.scores(tokens)
            top = float(lex[i].max()) if n else 0.0
            scale = 0.5 * (idx.lexical.max_score(tokens) or 1.0) + 0.5 * top
            gold = None
            if q.gold is not None:
                gold = [r for r in range(n) if chunks[r].doc_id == q.gold.doc_id
                        and chunks[r].char_start < q.gold.end and chunks[r].char_end > q.gold.start]
            meta.append({"slice": slice_name, "qid": q.qid, "lang": q.lang, "english": english,
                         "coverage": coverage, "lex_w": searcher.lexical_weight(english, coverage)
                         if top > 0 else 0.0, "lex_scale": scale, "gold": gold})
        np.save(d / "lex.npy", lex)
        groups = {}
        para_id = np.array([groups.setdefault((chunks[r].doc_id, chunks[r].paragraph), len(groups))
                            for r in range(n)], np.int64)
        np.save(d / "para_group.npy", para_id)
        (d / "questions.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
        cache_translation(d, idx, use, [q.text for _, q in questions],
                          [m["english"] for m in meta])
        idx.store.close()


def cache_translation(d: Path, idx, use, texts: list[str], english: list[bool]) -> None:
    """What the translated lexical leg needs: each English question's terms
    (qa.retrieve.translate.english_terms), their 10 nearest corpus terms by USE, and whether
    the corpus knows each word, for the grid to re-weight without embedding again."""
    from qa.index.second import vocabulary_terms
    from qa.retrieve.translate import english_terms

    vocab = vocabulary_terms(idx.lexical.vocab, idx.lexical.idf)
    if not (d / "vocab_use.npy").exists():
        print(f"{d.name}: {len(vocab)} vocabulary terms with USE", flush=True)
        np.save(d / "vocab_use.npy", embed(use, vocab, "passage", batch_size=256))
    vv = np.load(d / "vocab_use.npy")
    cols = np.array([idx.lexical.vocab[t] for t in vocab], np.int64)
    out = []
    for text, en in zip(texts, english, strict=True):
        terms = english_terms(text) if en else []
        if not terms:
            out.append(None)
            continue
        sims = use.embed_batch(terms, "query") @ vv.T
        top = np.argsort(-sims, axis=1)[:, :10]
        out.append({"terms": terms, "sims": np.take_along_axis(sims, top, 1).tolist(),
                    "cols": cols[top].tolist(),
                    "literal": [t in idx.lexical.vocab for t in terms]})
    (d / "translation.json").write_text(json.dumps(out, ensure_ascii=False), "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("cache", "grid", "translation"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/use-exp"))
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--benchmark", action="append", default=None)
    args = ap.parse_args()
    names = args.benchmark or list(BENCHES)
    if args.stage == "cache":
        cache(args.out, args.data_dir, names)
    elif args.stage == "translation":  # only the translation cache (added later)
        from qa.encoders.use import UseEmbedder

        e5 = make_embedder(Settings(allow_download=False, second_encoder="none"))
        use = UseEmbedder()
        for name in names:
            d = args.out / name
            bench = named_benchmark(name, args.data_dir, ROOT / "corpus", ROOT / "tests/data")
            meta = json.loads((d / "questions.json").read_text("utf-8"))
            idx = open_index(d / "index", e5)
            cache_translation(d, idx, use, [q.text for sl in bench.slices for q in sl.questions],
                              [m["english"] for m in meta])
    else:
        from fuse_grid import grid  # scripts/fuse_grid.py

        grid(args.out, names)


if __name__ == "__main__":
    main()
