"""``qa ask``: a question, answered from the local index or by a running service."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import typer

from qa.cli.app import IndexOpt, JsonOpt, ModelOpt, app, settings_from
from qa.errors import QAError, UpstreamError
from qa.retrieve.query import MAX_TOP_K, validate

Mode = Literal["auto", "hybrid", "dense", "lexical"]
ModeOpt = Annotated[Mode, typer.Option(
    metavar="MODE", help="auto: meaning and keywords, weighed per question (best); dense: meaning only; "
         "lexical: keywords only (BM25); hybrid: plain rank fusion of both.")]


@app.command()
def ask(question: Annotated[str, typer.Argument(metavar="QUESTION",
                                                help="The question, Chinese or English.")],
        top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=MAX_TOP_K, metavar="N",
                                           help="How many passages to show.")] = 5,
        mode: ModeOpt = "auto",
        answer: Annotated[bool, typer.Option(
            "--answer", help="Quote the sentences that answer, with [n] markers and "
                             "citations, before the passages.")] = False,
        as_json: JsonOpt = False,
        doc_id: Annotated[list[str] | None, typer.Option(
            "--doc", metavar="DOC_ID", help="Only search this document (repeatable).")] = None,
        server: Annotated[str | None, typer.Option(
            envvar="QA_SERVER", metavar="URL",
            help="Ask a running service (e.g. http://127.0.0.1:8000) instead of loading the "
                 "model and index here: milliseconds instead of a model load.")] = None,
        index: IndexOpt = None, model: ModelOpt = None) -> None:
    """Ask a question and print ranked, cited passages.

    Example: qa ask "What is the R&D spending target for 2025?" --top-k 3 --answer
    """
    question = validate(question, top_k, mode)  # before anything heavy is loaded
    if server:
        payload = _remote(server, question, top_k, mode, doc_id, answer)
    else:
        payload = _local(settings_from(index_dir=index, model=model), question, top_k, mode,
                         doc_id, answer)
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        _print(payload)


def _local(settings: Any, question: str, top_k: int, mode: str, doc_ids: list[str] | None,
           with_answer: bool) -> dict[str, Any]:
    from qa.index.load import open_index
    from qa.retrieve.search import Searcher
    from qa.service.schemas import SearchResponse
    from qa.service.wiring import make_embedder, make_vector_store

    embedder = make_embedder(settings)
    searcher = Searcher(open_index(settings.index_dir, embedder, make_vector_store(settings)),
                        embedder)
    try:
        if with_answer and mode == "auto" and not doc_ids:
            from qa.api.answer_schemas import AnswerResponse
            from qa.retrieve.answer import answer

            return AnswerResponse.of(answer(searcher, question, top_k)).model_dump()
        result = searcher.search(question, top_k, mode, doc_ids)
        return SearchResponse.of(result).model_dump()
    finally:
        searcher.index.close()


def _remote(server: str, question: str, top_k: int, mode: str, doc_ids: list[str] | None,
            with_answer: bool) -> dict[str, Any]:
    import httpx

    base = server.rstrip("/")
    if with_answer and mode == "auto" and not doc_ids:
        url, body = f"{base}/answer", {"question": question, "top_k": top_k}
    else:
        url = f"{base}/search"
        body = {"query": question, "top_k": top_k, "mode": mode}
        if doc_ids:
            body["doc_ids"] = doc_ids
    try:
        resp = httpx.post(url, json=body, timeout=60.0)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach the service at {base}: {exc}") from None
    try:
        data = resp.json()
    except ValueError:
        raise UpstreamError(f"{url} answered {resp.status_code} without JSON") from None
    if resp.status_code >= 400:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        raise QAError(f"the service answered {resp.status_code}: "
                      f"{err.get('message', resp.text[:200])}")
    return data


def _print(payload: dict[str, Any]) -> None:
    passages = payload.get("passages", payload.get("results", []))
    note = "" if payload.get("answerable") else " · the corpus probably does not cover this"
    typer.echo(f"{len(passages)} passages · confidence {payload.get('confidence', 0):.2f}"
               + note)
    if "answer" in payload:
        typer.secho("\n" + payload["answer"], bold=True)
    for p in passages:
        typer.secho(f"\n[{p['rank']}] {p['citation']}  (score {p['score']:.3f})", bold=True)
        if p.get("section"):
            typer.echo("    " + " > ".join(p["section"]))
        typer.echo(f"    chars {p['char_start']}-{p['char_end']} of {p['doc_id']}")
        typer.echo("    " + p.get("display_text", p["text"]))
