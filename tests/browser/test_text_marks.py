"""The page's placing of marks at source offsets in text whose broken lines it re-joins
(qa/static/text.js), run in the browser on crafted text."""

from __future__ import annotations

import pytest

from .conftest import Session

pytestmark = [pytest.mark.browser, pytest.mark.model]

RENDER = """async ([raw, start, marks]) => {
  const { readable } = await import('/static/text.js');
  const p = document.createElement('p');
  p.append(readable(raw, start, marks));
  return [p.textContent, [...p.querySelectorAll('mark')].map(m => m.textContent), p.innerHTML];
}"""


@pytest.mark.parametrize("raw, start, marks, text, marked", [
    # CJK lines join directly; a mark across the break covers both halves.
    ("抢抓全球新一轮\n\n科技革命。其后", 100, [[104, 114]], "抢抓全球新一轮科技革命。其后",
     ["新一轮科技革命。"]),
    # Latin words get their space back, inside the mark when both sides are marked.
    ("see the\nreport now", 0, [[4, 14]], "see the report now", ["the report"]),
    # A break at the edge of a mark stays outside it.
    ("alpha\nbeta", 0, [[0, 5]], "alpha beta", ["alpha"]),
    # Two marks in one passage stay two marks; edge whitespace is trimmed.
    ("\u3000甲句。乙句。丙句。", 10, [[11, 14], [14, 17]], "甲句。乙句。丙句。", ["甲句。", "乙句。"]),
    # Nothing from the corpus is parsed as HTML.
    ("<b>x</b>", 0, [[0, 3]], "<b>x</b>", ["<b>"]),
])
def test_marks_land_on_their_source_offsets(en: Session, raw, start, marks, text,
                                            marked) -> None:
    page = en.open("/")
    got_text, got_marks, html = page.evaluate(RENDER, [raw, start, marks])
    assert got_text == text
    assert got_marks == marked
    assert "<b>" not in html
    en.watch.check()
