"""Quantization-aware training for the "int8-matmul" graph: what trains is what the exported file runs."""

import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.export.litert import export_litert
from tfbertopt.export.verify import run_litert
from tfbertopt.quantization import QuantizationConfig, activation_quantizers, quantize_model
from tfbertopt.train import predict_logits

from helpers.outliers import plant_outlier_channel  # noqa: E402  (pytest puts tests/ on sys.path)

MATMUL = QuantizationConfig.for_export("int8-matmul")


@pytest.fixture()
def matmul_qat(tiny_classifier, demo_data):
    plant_outlier_channel(tiny_classifier)
    return quantize_model(tiny_classifier, MATMUL, calibration=demo_data[0], calibration_steps=32)


def _projections(model):
    from tfbertopt.layers import QuantizedEinsumDense

    return {layer.path: layer for layer in model._flatten_layers() if isinstance(layer, QuantizedEinsumDense)}


def test_the_scheme_quantizes_only_the_projections(matmul_qat):
    assert MATMUL.matmul_only and not QuantizationConfig().matmul_only
    assert QuantizationConfig.from_config(MATMUL.get_config()) == MATMUL
    paths = set(activation_quantizers(matmul_qat))
    assert paths and all(p.rsplit("/", 1)[-1] in ("input_quantizer", "output_quantizer", "pre_activation_quantizer",
                                                  "token_lookup_quantizer", "segment_lookup_quantizer")
                         for p in paths), sorted(paths)
    # every projection and the pooler: an input and an output (pre-activation) range
    assert all(layer.input_quantizer is not None for layer in _projections(matmul_qat).values())


def test_only_spread_projections_get_output_scales_and_the_function_is_kept(tiny_classifier, matmul_qat, demo_data):
    layers = _projections(matmul_qat)
    scaled = {p for p, layer in layers.items()
              if layer.output_channel_scales and not np.allclose(np.asarray(layer.output_scale), 1.0)}
    assert scaled == {p for p in layers if p.endswith("feedforward_output_dense")}, sorted(scaled)
    for path in scaled:
        scale = np.asarray(layers[path].output_scale)
        assert scale.argmax() == 3 and scale.max() / np.median(scale) > 8.0
        # the output grid now spans the scaled channels, about [-1, 1], not the outlier's range
        q = layers[path].output_quantizer
        assert float(q.range_max.numpy()) - float(q.range_min.numpy()) < 2.5
    features = encode(demo_data[1].texts, tiny_classifier.preprocessor)
    diff = np.abs(predict_logits(matmul_qat, features) - predict_logits(tiny_classifier, features))
    assert 0 < diff.max() < 0.05


