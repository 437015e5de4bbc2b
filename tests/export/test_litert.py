"""LiteRT export: builtin ops only, named signature, outputs that match Keras, and loud failures."""

import keras
import numpy as np
import pytest

from tfbertopt.data.pipeline import encode, without_preprocessor
from tfbertopt.export.litert import ExportError, export_litert, op_counts
from tfbertopt.export.verify import VerificationError, run_litert, verify_litert
from tfbertopt.train import predict_logits


def test_float32_export_matches_keras(tiny_classifier, demo_data, tmp_path):
    _, dev = demo_data
    result = export_litert(tiny_classifier, tmp_path / "m_float32.tflite", "float32", sequence_length=16)
    assert result.input_names == ("token_ids", "padding_mask", "segment_ids")
    assert not [op for op in result.ops if op.startswith("Flex")]
    report = verify_litert(result.path, tiny_classifier, dev)
    assert report.passed and report.n == len(dev)
    assert report.max_logit_diff <= 1e-4
    assert report.tflite_score == report.keras_score


def test_signature_names_and_probabilities(tiny_classifier, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = export_litert(tiny_classifier, tmp_path / "m.tflite", sequence_length=16).path
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    assert set(runner.get_input_details()) == {"token_ids", "padding_mask", "segment_ids"}
    features = encode([("the movie is great",)], tiny_classifier.preprocessor)
    out = runner(**features)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"], keras.ops.softmax(out["logits"]), atol=1e-6)


def test_quantized_exports_are_smaller_and_agree(tiny_classifier, demo_data, tmp_path):
    _, dev = demo_data
    sizes = {}
    for q in ("float32", "float16", "dynamic"):
        result = export_litert(tiny_classifier, tmp_path / f"m_{q}.tflite", q, sequence_length=16)
        sizes[q] = result.size_bytes
        assert verify_litert(result.path, tiny_classifier, dev).passed
    assert sizes["dynamic"] < sizes["float16"] < sizes["float32"]


def test_dynamic_shape_export_runs_any_length(tiny_classifier, demo_data, tmp_path):
    _, dev = demo_data
    path = export_litert(tiny_classifier, tmp_path / "dyn.tflite", sequence_length=None).path
    features = encode(dev.texts[:8], tiny_classifier.preprocessor)
    np.testing.assert_allclose(run_litert(path, features), predict_logits(tiny_classifier, features), atol=1e-4)


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


def test_verifier_catches_a_model_that_disagrees(tiny_classifier, demo_data, tmp_path):
    """An export whose weights differ from the Keras model (the silent all-NaN/uninitialised-weights trap looks
    the same to the verifier) must fail verification and refuse under raise_on_failure."""
    _, dev = demo_data
    path = export_litert(tiny_classifier, tmp_path / "m.tflite", sequence_length=16).path
    kernel = tiny_classifier.output_dense.kernel
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
        litert._convert(str(tmp_path / "sm"), "float32")


def test_unknown_quantization_rejected(tiny_classifier, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        export_litert(tiny_classifier, tmp_path / "m.tflite", "int4")


def test_export_leaves_preprocessor_attached(tiny_classifier, tmp_path):
    pre = tiny_classifier.preprocessor
    export_litert(tiny_classifier, tmp_path / "m.tflite", sequence_length=16)
    assert tiny_classifier.preprocessor is pre
    assert op_counts(str(tmp_path / "m.tflite"))["FULLY_CONNECTED"] > 0


def test_export_verified_refuses_a_failing_model_unless_forced(tiny_classifier, demo_data, tmp_path):
    import json

    from tfbertopt.export.verified import export_verified

    _, dev = demo_data
    result, report = export_verified(tiny_classifier, tmp_path / "ok.tflite", dev, sequence_length=16)
    record = json.loads((tmp_path / "ok.tflite.json").read_text())
    assert record["verification"]["passed"] is True and record["versions"]["tensorflow"]
    assert record["ops"]["FULLY_CONNECTED"] > 0
    # An impossible tolerance makes verification fail: nothing may be written.
    with pytest.raises(VerificationError, match="refusing to write"):
        export_verified(tiny_classifier, tmp_path / "bad.tflite", dev, sequence_length=16, max_logit_diff=-1.0)
    assert not list(tmp_path.glob("bad.tflite*"))
    _, forced = export_verified(tiny_classifier, tmp_path / "bad.tflite", dev, sequence_length=16,
                                max_logit_diff=-1.0, force=True)
    record = json.loads((tmp_path / "bad.tflite.json").read_text())
    assert not forced.passed and record["verification"]["forced"] is True
