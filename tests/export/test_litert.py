"""LiteRT export: builtin ops only, named signature, outputs that match Keras, and loud failures."""

import keras
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.export.litert import ExportError, export_litert, op_counts
from tfbertopt.export.verify import VerificationError, run_litert, verify_litert
from tfbertopt.train import predict_logits


@pytest.fixture(scope="module")
def exported(shared_classifier, tmp_path_factory):
    """`exported(quantization, **kwargs)`: the module's one export of `shared_classifier` per mode and options
    (sequence length 16), converted on first use. Tests that check what an export call itself does export anew."""
    folder, cache = tmp_path_factory.mktemp("exports"), {}

    def export(quantization="float32", **kwargs):
        key = (quantization, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = export_litert(shared_classifier, folder / f"m{len(cache)}_{quantization}.tflite",
                                       quantization, sequence_length=16, **kwargs)
        return cache[key]

    return export


def test_float32_export_matches_keras(shared_classifier, exported, demo_data):
    _, dev = demo_data
    result = exported("float32")
    assert result.input_names == ("token_ids", "padding_mask", "segment_ids")
    assert not [op for op in result.ops if op.startswith("Flex")]
    report = verify_litert(result.path, shared_classifier, dev)
    assert report.passed and report.n == len(dev)
    assert report.max_logit_diff <= 1e-4
    assert report.tflite_score == report.keras_score


def test_signature_names_and_probabilities(shared_classifier, exported):
    from ai_edge_litert.interpreter import Interpreter

    path = exported("float32").path
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    assert set(runner.get_input_details()) == {"token_ids", "padding_mask", "segment_ids"}
    features = encode([("the movie is great",)], shared_classifier.preprocessor)
    out = runner(**features)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"], keras.ops.softmax(out["logits"]), atol=1e-6)


def test_quantized_exports_are_smaller_and_agree(shared_classifier, exported, demo_data):
    _, dev = demo_data
    sizes = {}
    for q in ("float32", "float16", "dynamic"):
        result = exported(q)
        sizes[q] = result.size_bytes
        assert verify_litert(result.path, shared_classifier, dev).passed
    assert sizes["dynamic"] < sizes["float16"] < sizes["float32"]


def test_dynamic_shape_export_runs_any_length(shared_classifier, demo_data, tmp_path):
    _, dev = demo_data
    path = export_litert(shared_classifier, tmp_path / "dyn.tflite", sequence_length=None).path
    features = encode(dev.texts[:8], shared_classifier.preprocessor)
    np.testing.assert_allclose(run_litert(path, features), predict_logits(shared_classifier, features), atol=1e-4)


def test_distilbert_export_without_segment_ids(tmp_path):
    import keras_hub

    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                                   intermediate_dim=16, max_sequence_length=16)
    clf = keras_hub.models.DistilBertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    result = export_litert(clf, tmp_path / "d.tflite", sequence_length=8)
    assert result.input_names == ("token_ids", "padding_mask")
    x = {"token_ids": np.array([[2, 5, 6, 3, 0, 0, 0, 0]], np.int32),
         "padding_mask": np.array([[1, 1, 1, 1, 0, 0, 0, 0]], np.int32)}
    np.testing.assert_allclose(run_litert(result.path, x), np.asarray(clf(x)), atol=1e-5)


def test_verifier_catches_a_model_that_disagrees(tiny_classifier, exported, demo_data):
    """An export whose weights differ from the Keras model (the silent all-NaN/uninitialised-weights trap looks
    the same to the verifier) must fail verification and refuse under raise_on_failure."""
    _, dev = demo_data
    path = exported("float32").path   # the export of an identical classifier (same seed) ...
    assert verify_litert(path, tiny_classifier, dev).passed
    kernel = tiny_classifier.output_dense.kernel   # ... until this one changes
    kernel.assign(kernel * 3.0 + 0.1)
    report = verify_litert(path, tiny_classifier, dev)
    assert not report.passed and report.max_logit_diff > 1e-4
    with pytest.raises(VerificationError, match="FAILED"):
        verify_litert(path, tiny_classifier, dev, raise_on_failure=True)


def test_flex_only_ops_are_refused_with_their_names(tmp_path):
    import tensorflow as tf

    class Weird(keras.layers.Layer):
        def call(self, x):
            return tf.linalg.det(x)

        def compute_output_shape(self, shape):
            return shape[:-2]

    inputs = keras.Input((3, 3), batch_size=1)
    model = keras.Model(inputs, Weird()(inputs))
    from tfbertopt.export import litert

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: model(x),
                         input_signature=[tf.TensorSpec((1, 3, 3), tf.float32)])
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    with pytest.raises(ExportError, match="MatrixDeterminant"):
        litert.convert_saved_model(str(tmp_path / "sm"), "float32")


