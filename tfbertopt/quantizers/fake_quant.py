"""The quantization-aware training core: fake quantization with straight-through gradients, in `keras.ops`.

Two functions, both the identity for gradients (straight-through estimator, Bengio et al. 2013; Q8BERT) and both
exactly what LiteRT's int8 kernels compute in the forward pass:

- `fake_quant_weight(w, channel_axes)`: symmetric per-channel int8 (narrow range [-127, 127], scale = max|w| / 127 over
  every axis but `channel_axes`), LiteRT's scheme for FULLY_CONNECTED weights. A weight trained this way lies on the
  grid the converter itself computes, so its int8 copy is exact.
- `fake_quant_activation(x, lo, hi)`: per-tensor asymmetric int8 over [lo, hi] (Keras'
  `fake_quant_with_min_max_vars`, which the TensorFlow backend emits as the `FakeQuantWithMinMaxVars` op that the
  LiteRT converter reads as the tensor's quantization parameters).

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

from keras import ops
from keras.quantizers import fake_quant_with_min_max_vars


def channel_axes_of(equation: str) -> tuple[int, ...]:
    """Kernel axes of a two-operand einsum that survive into the output (LiteRT's per-channel axes)."""
    operands, output = equation.replace(" ", "").split("->")
    _, kernel = operands.split(",")
    return tuple(i for i, letter in enumerate(kernel) if letter in output)


def fake_quant_weight(w, channel_axes, num_bits: int = 8):
    """Symmetric narrow-range per-channel fake quantization of a kernel; gradients pass straight through."""
    qmax = float(2 ** (num_bits - 1) - 1)
    reduce_axes = tuple(i for i in range(len(w.shape)) if i not in channel_axes)
    scale = ops.max(ops.abs(w), axis=reduce_axes, keepdims=True) / qmax
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))   # an all-zero channel stays zero
    quantized = ops.clip(ops.round(w / scale), -qmax, qmax) * scale
    return w + ops.stop_gradient(quantized - w)


def fake_quant_activation(x, lo, hi, num_bits: int = 8):
    """Per-tensor asymmetric fake quantization over [lo, hi] (widened to contain 0, as LiteRT requires)."""
    lo = ops.stop_gradient(ops.minimum(lo, 0.0))
    hi = ops.stop_gradient(ops.maximum(hi, lo + 1e-6))
    return fake_quant_with_min_max_vars(x, lo, hi, num_bits=num_bits, narrow_range=False)
