"""The quantization-aware training core: fake quantization with straight-through gradients, in `keras.ops`.

Two functions, both the identity for gradients (straight-through estimator, Bengio et al. 2013; Q8BERT) and both
exactly what LiteRT's int8 kernels compute in the forward pass:

- `fake_quant_weight(w, channel_axes)`: symmetric per-channel int8 (narrow range [-127, 127], scale = max|w| / 127 over
  every axis but `channel_axes`), LiteRT's scheme for FULLY_CONNECTED weights. A weight trained this way lies on the
  grid the converter itself computes, so its int8 copy is exact.
- `fake_quant_activation(x, lo, hi)`: per-tensor asymmetric int8 over [lo, hi] (Keras'
  `fake_quant_with_min_max_vars`, which the TensorFlow backend emits as the `FakeQuantWithMinMaxVars` op that the
  LiteRT converter reads as the tensor's quantization parameters).

With `clip_ratio` (`QuantizationConfig.learned_weight_scales`), a weight's scale is a trained fraction of its
channel's max |w| instead (LSQ, Esser et al. 2020, with the scale relative to the channel's range): the gradient
reaches the ratio through the rounding, weights beyond the clip are held at the grid's ends, and the top of the grid
is still a weight's value, so the exporter's max-abs scale of the rounded kernel is the trained one.
`mse_clip_ratios` starts the ratios where the rounding error of each channel is least.

`channel_axes_of(equation)` gives the per-channel axes of an EinsumDense kernel: its output (non-contracted) axes,
which LiteRT flattens into the FULLY_CONNECTED output channels.

Example:

>>> import numpy as np
>>> from tfbertopt.quantizers.fake_quant import channel_axes_of, fake_quant_weight
>>> channel_axes_of("abc,cde->abde"), channel_axes_of("abcd,cde->abe")
((1, 2), (2,))
>>> w = np.array([[0.5, -2.0], [0.26, 1.0]], "float32")
>>> q = np.asarray(fake_quant_weight(w, channel_axes=(1,)))
>>> bool(np.allclose(q / (np.abs(w).max(axis=0) / 127), np.round(q / (np.abs(w).max(axis=0) / 127))))
True
"""

from __future__ import annotations

import numpy as np
from keras import ops
from keras.quantizers import fake_quant_with_min_max_vars


# The smallest grid top a trained clip ratio reaches, as a fraction of the channel's max |w|.
MIN_CLIP_RATIO = 0.3


def channel_axes_of(equation: str) -> tuple[int, ...]:
    """Kernel axes of a two-operand einsum that survive into the output (LiteRT's per-channel axes)."""
    operands, output = equation.replace(" ", "").split("->")
    _, kernel = operands.split(",")
    return tuple(i for i, letter in enumerate(kernel) if letter in output)


def fake_quant_weight(w, channel_axes, num_bits: int = 8, block_size: int | None = None, clip_ratio=None):
    """Symmetric narrow-range per-channel fake quantization of a kernel; gradients pass straight through.

    `block_size`: one scale per `block_size` consecutive inputs of each channel instead (the inputs are every axis
    but `channel_axes`, flattened in order, as LiteRT flattens them), rounded to bfloat16 as ai-edge-quantizer
    rounds its blockwise int4 scales (it stores them in a float16 tensor with a 7-bit mantissa).
    `clip_ratio`: per channel (the shape of the `channel_axes`), the grid's top as a fraction of the channel's
    max |w|, used within [MIN_CLIP_RATIO, 1] and trained (see the module docstring); None: max |w|."""
    qmax = float(2 ** (num_bits - 1) - 1)
    reduce_axes = tuple(i for i in range(len(w.shape)) if i not in channel_axes)
    if block_size:
        if clip_ratio is not None:
            raise ValueError("clip_ratio applies to per-channel scales, not to blockwise ones")
        return w + ops.stop_gradient(_blockwise(w, reduce_axes, tuple(channel_axes), qmax, block_size) - w)
    top = ops.max(ops.abs(w), axis=reduce_axes, keepdims=True)
    if clip_ratio is None:
        scale = top / qmax
        scale = ops.where(scale > 0, scale, ops.ones_like(scale))   # an all-zero channel stays zero
        quantized = ops.clip(ops.round(w / scale), -qmax, qmax) * scale
        return w + ops.stop_gradient(quantized - w)
    ratio = ops.reshape(ops.cast(clip_ratio, w.dtype), top.shape)
    ratio = ratio + ops.stop_gradient(ops.clip(ratio, MIN_CLIP_RATIO, 1.0) - ratio)   # bounded, still trained
    scale = ops.stop_gradient(top) * ratio / qmax
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))
    x = w / scale
    return ops.clip(x + ops.stop_gradient(ops.round(x) - x), -qmax, qmax) * scale


def mse_clip_ratios(w, channel_axes, num_bits: int = 8, ratios=None) -> np.ndarray:
    """Per channel, the `clip_ratio` among `ratios` (default 0.30, 0.32, ..., 1.00) whose rounded kernel is
    closest to `w` in squared error (numpy; the starting point of learned scales).

    >>> import numpy as np
    >>> w = np.concatenate([np.linspace(-0.1, 0.1, 63), [1.0]])[:, None].astype("float32")   # one outlier
    >>> float(mse_clip_ratios(w, (1,), num_bits=4)[0]) < 1.0
    True
    """
    w = np.asarray(w, "float32")
    qmax = float(2 ** (num_bits - 1) - 1)
    reduce_axes = tuple(i for i in range(w.ndim) if i not in channel_axes)
    top = np.abs(w).max(axis=reduce_axes, keepdims=True)
    top = np.where(top > 0, top, 1.0)
    candidates = np.round(np.arange(MIN_CLIP_RATIO, 1.0 + 1e-6, 0.02), 2) if ratios is None else np.asarray(ratios)
    errors = []
    for r in candidates:
        scale = top * r / qmax
        errors.append(((np.clip(np.round(w / scale), -qmax, qmax) * scale - w) ** 2).sum(axis=reduce_axes))
    best = candidates[np.argmin(np.stack(errors), axis=0)]
    return best.astype("float32")


def _blockwise(w, reduce_axes, channel_axes, qmax, block_size):
    shape = tuple(w.shape)
    inputs = int(np.prod([shape[i] for i in reduce_axes]))
    if inputs % block_size:
        raise ValueError(f"blockwise quantization needs input widths divisible by {block_size}; a weight of shape "
                         f"{shape} has {inputs} inputs per channel")
    order = reduce_axes + channel_axes
    blocks = ops.reshape(ops.transpose(w, order), (inputs // block_size, block_size, -1))
    scale = ops.max(ops.abs(blocks), axis=1, keepdims=True) / qmax
    scale = ops.cast(ops.cast(scale, "bfloat16"), w.dtype)
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))
    quantized = ops.clip(ops.round(blocks / scale), -qmax, qmax) * scale
    quantized = ops.reshape(quantized, [shape[i] for i in order])
    return ops.transpose(quantized, tuple(int(i) for i in np.argsort(order)))


def fake_quant_activation(x, lo, hi, num_bits: int = 8):
    """Per-tensor asymmetric fake quantization over [lo, hi] (widened to contain 0, as LiteRT requires)."""
    lo = ops.stop_gradient(ops.minimum(lo, 0.0))
    hi = ops.stop_gradient(ops.maximum(hi, lo + 1e-6))
    return fake_quant_with_min_max_vars(x, lo, hi, num_bits=num_bits, narrow_range=False)
