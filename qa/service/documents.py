"""Documents as both serving edges show them: summaries, paragraphs (the union of a long
paragraph's windows) and a paragraph in its context. HTTP and MCP call these; neither
imports the other."""

from __future__ import annotations

from pydantic import BaseModel, Field

from qa.errors import NotFound, UnknownDocument
from qa.retrieve.query import check_text
from qa.retrieve.search import Searcher
from qa.service.schemas import DocumentDetail, DocumentList, DocumentSummary, Paragraph
from qa.types import Chunk, format_citation


def paragraphs_of(chunks: list[Chunk]) -> list[Paragraph]:
    out: dict[int, Paragraph] = {}
    for c in chunks:
        p = out.get(c.paragraph)
        if p is None:
            out[c.paragraph] = Paragraph(
                paragraph=c.paragraph, char_start=c.char_start, char_end=c.char_end,
                text=c.text, display_text=c.clean_text, section=list(c.section),
                speaker=c.speaker, speaker_role=c.speaker_role, context=c.context, page=c.page)
        elif c.char_end > p.char_end:
            # Windows of one long paragraph overlap; the paragraph is their union.
            p.text = p.text + c.text[p.char_end - c.char_start:]
            p.display_text = p.text.replace("\n", "")
            p.char_end = c.char_end
    return [out[k] for k in sorted(out)]


def document_summary(searcher: Searcher, doc_id: str, chunks: list[Chunk]) -> DocumentSummary:
    d = searcher.index.store.documents[doc_id]
    return DocumentSummary(doc_id=d.doc_id, title=d.title, date=d.date, source=d.source,
                           type=d.doc_type, language=d.language, path=d.path, sha256=d.sha256,
                           paragraph_count=len({c.paragraph for c in chunks}),
                           chunk_count=len(chunks), media_type=d.media_type,
                           page_count=len(d.pages) or None)


def list_document_summaries(searcher: Searcher) -> DocumentList:
    store = searcher.index.store
    return DocumentList(documents=[document_summary(searcher, d, store.chunks_of(d))
                                   for d in sorted(store.documents)])


def document_detail(searcher: Searcher, doc_id: str) -> DocumentDetail:
    store = searcher.index.store
    check_text(doc_id, "doc_id")
    if doc_id not in store.documents:
        raise UnknownDocument(f"unknown doc_id {doc_id!r}; GET /documents lists them")
    chunks = store.chunks_of(doc_id)
    summary = document_summary(searcher, doc_id, chunks)
    return DocumentDetail(**summary.model_dump(), paragraphs=paragraphs_of(chunks))


class CitedParagraph(Paragraph):
    doc_id: str
    title: str
    date: str | None
    citation: str = Field(description="《title》第n段 · speaker · date (第p页 before 第n段 "
                                      "for sources with pages)")


class PassageInContext(BaseModel):
    doc_id: str
    title: str
    paragraph_count: int
    passage: CitedParagraph = Field(description="The paragraph asked for.")
    previous: CitedParagraph | None = Field(description="The paragraph before it, if any.")
    next: CitedParagraph | None = Field(description="The paragraph after it, if any.")


def passage_in_context(searcher: Searcher, doc_id: str, paragraph: int) -> PassageInContext:
    store = searcher.index.store
    check_text(doc_id, "doc_id")
    doc = store.documents.get(doc_id)
    if doc is None:
        raise UnknownDocument(f"unknown doc_id {doc_id!r}; list_documents names them")
    paras = paragraphs_of(store.chunks_of(doc_id))
    at = next((i for i, p in enumerate(paras) if p.paragraph == paragraph), None)
    if at is None:
        last = paras[-1].paragraph if paras else 0
        raise NotFound(f"{doc_id!r} has no paragraph {paragraph}; its paragraphs are "
                       f"numbered 1 to {last}")

    def cited(i: int) -> CitedParagraph:
        p = paras[i]
        return CitedParagraph(
            **p.model_dump(), doc_id=doc_id, title=doc.title, date=doc.date,
            citation=format_citation(doc.title, p.paragraph, p.speaker, p.speaker_role,
                                     doc.date, p.page))

    return PassageInContext(doc_id=doc_id, title=doc.title, paragraph_count=len(paras),
                            passage=cited(at), previous=cited(at - 1) if at > 0 else None,
                            next=cited(at + 1) if at + 1 < len(paras) else None)
