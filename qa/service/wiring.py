"""Wiring: settings -> embedder -> index -> searcher. Used by the CLI and the app factory,
so both build exactly the same stack."""

from __future__ import annotations

from qa.config import Settings
from qa.encoders.base import Embedder, HashingEmbedder


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedder; with ``QA_SECOND_ENCODER`` set, the first encoder carrying
    the second (qa.encoders.ensemble), which the index and the searcher then use too."""
    first = _first_embedder(settings)
    if settings.embedder == "hashing" or settings.second_encoder == "none":
        return first
    from qa.encoders.ensemble import WithSecond
    from qa.encoders.use import UseEmbedder

    return WithSecond(first, UseEmbedder(threads=settings.threads,
                                         cache_dir=settings.model_cache_dir))


def _first_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "hashing":
        return HashingEmbedder()
    from qa.encoders.provision import resolve_model
    from qa.encoders.sentence_transformers import SentenceTransformerEmbedder

    resolved = resolve_model(settings.model, settings.model_cache_dir,
                             allow_download=settings.allow_download)
    if settings.encoder_backend != "torch":
        from qa.encoders.onnx import make_backend_embedder

        return make_backend_embedder(
            settings.encoder_backend, resolved.path, resolved.model_id, resolved.weights_sha256,
            settings.model_cache_dir, query_prompt=settings.query_prompt,
            passage_prompt=settings.passage_prompt, batch_size=settings.batch_size,
            threads=settings.threads)
    return SentenceTransformerEmbedder(
        str(resolved.path), resolved.model_id, resolved.weights_sha256,
        query_prompt=settings.query_prompt, passage_prompt=settings.passage_prompt,
        batch_size=settings.batch_size, threads=settings.threads)


def make_vector_store(settings: Settings):
    """The configured home of the vectors (FAISS files by default, or Milvus)."""
    from qa.index.vectors.store import VectorStore

    return VectorStore(backend=settings.vector_backend, uri=settings.milvus_uri,
                       token=settings.milvus_token, collection=settings.milvus_collection,
                       index_type=settings.milvus_index_type,
                       index_params=dict(settings.milvus_index_params) or None,
                       search_params=dict(settings.milvus_search_params) or None,
                       retire_after_s=settings.milvus_retire_after_s)
