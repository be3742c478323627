"""Pure text -> chunks, the way a careful reader would split a Chinese policy document.

Every chunk keeps exact character offsets into the source text: ``text[char_start:char_end]``
is the cited passage, character for character. What the reader sees as one paragraph may
span several source lines (a Markdown digest broken mid-sentence, a "发布人:" list); the
offsets then cover the whole span and ``clean_text`` drops the line breaks.

No numpy, no torch: the token counter is passed in as a function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from qa.types import Chunk, Document

CHUNKER_VERSION = "3"

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WHITESPACE = " \t\r\n\u3000\ufeff\xa0"
_TERMINAL = "。！？!?；;…"
_CLOSERS = "”’」』）)》】\"'"

REPORTER = "记者"

_HEADING = re.compile(r"^(#{1,6})\s*(.*?)\s*#*$")
_LABEL = re.compile(rf"^[{_CJK}]{{1,6}}\s*[:：]$")
_REPORTER = re.compile(r"^记者\s*[:：]?$")
_TRANSITION = re.compile(r"^(记者提问|现场提问|提问环节)[。.:：]?$")
_ROLE_WORDS = (
    "主任|局长|部长|书记|主席|市长|区长|县长|省长|秘书长|负责人|院长|厅长|处长|科长|主持人"
    "|发言人|委员|总经理|董事长|总监|校长|会长|理事长|政委|司令员|台长|社长|总编辑|专家|教授"
)
_SPEAKER_NAME_FIRST = re.compile(
    rf"^(?P<name>[{_CJK}·]{{2,4}})[ \t\u3000]+(?P<role>[^,，。！？!?；;]{{2,40}}?(?:{_ROLE_WORDS}))$"
)
_SPEAKER_ROLE_FIRST = re.compile(
    rf"^(?P<role>[^,，。！？!?；;]{{2,40}}?(?:{_ROLE_WORDS}))[ \t\u3000]+(?P<name>[{_CJK}·]{{2,4}})$"
)
# Page furniture of Chinese news sites: comment widgets, credits, bylines, photo captions.
_FURNITURE = [
    re.compile(p)
    for p in (
        r"^评论一下$",
        r"^评论\s*\d+\s*人参与",
        r"^还没有评论",
        r"^最[热新]评论$",
        r"^已有\s*\d+\s*人参与",
        r"^(查看更多|点击查看|加载更多|展开全文|收起全文)",
        r"^(分享到|扫一扫|扫码|打印本页|关闭窗口|返回顶部|上一篇|下一篇)",
        r"^[【\[](编辑|责编|责任编辑|审核|校对|来源)[:：].*[】\]]$",
        r"^[（(](作者|来源|编辑|责编|责任编辑|记者|摄影|通讯员|图|文)[:：].{0,40}[)）]$",
        r"^[（(][^()（）]{0,40}(出品|摄影|供图|来源)[^()（）]{0,40}[)）]$",
        rf"^(记者|通讯员|摄影|文/图|文|图)[{_CJK}]{{2,3}}([\s、,，]+[{_CJK}]{{2,3}})*$",
        rf"^[{_CJK}]{{0,8}}现场[。.]?$",
    )
]

# A line of this many characters or fewer, without sentence-final punctuation, reads as a
# heading in a plain-text transcript ("第一,明确了主要目标").
_MAX_PLAIN_HEADING = 30
_MAX_LIST_ITEM = 60


def approx_token_count(text: str) -> int:
    """A conservative stand-in for a subword tokenizer: one token per CJK character,
    about 1.5 per Latin word. Real tokenizers merge CJK characters, so this over-counts."""
    cjk = len(re.findall(rf"[{_CJK}]", text))
    words = len(re.findall(r"[A-Za-z0-9]+", text))
    other = len(re.findall(rf"[^\s{_CJK}A-Za-z0-9]", text))
    return cjk + (words * 3 + 1) // 2 + other


def is_terminal(line: str) -> bool:
    """True if the line ends a sentence (。！？… possibly followed by closing quotes)."""
    s = line.rstrip(WHITESPACE + _CLOSERS)
    if not s:
        return False
    if s[-1] in _TERMINAL:
        return True
    return False


@dataclass
class _Line:
    start: int
    end: int
    text: str
    kind: str = "text"  # text | heading | furniture | speaker | reporter | label | transition | title
    level: int = 0
    name: str | None = None
    role: str | None = None


@dataclass
class _Para:
    lines: list[_Line]
    joiner: str = ""
    section: tuple[str, ...] = ()
    speaker: str | None = None
    role: str | None = None
    context: str | None = None
    is_question: bool = False
    items: list[str] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.lines[0].start

    @property
    def end(self) -> int:
        return self.lines[-1].end


def _iter_lines(text: str) -> Iterator[_Line]:
    pos = 0
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        stripped = body.strip(WHITESPACE)
        if stripped:
            lead = len(body) - len(body.lstrip(WHITESPACE))
            yield _Line(pos + lead, pos + lead + len(stripped), stripped)
        pos += len(raw)


def _classify(line: _Line, markdown: bool) -> None:
    t = line.text
    m = _HEADING.match(t) if markdown else None
    if m and m.group(2):
        line.kind, line.level, line.text = "heading", len(m.group(1)), m.group(2)
        return
    if any(p.search(t) for p in _FURNITURE):
        line.kind = "furniture"
    elif _TRANSITION.match(t):
        line.kind = "transition"
    elif _REPORTER.match(t):
        line.kind, line.name = "reporter", REPORTER
    elif _LABEL.match(t):
        line.kind = "label"
    else:
        sm = _SPEAKER_NAME_FIRST.match(t) or _SPEAKER_ROLE_FIRST.match(t)
        if sm:
            line.kind = "speaker"
            line.name = sm.group("name")
            line.role = re.sub(r"\s+", " ", sm.group("role")).strip()


def _line_joint(before: str, after: str) -> str:
    """What replaces a line break inside a sentence: CJK joins directly, Latin words need
    their space back."""
    return " " if before.isascii() and before.isalnum() and after.isascii() and after.isalnum() \
        else ""


def _join_clean(lines: list[_Line], joiner: str) -> str:
    if joiner:
        return joiner.join(ln.text for ln in lines)
    out = lines[0].text
    for ln in lines[1:]:
        out += _line_joint(out[-1:], ln.text[:1]) + ln.text
    return out


_BREAK = re.compile(r"[ \t\u3000]*\n[ \t\u3000\n]*")


def rejoin_lines(text: str) -> str:
    """A source slice as a reader sees it: the line breaks of re-joined lines removed, by the
    same rule the chunker uses for a paragraph's ``clean_text``."""
    return _BREAK.sub(lambda m: _line_joint(text[m.start() - 1:m.start()],
                                            text[m.end():m.end() + 1]), text).strip(WHITESPACE)


