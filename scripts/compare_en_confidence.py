"""Two English no-answer fits side by side on the own and the never-tuned English questions.

One index of the shipped corpus; every English question of tests/data (own set) and of
tests/data/heldout_en (never tuned on) is searched once with the default settings, and the
features of the English confidence (best e5 score, best USE score, known-word share) are
scored under each parameter set: how many answerable questions each flags, and how many
unanswerable ones. docs/EVAL.md ("No-answer signal for English") quotes it.

    python scripts/compare_en_confidence.py      # about two minutes on 2 cores
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.index.build import build_index  # noqa: E402
from qa.index.load import open_index  # noqa: E402
from qa.retrieve.fusion import SecondParams  # noqa: E402
from qa.retrieve.search import Searcher  # noqa: E402
from qa.service.wiring import make_embedder  # noqa: E402

FITS = {"shipped (raw features)": SecondParams().confidence_en,
        "standardised features (b98621b)": (-19.315, 15.712, 13.416, 4.085)}


def _english(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows if r["lang"] == "en"]


def main() -> None:
    data = ROOT / "tests/data"
    sets = {"own answerable": _english(data / "corpus_questions.jsonl"),
            "own unanswerable": _english(data / "unanswerable.jsonl"),
            "never-tuned answerable": _english(data / "heldout_en/corpus_questions.jsonl"),
            "never-tuned unanswerable": _english(data / "heldout_en/unanswerable.jsonl")}
    embedder = make_embedder(Settings(allow_download=False))
    with tempfile.TemporaryDirectory() as tmp:
        build_index(ROOT / "corpus", Path(tmp) / "index", embedder)
        searcher = Searcher(open_index(Path(tmp) / "index", embedder), embedder)
        features = {name: [searcher.search(q, top_k=10).diagnostics for q in qs]
                    for name, qs in sets.items()}
        searcher.index.close()
    out = {}
    for fit, (b, w_e5, w_use, w_known) in FITS.items():
        out[fit] = {name: f"{sum(b + w_e5 * d['best_dense'] + w_use * d['second_best'] + w_known * d['translated_share'] < 0 for d in ds)} / {len(ds)} flagged"  # noqa: E501
                    for name, ds in features.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
