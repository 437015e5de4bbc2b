"""Benchmark harness: rows in the BENCHMARKS.md format, ratios, and positive timings."""

import json

import pytest

from tfbertopt.bench import harness
from tfbertopt.bench.latency import int8_peak_gmacs, litert_latency_ms
from tfbertopt.export.litert import export_litert


def test_write_results_format(tmp_path):
    rows = [
        {"task": "sst2", "variant": "float32", "tags": ["baseline"], "baseline": None, "tflite_mb": 90.0,
         "latency_ms": 30.0, "macs": 3e9},
        {"task": "sst2", "variant": "dynamic", "tags": ["ptq-dynamic"], "baseline": "float32", "tflite_mb": 22.5,
         "latency_ms": 10.0, "macs": 3e9},
    ]
    doc = harness.write_results(tmp_path / "r.json", "b", "cmd", rows, 400.04)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == doc
    assert set(saved) >= {"benchmark", "date", "machine", "command", "int8_peak_gmacs", "rows"}
    assert saved["int8_peak_gmacs"] == 400.0
    assert saved["versions"]["tensorflow"] and saved["versions"]["ai-edge-litert"]
    assert saved["rows"][1]["size_ratio"] == 4.0 and saved["rows"][1]["speedup"] == 3.0
    assert "size_ratio" not in saved["rows"][0]
    table = (tmp_path / "r.md").read_text()
    assert "| dynamic | sst2 |" in table and "4.00" in table


def test_latency_and_peak_are_positive(tiny_classifier, tmp_path):
    path = export_litert(tiny_classifier, tmp_path / "m.tflite", sequence_length=16).path
    assert 0 < litert_latency_ms(path, num_threads=1, runs=3, warmup=1) < 1000
    assert int8_peak_gmacs(num_threads=1, runs=2, size=128, layers=1, rows=16) > 0.1


def test_keras_throughput(tiny_classifier):
    assert harness.keras_throughput(tiny_classifier, sequence_length=16, batch_size=4, batches=1) > 0


def test_retime_rewrites_latencies_in_one_pass(tiny_classifier, tmp_path):
    from tfbertopt.bench.retime import retime

    export_litert(tiny_classifier, tmp_path / "base_float32.tflite", sequence_length=16)
    export_litert(tiny_classifier, tmp_path / "small_dynamic.tflite", "dynamic", sequence_length=16)
    rows = [{"task": "sst2", "variant": "base", "baseline": None, "quantization": "float32", "latency_ms": 999.0,
             "macs": 1000, "tflite_mb": 2.0},
            {"task": "sst2", "variant": "small", "baseline": "base", "quantization": "dynamic", "latency_ms": 1.0,
             "macs": 1000, "tflite_mb": 1.0}]
    harness.write_results(tmp_path / "r.json", "b", "cmd", rows, 100.0, extra={"teacher": "t"})
    doc = retime(str(tmp_path / "r.json"), str(tmp_path), runs=3)
    assert all(0 < r["latency_ms"] < 999 for r in doc["rows"])
    assert doc["teacher"] == "t" and "retimed" in doc and doc["command"] == "cmd"
    assert doc["rows"][1]["speedup"] == round(doc["rows"][0]["latency_ms"] / doc["rows"][1]["latency_ms"], 3)
    with pytest.raises(FileNotFoundError, match="missing|no .tflite"):
        retime(str(tmp_path / "r.json"), str(tmp_path / "elsewhere"))
