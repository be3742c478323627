from __future__ import annotations

import pytest

from qa.ingest.chunking import approx_token_count, chunk_document, is_terminal
from qa.ingest.corpus import load_corpus

from .conftest import CORPUS


@pytest.fixture(scope="module")
def corpus_chunks():
    docs = load_corpus(CORPUS).documents
    return {d.doc_id: (d, chunk_document(d.doc_id, d.text)) for d in docs}


def _find(chunks, needle):
    found = [c for c in chunks if needle in c.clean_text]
    assert found, f"no chunk contains {needle!r}"
    return found[0]


def test_offsets_reproduce_the_cited_text_over_the_whole_corpus(corpus_chunks):
    total = 0
    for doc, chunks in corpus_chunks.values():
        raw = (CORPUS / doc.path).read_bytes().decode("utf-8")
        for c in chunks:
            assert raw[c.char_start:c.char_end] == c.text
            assert c.text == c.text.strip()
            assert c.clean_text.replace("\n", "")  # never empty
            total += 1
    assert total > 80


def test_paragraph_numbers_are_one_based_and_contiguous(corpus_chunks):
    for _, chunks in corpus_chunks.values():
        numbers = sorted({c.paragraph for c in chunks})
        assert numbers == list(range(1, len(numbers) + 1))
        assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_ids_are_stable_across_runs(corpus_chunks):
    for doc, chunks in corpus_chunks.values():
        again = chunk_document(doc.doc_id, doc.text)
        assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]


def test_lines_broken_mid_sentence_are_rejoined(corpus_chunks):
    _, chunks = corpus_chunks["wuhan-9th-plenary-digest-2020-06-28"]
    c = _find(chunks, "做好“育”的文章,抢抓全球新一轮科技革命和产业变革先机")
    assert "\n" in c.text  # the cited span really covers both source lines
    assert c.clean_text.endswith("抢占未来产业发展制高点。")
    _find(chunks, "探索完善“大学+”发展模式,争创综合性国家科学中心")


def test_markdown_headings_are_breadcrumbs_not_answers(corpus_chunks):
    _, chunks = corpus_chunks["wuhan-9th-plenary-digest-2020-06-28"]
    assert not any(c.text.startswith("#") for c in chunks)
    c = _find(chunks, "武汉有83所高校")
    assert c.section[-1].startswith("争创两个中心")
    assert not any(c.clean_text == "15分钟生活圈" for c in chunks)


def test_speakers_and_reporter_questions(corpus_chunks):
    _, chunks = corpus_chunks["wuhan-11th-plenary-press-conference-2021-07-26"]
    answer = _find(chunks, "武汉是全国重要的制造业基地")
    assert answer.speaker == "党蓁"
    assert answer.speaker_role == "市经济和信息化局局长"
    assert answer.context and "请问市经信局" in answer.context
    question = _find(chunks, "请问市经信局作为全市制造业主管部门")
    assert question.speaker == "记者"
    assert _find(chunks, "大家好!昨天,市委十三届十一次全会").speaker == "孟武康"
    assert _find(chunks, "市科技局将把全会的决策部署").speaker == "盛继亮"
    heading = _find(chunks, "会议提出,深入贯彻习近平总书记")
    assert heading.section == ("第一,明确了主要目标",)


def test_page_furniture_is_not_indexed(corpus_chunks):
    text = "".join(c.text for _, chunks in corpus_chunks.values() for c in chunks)
    for junk in ("评论一下", "还没有评论", "快来抢沙发", "最热评论", "编辑:朱晨颖", "摄影:",
                 "作者:任勇", "记者王雪", "发布会现场"):
        assert junk not in text, junk


def test_header_lists_become_one_paragraph(corpus_chunks):
    _, chunks = corpus_chunks["wuhan-11th-plenary-press-conference-2021-07-26"]
    host = _find(chunks, "主持人")
    assert "何建新" in host.clean_text and host.speaker is None
    assert "2021年7月26日15:00" in _find(chunks, "时间").clean_text


def test_long_paragraph_is_split_into_overlapping_sentence_windows():
    sentences = [f"第{i}句讲的是武汉的第{i}项重点任务和具体举措。" for i in range(1, 31)]
    body = "".join(sentences)
    text = "# 标题\n\n" + body + "\n\n短段落。\n"
    chunks = chunk_document("doc", text, max_tokens=60)
    windows = [c for c in chunks if c.paragraph == 1]
    assert len(windows) > 3
    assert [c.window for c in windows] == list(range(len(windows)))
    for c in windows:
        assert text[c.char_start:c.char_end] == c.text
        assert approx_token_count(c.text) <= 60
        assert is_terminal(c.text)  # every window ends at a sentence end
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.char_start < a.char_end  # overlap keeps context across the cut
    assert windows[0].char_start == text.index(body)
    assert windows[-1].char_end == text.index(body) + len(body)
    assert chunks[-1].paragraph == 2 and chunks[-1].text == "短段落。"


def test_offsets_survive_crlf_bom_and_odd_whitespace():
    text = "\ufeff标题行\r\n\r\n  第一段内容在这里。\r\n\r\n第二段\u3000内容。  \r\n"
    chunks = chunk_document("d", text, markdown=False)
    assert [c.text for c in chunks] == ["第一段内容在这里。", "第二段\u3000内容。"]
    for c in chunks:
        assert text[c.char_start:c.char_end] == c.text


def test_a_single_overlong_sentence_is_cut_without_losing_text():
    text = "甲" * 500 + "。"
    chunks = chunk_document("d", text, markdown=False, max_tokens=100)
    covered = set()
    for c in chunks:
        assert text[c.char_start:c.char_end] == c.text
        covered.update(range(c.char_start, c.char_end))
    assert covered == set(range(len(text)))
