"""bench.retime: every exported file timed in round-robin passes, the fastest pass kept; Keras-only rows skipped."""

from tfbertopt.bench import latency, retime


def test_round_robin_keeps_the_fastest_pass_and_skips_rows_without_a_file(monkeypatch):
    timings = iter([12.0, 20.0, 10.0, 18.0, 11.0, 19.0])     # (2 threads, 1 thread) per pass
    calls = []

    def fake_latency(path, num_threads, runs):
        calls.append((path, num_threads))
        return next(timings)

    monkeypatch.setattr(latency, "litert_latency_ms", fake_latency)
    monkeypatch.setattr(latency, "int8_peak_gmacs", lambda num_threads: 400.0)
    exported = {"variant": "ptq-int8", "quantization": "int8", "tflite_score": 0.86, "macs": 1_000_000_000}
    simulated = {"variant": "sim-residual-tensor", "tflite_score": None, "keras_score": 0.88}
    peak = retime.time_round_robin([exported, simulated], "models", runs=1, passes=3, log=lambda *_: None)

    assert peak == 400.0
    assert {path for path, _ in calls} == {"models/ptq-int8_int8.tflite"}
    assert exported["latency_ms"] == 10.0 and exported["latency_ms_1thread"] == 18.0
    assert exported["latency_ms_passes"] == [12.0, 10.0, 11.0]
    assert exported["peak_share"] == round(1e9 / 0.010 / 400e9, 4)
    assert "latency_ms" not in simulated


def test_single_pass_retime_skips_rows_without_a_file(monkeypatch, tmp_path):
    import json

    (tmp_path / "ptq-int8_int8.tflite").write_bytes(b"")
    rows = [{"variant": "ptq-int8", "quantization": "int8", "tflite_score": 0.86, "macs": 1_000_000_000},
            {"variant": "sim-residual-tensor", "tflite_score": None, "keras_score": 0.88}]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"benchmark": "b", "command": "c", "int8_peak_gmacs": 1.0, "rows": rows,
                                   "notes": "kept"}))
    monkeypatch.setattr(latency, "litert_latency_ms", lambda path, num_threads, runs: 10.0 * num_threads)
    monkeypatch.setattr(latency, "int8_peak_gmacs", lambda num_threads: 400.0)
    doc = retime.retime(str(results), str(tmp_path), runs=1)

    assert doc["rows"][0]["latency_ms"] == 20.0 and doc["rows"][0]["latency_ms_1thread"] == 10.0
    assert "latency_ms" not in doc["rows"][1]
    assert doc["notes"] == "kept" and doc["int8_peak_gmacs"] == 400.0 and "retimed" in doc