def test_export_runs_the_trained_graph(tiny_classifier, matmul_qat, demo_data, tmp_path):
    """Every FULLY_CONNECTED and embedding GATHER is int8 with the trained ranges, everything else float, and every
    int8 projection output in the file is the Keras layer's fake-quantized output, element for element."""
    from ai_edge_litert.interpreter import Interpreter

    from tfbertopt.data.pipeline import without_preprocessor
    from tfbertopt.layers import QuantizedEinsumDense

    train, dev = demo_data
    result = export_litert(matmul_qat, tmp_path / "q_int8-matmul.tflite", "int8-matmul", 16, calibration=train,
                           calibration_steps=16)
    counts = result.op_report.counts
    assert counts["FULLY_CONNECTED"]["int8"] == result.ops["FULLY_CONNECTED"]
    # No more float MULs than the post-training int8-matmul file of the same graph has (the same output scales),
    # beyond, per layer, the runtime 1.0 before GELU and after the context matmul (which keep the converter from
    # making them int8) and the query's 1/sqrt(head size) (after its fake-quant, so not folded into the kernel), and
    # the pooler's runtime 1.0: projections whose scales are all ones add no rescaling ops.
    ptq = export_litert(tiny_classifier, tmp_path / "p_int8-matmul.tflite", "int8-matmul", 16, calibration=train,
                        calibration_steps=32)
    assert result.ops["MUL"] == ptq.ops["MUL"] + 2 * 3 + 1, (result.ops["MUL"], ptq.ops["MUL"])
    for op in ("SOFTMAX", "GELU", "BATCH_MATMUL", "TANH", "ADD"):
        assert set(counts[op]) == {"float32"}, (op, counts[op])

    interpreter = Interpreter(model_path=result.path, experimental_preserve_all_tensors=True)
    # the int8 embedding tables are on the trained lookup grids
    quantizers = dict(zip(("token_embedding", "segment_embedding"), matmul_qat.backbone.embedding_lookup_quantizers))
    gathers = [op for op in interpreter._get_ops_details() if op["op_name"] == "GATHER"]
    assert len(gathers) == 2
    for op in gathers:
        details = interpreter._get_tensor_details(op["inputs"][0], 0)
        q = next(q for n, q in quantizers.items() if f"/{n}_1/" in details["name"])
        assert details["quantization"][0] == pytest.approx(
            (float(q.range_max.numpy()) - float(q.range_min.numpy())) / 255, rel=0.02)
    features = encode(dev.texts[:1], matmul_qat.preprocessor)
    outputs = {}
    original = QuantizedEinsumDense.call

    def recording(self, inputs, training=None):
        """Records the fake-quantized matmul output (of y / output_scale where scaled), then runs the layer."""
        from keras import ops

        from tfbertopt.quantizers.fake_quant import fake_quant_weight

        x = self.input_quantizer(inputs)
        y = ops.einsum(self.equation, x, fake_quant_weight(self.kernel, self._channel_axes)) + self.bias
        outputs[self.path] = np.asarray(self._matmul_output_quantizer(
            y / self.output_scale if self.output_channel_scales else y))
        return original(self, inputs, training)

    QuantizedEinsumDense.call = recording
    try:
        with without_preprocessor(matmul_qat):
            matmul_qat(features, training=False)
    finally:
        QuantizedEinsumDense.call = original
    runner = interpreter.get_signature_runner()
    runner(**{k: v.astype("int32") for k, v in features.items()})
    checked = 0
    layers = _projections(matmul_qat)
    for op in interpreter._get_ops_details():
        if op["op_name"] != "FULLY_CONNECTED":
            continue
        details = interpreter._get_tensor_details(op["outputs"][0], 0)
        name = details["name"]
        # TFLite names a tensor after its TF op: ".../transformer_layer_0_1/self_attention_layer_1/query_1/MatMul"
        matches = [p for p in outputs if "/".join(f"{part}_1" for part in p.split("/")) + "/" in name]
        if not matches:
            continue
        path = max(matches, key=len)
        scale, zero = details["quantization"]
        got = (interpreter.get_tensor(op["outputs"][0]).astype("float32") - zero) * scale
        want = outputs[path].reshape(got.shape)
        steps = np.abs(got - want) / scale
        assert steps.max() < 0.5, (path, steps.max())       # the same int8 value, element for element
        # the file's output scale is the trained range's
        q = layers[path]._matmul_output_quantizer
        assert scale == pytest.approx((float(q.range_max.numpy()) - float(q.range_min.numpy())) / 255, rel=0.02)
        checked += 1
    assert checked >= 10, checked
    logits = run_litert(result.path, encode(dev.texts, matmul_qat.preprocessor))
    assert np.abs(logits - predict_logits(matmul_qat, encode(dev.texts, matmul_qat.preprocessor))).mean() < 0.05


def test_save_load_keeps_the_scales(matmul_qat, demo_data, tmp_path):
    from tfbertopt.saving import load_model

    path = str(tmp_path / "qat.keras")
    matmul_qat.save(path)
    loaded = load_model(path, compile=False)
    features = encode(demo_data[1].texts, matmul_qat.preprocessor)
    np.testing.assert_allclose(predict_logits(loaded, features), predict_logits(matmul_qat, features), atol=1e-6)
    original = _projections(matmul_qat)
    scaled = [p for p, layer in _projections(loaded).items() if layer.output_channel_scales]
    assert len(scaled) == 12      # every encoder projection carries a scale (ones where the channels do not spread)
    for path in scaled:
        np.testing.assert_array_equal(np.asarray(_projections(loaded)[path].output_scale),
                                      np.asarray(original[path].output_scale))


def test_exports_that_do_not_run_the_trained_graph_are_refused(tiny_classifier, matmul_qat, demo_data, tmp_path):
    train, _ = demo_data
    with pytest.raises(ValueError, match="trained for the 'int8-matmul' graph"):
        export_litert(matmul_qat, tmp_path / "a.tflite", "int8", 16, calibration=train)
    full = quantize_model(tiny_classifier, calibration=train, calibration_steps=8)
    with pytest.raises(ValueError, match="trained for the 'int8' graph"):
        export_litert(full, tmp_path / "b.tflite", "int8-matmul", 16, calibration=train)
    assert not list(tmp_path.glob("*.tflite"))
    with pytest.raises(ValueError, match="targets quantization 'int8' or 'int8-matmul'"):
        QuantizationConfig.for_export("16x8")
    with pytest.raises(ValueError, match="output_channel_spread must be >= 1"):
        QuantizationConfig(output_channel_spread=0.5)
