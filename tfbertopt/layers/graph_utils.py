"""Graph pieces shared by the quantization-aware layers and the LiteRT export (`tfbertopt.export`), in `keras.ops`.

- attention masks: `broadcast_mask` (a padding mask onto the scores' rank), `floor_masked` (masked scores at the
  row's minimum minus a margin: the int8-safe mask), `additive_bias` (Keras' 0 / -1e9 additive form);
- per-channel output scales: `rescaled` (`y * t` through a RESHAPE) and `runtime_one` (a 1.0 the converter
  cannot fold, which keeps a float op float between int8 ones).

`tfbertopt.export.attention_masking` and `tfbertopt.export.channel_equalization` explain why each exists.

Example:

>>> import numpy as np
>>> from tfbertopt.layers.graph_utils import floor_masked
>>> np.asarray(floor_masked(np.array([[1.0, 3.0, 5.0]]), np.array([[True, True, False]]), margin=2.0)).tolist()
[[1.0, 3.0, -1.0]]
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

DEFAULT_MARGIN = 10.0


def broadcast_mask(layer, scores, mask):
    """`mask` expanded from the heads axis on to `scores`' rank, as Keras' `MultiHeadAttention._masked_softmax`."""
    axis = -len(layer._attention_axes) * 2 - 1
    for _ in range(len(scores.shape) - len(mask.shape)):
        mask = ops.expand_dims(mask, axis=axis)
    return mask


def floor_masked(scores, mask, margin: float = DEFAULT_MARGIN, axis=-1):
    """`scores` with masked-out entries (mask False) replaced by the row's minimum minus `margin`."""
    floor = ops.min(scores, axis=axis, keepdims=True) - margin
    return ops.where(ops.cast(mask, "bool"), scores, floor)


def additive_bias(mask, dtype="float32"):
    """0 where `mask` is true and a large negative number where it is false (-1e9; -3e4 in float16, whose range
    ends at 65504): what to add to attention scores before the softmax."""
    big = 3e4 if keras.backend.standardize_dtype(dtype) == "float16" else 1e9
    return ops.cast((ops.cast(mask, "float32") - 1.0) * big, dtype)


def rescaled(y, t):
    """`y * t` over the trailing channel dims, through a RESHAPE: when a MUL reads a FULLY_CONNECTED's output
    directly, LiteRT's quantizer gives the FULLY_CONNECTED output the MUL's range (measured, TF 2.21), which would
    undo the equalization; the RESHAPE in between keeps the two ranges apart."""
    shape = tuple(y.shape)
    channels = int(np.prod(shape[len(shape) - np.ndim(t):])) if np.ndim(t) else 1
    if any(d is None for d in shape):
        shape = ops.shape(y)
    flat = ops.reshape(y, (-1, channels)) * ops.reshape(t, (channels,))
    return ops.reshape(flat, shape)


class _RuntimeOne:
    """A 1.0 the converter cannot constant-fold: one per traced graph, from the first scaled matmul's input."""

    def __init__(self):
        self.graph, self.value = None, None

    def __call__(self, inputs):
        graph = _current_graph()
        if graph is None:
            return 1.0
        if graph is not self.graph:
            # |x| >= 0, so min(0, min|x|) is 0: the sum is exactly 1 at run time, and not a constant.
            self.graph, self.value = graph, 1.0 + ops.minimum(ops.min(ops.abs(inputs)), 0.0)
        return self.value


_SHARED_ONE = _RuntimeOne()


def runtime_one(inputs):
    """1.0, computed from `inputs` at run time while a graph is traced (so the converter cannot fold what it
    multiplies), the Python 1.0 otherwise. One per graph, shared by every caller (`equalized_matmuls`, the
    quantization-aware layers)."""
    return _SHARED_ONE(inputs)


def _current_graph():
    import tensorflow as tf

    return None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
