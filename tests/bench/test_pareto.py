"""Pareto front of benchmark results: the front itself, reading results files, the PNG plots and the CLI."""

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.bench.pareto import LATENCY_PNG, SIZE_PNG, load_points, markdown_front, pareto_front, plot_pareto

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _p(name, x, y):
    return {"label": name, "x": x, "y": y}


def _labels(points):
    return [p["label"] for p in points]


def test_front_drops_dominated_points_and_sorts_by_x():
    pts = [_p("big-good", 90, 0.90), _p("small-ok", 23, 0.89), _p("big-bad", 90, 0.80), _p("mid-bad", 50, 0.85),
           _p("tiny-poor", 10, 0.70)]
    assert _labels(pareto_front(pts, "x", "y")) == ["tiny-poor", "small-ok", "big-good"]


def test_front_ties():
    # Identical points are all on the front; same x: only the best y; same y: only the smallest x.
    pts = [_p("a", 23, 0.9), _p("b", 23, 0.9), _p("c", 23, 0.8), _p("d", 45, 0.9), _p("e", 10, 0.5)]
    assert _labels(pareto_front(pts, "x", "y")) == ["e", "a", "b"]


def test_front_single_point_empty_and_missing_values():
    assert _labels(pareto_front([_p("only", 1.0, 0.5)], "x", "y")) == ["only"]
    assert pareto_front([], "x", "y") == []
    assert _labels(pareto_front([_p("none", None, 0.99), _p("ok", 5, 0.5)], "x", "y")) == ["ok"]


def test_front_with_larger_x_better():
    pts = [_p("base", 1.0, 0.90), _p("fast", 20.0, 0.84), _p("mid", 2.5, 0.90), _p("slow-bad", 0.9, 0.7)]
    assert _labels(pareto_front(pts, "x", "y", x_better="larger")) == ["mid", "fast"]
    with pytest.raises(ValueError, match="x_better"):
        pareto_front(pts, "x", "y", x_better="bigger")


def _dominates(q, p):
    return q["x"] <= p["x"] and q["y"] >= p["y"] and (q["x"] < p["x"] or q["y"] > p["y"])


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=25))
def test_front_property(coords):
    # Small integer grids make ties and coincident points common.
    pts = [_p(str(i), x, y) for i, (x, y) in enumerate(coords)]
    front = pareto_front(pts, "x", "y")
    on_front = {p["label"] for p in front}
    assert front, "a non-empty set has a non-empty front"
    assert [p["x"] for p in front] == sorted(p["x"] for p in front)
    for p in front:
        assert not any(_dominates(q, p) for q in pts)
    for p in pts:
        if p["label"] not in on_front:
            assert any(_dominates(q, p) for q in front)


