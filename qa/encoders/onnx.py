"""Faster encoder backends: ONNX Runtime (float32 or dynamic int8) and torch dynamic int8.

``QA_ENCODER_BACKEND`` picks one of :data:`BACKENDS`:

* ``torch``      the sentence-transformers model as it is (float32), the reference;
* ``onnx``       the same model exported once to ONNX, with ONNX Runtime's BERT fusions
                 (fused attention, skip-layer-norm, bias-GELU); float32, same vectors to ~1e-6;
* ``onnx-int8``  that graph with its MatMul and embedding weights dynamically quantised to
                 int8 (per channel), activations quantised per batch at run time;
* ``torch-int8`` ``torch.ao`` dynamic int8 quantisation of the Linear layers, no new
                 dependency, but per-tensor and visibly less faithful (docs/PERFORMANCE.md).

The export runs once per weights file and is cached beside the converted model, in
``<model_cache_dir>/onnx/<folder>-<weights sha>-e<EXPORT_VERSION>/``; it needs torch,
transformers and the ``onnx`` package. Serving an exported file needs only onnxruntime and
tokenizers, so an ONNX service never imports torch. Each backend's fingerprint names the
backend and the checksum of the file it runs, so an index never mixes their vectors.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.encoders.base import Kind
from qa.encoders.late import Span, pool_spans
from qa.encoders.sentence_transformers import SentenceTransformerEmbedder
from qa.errors import ModelUnavailable

BACKENDS = ("torch", "onnx", "onnx-int8", "torch-int8")
EXPORT_VERSION = 1
# Rows x padded length per ONNX call: large enough to keep both cores busy on short texts,
# small enough that 512-token passages (attention is quadratic) stay in cache-sized batches.
TOKEN_BUDGET = 8192
MAX_ROWS = 64
_INSTALL = "run `pip install onnxruntime onnx` (or choose QA_ENCODER_BACKEND=torch)"


def onnx_file(model_dir: Path, weights_sha256: str, cache_dir: Path, *, int8: bool,
              states: bool = False) -> Path:
    """The exported (and, with ``int8``, quantised) graph for ``model_dir``, made if missing.

    ``states``: the graph that also returns the last layer's token states, for late chunking
    (qa.encoders.late). It is a file of its own, made only when late chunking is asked for,
    so that the default graph, and the fingerprint of every index built with it, stay as
    they are. A lock file keeps two processes from exporting at once; files appear by rename
    only."""
    from qa.locking import file_lock

    folder = Path(cache_dir).expanduser() / "onnx" / (
        f"{Path(model_dir).name}-{weights_sha256[:12]}-e{EXPORT_VERSION}")
    stem = "model-states" if states else "model"
    fp32, q8 = folder / f"{stem}.onnx", folder / f"{stem}-int8.onnx"
    want = q8 if int8 else fp32
    if want.is_file():
        return want
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        if not fp32.is_file():
            _export(Path(model_dir), fp32, states=states)
        if int8 and not q8.is_file():
            _quantize(fp32, q8)
    return want


def _check_pooling(model_dir: Path) -> None:
    """The exported graph does mean pooling and L2 normalisation; refuse anything else."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((model_dir / pooling_dir / "config.json").read_text("utf-8"))
    except (OSError, ValueError, StopIteration) as exc:
        raise ModelUnavailable(f"{model_dir} is not a sentence-transformers folder with a "
                               f"pooling module ({exc}); use QA_ENCODER_BACKEND=torch") from exc
    others = [k for k, v in pooling.items()
              if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
    if not pooling.get("pooling_mode_mean_tokens") or others:
        raise ModelUnavailable(f"the ONNX backends support mean-pooling models only; {model_dir} "
                               f"uses {others or 'no mean pooling'}; use QA_ENCODER_BACKEND=torch")
    if not any(m["type"].endswith("Normalize") for m in modules):
        raise ModelUnavailable(f"{model_dir} has no Normalize module; the ONNX graph always "
                               "normalises, so use QA_ENCODER_BACKEND=torch for this model")


def _export(model_dir: Path, out: Path, *, states: bool = False) -> None:
    """Transformer + mean pooling + L2 normalisation as one graph, then ORT's BERT fusions.
    With ``states`` the graph's second output is the last layer's token states."""
    _check_pooling(model_dir)
    try:
        import onnx  # noqa: F401  (the optimizer and the quantizer need it)
        import torch
        from onnxruntime.transformers import optimizer  # type: ignore[import-untyped]
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:
        raise ModelUnavailable(f"exporting the model to ONNX needs {exc.name}: {_INSTALL}") from exc

    class Pooled(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(mean, p=2.0, dim=1)
            return (pooled, hidden) if states else pooled

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True,
                                      attn_implementation="eager").eval()
    raw = out.with_name(f".{out.stem}.raw-{os.getpid()}.onnx")
    fused = out.with_name(f".{out.stem}.tmp-{os.getpid()}.onnx")
    # A padded example: traced on an all-ones mask, transformers' masking code may decide
    # that no mask is needed and leave it out of the graph (_verify catches that).
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape checks
            # The TorchScript exporter: the dynamo one needs onnxscript, one more dependency.
            axes = {"input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}}
            if states:
                axes["token_embeddings"] = {0: "batch", 1: "seq"}
            torch.onnx.export(Pooled(model).eval(), (ids, mask), str(raw),
                              input_names=["input_ids", "attention_mask"],
                              output_names=list(axes)[2:], opset_version=17, dynamo=False,
                              dynamic_axes=axes)
            graph = optimizer.optimize_model(
                str(raw), model_type="bert", opt_level=0,
                num_heads=int(config.num_attention_heads), hidden_size=int(config.hidden_size))
            graph.save_model_to_file(str(fused))
        _verify(model, fused)
        os.replace(fused, out)
    finally:
        for tmp in (raw, fused):
            tmp.unlink(missing_ok=True)


def _verify(model: Any, path: Path) -> None:
    """Refuse an export whose vectors differ from torch's on padded, unequal-length input
    (a traced graph can silently freeze a shape)."""
    import torch

    model.eval()  # the exporter restores the wrapper's (training) mode on its way out
    ids = torch.tensor([[0, 6, 7, 8, 9, 10, 11, 2], [0, 12, 13, 2, 1, 1, 1, 1]])
    mask = (ids != 1).long()  # 1 is the pad id here; the second row is padded
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask,
                       token_type_ids=torch.zeros_like(ids)).last_hidden_state
        m = mask.unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=1).numpy()
    outputs = _session(path, 1).run(None, {"input_ids": ids.numpy(),
                                           "attention_mask": mask.numpy()})
    worst = float((ref * outputs[0]).sum(1).min())
    if len(outputs) > 1:
        # The token states of real (unpadded) tokens, which late chunking pools.
        real = mask.numpy().astype(bool)
        a, b = hidden.numpy()[real], outputs[1][real]
        token_cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        worst = min(worst, float(token_cos.min()))
    if worst < 0.9999:
        raise ModelUnavailable(f"the ONNX export of the model is not faithful (cosine {worst:.5f} "
                               "to torch); use QA_ENCODER_BACKEND=torch")


