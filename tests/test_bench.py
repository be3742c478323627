"""`qa bench` machinery end to end on a tiny configuration: the hashing fake as encoder and
baseline, a few SQuAD-format paragraphs, a real `qa serve` child process, a few requests."""

from __future__ import annotations

import json
from pathlib import Path

from qa.config import Settings
from qa.evaluation import bench_report
from qa.evaluation.bench import BenchConfig, run_bench

TOPICS = ["武汉的科技创新", "长江经济带的生态保护", "光谷的产业发展", "城市圈同城化",
          "教育和医疗投入", "营商环境改革"]


def _squad(path: Path, lang: str) -> None:
    data = []
    for a in range(3):
        paragraphs = []
        for p in range(2):
            topic = TOPICS[(2 * a + p) % len(TOPICS)]
            context = (f"{topic}是第{a}部分第{p}段的主题。会议强调要持续推进{topic}。"
                       f"到2025年，{topic}的投入将增加百分之{10 + a + p}。")
            qs = [{"id": f"q{a}-{p}-{i}", "answers": [],
                   "question": (f"What about {topic} number {i}?" if lang == "en"
                                else f"{topic}的第{i}个问题是什么？")} for i in range(12)]
            paragraphs.append({"context": context, "qas": qs})
        data.append({"title": f"article {a}", "paragraphs": paragraphs})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")


