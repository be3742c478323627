"""Finding the benchmark data and the own question set from any working folder: the
option if given, else next to the working folder, else next to the checkout qa runs from."""

from __future__ import annotations

from pathlib import Path

from qa.errors import InvalidRequest

CHECKOUT = Path(__file__).resolve().parents[2]


def _first(candidates: list[Path], ok) -> Path | None:
    return next((c for c in candidates if ok(c)), None)


def data_dir(given: Path | None) -> Path:
    """The folder holding xquad/ and cmrc2018/."""
    def ok(p: Path) -> bool:
        return (p / "xquad").is_dir() or (p / "cmrc2018").is_dir()

    candidates = [given] if given else [Path.cwd() / "../shared/data", Path.cwd() / "shared/data",
                                        CHECKOUT / "../shared/data"]
    found = _first(candidates, ok)
    if found is None:
        tried = ", ".join(str(c) for c in candidates)
        raise InvalidRequest(f"benchmark data (xquad/, cmrc2018/) not found in {tried}: "
                             "pass --data-dir DIR or set QA_EVAL_DATA")
    return found.resolve()


def questions_dir(given: Path | None) -> Path:
    """The folder holding corpus_questions.jsonl (and unanswerable.jsonl)."""
    candidates = [given] if given else [Path.cwd() / "tests/data", CHECKOUT / "tests/data"]
    found = _first(candidates, lambda p: (p / "corpus_questions.jsonl").is_file())
    if found is None:
        tried = ", ".join(str(c) for c in candidates)
        raise InvalidRequest(f"the own question set (corpus_questions.jsonl) is not in {tried}: "
                             "pass --questions-dir DIR")
    return found.resolve()


def corpus_dir(configured: Path, given: bool) -> Path:
    """The corpus the own questions are about: the configured folder, or the checkout's."""
    if configured.is_dir() or given:
        return configured
    shipped = CHECKOUT / "corpus"
    if shipped.is_dir():
        return shipped
    raise InvalidRequest(f"corpus folder {configured} not found: pass --corpus DIR")