def test_unknown_quantization_rejected(shared_classifier, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization 'int2'"):
        export_litert(shared_classifier, tmp_path / "m.tflite", "int2")


def test_export_leaves_preprocessor_attached(shared_classifier, tmp_path):
    pre = shared_classifier.preprocessor
    export_litert(shared_classifier, tmp_path / "m.tflite", sequence_length=16)
    assert shared_classifier.preprocessor is pre
    assert op_counts(str(tmp_path / "m.tflite"))["FULLY_CONNECTED"] > 0


def test_export_verified_refuses_a_failing_model_unless_forced(shared_classifier, demo_data, tmp_path):
    import json

    from tfbertopt.export.verified import export_verified

    _, dev = demo_data
    result, report = export_verified(shared_classifier, tmp_path / "ok.tflite", dev, sequence_length=16)
    record = json.loads((tmp_path / "ok.tflite.json").read_text())
    assert record["verification"]["passed"] is True and record["versions"]["tensorflow"]
    assert record["ops"]["FULLY_CONNECTED"] > 0
    # An impossible tolerance makes verification fail: nothing may be written.
    with pytest.raises(VerificationError, match="refusing to write"):
        export_verified(shared_classifier, tmp_path / "bad.tflite", dev, sequence_length=16, max_logit_diff=-1.0)
    assert not list(tmp_path.glob("bad.tflite*"))
    _, forced = export_verified(shared_classifier, tmp_path / "bad.tflite", dev, sequence_length=16,
                                max_logit_diff=-1.0, force=True)
    record = json.loads((tmp_path / "bad.tflite.json").read_text())
    assert not forced.passed and record["verification"]["forced"] is True
    # Full-integer export goes through the same gate with its calibration set; the report counts float ops.
    with pytest.raises(ValueError, match="calibration"):
        export_verified(shared_classifier, tmp_path / "int8.tflite", dev, "int8", sequence_length=16)
    export_verified(shared_classifier, tmp_path / "int8.tflite", dev, "int8", sequence_length=16, force=True,
                    calibration=dev, calibration_steps=8)
    record = json.loads((tmp_path / "int8.tflite.json").read_text())
    assert record["quantization"] == "int8" and isinstance(record["float_ops"], int)


def test_int8_full_integer_export_keeps_the_signature_and_agrees(tiny_classifier, demo_data, tmp_path):
    """Full-integer PTQ of a tiny model trained a few steps: int8 FULLY_CONNECTED ops, int32 token inputs and float
    outputs as before, and label agreement with Keras under the quantized criterion."""
    from ai_edge_litert.interpreter import Interpreter

    from tfbertopt.train import finetune

    train, dev = demo_data
    finetune(tiny_classifier, train, epochs=1, batch_size=16, learning_rate=3e-3, max_steps=8, verbose=0)
    result = export_litert(tiny_classifier, tmp_path / "m_int8.tflite", "int8", sequence_length=16,
                           calibration=train, calibration_steps=32)
    assert result.quantization == "int8" and result.op_report is not None
    fc = result.op_report.counts["FULLY_CONNECTED"]
    assert fc["int8"] >= 8 and fc["int8"] == result.ops["FULLY_CONNECTED"]
    assert result.float_op_count == len(result.op_report.float_ops) < len(result.op_report.ops) // 4
    assert not [op for op in result.ops if op.startswith("Flex")]
    runner = Interpreter(model_path=result.path).get_signature_runner("serving_default")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert {k: v["dtype"] for k, v in inputs.items()} == dict.fromkeys(("token_ids", "padding_mask", "segment_ids"),
                                                                         np.int32)
    assert all(tuple(v["shape"]) == (1, 16) for v in inputs.values())
    assert {k: v["dtype"] for k, v in outputs.items()} == {"logits": np.float32, "probabilities": np.float32}
    report = verify_litert(result.path, tiny_classifier, dev, quantized=True)
    assert report.passed, report.summary()
    assert result.size_bytes < export_litert(tiny_classifier, tmp_path / "f.tflite", sequence_length=16).size_bytes


def test_int8_calibrates_from_a_feature_dict_of_another_length(shared_classifier, demo_data, tmp_path):
    train, _ = demo_data
    features = encode(train.texts[:24], shared_classifier.preprocessor)
    wide = {k: np.pad(v, ((0, 0), (0, 8))) for k, v in features.items()}  # 24 columns; the export is 16
    result = export_litert(shared_classifier, tmp_path / "m_int8.tflite", "int8", sequence_length=16,
                           calibration=wide)
    assert result.op_report.counts["FULLY_CONNECTED"]["int8"] > 0


@pytest.mark.parametrize("quantization", ["int8", "16x8"])
def test_calibrated_modes_require_a_calibration_set(shared_classifier, tmp_path, quantization):
    with pytest.raises(ValueError, match=rf"quantization='{quantization}' needs a calibration set: pass "
                                         r"calibration="):
        export_litert(shared_classifier, tmp_path / "m.tflite", quantization, sequence_length=16)
    assert not (tmp_path / "m.tflite").exists()


def test_int8_with_wrong_calibration_inputs_fails_before_converting(shared_classifier, tmp_path):
    bad = {"token_ids": np.zeros((4, 16), np.float32), "padding_mask": np.ones((4, 16), np.int32),
           "segment_ids": np.zeros((4, 16), np.int32)}
    with pytest.raises(ValueError, match="calibration input 'token_ids' has dtype float32"):
        export_litert(shared_classifier, tmp_path / "m.tflite", "int8", sequence_length=16, calibration=bad)
    with pytest.raises(ValueError, match=r"lacks the model input\(s\) \['segment_ids'\]"):
        export_litert(shared_classifier, tmp_path / "m.tflite", "int8", sequence_length=16,
                      calibration={k: v.astype(np.int32) for k, v in bad.items() if k != "segment_ids"})
    assert not (tmp_path / "m.tflite").exists()


def test_16x8_exports_int16_activations_and_agrees_with_keras(shared_classifier, demo_data, tmp_path):
    """Keras' embedding index arithmetic and SQUARED_DIFFERENCE LayerNorm blocked 16x8 (TF 2.21); the 16x8 trace
    avoids both, so the file converts and runs with int16 activations."""
    from ai_edge_litert.interpreter import Interpreter

    from tfbertopt.export.verify import run_litert
    from tfbertopt.train import predict_logits

    train, dev = demo_data
    result = export_litert(shared_classifier, tmp_path / "m_16x8.tflite", "16x8", sequence_length=16,
                           calibration=train, calibration_steps=16)
    dtypes = {d["dtype"].__name__ for d in Interpreter(model_path=result.path).get_tensor_details()}
    assert "int16" in dtypes and result.op_report.float_op_count <= 4
    features = encode(dev.texts, shared_classifier.preprocessor)
    assert np.abs(run_litert(result.path, features) - predict_logits(shared_classifier, features)).max() < 5e-3


def test_older_modes_have_no_op_report_and_ignore_calibration(shared_classifier, demo_data, tmp_path):
    train, _ = demo_data
    result = export_litert(shared_classifier, tmp_path / "m.tflite", "dynamic", sequence_length=16, calibration=train)
    assert result.op_report is None and result.float_op_count is None


def test_float_exports_mask_attention_with_one_add_not_selects(shared_classifier, exported, demo_data, tmp_path):
    """Keras' Softmax(mask=) traces two SELECT_V2 per layer on the (heads, T, T) scores, which LiteRT runs outside
    XNNPACK; the additive mask adds a bias instead and computes the same logits (padded dev sentences)."""
    _, dev = demo_data
    features = encode(dev.texts, shared_classifier.preprocessor)
    assert (features["padding_mask"] == 0).any()
    keras_logits = predict_logits(shared_classifier, features)
    additive, selects = exported("float32"), exported("float32", attention_masking="keras")
    assert additive.ops["SELECT_V2"] == 0 and selects.ops["SELECT_V2"] >= 4
    assert additive.ops["SOFTMAX"] == selects.ops["SOFTMAX"] == 3
    for path in (additive.path, selects.path):
        np.testing.assert_allclose(run_litert(path, features), keras_logits, atol=1e-4)
    with pytest.raises(ValueError, match=r"attention_masking must be one of \('auto', 'floor', 'additive'"):
        export_litert(shared_classifier, tmp_path / "x.tflite", "float32", sequence_length=16,
                      attention_masking="select")


def test_masking_reaches_attention_without_dropout(demo_data, tmp_path):
    """Keras sends layers without attention dropout through its fused dot_product_attention, which masks with its
    own SELECT and never calls _masked_softmax: both export maskings must still apply (and agree with Keras)."""
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    train, dev = demo_data
    clf = tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                               sequence_length=16, dropout=0.0)
    features = encode(dev.texts, clf.preprocessor)
    float_file = export_litert(clf, tmp_path / "f.tflite", "float32", sequence_length=16)
    assert float_file.ops["SELECT_V2"] == 0
    np.testing.assert_allclose(run_litert(float_file.path, features), predict_logits(clf, features), atol=1e-4)
    int8 = export_litert(clf, tmp_path / "q_int8.tflite", "int8", sequence_length=16, calibration=train,
                         calibration_steps=16)
    assert int8.ops["REDUCE_MIN"] >= 1  # the row-relative floor is in the graph
    with pytest.raises(ValueError, match="'additive' puts -1e9 into the integer softmax input"):
        export_litert(clf, tmp_path / "x.tflite", "int8", sequence_length=16, calibration=train,
                      attention_masking="additive")


def test_additive_bias_is_finite_in_float16():
    from tfbertopt.export.attention_masking import additive_bias

    bias = np.asarray(additive_bias(np.array([True, True, False]), "float16"))
    assert bias.dtype == np.float16 and np.isfinite(bias).all() and bias[0] == 0 and bias[2] <= -1e4
