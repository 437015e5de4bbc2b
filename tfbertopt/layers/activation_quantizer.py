"""An int8 fake-quant of one activation tensor whose range is learned from the data it sees.

In training, each batch's min/max (of the global batch, gathered from every replica under tf.distribute) updates
an exponential moving average of the range (the first batch sets it), and the tensor is fake-quantized over the
updated range with straight-through gradients; at inference the stored range is used. `fixed_range=(lo, hi)` pins the range instead (LiteRT's int8 softmax output is always [0, 255/256] with
step 1/256). While `observing` is set (see `tfbertopt.quantization.calibrate_ranges`) the layer records the running
min/max of what it sees even at inference, as LiteRT's post-training calibration does, to start training from.

A quantizer that has never seen data passes its input through unchanged (its range would be empty).

Under the TensorFlow backend the fake-quant is TensorFlow's `FakeQuantWithMinMaxVars` op, which the LiteRT converter
turns into that tensor's int8 scale and zero point: the exported model runs with the ranges training found.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import ActivationQuantizer
>>> quantizer = ActivationQuantizer()
>>> x = np.linspace(-1.0, 3.0, 9, dtype="float32")
>>> _ = quantizer(x, training=True)
>>> float(quantizer.range_min.numpy()), float(quantizer.range_max.numpy())
(-1.0, 3.0)
>>> y = np.asarray(quantizer(x))            # inference: the learned range, 255 steps of 4/255
>>> bool(np.abs(y - x).max() <= 0.5 * 4 / 255 + 1e-6)
True
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.distribute import global_extremes
from tfbertopt.quantizers.fake_quant import fake_quant_activation


@keras.saving.register_keras_serializable(package="tfbertopt")
class ActivationQuantizer(keras.layers.Layer):
    """Args:
      num_bits: bits of the activation grid (8 for LiteRT int8).
      ema_decay: decay of the moving averages of min and max during training.
      symmetric: a range symmetric around zero.
      fixed_range: (lo, hi) to use instead of a learned range.
    """

    def __init__(self, num_bits: int = 8, ema_decay: float = 0.99, symmetric: bool = False, fixed_range=None,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if fixed_range is not None:
            lo, hi = (float(v) for v in fixed_range)
            if not lo <= 0.0 <= hi or lo == hi:
                raise ValueError(f"fixed_range must contain 0 and be non-empty, got {fixed_range}")
            fixed_range = (lo, hi)
        self.num_bits, self.ema_decay, self.symmetric = int(num_bits), float(ema_decay), bool(symmetric)
        self.fixed_range = fixed_range
        self.observing = False
        self.supports_masking = True

    def build(self, input_shape):
        if self.fixed_range is None:
            common = dict(shape=(), initializer="zeros", trainable=False, autocast=False, dtype="float32")
            self.range_min = self.add_weight(name="range_min", aggregation="mean", **common)
            self.range_max = self.add_weight(name="range_max", aggregation="mean", **common)
            self.observed = self.add_weight(name="observed", aggregation="only_first_replica", **common)
        self.built = True

    def call(self, inputs, training=None):
        if self.fixed_range is not None:
            return fake_quant_activation(inputs, *self.fixed_range, num_bits=self.num_bits)
        x = ops.cast(inputs, "float32")
        if training or self.observing:
            finite = ops.where(ops.isfinite(x), x, ops.zeros_like(x))   # an inf (e.g. rsqrt(0)) must not set the range
            # The whole global batch's extremes: under a strategy each replica sees a slice of it.
            lo, hi = global_extremes(ops.stop_gradient(ops.min(finite)), ops.stop_gradient(ops.max(finite)))
            if self.symmetric:
                hi = ops.maximum(ops.abs(lo), ops.abs(hi))
                lo = -hi
            first = self.observed <= 0
            if self.observing:      # calibration: the running extremes
                lo = ops.where(first, lo, ops.minimum(self.range_min, lo))
                hi = ops.where(first, hi, ops.maximum(self.range_max, hi))
            else:                   # training: exponential moving averages
                d = self.ema_decay
                lo = ops.where(first, lo, d * self.range_min + (1.0 - d) * lo)
                hi = ops.where(first, hi, d * self.range_max + (1.0 - d) * hi)
            self.range_min.assign(lo)
            self.range_max.assign(hi)
            self.observed.assign(self.observed + 1.0)
        else:
            lo, hi = self.range_min, self.range_max
        quantized = fake_quant_activation(x, lo, hi, num_bits=self.num_bits)
        out = ops.where(self.observed > 0, quantized, x) if not (training or self.observing) else quantized
        return ops.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update({"num_bits": self.num_bits, "ema_decay": self.ema_decay, "symmetric": self.symmetric,
                       "fixed_range": list(self.fixed_range) if self.fixed_range else None})
        return config
