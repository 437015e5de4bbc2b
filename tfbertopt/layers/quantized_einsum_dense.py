"""An EinsumDense trained with int8 fake quantization: per-channel symmetric weights and a quantized output.

The forward pass uses the kernel rounded to LiteRT's int8 grid (symmetric, per output channel: every kernel axis
that reaches the output) with straight-through gradients to the float kernel, which stays the trained variable. Its
output passes an `ActivationQuantizer` (`output_quantizer`); with an `activation` (a Dense's GELU) the
pre-activation can get its own (`pre_activation_quantizer`), as LiteRT runs FULLY_CONNECTED and GELU as two int8
ops. The variables
`kernel` and `bias` are EinsumDense's own, under the same names, so weights load into it from a float model and
`tfbertopt.kernels` finds the kernel as for any EinsumDense.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import QuantizedEinsumDense
>>> layer = QuantizedEinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d", output_quantizer={})
>>> y = layer(np.ones((2, 3, 8), "float32"), training=True)
>>> tuple(y.shape), type(layer.output_quantizer).__name__
((2, 3, 4), 'ActivationQuantizer')
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.quantization.quantizers import channel_axes_of, fake_quant_weight


@keras.saving.register_keras_serializable(package="tfbertopt")
class QuantizedEinsumDense(keras.layers.EinsumDense):
    """Args (beyond EinsumDense's):
      weight_bits: bits of the symmetric per-channel kernel grid.
      output_quantizer: `ActivationQuantizer` config for the output, or None for no output fake-quant.
      pre_activation_quantizer: `ActivationQuantizer` config for the output before `activation`, or None.
    """

    def __init__(self, equation, output_shape, weight_bits: int = 8, output_quantizer: dict | None = None,
                 pre_activation_quantizer: dict | None = None, **kwargs):
        super().__init__(equation, output_shape, **kwargs)
        self.weight_bits = int(weight_bits)
        self.quantizer_configs = {"output_quantizer": output_quantizer,
                                  "pre_activation_quantizer": pre_activation_quantizer}
        if pre_activation_quantizer is not None and kwargs.get("activation") is None:
            raise ValueError("pre_activation_quantizer needs an activation")
        self._channel_axes = channel_axes_of(equation)
        for name, config in self.quantizer_configs.items():
            setattr(self, name, None if config is None else ActivationQuantizer(**config, name=name))

    def build(self, input_shape):
        super().build(input_shape)
        output_shape = self.compute_output_shape(input_shape)
        for quantizer in (self.pre_activation_quantizer, self.output_quantizer):
            if quantizer is not None:
                quantizer.build(output_shape)

    def call(self, inputs, training=None):
        kernel = fake_quant_weight(self.kernel, self._channel_axes, self.weight_bits)
        x = ops.einsum(self.equation, inputs, ops.cast(kernel, inputs.dtype))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.pre_activation_quantizer is not None:
            x = self.pre_activation_quantizer(x, training=training)
        if self.activation is not None:
            x = self.activation(x)
        if self.output_quantizer is not None:
            x = self.output_quantizer(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update({"weight_bits": self.weight_bits, **self.quantizer_configs})
        return config
