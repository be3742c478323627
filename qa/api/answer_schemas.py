"""HTTP schemas of POST /answer. Like ``qa.service.schemas``: a public contract, extend it,
never rename a field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from qa.retrieve.answer import MAX_SENTENCES, Answer, Sentence
from qa.retrieve.query import MAX_TOP_K
from qa.service.schemas import Mode, Passage, Question


class AnswerRequest(BaseModel):
    # strict: what the schema says is a boolean or an integer must be one ("generate": 0
    # and "top_k": "5" were accepted, against the published schema).
    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [
            {"question": "武汉有多少名院士?", "top_k": 5, "max_sentences": 3},
            {"question": "What is Wuhan's target for R&D spending?", "max_sentences": 2},
            {"question": "市委全会的主要成果是什么?", "stream": True},
            {"question": "How will Wuhan develop the city circle?", "generate": True},
        ]},
    )

    question: Question = Field(description="The question, in Chinese (simplified or "
                                           "traditional) or English.")
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Passages to retrieve and quote "
                                                          "from.")
    max_sentences: int = Field(3, ge=1, le=MAX_SENTENCES, description="Most sentences to "
                                                                      "quote.")
    mode: Mode = Field("auto", description="How passages are retrieved, as in POST /search: "
                                           "auto, hybrid, dense or lexical.")
    stream: bool = Field(False, description="Answer as text/event-stream: a `passages` event, "
                                            "then `answer` (and with generate, `token`) "
                                            "events, then `done` with the full JSON.")
    generate: bool = Field(False, description="Also write an answer with the configured LLM "
                                              "(QA_LLM_BASE_URL, QA_LLM_MODEL); without one, "
                                              "a warning says so.")


class AnswerSentence(BaseModel):
    text: str = Field(description="The sentence exactly as in the document's text.")
    passage: int = Field(description="n of its [n] marker: the rank of its passage in "
                                     "`passages`.")
    doc_id: str
    char_start: int = Field(description="Offset of the sentence in the document's text "
                                        "(GET /documents/{doc_id}/text).")
    char_end: int = Field(description="source_text[char_start:char_end] == text.")
    score: float = Field(description="Similarity of the sentence to the question.")
    paragraph: int = Field(description="1-based paragraph number within the document.")
    display_text: str = Field(description="The sentence with broken source lines re-joined.")

    @classmethod
    def of(cls, s: Sentence) -> AnswerSentence:
        return cls(text=s.text, passage=s.passage, doc_id=s.doc_id, char_start=s.char_start,
                   char_end=s.char_end, score=round(s.score, 6), paragraph=s.paragraph,
                   display_text=s.display_text)


class AnswerResponse(BaseModel):
    question: str
    answer: str = Field(description="The quoted sentences, each followed by its [n] marker; "
                                    "or a statement that the corpus does not cover the "
                                    "question.")
    sentences: list[AnswerSentence]
    passages: list[Passage] = Field(description="The retrieved passages; [n] is passages[n-1].")
    answerable: bool
    confidence: float = Field(ge=0, le=1)
    took_ms: float
    language: str = Field(description="'en' or 'zh': the language of the question.")
    generated: str | None = Field(default=None, description="The LLM's answer with [n] markers, after "
                                                    "citation enforcement; null unless "
                                                    "generate was asked for and succeeded.")
    unsupported_sentences: list[str] = Field(
        default_factory=list, description="Sentences of `generated` that cite no passage.")
    removed_markers: list[str] = Field(
        default_factory=list, description="Markers of the LLM that pointed at no passage.")
    warnings: list[str] = Field(default_factory=list, description="Why `generated` is missing, "
                                                                  "when it is.")

    @classmethod
    def of(cls, ans: Answer) -> AnswerResponse:
        return cls(question=ans.question, answer=ans.text,
                   sentences=[AnswerSentence.of(s) for s in ans.sentences],
                   passages=[Passage.of(h) for h in ans.result.hits],
                   answerable=ans.answerable, confidence=round(ans.confidence, 4),
                   took_ms=round(ans.took_ms, 2), language=ans.language)
