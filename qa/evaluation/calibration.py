"""Which own questions a no-answer model is fitted on, and which it is judged on.

The no-answer confidence (``FusionParams.conf_zh``, ``SecondParams.confidence_en``) is a
small logistic model fitted on the own question sets. Judged on the questions it was fitted
on, it looks better than it is; so the sets are split once, by a rule fixed in advance, into
half A (``scripts/calibrate.py`` fits on it) and half B (docs/EVAL.md and
``tests/test_quality.py`` report and check on it, and never on A).

The split alternates by question id within each (language group, answerable?) cell, so
both halves hold answerable and unanswerable questions of each group in equal shares, and
adding a question moves only the ones after it in its own cell.
"""

from __future__ import annotations

from collections.abc import Sequence

from qa.evaluation.retrieval import Question
from qa.ingest.tokenize import script_of


def language_group(text: str) -> str:
    """The calibration a question falls under: ``en`` or ``zh`` (Simplified and
    Traditional share one model, as in the search)."""
    return "en" if script_of(text) == "en" else "zh"


def halves(questions: Sequence[Question]) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of half A (fitting) and half B (held out)."""
    cells: dict[tuple[str, bool], list[str]] = {}
    for q in questions:
        cells.setdefault((language_group(q.text), q.gold is not None), []).append(q.qid)
    a: set[str] = set()
    b: set[str] = set()
    for ids in cells.values():
        ordered = sorted(set(ids))
        a.update(ordered[0::2])
        b.update(ordered[1::2])
    return frozenset(a), frozenset(b)


def flag_rates(flagged: Sequence[tuple[bool, bool]]) -> dict[str, float | int]:
    """From (answerable?, flagged?) pairs: the share of unanswerable questions flagged and of
    answerable ones wrongly flagged, with the counts behind them."""
    answerable = [f for ok, f in flagged if ok]
    unanswerable = [f for ok, f in flagged if not ok]
    return {"unanswerable_flagged": round(sum(unanswerable) / max(1, len(unanswerable)), 3),
            "answerable_wrongly_flagged": round(sum(answerable) / max(1, len(answerable)), 3),
            "n_answerable": len(answerable), "n_unanswerable": len(unanswerable)}
