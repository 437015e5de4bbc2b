"""Graph forms that LiteRT's integer kernels run well, used while tracing an integer ("int8", "16x8") export.

Two Keras ops trace to graphs that a 16x8 model cannot run (TF 2.21), and that a full-integer int8 model runs slowly:

- `Embedding` looks ids up with `ops.take`, which first maps negative ids (`where(ids < 0, ids + V, ids)`): int32
  index arithmetic that the 16x8 quantizer asks a calibrated range for and never gets. Token and segment ids are
  never negative, so a plain gather is the same lookup.
- `LayerNormalization` computes its variance with SQUARED_DIFFERENCE, which the converter quantizes to int16 but the
  LiteRT runtime has no int16 kernel for ("SquaredDifference only supports FLOAT32 and INT32"). The same variance as
  `mean(d * d)` with `d = x - mean(x)` uses MUL, which has one.

In an int8 model the same two forms are much faster: LiteRT runs an int8 SQUARED_DIFFERENCE in a builtin kernel that
requantizes element by element (measured with `tfbertopt.bench.profile`: the largest single share of a full-integer
BERT's time), while SUB and MUL run in XNNPACK, and the negative-id wrap adds NEG/SELECT/QUANTIZE ops per lookup.

`integer_friendly_ops()` swaps both in for the duration of a trace; the math is the same up to float rounding.

Example:

>>> import numpy as np, keras
>>> from tfbertopt.export.integer_tracing import integer_friendly_ops
>>> norm = keras.layers.LayerNormalization(epsilon=1e-6)
>>> x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
>>> reference = np.asarray(norm(x))
>>> with integer_friendly_ops():
...     traced = np.asarray(norm(x))
>>> bool(np.allclose(traced, reference, atol=1e-5))
True
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops


def _embedding_call(self, inputs):
    import tensorflow as tf

    return ops.cast(tf.gather(self.embeddings, tf.cast(inputs, "int32"), axis=0), self.compute_dtype)


def _layer_norm_call(self, inputs):
    if self.rms_scaling:
        return _ORIGINAL["LayerNormalization"](self, inputs)
    x = ops.cast(inputs, "float32")
    mean = ops.mean(x, axis=self.axis, keepdims=True)
    centered = x - mean
    variance = ops.mean(centered * centered, axis=self.axis, keepdims=True)
    outputs = centered * ops.rsqrt(variance + self.epsilon)
    if self.gamma is not None:
        outputs = outputs * self.gamma
    if self.beta is not None:
        outputs = outputs + self.beta
    return ops.cast(outputs, self.compute_dtype)


_ORIGINAL = {}


@contextlib.contextmanager
def integer_friendly_ops():
    """Within the block, Keras Embedding and LayerNormalization trace to plain gathers and a MUL-based LayerNorm."""
    patches = {"Embedding": (keras.layers.Embedding, _embedding_call),
               "LayerNormalization": (keras.layers.LayerNormalization, _layer_norm_call)}
    for name, (cls, call) in patches.items():
        _ORIGINAL[name] = cls.call
        cls.call = call
    try:
        yield
    finally:
        for name, (cls, _) in patches.items():
            cls.call = _ORIGINAL.pop(name)
