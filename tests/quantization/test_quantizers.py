"""The fake-quant core: LiteRT's grids exactly, straight-through gradients."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.quantization import QuantizationConfig, channel_axes_of, fake_quant_activation, fake_quant_weight


def test_channel_axes_are_the_kernel_axes_that_reach_the_output():
    assert channel_axes_of("abc,cde->abde") == (1, 2)      # query/key/value: (H, heads, head_dim)
    assert channel_axes_of("abcd,cde->abe") == (2,)         # attention output: (heads, head_dim, H)
    assert channel_axes_of("abc,cd->abd") == (1,)           # FFN
    assert channel_axes_of("ab,bc->ac") == (1,)             # pooler


@settings(max_examples=examples(60), deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 5)),
              elements=st.floats(-4, 4, width=32).map(lambda v: 0.0 if abs(v) < 1e-6 else v)))
def test_weight_grid_is_litert_symmetric_per_channel(w):
    q = np.asarray(fake_quant_weight(w, channel_axes=(1,)))
    amax = np.abs(w).max(axis=0)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    steps = q / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)           # on the grid
    assert np.all(np.abs(np.round(steps)) <= 127)                            # narrow range
    assert np.all(np.abs(q - w) <= scale / 2 + 1e-6)                         # nearest point
    np.testing.assert_allclose(np.abs(q).max(axis=0), amax, rtol=1e-6)       # the channel maximum is exact
    assert np.all(q[w == 0] == 0)                                            # zeros (pruned weights) stay zero


def test_weight_gradient_is_straight_through():
    import tensorflow as tf

    w = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fake_quant_weight(w, (1,)) * tf.constant(np.arange(12, dtype="float32").reshape(4, 3)))
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), np.arange(12, dtype="float32").reshape(4, 3))


@settings(max_examples=examples(40), deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(2, 40), st.integers(1, 4)),
              elements=st.floats(-2, 2, width=32).map(lambda v: 0.0 if abs(v) < 1e-6 else v)),
       st.floats(0.3, 1.0))
def test_clipped_grid_tops_at_a_weight_value(w, ratio):
    """With a clip ratio the grid's top is ratio x max |w| and some rounded weight reaches it, so the exporter's
    max-abs scale of the rounded kernel is the trained scale. (Channels of weights below 1e-6 are zeros here: a
    channel whose max |w| is near float32's smallest normal has a scale that flushes to zero, and is held at zero.)"""
    q = np.asarray(fake_quant_weight(w, (1,), 4, clip_ratio=np.full(w.shape[1], ratio, "float32")))
    amax = np.abs(w).max(axis=0)
    live = amax > 0
    scale = amax[live] * np.float32(ratio) / 7
    steps = q[:, live] / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    np.testing.assert_allclose(np.abs(q[:, live]).max(axis=0), 7 * scale, rtol=1e-5)


def test_clip_ratio_learns_and_clipped_weights_get_no_gradient():
    import tensorflow as tf

    w = tf.Variable(np.array([[0.1], [-0.2], [0.05], [1.0]], "float32"))     # one outlier
    ratio = tf.Variable(np.array([0.5], "float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fake_quant_weight(w, (1,), 4, clip_ratio=ratio) ** 2)
    grad_w, grad_ratio = tape.gradient(loss, [w, ratio])
    assert grad_w.numpy()[3, 0] == 0 and np.all(grad_w.numpy()[:3] != 0)   # the clipped outlier is held
    assert grad_ratio.numpy()[0] != 0                                        # the scale is trained (LSQ)
    with tf.GradientTape() as tape:                                          # above 1 it is used as 1, still trained
        loss = tf.reduce_sum(fake_quant_weight(w, (1,), 4, clip_ratio=ratio + 1.0) ** 2)
    assert tape.gradient(loss, ratio).numpy()[0] != 0


def test_least_squares_clip_beats_max_abs_on_heavy_tails():
    from tfbertopt.quantizers.fake_quant import mse_clip_ratios

    w = np.random.default_rng(0).standard_t(3, size=(384, 16)).astype("float32")
    ratios = mse_clip_ratios(w, (1,), num_bits=4)
    assert ratios.shape == (16,) and np.all((ratios >= 0.3) & (ratios <= 1.0)) and ratios.mean() < 0.9
    error = lambda q: float(((np.asarray(q) - w) ** 2).sum())   # noqa: E731
    assert error(fake_quant_weight(w, (1,), 4, clip_ratio=ratios)) < 0.9 * error(fake_quant_weight(w, (1,), 4))


def test_activation_grid_and_clamp():
    x = np.linspace(-3, 5, 101, dtype="float32")
    y = np.asarray(fake_quant_activation(x, -1.0, 2.0))
    assert y.min() >= -1.0 - 1e-6 and y.max() <= 2.0 + 1e-6                   # clamped to the range
    scale = 3.0 / 255
    inside = (x > -1) & (x < 2)
    assert np.abs(y[inside] - x[inside]).max() <= scale / 2 + 1e-6
    assert len(np.unique(np.round(y / scale, 3))) <= 256


def test_activation_range_is_widened_to_contain_zero():
    y = np.asarray(fake_quant_activation(np.array([0.0, 1.0, 2.0], "float32"), 0.5, 2.0))
    assert y[0] == 0.0                                                       # LiteRT ranges always contain 0


def test_config_validation_and_round_trip():
    config = QuantizationConfig(points=("linear",), ema_decay=0.9, symmetric_activations=True)
    assert QuantizationConfig.from_config(config.get_config()) == config
    assert QuantizationConfig(points="linear").points == ("linear",)
    with pytest.raises(ValueError, match="unknown quantization points"):
        QuantizationConfig(points=("softmax",))
    with pytest.raises(ValueError, match="weight_bits"):
        QuantizationConfig(weight_bits=1)
    with pytest.raises(ValueError, match="ema_decay"):
        QuantizationConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="unknown QuantizationConfig options"):
        QuantizationConfig.from_config({"bits": 8})
