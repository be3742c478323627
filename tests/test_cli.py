"""The command line: input checked before anything heavy loads, errors as one line,
answers from the local index or from a running service."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import uvicorn

from qa.api import create_app
from qa.cli import main
from qa.index.build import build_index

from .helpers import serve_in_thread


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "qa", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, needle", [
    (["ask", ""], "non-empty"),
    (["ask", "x", "--mode", "fuzzy"], "fuzzy"),
    (["ask", "x", "--top-k", "0"], "top-k"),
    (["ask", "x" * 2001], "2000"),
])
def test_bad_input_fails_before_any_model_is_loaded(args, needle):
    started = time.perf_counter()
    done = _run(*args)
    elapsed = time.perf_counter() - started
    assert done.returncode in (1, 2)
    assert needle in done.stderr and "Traceback" not in done.stderr
    # The model would take seconds to load; the interpreter alone takes a fraction of that.
    assert "torch" not in done.stderr and elapsed < 5, elapsed


def test_a_mistyped_setting_names_the_variable():
    done = _run("ask", "武汉", env={"QA_EMBED_CONTEXT": "sectoin"})
    assert done.returncode == 2
    assert "QA_EMBED_CONTEXT" in done.stderr and "Traceback" not in done.stderr


def test_help_reads_as_text_without_python_types():
    for command in ([], ["ask"], ["index"], ["serve"], ["eval"], ["bench"], ["mcp"]):
        out = _run(*command, "--help").stdout
        assert "Usage:" in out
        assert "<bool>" not in out and "<str>" not in out and "<int>" not in out, command


def test_ask_locally_with_the_answer(settings, fake_embedder, monkeypatch, capsys):
    build_index(settings.corpus_dir, settings.index_dir, fake_embedder)
    monkeypatch.setenv("QA_EMBEDDER", "hashing")
    monkeypatch.setenv("QA_INDEX_DIR", str(settings.index_dir))
    with pytest.raises(SystemExit) as done:
        main(["ask", "武汉有多少名院士", "--answer", "--json"])
    assert done.value.code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["passages"]
    if payload["answerable"]:
        assert "[1]" in payload["answer"] and payload["sentences"]


def test_ask_a_running_service(settings, fake_embedder, monkeypatch, capsys):
    build_index(settings.corpus_dir, settings.index_dir, fake_embedder)
    app = create_app(settings, embedder=fake_embedder, background=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error")
    with serve_in_thread(config) as url:
        # No index or model settings here: everything comes from the service.
        monkeypatch.setenv("QA_INDEX_DIR", "/nonexistent")
        with pytest.raises(SystemExit) as done:
            main(["ask", "院士 高校", "--server", url, "--json"])
        assert done.value.code == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["results"][0]["doc_id"]
        with pytest.raises(SystemExit) as done:
            main(["ask", "院士 高校", "--server", url, "--doc", "nope"])
        assert done.value.code == 1 and "nope" in capsys.readouterr().err


def test_an_unreachable_service_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["ask", "院士", "--server", "http://127.0.0.1:9"])
    assert done.value.code == 1
    assert "cannot reach the service" in capsys.readouterr().err