def _results(tmp_path, name="bench"):
    rows = [
        {"task": "sst2", "variant": "float32", "tags": ["baseline", "teacher"], "baseline": None,
         "metric": "accuracy", "keras_score": 0.90, "tflite_score": 0.90, "tflite_mb": 90.0, "latency_ms": 20.0,
         "verified": True, "dev_examples": 872},
        {"task": "sst2", "variant": "dynamic", "tags": ["ptq-dynamic"], "baseline": "float32", "metric": "accuracy",
         "keras_score": 0.90, "tflite_score": 0.89, "tflite_mb": 22.5, "latency_ms": 8.0, "verified": True,
         "dev_examples": 872},
        {"task": "sst2", "variant": "no-metric", "tags": ["gmp"], "baseline": "float32", "metric": "accuracy",
         "keras_score": None, "tflite_score": None, "tflite_mb": 90.0, "latency_ms": 20.0},
        {"task": "sst2", "variant": "keras-only", "tags": ["svd"], "baseline": "float32", "metric": "accuracy",
         "keras_score": 0.85, "tflite_score": None, "tflite_mb": 60.0, "latency_ms": 10.0},
        {"task": "sst2", "variant": "untimed", "tags": ["float16"], "baseline": "float32", "metric": "accuracy",
         "keras_score": 0.90, "tflite_score": 0.90, "tflite_mb": 45.0, "latency_ms": None},
        {"task": "sst2", "variant": "orphan", "tags": ["cnn"], "baseline": "missing", "metric": "accuracy",
         "tflite_score": 0.84, "tflite_mb": 48.0, "latency_ms": 1.0, "verified": False},
        {"task": "sst2", "variant": "nothing", "tags": [], "baseline": "float32", "metric": "accuracy",
         "tflite_score": 0.5, "tflite_mb": None, "latency_ms": None},
    ]
    doc = {"benchmark": name, "date": "2026-01-01", "machine": "test", "command": "test", "int8_peak_gmacs": 400.0,
           "rows": rows}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_load_points_reads_rows_computes_ratios_and_lists_skipped_rows(tmp_path):
    path = _results(tmp_path)
    (tmp_path / "notes.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "broken.json").write_text("{")
    points, skipped = load_points([path, tmp_path / "notes.json", tmp_path / "broken.json"])
    by = {p.label: p for p in points}
    assert list(by) == ["bench/float32", "bench/dynamic", "bench/keras-only", "bench/untimed", "bench/orphan"]
    base, dyn = by["bench/float32"], by["bench/dynamic"]
    assert base.baseline and base.speedup == 1.0 and base.size_ratio == 1.0
    assert dyn.score == 0.89 and dyn.score_source == "tflite"      # the .tflite's score, not Keras's
    assert dyn.size_mb == 22.5 and dyn.size_ratio == 4.0 and dyn.speedup == 2.5 and dyn.latency_threads == 2
    assert by["bench/keras-only"].score == 0.85 and by["bench/keras-only"].score_source == "keras"
    assert by["bench/untimed"].speedup is None and by["bench/untimed"].size_mb == 45.0
    assert by["bench/orphan"].speedup is None and by["bench/orphan"].verified is False
    reasons = dict(skipped)
    assert "no dev score" in reasons["bench/no-metric"]
    assert "left out of the latency plot" in reasons["bench/untimed"]
    assert "'missing' is not a row of the same file" in reasons["bench/orphan"]
    assert "no tflite_mb and no speed-up" in reasons["bench/nothing"]
    assert "not a results file" in reasons["notes"]
    assert "cannot read" in reasons[str(tmp_path / "broken.json")]


def test_one_thread_latency_is_used_when_a_run_timed_only_one_thread(tmp_path):
    doc = {"rows": [
        {"task": "sst2", "variant": "float32", "tags": ["baseline"], "baseline": None, "tflite_score": 0.9,
         "tflite_mb": 4.0, "latency_ms": None, "latency_ms_1thread": 3.0},
        {"task": "sst2", "variant": "dynamic", "tags": ["ptq-dynamic"], "baseline": "float32", "tflite_score": 0.9,
         "tflite_mb": 1.0, "latency_ms": None, "latency_ms_1thread": 1.5}]}
    (tmp_path / "run.json").write_text(json.dumps(doc))
    points, skipped = load_points([tmp_path / "run.json"])
    assert skipped == []
    assert [(p.speedup, p.latency_threads) for p in points] == [(1.0, 1), (2.0, 1)]


def test_markdown_front(tmp_path):
    points, _ = load_points([_results(tmp_path)])
    table = markdown_front(points, "size_mb", "score").splitlines()
    assert table[0].startswith("| point |") and len(table) == 2 + 2
    assert table[2].startswith("| bench/dynamic | ptq-dynamic | 0.8900 | 22.5 | 4.00 | 2.50 | yes |")
    assert table[3].startswith("| bench/untimed | float16 | 0.9000 | 45.0 | 2.00 | — | — |")   # beats float32
    speed = markdown_front(points, "speedup", "score", x_better="larger")
    assert "bench/orphan" not in speed and "bench/dynamic" in speed


def test_plot_pareto_writes_two_pngs(tmp_path):
    points, _ = load_points([_results(tmp_path)])
    paths = plot_pareto(points, tmp_path / "plots")
    assert [p.name for p in paths] == [SIZE_PNG, LATENCY_PNG]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    # A task without points still gets (empty, labelled) figures.
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in plot_pareto(points, tmp_path / "mrpc", task="mrpc"))


def test_plot_pareto_without_matplotlib_says_so(tmp_path, monkeypatch):
    points, _ = load_points([_results(tmp_path)])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install 'matplotlib>=3.7'"):
        plot_pareto(points, tmp_path)


def test_cli_report(tmp_path, capsys):
    from tfbertopt.cli import main

    path = _results(tmp_path)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "out" / SIZE_PNG).read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / "out" / LATENCY_PNG).read_bytes()[:8] == PNG_SIGNATURE
    assert "bench/no-metric: no dev score" in printed and "| bench/dynamic |" in printed
    assert main(["report", str(path), "--out", str(tmp_path / "out"), "--task", "rte"]) == 2
