"""The split that keeps the no-answer models honest: fitted on half A, judged on half B."""

from __future__ import annotations

from qa.evaluation.calibration import flag_rates, halves, language_group
from qa.evaluation.retrieval import Gold, Question

GOLD = Gold("d", 0, 1)


def _questions() -> list[Question]:
    out = []
    for i in range(7):
        out.append(Question(f"zh{i}", f"武汉第{i}个问题是什么?", GOLD))
        out.append(Question(f"en{i}", f"What is question {i}?", GOLD))
    for i in range(4):
        out.append(Question(f"uz{i}", f"上海第{i}个问题?", None))
        out.append(Question(f"ue{i}", f"Who won match {i}?", None))
    return out


def test_halves_are_disjoint_complete_and_balanced_per_language_and_label() -> None:
    qs = _questions()
    a, b = halves(qs)
    assert not a & b and a | b == {q.qid for q in qs}
    for group in ("en", "zh"):
        for answerable in (True, False):
            cell = [q.qid for q in qs
                    if language_group(q.text) == group and (q.gold is not None) == answerable]
            in_a = sum(qid in a for qid in cell)
            assert abs(in_a - (len(cell) - in_a)) <= 1, (group, answerable, in_a, len(cell))


def test_the_split_is_fixed_by_the_ids_not_by_the_order_or_other_languages() -> None:
    qs = _questions()
    a, _ = halves(qs)
    assert halves(list(reversed(qs)))[0] == a
    # A new English question does not move any Chinese question between halves.
    more_a, _ = halves([*qs, Question("en99", "What is new?", GOLD)])
    assert {q for q in more_a if q.startswith(("zh", "uz"))} == \
        {q for q in a if q.startswith(("zh", "uz"))}


def test_flag_rates_count_each_kind_of_mistake() -> None:
    rates = flag_rates([(True, False), (True, True), (False, True), (False, False),
                        (False, True), (True, False)])
    assert rates == {"unanswerable_flagged": 0.667, "answerable_wrongly_flagged": 0.333,
                     "n_answerable": 3, "n_unanswerable": 3}
