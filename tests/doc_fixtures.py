"""Documents of every format qa reads, written the way their tools write them, with the
facts tests ask about. Built in the tests (python-docx, Pillow, plain bytes) except the text
PDF and the legacy .doc, which LibreOffice makes: those are shipped in tests/data/readers/
and rebuilt by ``python scripts/make_reader_fixtures.py``.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "readers"
FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
SC, TC = 2, 3  # faces of the collection: Simplified and Traditional Chinese glyphs

# --- Word (.docx): headings, a table, list items; header and footer are furniture.
DOCX_TITLE = "关于推进城市更新工作的通知"
DOCX_BODY = [
    ("h1", "一、总体要求"),
    ("p", "坚持以人民为中心的发展思想，统筹城市规划建设管理，推动城市结构调整优化和品质提升。"),
    ("p", "到2025年，全市完成老旧小区改造800个，惠及居民30万户。"),
    ("h1", "二、重点任务"),
    ("h2", "（一）老旧小区改造"),
    ("p", "按照先民生后提升的原则，优先实施水电气路等基础设施改造，同步推进加装电梯。"),
    ("li", "加装电梯不少于1000部"),
    ("li", "新增停车位2万个"),
    ("table", [["项目", "目标", "完成时限"], ["加装电梯", "1000部", "2025年底"],
               ["改造管网", "500公里", "2024年底"]]),
    ("h2", "（二）历史街区保护"),
    ("p", "对汉口历史风貌区实施微改造，保留街巷肌理，严禁大拆大建。"),
]
DOCX_HEADER = "某某市人民政府办公厅"
DOCX_FOOTER = "内部资料 注意保存"


def make_docx(path: Path, title: str = DOCX_TITLE, body=DOCX_BODY) -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = ""
    d.sections[0].header.paragraphs[0].text = DOCX_HEADER
    d.sections[0].footer.paragraphs[0].text = DOCX_FOOTER
    d.add_heading(title, 0)
    for kind, value in body:
        if kind == "h1":
            d.add_heading(value, 1)
        elif kind == "h2":
            d.add_heading(value, 2)
        elif kind == "li":
            d.add_paragraph(value, style="List Bullet")
        elif kind == "table":
            table = d.add_table(rows=len(value), cols=len(value[0]))
            for r, row in enumerate(value):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        else:
            d.add_paragraph(value)
    d.save(path)
    return path


# --- Web page: article in navigation, a comment widget, footer and scripts.
HTML_TITLE = "关于优化营商环境的若干措施"
HTML_DATE = "2023-05-12"
HTML_PARAS = [
    "企业开办时间压缩至1个工作日以内，全面推行电子营业执照。",
    "工程建设项目审批时间控制在60个工作日以内，推行多图联审。",
    "设立100亿元纾困基金，为中小微企业提供低息贷款。",
]
HTML_NAV = ["首页", "政务公开", "互动交流", "办事服务"]
HTML_COMMENT = "网友小王：希望尽快落实，支持！"
HTML_FOOTER = "版权所有：某某市人民政府办公厅 备案号12345"


def html_page(title: str = HTML_TITLE, paras: list[str] = HTML_PARAS) -> str:
    nav = "".join(f'<li><a href="/{i}">{n}</a></li>' for i, n in enumerate(HTML_NAV))
    body = "".join(f"<p>{p}</p>" for p in paras)
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{title}_某某市人民政府门户网站</title>
<meta property="og:title" content="{title}">
<meta property="article:published_time" content="{HTML_DATE}">
<script>var tracker = "不应出现的脚本文字";</script><style>.x {{ color: red; }}</style>
</head><body>
<nav><ul>{nav}</ul></nav>
<div class="breadcrumb">当前位置：首页 &gt; 政务公开 &gt; 政策文件</div>
<article><h1>{title}</h1>
<h2>一、提升政务服务效率</h2>{body}
<h2>二、加强要素保障</h2><p>新增工业用地5000亩，优先保障先进制造业项目落地。</p>
</article>
<div id="comments" class="comments"><h3>网友评论</h3><div class="comment">{HTML_COMMENT}</div>
<a href="#">评论一下</a></div>
<footer><p>{HTML_FOOTER}</p></footer>
</body></html>"""