def _quantize(src: Path, out: Path) -> None:
    try:
        from onnx import TensorProto
        from onnxruntime.quantization import (  # type: ignore[import-untyped]
            QuantType,
            quantize_dynamic,
        )
    except ImportError as exc:
        raise ModelUnavailable(f"quantising the ONNX model needs {exc.name}: {_INSTALL}") from exc
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process, on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # DefaultTensorType: shape inference cannot type the fused com.microsoft ops.
            quantize_dynamic(src, tmp, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
        os.replace(tmp, out)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)


def _session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelUnavailable(f"the ONNX backends need onnxruntime: {_INSTALL}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The pool's threads spin while a run lasts (the encoder is fastest so) but stop when
    # it ends: left spinning, they took the core from whatever ran next, the second
    # encoder's question above all (2.9 against 4.4 ms; docs/PERFORMANCE.md).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def length_batches(lengths: Sequence[int], token_budget: int = TOKEN_BUDGET,
                   max_rows: int = MAX_ROWS) -> list[list[int]]:
    """Indices grouped longest first so that rows x longest row <= ``token_budget``: padding
    is only the difference between neighbours in length order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < max_rows and \
                (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class OnnxEmbedder:
    """An exported sentence-transformers model on ONNX Runtime (CPU). Same tokenizer, prompts
    and truncation as :class:`~qa.encoders.base.SentenceTransformerEmbedder`."""

    def __init__(self, onnx_path: Path, model_dir: Path, model_id: str, backend: str, *,
                 file_sha256: str, query_prompt: str | None = "query: ",
                 passage_prompt: str | None = "passage: ", threads: int | None = None,
                 token_budget: int = TOKEN_BUDGET,
                 states_file: Callable[[], Path] | None = None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ModelUnavailable(f"tokenizers is not installed: {exc}") from exc
        model_dir = Path(model_dir)
        st_config: dict[str, Any] = {}
        if (model_dir / "sentence_bert_config.json").is_file():
            st_config = json.loads((model_dir / "sentence_bert_config.json").read_text("utf-8"))
        self.max_tokens = int(st_config.get("max_seq_length") or 512)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self._pad_id = int(config.get("pad_token_id") or 0)
        self._counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_tokens)
        self._threads = threads or max(1, os.cpu_count() or 1)
        self._session = _session(onnx_path, self._threads)
        # The token-states graph (late chunking), exported and opened on first use only.
        self._states_file = states_file
        self._states_session: Any = None
        self._prompts = {"query": query_prompt or "", "passage": passage_prompt or ""}
        self._budget = max(token_budget, self.max_tokens)
        self.model_id = model_id
        self.backend = backend
        self.dim = int(self._session.get_outputs()[0].shape[-1] or config["hidden_size"])
        self.fingerprint = f"{backend}:{file_sha256}:q={query_prompt!r}:p={passage_prompt!r}"

    def _feeds(self, encoded: list[Any]) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """(rows, inputs) per ONNX call: length-sorted, padded only to each batch's longest."""
        for rows in length_batches([len(e.ids) for e in encoded], self._budget):
            width = len(encoded[rows[0]].ids)
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encoded[i].ids)
                ids[r, :n] = encoded[i].ids
                mask[r, :n] = 1
            yield rows, {"input_ids": ids, "attention_mask": mask}

    def embed_batch(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        prompt = self._prompts.get(kind, "")
        encoded = self._tok.encode_batch([prompt + t for t in texts])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows, feed in self._feeds(encoded):
            out[rows] = self._session.run(None, feed)[0]
        # The graph normalises already; this only guards against float drift.
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[Span]],
                         kind: Kind = "passage") -> tuple[np.ndarray, list[np.ndarray]]:
        """Each text's vector and, from the same forward pass, one vector per character span
        of it (late chunking, :mod:`qa.encoders.late`). The texts' vectors come from the
        token-states graph, which _verify held to torch as tightly as the default graph."""
        if self._states_session is None:
            if self._states_file is None:
                raise ModelUnavailable("this ONNX encoder has no token-states graph; "
                                       "use QA_SENTENCE_VECTORS=separate")
            self._states_session = _session(self._states_file(), self._threads)
        prompt = self._prompts.get(kind, "")
        encoded = self._tok.encode_batch([prompt + t for t in texts])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        for rows, feed in self._feeds(encoded):
            vecs, states = self._states_session.run(["embedding", "token_embeddings"], feed)
            out[rows] = vecs
            for r, i in enumerate(rows):
                if len(spans[i]):
                    pooled[i] = pool_spans(states[r, :len(encoded[i].ids)], encoded[i].offsets,
                                           spans[i], len(prompt), vecs[r])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out, pooled

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text).ids)


