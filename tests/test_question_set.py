"""Checks of the retrieval evaluation question set itself (tests/data/*.jsonl).

These tests validate the data, not the service: every answerable question must
point at an evidence string that occurs exactly once, on a single content line,
of the document it names; the language/kind mix must meet the minimums.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = DATA / "corpus_questions.jsonl"
UNANSWERABLE = DATA / "unanswerable.jsonl"

DOC_FILES = {
    "wuhan-11th-plenary-press-conference-2021-07-26": "wuhan-11th-plenary-press-conference-2021-07-26.txt",
    "wuhan-9th-plenary-digest-2020-06-28": "wuhan-9th-plenary-digest-2020-06-28.md",
}
LANGS = {"zh", "en", "zh-Hant"}
KINDS = {"copy", "paraphrase"}
QUESTION_FIELDS = {"id", "lang", "kind", "question", "doc_id", "evidence"}
UNANSWERABLE_FIELDS = {"id", "lang", "question"}

CJK = re.compile(r"[\u3400-\u9fff]")
# Characters that exist only in simplified form (their traditional forms differ),
# and the corresponding traditional-only forms. Used to check the script of a question.
SIMPLIFIED_ONLY = set(
    "汉发经济会这说为们时个来国关实现进产业区门书长东车乐头买卖万与专两严丧临举义乌乔习乡"
    "亩价众优伤传体侠侧儿党内册农决况净凤刘创删别剂劝办务动劳势医华协单卫厂历压厅县参双"
    "变叹吗吴员听启响团园围图圆圣场坏块坚坛垦堕声处备够夹奋奖妇娱宁宝宠审宫宽宾对"
    "导寿将尔尘尝层属岁岂岛岭币师帐带帮广庄库应庙废开异弃张弹强归当彻径忆忧怀态总恋恶悬惊惧"
    "惯愿戏战户执扩扫扬扰抚抢护报担拟拥择挂挡挤挥损捡换据掳搀携摄摆摇撑数断无旧旷昼显晋晒晓晕暂"
    "机杀杂权条杨极构枢标栏树样档桥梦检楼横欢欧歼残毁气汇汤沟没沪泪泽洁浅测浏浑浓涛涝润涨渐渔"
    "湾湿溃滚满滤滥灭灯灵灾炉点炼烂热爱爷牵犹狭独猎献环玺电画畅疗疮疯痒盐盖盘"
)
TRADITIONAL_ONLY = set(
    "漢發經濟會這說為們時個來國關實現進產業區門書長東車樂頭買賣萬與專兩嚴衛廠歷壓廳縣參雙變葉號嗎後"
    "員聽啟響團園圍圖圓聖場壞塊堅壇聲處備複夠頭獎婦娛寧寶實寵審宮寬賓對導壽將爾塵層屬歲島嶺幣師帳帶幫"
    "廣莊庫應廟廢開棄張彈強歸當錄徹徵徑憶憂懷態總戀惡懸驚懼慣願戲戰戶執擴掃揚擾撫搶護報擔擬擁擇掛擋擠"
    "揮損撿換據攜攝擺搖撐數斷無舊曠晝顯晉曬曉暈暫術機殺雜權條楊極構樞標欄樹樣檔橋夢檢樓橫歡歐殲殘毀氣"
    "匯湯溝沒滬淚澤潔淺測濟瀏渾濃塗濤澇潤漲漸漁灣濕潰滾滿濾濫滅燈靈災爐點煉爛熱愛爺牽猶狹獨獵獻環電畫"
    "暢療瘡瘋癢鹽蓋盤畝價眾優傷傳體餘俠側兒黨內冊農衝決況淨幾鳳劉創刪別劑勸辦務動勞勢醫華協單賣"
)


def _read_jsonl(path: Path) -> list[dict]:
    assert path.is_file(), f"missing {path}"
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{lineno}: blank line"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - failure path
            pytest.fail(f"{path.name}:{lineno}: invalid JSON: {exc}")
        assert isinstance(obj, dict), f"{path.name}:{lineno}: not a JSON object"
        rows.append(obj)
    return rows


@cache
def questions() -> list[dict]:
    return _read_jsonl(QUESTIONS)


@cache
def unanswerable() -> list[dict]:
    return _read_jsonl(UNANSWERABLE)


@cache
def doc_text(doc_id: str) -> str:
    return (CORPUS / DOC_FILES[doc_id]).read_text(encoding="utf-8")


def _is_furniture_or_marker(line: str) -> bool:
    """Speaker lines, the reporter marker, and page furniture/credits."""
    s = line.strip()
    if s in {"记者", "记者提问。", "发布会现场。"}:
        return True
    if s.startswith(("记者", "(", "【", "评论", "最热评论", "最新评论", "已有", "还没有评论")):
        return True
    # e.g. "党蓁 市经济和信息化局局长", "市发改委党组书记、主任 孟武康"
    if len(s) < 30 and re.search(r"(局长|主任|部长)", s) and " " in s:
        return True
    return bool(re.search(r"(编辑[::]|作者[::]|摄影[::])", s))


# --------------------------------------------------------------------------- answerable


def test_questions_fields_and_values():
    rows = questions()
    assert rows
    for r in rows:
        assert set(r) == QUESTION_FIELDS, f"{r.get('id')}: fields {sorted(r)}"
        assert all(isinstance(r[k], str) for k in QUESTION_FIELDS), r
        assert re.fullmatch(r"q\d{3,}", r["id"]), r["id"]
        assert r["lang"] in LANGS, r
        assert r["kind"] in KINDS, r
        assert r["doc_id"] in DOC_FILES, r
        assert r["question"].strip() == r["question"] and len(r["question"]) >= 5, r
        assert 6 <= len(r["evidence"]) <= 40, f"{r['id']}: evidence length {len(r['evidence'])}"


def test_question_ids_unique():
    ids = [r["id"] for r in questions()] + [r["id"] for r in unanswerable()]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, dupes


def test_questions_unique():
    qs = [r["question"].strip().lower() for r in questions()] + [
        r["question"].strip().lower() for r in unanswerable()
    ]
    dupes = [q for q, n in Counter(qs).items() if n > 1]
    assert not dupes, dupes


@pytest.mark.parametrize("row", questions(), ids=lambda r: r.get("id", "?"))
def test_evidence_occurs_once_on_a_content_line(row):
    ev = row["evidence"]
    assert "\n" not in ev and "\r" not in ev, f"{row['id']}: newline in evidence"
    text = doc_text(row["doc_id"])
    count = text.count(ev)
    assert count == 1, f"{row['id']}: evidence {ev!r} occurs {count} times in {row['doc_id']}"
    lines = [line for line in text.splitlines() if ev in line]
    assert len(lines) == 1, f"{row['id']}: evidence not within one line"
    line = lines[0]
    assert not line.lstrip().startswith("#"), f"{row['id']}: evidence on a heading line"
    assert not _is_furniture_or_marker(line), f"{row['id']}: evidence on a non-content line {line!r}"


def test_language_matches_script():
    for r in questions() + unanswerable():
        q = r["question"]
        if r["lang"] == "en":
            assert not CJK.search(q), f"{r['id']}: CJK characters in an English question"
            assert re.search(r"[A-Za-z]{3,}", q), r["id"]
        else:
            assert CJK.search(q), f"{r['id']}: no CJK characters in a Chinese question"
            chars = set(q)
            if r["lang"] == "zh":
                bad = chars & TRADITIONAL_ONLY
                assert not bad, f"{r['id']}: traditional characters {bad} in a zh question"
            else:
                bad = chars & SIMPLIFIED_ONLY
                assert not bad, f"{r['id']}: simplified characters {bad} in a zh-Hant question"


def test_language_and_kind_minimums():
    rows = questions()
    langs = Counter(r["lang"] for r in rows)
    kinds = Counter(r["kind"] for r in rows)
    assert len(rows) >= 75, len(rows)
    assert langs["zh"] >= 35, langs
    assert langs["en"] >= 20, langs
    assert langs["zh-Hant"] >= 5, langs
    assert kinds["paraphrase"] * 3 >= len(rows), kinds


def test_both_documents_covered_and_spread():
    rows = questions()
    per_doc = Counter(r["doc_id"] for r in rows)
    assert set(per_doc) == set(DOC_FILES), per_doc
    # the transcript is ~3x longer: it should carry the larger share
    t, d = (per_doc[k] for k in DOC_FILES)
    assert t > d >= 10, per_doc
    # spread over many paragraphs, not concentrated on a few
    for doc_id in DOC_FILES:
        lines = doc_text(doc_id).splitlines()
        used = {
            next(i for i, line in enumerate(lines) if r["evidence"] in line)
            for r in rows
            if r["doc_id"] == doc_id and r["evidence"] in doc_text(doc_id)
        }
        assert len(used) >= min(15, per_doc[doc_id]), (doc_id, len(used))


# --------------------------------------------------------------------------- unanswerable


def test_unanswerable_fields_and_counts():
    rows = unanswerable()
    assert len(rows) >= 30, len(rows)
    for r in rows:
        assert set(r) == UNANSWERABLE_FIELDS, f"{r.get('id')}: fields {sorted(r)}"
        assert re.fullmatch(r"u\d{3,}", r["id"]), r["id"]
        assert r["lang"] in LANGS, r
        assert isinstance(r["question"], str) and len(r["question"].strip()) >= 5, r
    langs = Counter(r["lang"] for r in rows)
    chinese = langs["zh"] + langs["zh-Hant"]
    assert chinese >= 10 and langs["en"] >= 10, langs
    assert langs["zh-Hant"] >= 1, langs


def test_unanswerable_not_copied_from_corpus():
    # an unanswerable question must not be a verbatim sentence of the corpus
    texts = [doc_text(d) for d in DOC_FILES]
    for r in unanswerable():
        core = r["question"].rstrip("?？")
        assert not any(core in t for t in texts), r["id"]
