"""The quantization-aware layers: range tracking, grids in the forward pass, masking, serialization."""

import numpy as np
import keras
import pytest

from tfbertopt.layers import ActivationQuantizer, QuantizedEinsumDense, QuantizedMultiHeadAttention


def test_activation_quantizer_first_batch_sets_then_ema():
    q = ActivationQuantizer(ema_decay=0.9)
    q(np.array([-1.0, 2.0], "float32"), training=True)
    assert (float(q.range_min.numpy()), float(q.range_max.numpy())) == (-1.0, 2.0)
    q(np.array([-3.0, 4.0], "float32"), training=True)
    np.testing.assert_allclose([q.range_min.numpy(), q.range_max.numpy()], [-1.2, 2.2], rtol=1e-6)
    before = (float(q.range_min.numpy()), float(q.range_max.numpy()))
    y = np.asarray(q(np.array([-10.0, 0.3, 10.0], "float32")))           # inference: no update, clamps
    assert (float(q.range_min.numpy()), float(q.range_max.numpy())) == before
    np.testing.assert_allclose([y[0], y[2]], before, atol=3.4 / 255)


def test_activation_quantizer_observing_keeps_running_extremes():
    q = ActivationQuantizer()
    q.build(None)
    q.observing = True
    for batch in ([-1.0, 1.0], [-0.5, 3.0], [0.0, 0.1]):
        q(np.array(batch, "float32"))
    q.observing = False
    assert (float(q.range_min.numpy()), float(q.range_max.numpy())) == (-1.0, 3.0)


def test_unseen_activation_quantizer_is_identity_and_fixed_range_is_used():
    x = np.array([0.123, -5.0, 7.0], "float32")
    np.testing.assert_array_equal(np.asarray(ActivationQuantizer()(x)), x)
    probs = ActivationQuantizer(fixed_range=(0.0, 255 / 256))(np.array([0.1, 0.5, 1.0], "float32"))
    np.testing.assert_allclose(np.asarray(probs) * 256, np.round(np.asarray(probs) * 256), atol=1e-4)
    with pytest.raises(ValueError, match="contain 0"):
        ActivationQuantizer(fixed_range=(0.5, 1.0))


def test_quantized_einsum_dense_runs_on_the_int8_kernel_grid():
    layer = QuantizedEinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de")
    x = np.random.default_rng(0).normal(size=(1, 4, 5)).astype("float32")
    y = np.asarray(layer(x))
    w = np.asarray(layer.kernel)
    scale = np.abs(w).max(axis=0, keepdims=True) / 127                     # per (head, head_dim) channel
    expected = np.einsum("abc,cde->abde", x, np.round(w / scale) * scale) + np.asarray(layer.bias)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert not np.allclose(y, np.einsum("abc,cde->abde", x, w) + np.asarray(layer.bias), atol=1e-7)


def test_quantized_einsum_dense_serializes_with_its_quantizers():
    layer = QuantizedEinsumDense("abc,cd->abd", (None, 4), bias_axes="d", activation="gelu",
                                 output_quantizer={"ema_decay": 0.5}, pre_activation_quantizer={})
    layer(np.ones((1, 2, 3), "float32"), training=True)
    clone = QuantizedEinsumDense.from_config(layer.get_config())
    clone.build((1, 2, 3))
    assert [w.path.split("/")[-2:] for w in clone.weights] == [w.path.split("/")[-2:] for w in layer.weights]
    assert clone.output_quantizer.ema_decay == 0.5
    with pytest.raises(ValueError, match="needs an activation"):
        QuantizedEinsumDense("abc,cd->abd", (None, 4), pre_activation_quantizer={})


def test_quantized_attention_masks_exactly_and_matches_float_attention_closely():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.ones((2, 6, 6), bool)
    mask[0, :, 4:] = False
    qmha = QuantizedMultiHeadAttention(num_heads=2, key_dim=4, quantization={})
    out, probs = qmha(x, x, attention_mask=mask, return_attention_scores=True, training=True)
    assert float(np.asarray(probs)[0, :, :, 4:].max()) == 0.0
    # The same weights in a float MultiHeadAttention give nearly the same output.
    ref = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    ref(x, x)
    for a, b in zip(ref.weights, [w for w in qmha.weights if "quantizer" not in w.path]):
        a.assign(b)
    expected = np.asarray(ref(x, x, attention_mask=mask))
    got = np.asarray(qmha(x, x, attention_mask=mask))
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_quantized_attention_round_trips_through_config():
    qmha = QuantizedMultiHeadAttention(num_heads=2, key_dim=4, quantization={"points": ["linear"]})
    clone = QuantizedMultiHeadAttention.from_config(qmha.get_config())
    assert clone.quantization.points == ("linear",)