def test_quick_bench_machinery_reports_every_figure(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _squad(data / "cmrc2018" / "cmrc2018_dev.json", "zh")
    _squad(data / "xquad" / "xquad.zh.json", "zh")
    _squad(data / "xquad" / "xquad.en.json", "en")
    cfg = BenchConfig(data_dir=data, backends=["hashing"],
                      pipeline_backends=["hashing", "hashing+late",
                                         "hashing@64+paragraphs-only+no-second"],
                      quality_backends=["hashing"], http_backends=["hashing"], blocks=2,
                      requests={1: 5, 8: 8, 32: 16}, level_seconds=20.0,
                      in_process_queries=5, scale_n=None, build_paragraphs=40,
                      baseline="hashing")
    settings = Settings(embedder="hashing", allow_download=False)
    results = run_bench(cfg, settings, lambda msg: None)
    json.loads(json.dumps(results))  # one JSON object, as `qa bench` prints it

    assert {"config", "machine", "load_s", "fingerprints", "encoder", "pipeline", "quality",
            "http"} <= set(results)
    enc = results["encoder"]
    assert enc["passages"] == 6
    assert {"seconds", "passages_per_s", "speedup_vs_bare", "speedup_median_block"} \
        <= set(enc["hashing"])
    pipe = results["pipeline"]["hashing"]
    assert pipe["chunks"] >= 6 and pipe["sentence_texts"] > 0
    assert {"passages_per_s", "texts_per_s", "passages_per_s_vs_bare_encoder"} <= set(pipe)
    assert pipe["stages"]["embed"] >= 0 and "store+bm25" in pipe["stages"]
    late = results["pipeline"]["hashing+late"]
    assert late["sentence_texts"] == 0 and late["sentences_pooled"] == pipe["sentence_texts"]
    only = results["pipeline"]["hashing@64+paragraphs-only+no-second"]
    assert only["sentence_texts"] == 0 and only["chunks"] == pipe["chunks"]
    scale = results["build_scale"]
    assert set(scale) == {"10", "40"}
    big = scale["40"]
    assert big["paragraphs"] == 40 and big["chunks"] >= 40 and big["sentences"] > 0
    assert big["peak_rss_mb"] >= big["rss_before_build_mb"] > 0 and big["vectors_mb"] > 0
    quality = results["quality"]["hashing"]
    assert set(quality) == {"xquad-zh->zh", "xquad-en->zh"}
    # The hashing fake matches shared tokens, so Chinese questions over Chinese paragraphs
    # find theirs; an error in the quality harness shows as a collapse of this figure.
    assert quality["xquad-zh->zh"]["auto_R@5"] >= 0.5
    batches = results["query_batches"]["bare"]
    assert {"1", "8", "32", "batch_gain"} <= set(batches)
    assert batches["1"]["ms_per_query"] > 0 and batches["batch_gain"] > 0
    http = results["http"]["hashing"]
    assert set(http["levels"]) == {"1", "8", "32"}
    # The server's CPU time per request is read in clock ticks (10 ms), so a level of a few
    # fake requests may round to 0; over all three levels the server did measurable work.
    cpu = [level["server_cpu_ms_per_request"] for level in http["levels"].values()]
    assert min(cpu) >= 0 and sum(cpu) > 0
    for level in http["levels"].values():
        assert level["errors"] == 0 and level["requests"] > 0
        assert {"p50_ms", "p95_ms", "p99_ms", "throughput_qps"} <= set(level)
    assert http["startup_to_ready_s"] > 0 and http["peak_rss_mb"] > 0
    assert {"bare_encode+faiss", "hashing_encode+faiss", "searcher.search"} \
        <= set(http["in_process"])
    assert http["c1_p50_vs_bare_in_process"] > 0 and http["c32_vs_c1_throughput"] > 0

    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\nHand-written notes.\n", encoding="utf-8")
    bench_report.write(doc, results, "qa bench --quick")
    bench_report.write(doc, results, "qa bench --quick")  # replaces its block, keeps the notes
    text = doc.read_text(encoding="utf-8")
    assert text.count(bench_report.BEGIN) == 1 and "Hand-written notes." in text
    assert "| hashing | HTTP POST /search | 32 |" in text
    assert "### Query encoding by batch size" in text
    assert "### Synthetic build at scale" in text and "| 40 | hashing |" in text
    assert "| hashing@64+paragraphs-only+no-second |" in text


def test_only_some_sections_run_and_render(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _squad(data / "cmrc2018" / "cmrc2018_dev.json", "zh")
    _squad(data / "xquad" / "xquad.zh.json", "zh")
    _squad(data / "xquad" / "xquad.en.json", "en")
    cfg = BenchConfig(data_dir=data, backends=["hashing"], pipeline_backends=["hashing"],
                      quality_backends=["hashing"], http_backends=["hashing"], blocks=2,
                      scale_n=None, build_paragraphs=None, baseline="hashing",
                      sections=["pipeline"])
    results = run_bench(cfg, Settings(embedder="hashing", allow_download=False),
                        lambda msg: None)
    # pipeline brings the encoder table (its ratio is to the bare encoder), nothing else
    assert results["sections"] == ["encoder", "pipeline"]
    assert {"encoder", "pipeline"} <= set(results)
    assert not {"quality", "query_batches", "http", "build_scale", "scale"} & set(results)
    text = bench_report.render(results, "qa bench --only pipeline")
    assert "### Indexing pipeline" in text and "Seconds per stage" in text
    assert "### Retrieval quality" not in text and "### Queries over HTTP" not in text
    assert "### Large indexes" not in text

    # Written into a document whose block came from a full run: only the sections that ran
    # are replaced, each under a line naming its run; the rest stays.
    doc = tmp_path / "PERFORMANCE.md"
    old = ("Run of 2026-11-23 03:52 UTC: `qa bench`\n\n### Encoder alone: old\n\n| old enc |\n\n"
           "### Indexing pipeline: old\n\n| old pipe |\n\n### Retrieval quality: old\n\n"
           "| old quality |\n")
    doc.write_text(f"# P\n\nnotes\n\n{bench_report.BEGIN}\n{old}{bench_report.END}\nafter\n",
                   encoding="utf-8")
    bench_report.write(doc, results, "qa bench --only pipeline")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# P\n\nnotes\n") and text.endswith(f"{bench_report.END}\nafter\n")
    assert "Run of 2026-11-23 03:52 UTC: `qa bench`" in text and "| old quality |" in text
    assert "| old pipe |" not in text and "| old enc |" not in text
    assert text.count("*This section: `qa bench --only pipeline`") == 2
    assert text.index("### Encoder alone") < text.index("### Indexing pipeline") \
        < text.index("### Retrieval quality")


def test_an_unknown_pipeline_option_is_refused() -> None:
    import pytest

    from qa.evaluation.bench_build import pipeline_spec

    settings = Settings(embedder="hashing", allow_download=False)
    assert pipeline_spec("onnx@64+paragraphs-only+no-second", settings) == \
        ("onnx", 64, "none", False)
    assert pipeline_spec("onnx+late", settings) == ("onnx", settings.batch_size, "late", True)
    assert pipeline_spec("onnx", settings)[2] == "separate"
    with pytest.raises(ValueError, match="paragraph-only"):
        pipeline_spec("onnx+paragraph-only", settings)
    with pytest.raises(ValueError, match="no sentence vectors to pool"):
        pipeline_spec("onnx+late+paragraphs-only", settings)
