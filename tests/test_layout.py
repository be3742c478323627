"""Paragraphs from positioned lines, on hand-made pages where the right cut is known."""

from __future__ import annotations

import pytest

from qa.ingest.readers.layout import (
    Line,
    assemble,
    drop_furniture,
    heading_levels,
    paragraphs,
    read_pages,
)
from qa.types import Document

H = 12.0  # line height
LEFT, RIGHT = 72.0, 520.0


def _page(number: int, rows: list[tuple[str, str]], top: float = 100.0,
          header: str | None = None, footer: str | None = None) -> list[Line]:
    """rows: (kind, text), kind "full" (ends at the right margin), "short", "indent" (first
    line of an indented paragraph, full width) or "centre"."""
    lines = []
    if header:
        lines.append(Line(header, 250, 340, 40, 40 + H, number))
    y = top
    for kind, text in rows:
        x0 = LEFT + 2 * H if kind == "indent" else 250 if kind == "centre" else LEFT
        x1 = RIGHT if kind in ("full", "indent") else 300
        lines.append(Line(text, x0, x1, y, y + H, number))
        y += H * 1.5
    if footer:
        lines.append(Line(footer, 280, 310, 760, 760 + H, number))
    return lines


def _texts(paras: list[list[Line]]) -> list[str]:
    return ["".join(ln.text for ln in p) for p in paras]


def test_indented_paragraphs_continue_over_a_page_break_even_after_a_full_stop():
    p1 = _page(1, [("indent", "甲一"), ("full", "甲二"), ("short", "甲三。"),
                   ("indent", "乙一"), ("full", "乙二。")])
    p2 = _page(2, [("full", "乙三"), ("short", "乙四。"), ("indent", "丙一"), ("short", "丙二。")])
    assert _texts(paragraphs([p1, p2])) == ["甲一甲二甲三。", "乙一乙二。乙三乙四。", "丙一丙二。"]


def test_block_paragraphs_break_at_a_page_end_that_ends_a_sentence():
    p1 = _page(1, [("full", "甲一"), ("short", "甲二。"), ("full", "乙一"), ("full", "乙二。")])
    p2 = _page(2, [("full", "丙一"), ("short", "丙二。")])
    p3 = _page(3, [("full", "丙三"), ("short", "丙四。")])
    p2_unfinished = _page(2, [("full", "乙三"), ("short", "乙四。")])
    assert _texts(paragraphs([p1, p2, p3]))[1:] == ["乙一乙二。", "丙一丙二。", "丙三丙四。"]
    p1[-1].text = "乙二，"
    assert _texts(paragraphs([p1, p2_unfinished]))[1] == "乙一乙二，乙三乙四。"


def test_a_wider_gap_a_heading_and_an_item_marker_start_paragraphs():
    lines = _page(1, [("full", "甲一"), ("full", "甲二"), ("full", "一、乙"), ("full", "乙二")])
    lines[3].top += 3 * H  # paragraph spacing
    lines[3].bottom += 3 * H
    big = Line("标题", 200, 380, 20, 20 + 2 * H, 1)  # a larger font
    assert _texts(paragraphs([[big, *lines]])) == ["标题", "甲一甲二", "一、乙", "乙二"]


@pytest.mark.parametrize("mark", ["3", "- 3 -", "— 3 —", "第 3 页", "第3页 共10页", "3/10",
                                  "Page 3 of 10"])
def test_page_numbers_at_the_page_edge_are_dropped(mark):
    page = _page(1, [("full", "正文一"), ("short", "正文二。"), ("short", "42"),
                     ("full", "正文三"), ("full", "正文四"), ("short", "正文五。")], footer=mark)
    kept, dropped = drop_furniture([page])
    assert [ln.text for ln in kept[0]] == ["正文一", "正文二。", "42", "正文三", "正文四", "正文五。"]
    assert dropped == 1  # the lone number inside the body stays


def test_running_heads_go_when_repeated_and_short_but_a_long_repeated_line_stays():
    long = "这是一段在每页开头都重复出现的很长的正文内容" * 3
    bodies = ["甲方负责。", "乙方配合。", "丙方监督。"]
    pages = [_page(n, [("full", long), ("short", body)], header="某某市人民政府文件",
                   footer=f"- {n} -") for n, body in enumerate(bodies, start=1)]
    text, starts, dropped = read_pages(pages)
    assert "某某市人民政府文件" not in text and "- 2 -" not in text and dropped == 6
    assert text.count(long) == 3 and all(b in text for b in bodies)


def test_page_starts_point_into_the_text_and_an_empty_page_takes_the_next_start():
    p1 = _page(1, [("full", "甲一"), ("full", "甲二")])
    p3 = _page(3, [("full", "甲三"), ("short", "甲四。"), ("indent", "乙一。")])
    text, starts = assemble(paragraphs([p1, [], p3]), 3)
    assert text == "甲一甲二甲三甲四。\n乙一。"
    assert starts == (0, 4, 4)
    doc = Document("d", "d.pdf", "t", text, "x", pages=starts)
    assert [doc.page_at(i) for i in (0, 3, 4, 9, 10)] == [1, 1, 3, 3, 3]


def test_headings_need_a_positive_signal_size_or_section_mark():
    def one(text: str, height: float = H) -> list[Line]:
        return [Line(text, LEFT, 300, 0, height, 1)]

    body = [one("正文第一段。"), one("正文第二段。"), one("正文第三段。")]
    paras = [one("关于推进工作的通知", 2 * H), one("一、总体要求"), *body,
             one("（一）老旧小区", H), one("没有标点的短句"), one("各区人民政府：", 2 * H),
             one("一、加强组织领导，明确责任分工。"), one("标题较小", 1.5 * H)]
    assert heading_levels(paras) == [1, 3, 0, 0, 0, 4, 0, 0, 0, 2]


def test_latin_lines_are_joined_with_a_space():
    lines = [Line("The plan sets", LEFT, RIGHT, 100, 112, 1),
             Line("targets for 2030.", LEFT, 300, 118, 130, 1)]
    text, _ = assemble(paragraphs([lines]), 1)
    assert text == "The plan sets targets for 2030."
