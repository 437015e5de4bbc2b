"""Per-channel output scales for int8 matmuls, and the "int8-matmul" export that uses them."""

import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.export.channel_equalization import equalized_matmuls
from tfbertopt.quantizers.channel_scales import equalization_scales, matmul_ranges
from tfbertopt.export.litert import export_litert
from tfbertopt.export.verify import run_litert
from tfbertopt.kernels import find_kernels
from tfbertopt.train import predict_logits

from helpers.outliers import plant_outlier_channel  # noqa: E402  (pytest puts tests/ on sys.path)


@pytest.fixture()
def features(tiny_classifier, demo_data):
    train, _ = demo_data
    return encode(train.texts[:32], tiny_classifier.preprocessor)


def test_rescaled_matmuls_compute_the_same_function(tiny_classifier, features):
    scales = equalization_scales(tiny_classifier, matmul_ranges(tiny_classifier, features), min_spread=1.0)
    assert len(scales) == 12  # every attention and FFN matmul of the 2 layers
    reference = predict_logits(tiny_classifier, features)
    with equalized_matmuls(scales):
        np.testing.assert_allclose(predict_logits(tiny_classifier, features), reference, atol=1e-4)
    np.testing.assert_allclose(predict_logits(tiny_classifier, features), reference, atol=0)  # patch undone


def test_ranges_are_the_channel_maxima_and_only_spread_layers_are_scaled(tiny_classifier, features):
    plant_outlier_channel(tiny_classifier)
    ranges = matmul_ranges(tiny_classifier, features)
    ffn = [r for r in find_kernels(tiny_classifier, roles=["ffn_output"])]
    for ref in ffn:
        assert ranges[ref.path].shape == (32,) and ranges[ref.path].argmax() == 3
    query = find_kernels(tiny_classifier, roles=["attention_query"])[0]
    assert ranges[query.path].shape == (2, 16)  # (heads, head_dim): the query's output channels
    scales = equalization_scales(tiny_classifier, ranges, min_spread=8.0)
    assert {id(r.layer) for r in ffn} <= set(scales) and all(s.spread > 8.0 for s in scales.values())
    for ref in ffn:
        sc = scales[id(ref.layer)]
        np.testing.assert_allclose(sc.kernel * sc.t, np.asarray(ref.layer.kernel), rtol=1e-5, atol=1e-7)


def test_bad_arguments_are_named(tiny_classifier, features):
    with pytest.raises(ValueError, match="min_spread must be >= 1"):
        equalization_scales(tiny_classifier, matmul_ranges(tiny_classifier, features), min_spread=0.5)
    with pytest.raises(ValueError, match="ranges name none of this model's encoder matmuls"):
        equalization_scales(tiny_classifier, {"other/kernel": np.ones(3)})
    with pytest.raises(ValueError, match="no encoder matmuls with roles"):
        matmul_ranges(tiny_classifier, features, roles=["embedding_projection"])


def test_int8_matmul_export_quantizes_only_the_matmuls(tiny_classifier, demo_data, tmp_path):
    train, dev = demo_data
    result = export_litert(tiny_classifier, tmp_path / "m_int8-matmul.tflite", "int8-matmul", sequence_length=16,
                           calibration=train, calibration_steps=32)
    counts = result.op_report.counts
    assert counts["FULLY_CONNECTED"]["int8"] == result.ops["FULLY_CONNECTED"] >= 12
    for op in ("SOFTMAX", "GELU", "ADD", "BATCH_MATMUL"):
        assert set(counts[op]) == {"float32"}, (op, counts[op])
    features = encode(dev.texts, tiny_classifier.preprocessor)
    keras_logits = predict_logits(tiny_classifier, features)
    assert np.abs(run_litert(result.path, features) - keras_logits).mean() < 0.05


