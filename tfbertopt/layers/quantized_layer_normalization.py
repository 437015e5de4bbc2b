"""A LayerNormalization trained as LiteRT's int8 kernels compute it: every intermediate tensor fake-quantized.

A full-integer LiteRT model has no fused LayerNorm: the converter lowers it to MEAN, SQUARED_DIFFERENCE, MEAN, ADD
(epsilon), RSQRT, MUL (gamma), MUL (input), MUL (mean), SUB/ADD (beta) and gives each result its own int8 scale. A
quantization-aware model that leaves these in float trains against a different network than the one LiteRT runs:
on MiniLM-L6 those calibrated LayerNorm internals were most of the gap between the QAT model and its int8 export.
This layer computes the same decomposition with an `ActivationQuantizer` on each intermediate, so the exported graph
is this one and every scale in it is a trained range:

    mean  = q(mean(x));  var = q(mean(q((x - mean)^2)));  r = q(rsqrt(q(var + epsilon)))
    inv   = q(r * gamma);  out = q(x * inv) + q(beta - q(mean * inv))

The output itself is not quantized here (the encoder's "layer_norm" point does that). Weights are
LayerNormalization's own `gamma` and `beta`, so a float model's weights load into it.

Example:

>>> import numpy as np, keras
>>> from tfbertopt.layers import QuantizedLayerNormalization
>>> x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
>>> layer = QuantizedLayerNormalization(epsilon=1e-12)
>>> y = np.asarray(layer(x, training=True))
>>> reference = np.asarray(keras.layers.LayerNormalization(epsilon=1e-12)(x))
>>> bool(np.abs(y - reference).max() < 0.05), len(layer.quantizers)
(True, 9)
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.layers.activation_quantizer import ActivationQuantizer

INTERMEDIATES = ("mean", "squared_difference", "variance", "variance_epsilon", "rsqrt", "scale", "scaled_input",
                 "scaled_mean", "shift")


@keras.saving.register_keras_serializable(package="tfbertopt")
class QuantizedLayerNormalization(keras.layers.LayerNormalization):
    """Args (beyond LayerNormalization's, last-axis normalization with center and scale only):
      quantizer: `ActivationQuantizer` config for every intermediate ({} for the defaults).
    """

    def __init__(self, quantizer: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if self.rms_scaling or not (self.center and self.scale) or self.axis not in (-1, [-1]):
            raise ValueError("QuantizedLayerNormalization supports last-axis LayerNorm with center and scale only")
        self.quantizer_config = dict(quantizer or {})
        self.quantizers = {name: ActivationQuantizer(**self.quantizer_config, name=f"{name}_quantizer")
                           for name in INTERMEDIATES}

    def build(self, input_shape):
        super().build(input_shape)
        for quantizer in self.quantizers.values():
            quantizer.build(None)

    def call(self, inputs, training=None):
        q = {name: (lambda t, layer=layer: layer(t, training=training)) for name, layer in self.quantizers.items()}
        x = ops.cast(inputs, "float32")
        mean = q["mean"](ops.mean(x, axis=-1, keepdims=True))
        variance = q["variance"](ops.mean(q["squared_difference"](ops.square(x - mean)), axis=-1, keepdims=True))
        rsqrt = q["rsqrt"](ops.rsqrt(q["variance_epsilon"](variance + self.epsilon)))
        inv = q["scale"](rsqrt * ops.cast(self.gamma, "float32"))
        shift = q["shift"](ops.cast(self.beta, "float32") - q["scaled_mean"](mean * inv))
        return ops.cast(q["scaled_input"](x * inv) + shift, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["quantizer"] = self.quantizer_config
        return config