def _paragraphs(lines: list[_Line], markdown: bool, rejoin: bool = True) -> list[_Para]:
    """Group classified lines into reader paragraphs, carrying section, speaker and context."""
    paras: list[_Para] = []
    headings: list[tuple[int, str]] = []
    speaker: str | None = None
    role: str | None = None
    question: list[str] = []
    context: str | None = None
    known_people: set[str] = set()
    i = 0
    n = len(lines)
    while i < n:
        ln = lines[i]
        if ln.kind in ("furniture", "transition", "title"):
            i += 1
            continue
        if ln.kind == "heading":
            headings = [h for h in headings if h[0] < ln.level] + [(ln.level, ln.text)]
            i += 1
            continue
        if ln.kind == "reporter":
            speaker, role, question, context = REPORTER, None, [], None
            headings = [h for h in headings if h[0] == 0 and markdown]
            i += 1
            continue
        if ln.kind == "speaker":
            if speaker == REPORTER and question:
                context = "".join(question)
            else:
                context = None
            speaker, role, question = ln.name, ln.role, []
            if ln.name:
                known_people.add(ln.name)
            if not markdown:
                headings = []
            i += 1
            continue
        if ln.kind == "label":
            # "发布人:" followed by short items: one paragraph, the list of who and when.
            j = i + 1
            items: list[_Line] = []
            while j < n:
                nxt = lines[j]
                if nxt.kind in ("label", "heading", "reporter", "transition"):
                    break
                if nxt.kind == "speaker" and nxt.name in known_people:
                    break
                if nxt.kind == "text" and (len(nxt.text) > _MAX_LIST_ITEM or is_terminal(nxt.text)):
                    break
                if nxt.kind == "furniture":
                    break
                items.append(nxt)
                if nxt.kind == "speaker" and nxt.name:
                    known_people.add(nxt.name)
                j += 1
            if items:
                label = _Para([ln, *items], joiner="", section=_section(headings))
                label.items = [it.text for it in items]
                paras.append(label)
                i = j
                continue
            ln.kind = "text"
        # Plain text line.
        if not markdown and _reads_as_heading(lines, i):
            headings = [(1, ln.text)]
            i += 1
            continue
        group = [ln]
        if markdown and rejoin:
            while not is_terminal(group[-1].text) and i + 1 < n and lines[i + 1].kind == "text":
                i += 1
                group.append(lines[i])
        para = _Para(
            group,
            section=_section(headings),
            speaker=speaker,
            role=role,
            context=context,
            is_question=speaker == REPORTER,
        )
        if para.is_question:
            question.append(_join_clean(group, ""))
        paras.append(para)
        i += 1
    return paras