def test_an_outlier_channel_no_longer_sets_the_int8_step(tiny_classifier, demo_data, tmp_path):
    """One FFN output channel 60x the others: with one scale per tensor its range rounds the other channels away;
    with per-channel output scales the int8 output tensor spans [-1, 1] and the file tracks Keras better."""
    from ai_edge_litert.interpreter import Interpreter

    from tfbertopt.train import finetune

    train, dev = demo_data
    plant_outlier_channel(tiny_classifier)
    finetune(tiny_classifier, train, epochs=1, batch_size=16, learning_rate=3e-3, max_steps=8, verbose=0)
    features = encode(dev.texts, tiny_classifier.preprocessor)
    keras_logits = predict_logits(tiny_classifier, features)
    errors, steps = {}, {}
    for name, spread in (("one-scale", None), ("equalized", 8.0)):
        path = export_litert(tiny_classifier, tmp_path / f"{name}_int8-matmul.tflite", "int8-matmul", 16,
                             calibration=train, calibration_steps=64, min_spread=spread).path
        errors[name] = float(np.abs(run_litert(path, features) - keras_logits).mean())
        interpreter = Interpreter(model_path=path)
        steps[name] = max(
            float(interpreter._get_tensor_details(op["outputs"][0], 0)["quantization_parameters"]["scales"][0])
            for op in interpreter._get_ops_details()
            if op["op_name"] == "FULLY_CONNECTED" and "feedforward_output" in
            interpreter._get_tensor_details(op["outputs"][0], 0)["name"])
    assert steps["equalized"] < 2.5 / 255 < steps["one-scale"], steps  # its calibrated range is about [-1, 1]
    assert errors["equalized"] < 0.75 * errors["one-scale"], errors


def test_int8_matmul_refuses_a_quantization_aware_model(tiny_classifier, demo_data, tmp_path):
    from tfbertopt.quantization import quantize_model

    train, _ = demo_data
    qat = quantize_model(tiny_classifier, calibration=train, calibration_steps=8)
    with pytest.raises(ValueError, match="trained for the 'int8' graph.*QuantizationConfig.for_export"):
        export_litert(qat, tmp_path / "q.tflite", "int8-matmul", 16, calibration=train)
    assert not (tmp_path / "q.tflite").exists()


def test_int8_matmul_exports_distilbert_and_factorized_models(tiny_classifier, demo_data, tmp_path):
    """No segment ids (DistilBERT), and low-rank projections (which keep one scale) beside plain ones."""
    import keras_hub

    from tfbertopt.factorization import factorize, plan_factorization

    train, _ = demo_data
    factorized = factorize(tiny_classifier, plan_factorization(tiny_classifier, rank=8, layers=[0]))
    features = encode(train.texts[:16], factorized.preprocessor)
    ranges = matmul_ranges(factorized, features)
    assert ranges and not any("layer_0/" in path for path in ranges)  # layer 0's projections are factorized
    result = export_litert(factorized, tmp_path / "f_int8-matmul.tflite", "int8-matmul", 16, calibration=train,
                           calibration_steps=16, min_spread=1.0)
    assert np.abs(run_litert(result.path, features) - predict_logits(factorized, features)).mean() < 0.05
    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                                   intermediate_dim=16, max_sequence_length=16)
    distil = keras_hub.models.DistilBertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    tokens = {"token_ids": np.random.default_rng(0).integers(1, 30, (16, 8)).astype("int32"),
              "padding_mask": np.ones((16, 8), "int32")}
    result = export_litert(distil, tmp_path / "d_int8-matmul.tflite", "int8-matmul", 8, calibration=tokens,
                           min_spread=1.0)
    assert result.input_names == ("token_ids", "padding_mask")
    assert result.op_report.counts["FULLY_CONNECTED"]["int8"] == result.ops["FULLY_CONNECTED"]


def test_the_traced_rescaled_graph_is_exact_in_float(tiny_classifier, features, tmp_path):
    """In the exported graph the scales pass through the run-time 1.0 and the RESHAPEs: a float32 file traced under
    equalized_matmuls computes the model's logits, and keeps its MULs (none folded into the weights)."""
    from tfbertopt.export.litert import convert_saved_model, op_counts, saved_model

    scales = equalization_scales(tiny_classifier, matmul_ranges(tiny_classifier, features), min_spread=1.0)
    plain = op_counts(export_litert(tiny_classifier, tmp_path / "p.tflite", "float32", 16).path)
    with equalized_matmuls(scales), saved_model(tiny_classifier, 16, "float32") as (folder, _):
        flatbuffer = convert_saved_model(folder, "float32")
    path = tmp_path / "e.tflite"
    path.write_bytes(flatbuffer)
    assert op_counts(flatbuffer)["MUL"] >= plain["MUL"] + len(scales)
    np.testing.assert_allclose(run_litert(str(path), features), predict_logits(tiny_classifier, features), atol=1e-4)
