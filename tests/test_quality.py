"""Retrieval-quality regression: a fast slice of the evaluation in docs/EVAL.md, with
thresholds just under the measured figures, so that a change that hurts quality fails CI.
The full run is `qa eval` (docs/EVAL.md)."""

from __future__ import annotations

import pytest

from qa.evaluation.retrieval import evaluate, load_corpus_questions, load_squad

from .conftest import CORPUS, ROOT, SHARED_DATA

pytestmark = [pytest.mark.model, pytest.mark.slow]

# Measured values are in docs/EVAL.md; these sit just under them.
CORPUS_FLOORS = {
    ("corpus-zh", "R@1"): 0.92, ("corpus-zh", "R@5"): 0.98,
    ("corpus-zh-Hant", "R@5"): 0.95,
    # With the second encoder (the default): 0.756 / 0.951 / 0.951, two questions of slack.
    ("corpus-en", "R@1"): 0.70, ("corpus-en", "R@5"): 0.90, ("corpus-en", "R@10"): 0.90,
}
XQUAD_FLOORS = {
    ("xquad-zh->zh", "R@1"): 0.93, ("xquad-zh->zh", "R@5"): 0.98,
    # The first 150 questions, both encoders: 0.873 / 0.987.
    ("xquad-en->zh", "R@1"): 0.84, ("xquad-en->zh", "R@5"): 0.96,
}


def _check(result, floors):
    problems = []
    for (slice_name, metric), floor in floors.items():
        got = result["slices"][slice_name]["modes"]["auto"][metric]
        if got < floor:
            problems.append(f"{slice_name} {metric} {got:.3f} < {floor}")
    assert not problems, problems


def test_own_corpus_quality_and_no_answer_signal(real_embedder):
    bench = load_corpus_questions(CORPUS, ROOT / "tests/data/corpus_questions.jsonl",
                                  ROOT / "tests/data/unanswerable.jsonl")
    result = evaluate(bench, real_embedder, modes=["auto"])
    _check(result, CORPUS_FLOORS)
    slices = result["slices"]
    # Chinese unanswerable questions are flagged, answerable ones rarely are.
    assert slices["corpus-zh"]["modes"]["auto"]["flagged_unanswerable"] <= 0.10
    assert slices["corpus-en"]["modes"]["auto"]["flagged_unanswerable"] <= 0.10
    assert slices["corpus-unanswerable"]["modes"]["auto"]["flagged_unanswerable"] >= 0.5


def test_xquad_slice(real_embedder):
    zh = SHARED_DATA / "xquad" / "xquad.zh.json"
    en = SHARED_DATA / "xquad" / "xquad.en.json"
    if not zh.exists() or not en.exists():
        pytest.skip(f"XQuAD not found under {SHARED_DATA}")
    bench = load_squad(zh, [("xquad-en->zh", en)], name="xquad-zh->zh", limit=150)
    _check(evaluate(bench, real_embedder, modes=["auto"]), XQUAD_FLOORS)