# --- Plain texts in the encodings Chinese documents come in.
GB_TEXT = ("关于加快发展养老服务业的实施意见\n"
           "到2025年，全市养老床位总数达到8万张，护理型床位占比不低于55%。\n"
           "每个街道至少建成1个综合养老服务中心，社区养老服务设施覆盖率达到100%。\n")
BIG5_TEXT = ("關於實施人才引進計劃的通知\n"
             "對新引進的博士研究生，給予每人15萬元生活補貼。\n"
             "對頂尖人才團隊，給予最高1億元綜合資助。\n")
UTF16_TEXT = ("数字经济发展三年行动计划\n"
              "到2025年，数字经济核心产业增加值占地区生产总值比重达到12%。\n"
              "建成5G基站3万个，实现城区和重点乡镇全覆盖。\n")
BOM_MD = ("# 科技创新行动方案\n\n## 主要目标\n\n"
          "到2025年，全社会研发经费投入强度达到3.5%，高新技术企业突破1.5万家。\n\n"
          "## 重点任务\n\n建设光谷科创大走廊，布局重大科技基础设施5个。\n")


# --- Scanned pages: text rendered to images (no text layer), as a scanner would.
SCAN_HEADER = "某某市城市管理局文件"
SCAN_TITLE = "关于推行生活垃圾分类的通知"
# (page, paragraph): the second paragraph runs from page 1 onto page 2.
SCAN_PARAS = [
    "全市居民小区要设置可回收物、有害垃圾、厨余垃圾和其他垃圾四类收集容器，实行定时定点投放。",
    "到2025年底，全市生活垃圾回收利用率达到百分之三十五以上，厨余垃圾处理能力达到每日三千吨，"
    "各区要建立分类投放、分类收集、分类运输和分类处理的全流程体系，并纳入年度考核。",
    "对拒不分类投放的单位，由城市管理部门责令改正，并处以罚款。",
]
SCAN_LINES_PER_PAGE = 4
PNG_PARAS = [
    "汛期为每年五月一日至九月三十日，各单位实行二十四小时值班制度。",
    "长江武汉关水位超过二十七米时，启动防汛四级应急响应。",
]


def _wrap(font, text: str, width: float) -> list[str]:
    lines, cur = [], ""
    for ch in text:
        if cur and font.getlength(cur + ch) > width:
            lines.append(cur)
            cur = ""
        cur += ch
    return lines + [cur] if cur else lines


def _draw_line(draw, font, x: float, y: float, text: str, width: float | None) -> None:
    """Draw one line, justified to ``width`` like a typeset page (None: ragged, the last line
    of a paragraph)."""
    extra = 0.0
    if width is not None and len(text) > 1:
        extra = (width - font.getlength(text)) / (len(text) - 1)
    for ch in text:
        draw.text((x, y), ch, font=font, fill=0)
        x += font.getlength(ch) + extra


