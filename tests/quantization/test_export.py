"""Full-integer LiteRT export of quantization-aware models, and the int8-safe attention mask of every int8 export."""

import os

import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.export.litert import ExportError, export_litert
from tfbertopt.export.verify import run_litert
from tfbertopt.quantization import activation_ranges, quantize_model
from tfbertopt.train import finetune, predict_logits


def _tensor_scales(path):
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return np.array([d["quantization"][0] for d in details if d["quantization"][0] > 0])


def _softmax_input_scales(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return [details[op["inputs"][0]]["quantization"][0] for op in interpreter._get_ops_details()
            if op["op_name"] == "SOFTMAX"]


def test_qat_export_uses_the_trained_ranges_and_agrees_with_keras(tiny_classifier, demo_data, tmp_path):
    train, dev = demo_data
    qat = quantize_model(tiny_classifier, calibration=train, calibration_steps=32)
    finetune(qat, train.take(64), None, epochs=1, batch_size=16, learning_rate=1e-3, verbose=0)
    result = export_litert(qat, os.path.join(tmp_path, "qat_int8.tflite"), "int8", 16, calibration=train)
    scales = _tensor_scales(result.path)
    for path, (lo, hi) in activation_ranges(qat).items():
        scale = (max(hi, 0.0) - min(lo, 0.0)) / 255
        assert np.any(np.isclose(scales, scale, rtol=1e-5, atol=0)), f"{path}: trained scale {scale} not in the model"
    assert result.op_report.counts["FULLY_CONNECTED"]["int8"] > 0
    features = encode(dev.texts, qat.preprocessor)
    keras_logits, tflite_logits = predict_logits(qat, features), run_litert(result.path, features)
    assert np.mean(keras_logits.argmax(-1) == tflite_logits.argmax(-1)) >= 0.95
    assert np.abs(keras_logits - tflite_logits).max() < 0.1


@pytest.mark.parametrize("target", ["int8", "int8-matmul"])
def test_qat_of_factorized_layers_exports_every_trained_range(tiny_classifier, demo_data, tmp_path, target):
    from tfbertopt.factorization import factorize
    from tfbertopt.kernels import find_kernels
    from tfbertopt.quantization import QuantizationConfig

    train, dev = demo_data
    low = factorize(tiny_classifier, rank=8, roles=["attention_query", "attention_output", "ffn_intermediate"])
    qat = quantize_model(low, QuantizationConfig.for_export(target), calibration=train, calibration_steps=32)
    factorized = {r.layer.path for r in find_kernels(qat, roles="encoder") if r.part == "factor_in"}
    assert len(factorized) == 3 * 2
    assert {p.rsplit("/", 1)[0] for p in activation_ranges(qat) if p.endswith("rank_quantizer")} == factorized
    finetune(qat, train.take(64), None, epochs=1, batch_size=16, learning_rate=1e-3, verbose=0)
    result = export_litert(qat, os.path.join(tmp_path, f"qat_low_rank_{target}.tflite"), target, 16,
                           calibration=train)
    scales = _tensor_scales(result.path)
    for path, (lo, hi) in activation_ranges(qat).items():
        scale = (max(hi, 0.0) - min(lo, 0.0)) / 255
        assert np.any(np.isclose(scales, scale, rtol=1e-5, atol=0)), f"{path}: trained scale {scale} not in the model"
    # Each factor pair is two int8 FULLY_CONNECTED ops.
    assert result.op_report.counts["FULLY_CONNECTED"]["int8"] >= 2 * len(factorized)
    features = encode(dev.texts, qat.preprocessor)
    keras_logits, tflite_logits = predict_logits(qat, features), run_litert(result.path, features)
    assert np.mean(keras_logits.argmax(-1) == tflite_logits.argmax(-1)) >= 0.95


def test_untrained_uncalibrated_qat_model_is_refused(tiny_classifier, demo_data, tmp_path):
    qat = quantize_model(tiny_classifier)
    with pytest.raises(ExportError, match="never seen data"):
        export_litert(qat, os.path.join(tmp_path, "m.tflite"), "int8", 16, calibration=demo_data[0])
    assert not os.path.exists(os.path.join(tmp_path, "m.tflite"))


def test_int8_attention_mask_keeps_scores_resolvable(tiny_classifier, demo_data, tmp_path):
    """Keras' -1e9 mask gives the softmax input a ~4e6 int8 step (uniform attention); the floor does not."""
    train = demo_data[0]
    floor = export_litert(tiny_classifier, os.path.join(tmp_path, "floor_int8.tflite"), "int8", 16,
                          calibration=train, calibration_steps=32)
    naive = export_litert(tiny_classifier, os.path.join(tmp_path, "keras_int8.tflite"), "int8", 16,
                          calibration=train, calibration_steps=32, attention_masking="keras")
    attention = slice(0, 2)   # the two encoder softmaxes (the third is the output probabilities)
    assert max(_softmax_input_scales(floor.path)[attention]) < 0.5
    assert min(_softmax_input_scales(naive.path)[attention]) > 1e5
    with pytest.raises(ValueError, match="attention_masking"):
        export_litert(tiny_classifier, os.path.join(tmp_path, "x.tflite"), "int8", 16, calibration=train,
                      attention_masking="none")