def _section(headings: list[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(h for _, h in headings)


def _reads_as_heading(lines: list[_Line], i: int) -> bool:
    ln = lines[i]
    if len(ln.text) > _MAX_PLAIN_HEADING or is_terminal(ln.text):
        return False
    if ln.text.rstrip(_CLOSERS)[-1:] in ":：,，、":
        return False
    nxt = lines[i + 1] if i + 1 < len(lines) else None
    return nxt is not None and nxt.kind == "text"


_SENTENCE_END = re.compile(rf"[{re.escape(_TERMINAL)}][{re.escape(_CLOSERS)}]*")


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cur = start
    for m in _SENTENCE_END.finditer(text, start, end):
        spans.append((cur, m.end()))
        cur = m.end()
    if cur < end:
        spans.append((cur, end))
    return [(a, b) for a, b in spans if text[a:b].strip(WHITESPACE)]


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Sentence spans of ``text`` (ends at 。！？；… plus closing quotes), whitespace trimmed,
    as (start, end) shifted by ``offset`` (a chunk's ``char_start`` gives source offsets).
    Line breaks do not end a sentence: lines broken mid-sentence are one sentence."""
    return [(offset + a, offset + b)
            for a, b in (_strip_span(text, a, b) for a, b in _sentence_spans(text, 0, len(text)))]


def _windows(text: str, start: int, end: int, max_tokens: int,
             count: Callable[[str], int], overlap: int) -> list[tuple[int, int]]:
    """Split [start, end) at sentence ends into windows of at most max_tokens, each window
    repeating the last ``overlap`` sentences of the one before."""
    if count(text[start:end]) <= max_tokens:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    for a, b in _sentence_spans(text, start, end):
        if count(text[a:b]) <= max_tokens:
            pieces.append((a, b))
            continue
        # One sentence longer than the window: cut it by characters.
        step = max(1, max_tokens)
        while a < b:
            cut = min(b, a + step)
            while cut > a + 1 and count(text[a:cut]) > max_tokens:
                cut = a + max(1, (cut - a) * 3 // 4)
            pieces.append((a, cut))
            a = cut
    windows: list[tuple[int, int]] = []
    i = 0
    while i < len(pieces):
        j = i
        while j + 1 < len(pieces) and count(text[pieces[i][0]:pieces[j + 1][1]]) <= max_tokens:
            j += 1
        windows.append((pieces[i][0], pieces[j][1]))
        if j + 1 >= len(pieces):
            break
        i = max(j + 1 - overlap, i + 1)
    return windows


def _strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a] in WHITESPACE:
        a += 1
    while b > a and text[b - 1] in WHITESPACE:
        b -= 1
    return a, b


def is_markdown(text: str, path: str = "") -> bool:
    """Markdown if the file says so by name, or has at least one ``#`` heading line."""
    if path.lower().endswith((".md", ".markdown")):
        return True
    return any(_HEADING.match(ln.strip()) for ln in text.splitlines() if ln.startswith("#"))


def chunk(doc: Document, *, max_tokens: int = 400,
          count_tokens: Callable[[str], int] | None = None) -> list[Chunk]:
    """A document's chunks, laid out the way its reader said, each with its page."""
    chunks = chunk_document(doc.doc_id, doc.text, markdown=doc.markdown, max_tokens=max_tokens,
                            count_tokens=count_tokens, rejoin_lines=doc.rejoin_lines)
    if not doc.pages:
        return chunks
    return [replace(c, page=doc.page_at(c.char_start)) for c in chunks]


def chunk_document(
    doc_id: str,
    text: str,
    *,
    markdown: bool | None = None,
    max_tokens: int = 400,
    count_tokens: Callable[[str], int] | None = None,
    overlap_sentences: int = 1,
    rejoin_lines: bool = True,
) -> list[Chunk]:
    """Chunk one document into paragraphs (numbered from 1), splitting long ones into
    overlapping sentence windows that keep their paragraph number. ``rejoin_lines=False``
    when every line already is one paragraph (a reader laid the text out: Word, web pages,
    PDF), so that a line without a full stop (a list item, a table row) stays on its own."""
    count = count_tokens or approx_token_count
    md = is_markdown(text) if markdown is None else markdown
    lines = list(_iter_lines(text))
    for ln in lines:
        _classify(ln, md)
    if not md and lines and lines[0].kind == "text" and not is_terminal(lines[0].text) \
            and len(lines[0].text) <= 80:
        lines[0].kind = "title"  # the page's headline: the document title, not an answer
    chunks: list[Chunk] = []
    for number, para in enumerate(_paragraphs(lines, md, rejoin_lines), start=1):
        spans = _windows(text, para.start, para.end, max_tokens, count, overlap_sentences)
        for w, (a, b) in enumerate(spans):
            a, b = _strip_span(text, a, b)
            inside = [ln for ln in para.lines if ln.end > a and ln.start < b]
            if para.items:
                clean = f"{para.lines[0].text} " + "；".join(para.items)
            else:
                clean = _join_clean(
                    [_Line(max(ln.start, a), min(ln.end, b),
                           text[max(ln.start, a):min(ln.end, b)].strip(WHITESPACE)) for ln in inside],
                    para.joiner,
                )
            chunks.append(
                Chunk(
                    chunk_id=f"{doc_id}#p{number}" + (f"w{w + 1}" if len(spans) > 1 else ""),
                    doc_id=doc_id,
                    paragraph=number,
                    window=w,
                    char_start=a,
                    char_end=b,
                    text=text[a:b],
                    clean_text=clean,
                    section=para.section,
                    speaker=para.speaker,
                    speaker_role=para.role,
                    context=para.context,
                )
            )
    return chunks
