"""Late chunking (QA_SENTENCE_VECTORS=late): sentence vectors pooled from the paragraph's
own forward pass, beside the default separate pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa.config import Settings
from qa.encoders.base import HashingEmbedder, embed_spans, spans_separately
from qa.encoders.batching import MicroBatchingEmbedder
from qa.encoders.ensemble import WithSecond
from qa.encoders.late import pool_spans, token_ranges
from qa.errors import InvalidRequest
from qa.index.build import DEFAULT_SENTENCE_VECTORS, build_index
from qa.index.manifest import current_generation
from qa.ingest.chunking import split_sentences

PROMPT = "passage: "


def test_token_ranges_skip_special_tokens_and_the_prompt():
    # "<s> ▁passage : ▁ 武汉 市 。 ▁ 他说 好 。 </s>" over "passage: 武汉市。 他说好。"
    offsets = [(0, 0), (0, 7), (7, 8), (8, 9), (9, 11), (11, 12), (12, 13), (13, 14),
               (14, 16), (16, 17), (17, 18), (0, 0)]
    text = "武汉市。 他说好。"
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["武汉市。", "他说好。"]
    ranges = token_ranges(offsets, spans, shift=len(PROMPT))
    # The first sentence starts after the prompt's tokens; the lone "▁" between the two
    # sentences covers only the space, which belongs to neither.
    assert ranges.tolist() == [[4, 7], [8, 11]]


def test_a_token_straddling_two_sentences_counts_for_both():
    offsets = [(0, 0), (0, 2), (2, 4), (4, 6), (0, 0)]  # "ab" "c。d" (2,4) "ef"
    ranges = token_ranges(offsets, [(0, 3), (3, 6)])
    assert ranges.tolist() == [[1, 3], [2, 4]]


def test_pool_spans_is_the_normalised_mean_of_the_span_tokens():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(6, 8)).astype(np.float32)
    offsets = [(0, 0), (0, 2), (2, 3), (3, 5), (5, 6), (0, 0)]
    got = pool_spans(states, offsets, [(0, 3), (3, 6)], 0, fallback=np.zeros(8, np.float32))
    want = np.stack([states[1:3].mean(0), states[3:5].mean(0)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_span_cut_off_by_truncation_gets_the_fallback_vector():
    states = np.ones((3, 4), dtype=np.float32)
    fallback = np.array([0, 1, 0, 0], np.float32)
    # Tokens cover characters 0-4 only; the second span lies past the truncation point.
    got = pool_spans(states, [(0, 0), (0, 4), (0, 0)], [(0, 4), (10, 20)], 0, fallback)
    np.testing.assert_allclose(got[1], fallback)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_the_hashing_fake_pools_each_span_as_its_own_text():
    emb = HashingEmbedder(dim=64)
    texts = ["第一句话。第二句话！", "只有一句"]
    spans = [split_sentences(texts[0]), [(0, 4)]]
    vecs, pooled = emb.embed_with_spans(texts, spans)
    np.testing.assert_allclose(vecs, emb.embed_batch(texts, "passage"))
    np.testing.assert_allclose(pooled[0], emb.embed_batch(["第一句话。", "第二句话！"], "passage"))
    assert pooled[1].shape == (1, 64)


class _NoSpans:
    """An embedder without token states (no ``embed_with_spans``)."""

    model_id, dim, fingerprint, max_tokens = "no-states", 32, "no-states-1", 512

    def embed_batch(self, texts, kind):
        return HashingEmbedder(dim=32).embed_batch(texts, kind)

    def count_tokens(self, text):
        return len(text)


def test_late_pooling_without_token_states_is_refused_not_done_separately(tmp_path,
                                                                          corpus_dir):
    with pytest.raises(InvalidRequest, match="QA_SENTENCE_VECTORS=separate"):
        embed_spans(_NoSpans(), ["一。二。"], [[(0, 2), (2, 4)]])
    with pytest.raises(InvalidRequest, match="no token states"):
        build_index(corpus_dir, tmp_path / "index", _NoSpans(), sentence_vectors="late")
    assert current_generation(tmp_path / "index") is None  # nothing half-built went live


def test_embed_spans_batches_by_length_and_keeps_the_order():
    calls = []

    class Counting(HashingEmbedder):
        def embed_with_spans(self, texts, spans, kind="passage"):
            calls.append(list(texts))
            return super().embed_with_spans(texts, spans, kind)

    emb = Counting(dim=32)
    texts = ["很长的一段话。" * 3, "短。句。", "无"]
    spans = [split_sentences(texts[0]), split_sentences(texts[1]), []]
    vecs, pooled = embed_spans(emb, texts, spans, batch_size=2)
    ref_vecs, ref_pooled = spans_separately(HashingEmbedder(dim=32), texts, spans)
    np.testing.assert_allclose(vecs, ref_vecs)
    assert [p.shape[0] for p in pooled] == [3, 2, 0]
    for got, want in zip(pooled, ref_pooled, strict=True):
        np.testing.assert_allclose(got, want)
    assert calls == [["无", "短。句。"], [texts[0]]]  # shortest first, two per call


class _Spy(HashingEmbedder):
    """Records what the build hands the encoder."""

    def __init__(self) -> None:
        super().__init__(dim=64)
        self.batch_texts: list[str] = []
        self.span_calls: list[tuple[list[str], list]] = []

    def embed_batch(self, texts, kind):
        if kind == "passage":
            self.batch_texts.extend(texts)
        return super().embed_batch(texts, kind)

    def embed_with_spans(self, texts, spans, kind="passage"):
        self.span_calls.append((list(texts), [list(s) for s in spans]))
        return spans_separately(HashingEmbedder(dim=64), texts, spans, kind)


def _arrays(index_dir):
    gen = current_generation(index_dir)
    return (np.load(gen / "vectors.npy"), np.load(gen / "sentences.npy"),
            np.load(gen / "sentence_offsets.npy"),
            json.loads((gen / "manifest.json").read_text(encoding="utf-8")))


@pytest.mark.parametrize("context", ["none", "section"])
def test_late_build_has_the_rows_and_offsets_of_the_separate_build(tmp_path, corpus_dir,
                                                                    context):
    late, sep = _Spy(), _Spy()
    r_late = build_index(corpus_dir, tmp_path / "late", late, sentence_vectors="late",
                         embed_context=context)
    r_sep = build_index(corpus_dir, tmp_path / "sep", sep, sentence_vectors="separate",
                        embed_context=context)
    v_l, s_l, off_l, m_l = _arrays(tmp_path / "late")
    v_s, s_s, off_s, m_s = _arrays(tmp_path / "sep")
    assert r_late.chunks == r_sep.chunks
    assert r_late.sentences_pooled == r_sep.sentences_embedded > 0
    assert r_late.sentences_embedded == 0 and r_sep.sentences_pooled == 0
    assert "pooled" in r_late.summary() and "pooled" not in r_sep.summary()
    np.testing.assert_array_equal(off_l, off_s)
    assert s_l.shape == s_s.shape and len(off_l) == len(v_l) + 1
    np.testing.assert_allclose(v_l, v_s, atol=1e-6)
    # The fake pools a span as the span's own text, so both builds agree row for row; that
    # the late build got there without encoding a single sentence text is what differs.
    np.testing.assert_allclose(s_l, s_s, atol=1e-6)
    assert late.batch_texts == [] and late.span_calls
    assert len(sep.batch_texts) == r_sep.chunks + r_sep.sentences_embedded and not sep.span_calls
    # Every span handed to the encoder is a sentence of the text it came with, past any
    # breadcrumb put before the passage.
    sentences = set(sep.batch_texts)
    for texts, spans in late.span_calls:
        for text, sp in zip(texts, spans, strict=True):
            assert all(text[a:b] in sentences for a, b in sp)
    assert m_l["chunker"]["sentence_pooling"] == "late"
    assert "sentence_pooling" not in m_s["chunker"]


def test_a_late_build_keeps_the_second_encoders_sentence_vectors(tmp_path, corpus_dir):
    """The second encoder has no token states to pool: it still encodes every sentence, and
    its rows are those of a separate build."""
    second = HashingEmbedder(dim=48)
    build_index(corpus_dir, tmp_path / "late", WithSecond(_Spy(), second),
                sentence_vectors="late")
    build_index(corpus_dir, tmp_path / "sep", WithSecond(_Spy(), second))
    late, sep = current_generation(tmp_path / "late"), current_generation(tmp_path / "sep")
    for name in ("use_vectors.npy", "use_sentences.npy"):
        np.testing.assert_allclose(np.load(late / name), np.load(sep / name), atol=1e-6)


def test_the_service_embedder_passes_late_pooling_through(tmp_path, corpus_dir):
    spy = _Spy()
    batching = MicroBatchingEmbedder(spy)
    try:
        build_index(corpus_dir, tmp_path / "index", batching, sentence_vectors="late")
    finally:
        batching.close()
    assert spy.span_calls and spy.batch_texts == []


def test_switching_the_sentence_mode_re_embeds(tmp_path, corpus_dir):
    spy = _Spy()
    build_index(corpus_dir, tmp_path / "index", spy, sentence_vectors="separate")
    again = build_index(corpus_dir, tmp_path / "index", spy, sentence_vectors="late")
    assert again.unchanged == [] and len(again.added) == 2
    same = build_index(corpus_dir, tmp_path / "index", spy, sentence_vectors="late")
    assert same.nothing_changed


def test_an_unknown_sentence_mode_is_a_clear_error(tmp_path, corpus_dir, fake_embedder):
    with pytest.raises(InvalidRequest, match="separate, late, none"):
        build_index(corpus_dir, tmp_path / "index", fake_embedder, sentence_vectors="pooled")


def test_late_is_refused_with_ray_embedding(tmp_path, corpus_dir, fake_embedder):
    with pytest.raises(InvalidRequest, match="not available with Ray"):
        build_index(corpus_dir, tmp_path / "index", fake_embedder, sentence_vectors="late",
                    embed_passages=lambda texts, progress: fake_embedder.embed_batch(
                        texts, "passage"))


def test_the_setting_and_the_build_default_agree(monkeypatch):
    assert Settings().sentence_vectors == DEFAULT_SENTENCE_VECTORS
    monkeypatch.setenv("QA_SENTENCE_VECTORS", "late")
    assert Settings().sentence_vectors == "late"


def test_qa_index_reads_the_setting(tmp_path, corpus_dir, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app

    monkeypatch.setenv("QA_CORPUS_DIR", str(corpus_dir))
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("QA_EMBEDDER", "hashing")
    monkeypatch.setenv("QA_SENTENCE_VECTORS", "late")
    result = CliRunner().invoke(app, ["index"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((current_generation(tmp_path / "index") / "manifest.json")
                          .read_text(encoding="utf-8"))
    assert manifest["chunker"]["sentence_pooling"] == "late"


# ---- the real model -------------------------------------------------------------------------

TEXTS = ["武汉市2025年的目标是什么？他说：“到2025年，全市研发投入强度达到3.5%。”然后呢！",
         "长江经济带的发展规划包括哪些方面。" * 20,
         "只有一句话的段落。"]


def _reference(states: np.ndarray, offsets, spans, shift: int) -> np.ndarray:
    """Mean of the token states whose characters lie inside each span, by a plain loop."""
    out = []
    for a, b in spans:
        rows = [i for i, (s, e) in enumerate(offsets) if e > s and s < b + shift and e > a + shift]
        v = states[rows].mean(axis=0)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


@pytest.fixture(scope="module")
def model_backends(real_embedder):
    from qa.service.wiring import make_embedder

    first = getattr(real_embedder, "primary", real_embedder)
    torch_emb = make_embedder(Settings(allow_download=False, encoder_backend="torch",
                                       second_encoder="none"))
    onnx_emb = first if first.fingerprint.startswith("onnx:") else make_embedder(
        Settings(allow_download=False, encoder_backend="onnx", second_encoder="none"))
    return {"torch": torch_emb, "onnx": onnx_emb}


def _token_states(backend: str, emb, text: str):
    """One text alone, unpadded, straight through the model: its token states and offsets."""
    if backend == "onnx":
        enc = emb._tok.encode(PROMPT + text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        emb.embed_with_spans([text], [[]])  # opens the token-states graph
        states = emb._states_session.run(
            ["token_embeddings"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        return states, enc.offsets
    import torch

    tok = emb._tokenizer(PROMPT + text, return_offsets_mapping=True, return_tensors="pt",
                         truncation=True, max_length=emb.max_tokens)
    offsets = tok.pop("offset_mapping")[0].tolist()
    with torch.inference_mode():
        states = emb._model[0].auto_model(**tok).last_hidden_state[0].numpy()
    return states, offsets


@pytest.mark.model
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_late_vectors_equal_a_reference_from_the_token_states(model_backends, backend):
    emb = model_backends[backend]
    spans = [split_sentences(t) for t in TEXTS]
    assert [len(s) for s in spans] == [3, 20, 1]
    # The three texts in one padded batch: padding must not leak into any span.
    vecs, pooled = emb.embed_with_spans(TEXTS, spans)
    np.testing.assert_allclose(vecs, emb.embed_batch(TEXTS, "passage"), atol=1e-5)
    for text, sp, got in zip(TEXTS, spans, pooled, strict=True):
        states, offsets = _token_states(backend, emb, text)
        np.testing.assert_allclose(got, _reference(states, offsets, sp, len(PROMPT)), atol=1e-5)
    # A one-sentence text: the span's pool leaves out the prompt and the special tokens, so
    # it is close to, but not, the text's own vector (the build stores the latter).
    assert 0.9 < float(pooled[2][0] @ vecs[2]) < 0.9999


@pytest.mark.model
def test_onnx_and_torch_late_vectors_agree(model_backends):
    spans = [split_sentences(t) for t in TEXTS]
    _, a = model_backends["onnx"].embed_with_spans(TEXTS, spans)
    _, b = model_backends["torch"].embed_with_spans(TEXTS, spans)
    for x, y in zip(a, b, strict=True):
        assert float((x * y).sum(axis=1).min()) > 0.9999


@pytest.mark.model
def test_the_default_graph_is_untouched_by_late_chunking(model_backends):
    """The token-states graph is a file of its own: the default graph (whose checksum is in
    every index's fingerprint) is not re-exported, and its vectors match the states graph's."""
    emb = model_backends["onnx"]
    before = emb.fingerprint
    vecs, _ = emb.embed_with_spans(TEXTS, [[] for _ in TEXTS])
    assert emb.fingerprint == before
    assert emb._states_file().name == "model-states.onnx"
    assert float((vecs * emb.embed_batch(TEXTS, "passage")).sum(1).min()) > 0.99999


@pytest.mark.model
def test_a_late_build_with_the_model_stores_pooled_and_paragraph_vectors(tmp_path,
                                                                         model_backends):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("第一段的第一句。第一段的第二句！\n\n只有一句的第二段。\n",
                                  encoding="utf-8")
    emb = model_backends["onnx"]
    build_index(corpus, tmp_path / "index", emb, sentence_vectors="late")
    vecs, sents, offsets, _ = _arrays(tmp_path / "index")
    assert offsets.tolist() == [0, 2, 3]
    texts = ["第一段的第一句。第一段的第二句！", "只有一句的第二段。"]
    want_vecs, pooled = emb.embed_with_spans(texts, [split_sentences(texts[0]), []])
    np.testing.assert_allclose(vecs, want_vecs, atol=1e-5)
    np.testing.assert_allclose(sents[:2], pooled[0], atol=1e-5)
    np.testing.assert_allclose(sents[2], vecs[1], atol=1e-6)  # one sentence: the paragraph's