class TorchInt8Embedder(SentenceTransformerEmbedder):
    """The sentence-transformers model with ``torch.ao`` dynamic int8 Linear layers."""

    def __init__(self, path: str, model_id: str, weights_sha256: str, **kwargs: Any) -> None:
        super().__init__(path, model_id, weights_sha256, **kwargs)
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            torch.ao.quantization.quantize_dynamic(self._model, {torch.nn.Linear},
                                                   dtype=torch.qint8, inplace=True)
        # No file to hash: the result is a function of the weights and the torch version.
        self.fingerprint = self.fingerprint.replace(
            "st:", f"torch-int8:torch{torch.__version__}:", 1).replace(":fp32:", ":", 1)


def make_backend_embedder(backend: str, model_dir: Path, model_id: str, weights_sha256: str,
                          cache_dir: Path, *, query_prompt: str | None,
                          passage_prompt: str | None, batch_size: int = 32,
                          threads: int | None = None) -> Any:
    """The embedder for a non-default ``backend`` (one of :data:`BACKENDS`)."""
    from qa.encoders.provision import _sha256

    if backend == "torch-int8":
        return TorchInt8Embedder(str(model_dir), model_id, weights_sha256,
                                 query_prompt=query_prompt, passage_prompt=passage_prompt,
                                 batch_size=batch_size, threads=threads)
    if backend not in ("onnx", "onnx-int8"):
        from qa.errors import InvalidRequest

        raise InvalidRequest(f"unknown encoder backend {backend!r}; use one of "
                             + ", ".join(BACKENDS))
    int8 = backend == "onnx-int8"
    path = onnx_file(model_dir, weights_sha256, cache_dir, int8=int8)

    def states_file() -> Path:
        return onnx_file(model_dir, weights_sha256, cache_dir, int8=int8, states=True)

    return OnnxEmbedder(path, model_dir, model_id, backend,
                        file_sha256=_sha256(path, Path(cache_dir).expanduser()),
                        query_prompt=query_prompt, passage_prompt=passage_prompt, threads=threads,
                        states_file=states_file)
