"""HTTP schemas: the public contract, separate from the domain records in ``qa.types``.

Field names here are relied on by clients and by an independent evaluation: extend them,
never rename or drop one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from qa.errors import InvalidRequest
from qa.retrieve.query import MAX_QUERY_CHARS, MAX_TOP_K, NON_BLANK, check_text
from qa.retrieve.search import SearchResult
from qa.types import Hit

Mode = Literal["auto", "hybrid", "dense", "lexical"]
Status = Literal["queued", "indexing", "ready", "failed"]


def _unicode(value: str) -> str:
    try:
        return check_text(value, "the text")
    except InvalidRequest as exc:
        raise ValueError(exc.message) from None


# Text that can be encoded as UTF-8: JSON may carry a lone surrogate ("\ud800").
Text = Annotated[str, AfterValidator(_unicode)]
# A question: not blank (the schema says so: minLength 1 and a non-space character).
Question = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NON_BLANK),
                     AfterValidator(_unicode)]


class SearchRequest(BaseModel):
    # strict: what the schema says is a boolean or an integer must be one ("generate": 0
    # and "top_k": "5" were accepted, against the published schema).
    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [
            {"query": "武汉城市圈同城化发展有哪些举措?", "top_k": 5, "mode": "auto"},
            {"query": "How many academicians does Wuhan have?", "top_k": 3},
        ]},
    )

    query: Question = Field(description="The question, in Chinese (simplified or traditional) "
                                        "or English.")
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="How many passages to return.")
    mode: Mode = Field("auto", description="auto (query-aware fusion, default), hybrid (RRF), "
                                           "dense, or lexical (BM25).")
    doc_ids: list[Text] | None = Field(None, description="Only search these documents.")


class Passage(BaseModel):
    rank: int
    score: float
    doc_id: str
    title: str
    paragraph: int = Field(description="1-based paragraph number within the document.")
    char_start: int = Field(description="Offset of the passage in the document's text as read "
                                        "(GET /documents/{doc_id}/text).")
    char_end: int = Field(description="text == document_text[char_start:char_end].")
    section: list[str] = Field(description="Heading breadcrumb above the passage.")
    speaker: str | None
    text: str = Field(description="The passage exactly as in the document's text.")
    citation: str
    # Extensions beyond the original contract.
    chunk_id: str
    window: int = Field(description="0 unless a long paragraph was split into windows.")
    speaker_role: str | None = None
    date: str | None = None
    context: str | None = Field(None, description="The reporter question this passage answers.")
    display_text: str = Field(description="The passage with broken source lines re-joined.")
    scores: dict[str, float] = Field(default_factory=dict, description="Per-leg raw scores.")
    page: int | None = Field(None, description="1-based page where the passage starts, for "
                                               "sources with pages (PDF, multi-page TIFF).")

    @classmethod
    def of(cls, hit: Hit) -> Passage:
        c = hit.chunk
        return cls(rank=hit.rank, score=round(hit.score, 6), doc_id=c.doc_id, title=hit.title,
                   paragraph=c.paragraph, char_start=c.char_start, char_end=c.char_end,
                   section=list(c.section), speaker=c.speaker, text=c.text,
                   citation=hit.citation, chunk_id=c.chunk_id, window=c.window,
                   speaker_role=c.speaker_role, date=hit.date, context=c.context,
                   display_text=c.clean_text,
                   scores={k: round(v, 6) for k, v in hit.scores.items()}, page=c.page)


class SearchResponse(BaseModel):
    query: str
    mode: str
    took_ms: float
    results: list[Passage]
    answerable: bool = Field(description="False when the corpus most likely does not cover "
                                         "the question: say so instead of citing noise.")
    confidence: float = Field(ge=0, le=1, description="Calibrated probability that the top "
                                                      "result answers the question.")

    @classmethod
    def of(cls, res: SearchResult) -> SearchResponse:
        return cls(query=res.query, mode=res.mode, took_ms=round(res.took_ms, 2),
                   results=[Passage.of(h) for h in res.hits], answerable=res.answerable,
                   confidence=round(res.confidence, 4))


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    date: str | None
    source: str | None
    type: str | None
    language: str
    path: str = Field(description="File name inside the corpus folder.")
    sha256: str
    paragraph_count: int
    chunk_count: int
    media_type: str = Field("text/plain", description="The original file's media type "
                                                      "(GET /documents/{doc_id}/file).")
    page_count: int | None = Field(None, description="Pages, for sources that have them.")
    # Extensions: where the document stands (uploads are indexed in the background).
    status: Status = Field(default="ready", description="queued (waiting for the next index build), "
                                                "indexing, ready (searchable) or failed.")
    reason: str | None = Field(default=None,
                               description="Why it failed, when status is failed.")


class Paragraph(BaseModel):
    paragraph: int
    char_start: int
    char_end: int
    text: str
    display_text: str
    section: list[str]
    speaker: str | None
    speaker_role: str | None
    context: str | None
    page: int | None = None


class DocumentDetail(DocumentSummary):
    paragraphs: list[Paragraph] = Field(description="The indexed paragraphs, in order.")


class DocumentList(BaseModel):
    documents: list[DocumentSummary]


class WriteAccepted(BaseModel):
    doc_id: str = Field(description="The document's id, made from its file name.")
    status: Status = Field(description="queued: the change is stored and will be indexed in "
                                       "the background; poll GET /documents/{doc_id}.")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