def scan_pages(paras: list[str], title: str | None, header: str | None, face: int = SC,
               size: tuple[int, int] = (1240, 1000), lines_per_page: int = 8,
               numbers: bool = True):
    """Page images of ``paras`` with a first-line indent of two characters, a running header
    and a page number, ``lines_per_page`` body lines a page."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 32, index=face)
    big = ImageFont.truetype(FONT, 44, index=face)
    small = ImageFont.truetype(FONT, 24, index=face)
    margin, width = 110, size[0] - 220
    body: list[tuple[str, float, float | None]] = []  # (text, indent, justify width)
    for para in paras:
        lines = _wrap(font, "\u3000\u3000" + para, width)
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            body.append((line, 0.0, None if last else width))
    pages = []
    chunks = [body[i:i + lines_per_page] for i in range(0, len(body), lines_per_page)]
    for number, chunk in enumerate(chunks, start=1):
        img = Image.new("L", size, 255)
        draw = ImageDraw.Draw(img)
        y = 50
        if header:
            draw.text(((size[0] - small.getlength(header)) / 2, y), header, font=small, fill=0)
            y += 70
        if title and number == 1:
            draw.text(((size[0] - big.getlength(title)) / 2, y), title, font=big, fill=0)
            y += 100
        for text, _, justify in chunk:
            _draw_line(draw, font, margin, y, text, justify)
            y += 52
        if numbers:
            mark = f"- {number} -"
            draw.text(((size[0] - small.getlength(mark)) / 2, size[1] - 70), mark, font=small,
                      fill=0)
        pages.append(img)
    return pages


def make_scanned_pdf(path: Path) -> Path:
    pages = scan_pages(SCAN_PARAS, SCAN_TITLE, SCAN_HEADER, lines_per_page=SCAN_LINES_PER_PAGE)
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=150)
    return path


def make_png(path: Path) -> Path:
    scan_pages(PNG_PARAS, "防汛工作安排", None, numbers=False, size=(1240, 600))[0].save(path)
    return path


# --- The text PDF and the legacy .doc: LibreOffice output, shipped.
PDF_FILE = DATA / "transport.pdf"
DOC_FILE = DATA / "rural.doc"
ENCRYPTED_FILE = DATA / "encrypted.pdf"  # password "secret"
PDF_TITLE = "公共交通发展规划"
PDF_HEADER = "某某市交通运输局"
PDF_PARAS = [
    ("h1", "一、发展目标"),
    ("p", "到2030年，中心城区公共交通占机动化出行比例达到百分之六十，轨道交通运营里程达到"
          "六百公里，形成以轨道交通为骨干、常规公交为主体的公共交通体系。"),
    ("p", "新建和改造公交专用道三百公里，高峰时段公交平均运营速度提高到每小时二十公里。"),
    ("h1", "二、主要任务"),
] + [("p", f"第{n}项任务：" + "优化线网布局，推进轨道交通与常规公交两网融合，加密社区微循环"
                                 "线路，提升换乘便捷程度，完善首末站和枢纽站配套设施。" * 3
          + f"本项任务的督办编号为交通{i:02d}号。")
     for i, n in enumerate("一二三四五六七八九十", start=1)] + [
    ("p", "推广新能源公交车，到2030年新能源公交车占比达到百分之百，建成充电桩两千个。"),
    ("p", "票价实行一小时内免费换乘，老年人和残疾人免费乘车。"),
]
DOC_TITLE = "乡村振兴工作要点"
DOC_PARAS = [
    ("h1", "一、粮食生产"),
    ("p", "全年粮食播种面积稳定在一百五十万亩以上，产量保持在六十万吨。"),
    ("h1", "二、农村人居环境"),
    ("p", "完成农村户厕改造两万户，行政村生活污水治理率达到百分之七十。"),
]


def make_office_source(path: Path, title: str, paras, header: str | None = None) -> Path:
    """The .docx LibreOffice turns into the shipped PDF / .doc: Chinese official-document
    layout (first-line indent of two characters), a running header and a page number."""
    import docx
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    d = docx.Document()
    section = d.sections[0]
    if header:
        section.header.paragraphs[0].text = header
        footer = section.footer.paragraphs[0]
        footer.add_run("- ")
        field = OxmlElement("w:fldSimple")
        field.set(qn("w:instr"), "PAGE")
        run = OxmlElement("w:r")
        t = OxmlElement("w:t")
        t.text = "1"
        run.append(t)
        field.append(run)
        footer._p.append(field)
        footer.add_run(" -")
    d.add_heading(title, 0)
    for kind, text in paras:
        if kind == "h1":
            d.add_heading(text, 1)
        else:
            p = d.add_paragraph(text)
            p.paragraph_format.first_line_indent = Pt(24)
            p.paragraph_format.space_after = Pt(0)
    d.save(path)
    return path
