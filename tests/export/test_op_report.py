"""op_report: which ops run in int8 / hybrid / float, why float ops stayed float, and what XNNPACK takes."""

import pytest

from tfbertopt.export.litert import export_litert, op_counts
from tfbertopt.export.op_report import OpReport, _classify, op_report


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tfbertopt.data.demo import demo_examples, demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64,
                               sequence_length=16)
    tmp = tmp_path_factory.mktemp("op_report")
    results = {q: export_litert(clf, tmp / f"m_{q}.tflite", q, sequence_length=16,
                                calibration=demo_examples("train", 32) if q == "int8" else None)
               for q in ("float32", "dynamic", "int8")}
    results["int8-keras-ops"] = export_litert(clf, tmp / "m_int8_keras.tflite", "int8", sequence_length=16,
                                              calibration=demo_examples("train", 32), trace_form="keras")
    return results


@pytest.mark.parametrize("quantization", ["float32", "dynamic", "int8", "int8-keras-ops"])
def test_counts_match_op_counts(exported, quantization):
    path = exported[quantization].path
    report = op_report(path)
    assert report.op_counts == op_counts(path)
    assert sum(sum(c.values()) for c in report.counts.values()) == len(report.ops)


@pytest.mark.parametrize("variant", ["int8", "int8-keras-ops"])
def test_int8_report(exported, variant):
    result = exported[variant]
    report = op_report(result.path)
    assert report.counts["FULLY_CONNECTED"] == {"int8": result.ops["FULLY_CONNECTED"]}
    assert report.counts["DEQUANTIZE"]["conversion"] > 0  # float logits out
    assert report.float_op_count == result.float_op_count
    assert all(op.reason for op in report.float_ops)
    assert report.delegate_partitions >= 1
    assert all(op.delegated is not None for op in report.ops)
    text = report.summary()
    assert "int8" in text and "XNNPACK" in text and "FULLY_CONNECTED" in text
    for op in report.float_ops:
        assert op.op_name in text


def test_integer_trace_form_removes_squared_difference_and_float_islands(exported):
    """Keras' LayerNorm traces to an int8 SQUARED_DIFFERENCE and its embedding lookup to a negative-id wrap with
    QUANTIZE/DEQUANTIZE around it; the integer trace form (the int8 default) has MUL-based variances and plain
    gathers of int8 tables instead, and no more float ops."""
    keras_ops, integer = op_report(exported["int8-keras-ops"].path), op_report(exported["int8"].path)
    assert keras_ops.op_counts["SQUARED_DIFFERENCE"] > 0 and "SQUARED_DIFFERENCE" not in integer.op_counts
    assert keras_ops.counts["QUANTIZE"]["conversion"] > 0 and "QUANTIZE" not in integer.op_counts
    assert integer.op_counts["SUB"] >= keras_ops.op_counts["SQUARED_DIFFERENCE"]
    assert integer.float_op_count <= keras_ops.float_op_count


def test_dynamic_report_has_hybrid_matmuls_and_one_reason(exported):
    report = op_report(exported["dynamic"].path, delegates=False)
    assert report.counts["FULLY_CONNECTED"]["hybrid"] > 0
    assert report.delegate_partitions is None
    assert len({op.reason for op in report.float_ops}) == 1
    assert "dynamic-range" in report.summary()


def test_float_report_is_all_float(exported):
    report = op_report(exported["float32"].path, delegates=False)
    assert set(report.kind_counts) <= {"float32", "integer"}
    assert report.float_op_count == report.kind_counts["float32"]


def test_classify():
    assert _classify("QUANTIZE", [("float32", False)], [("int8", True)]) == "conversion"
    assert _classify("FULLY_CONNECTED", [("float32", False), ("int8", True)], [("float32", False)]) == "hybrid"
    assert _classify("FULLY_CONNECTED", [("int8", True), ("int8", True)], [("int8", True)]) == "int8"
    assert _classify("FULLY_CONNECTED", [("int16", True), ("int8", True)], [("int16", True)]) == "int16"
    assert _classify("ADD", [("int32", False)] * 2, [("int32", False)]) == "integer"
    assert _classify("NEG", [("float32", False)], [("float32", False)]) == "float32"
    assert OpReport("x", []).summary().startswith("x: 0 ops")
