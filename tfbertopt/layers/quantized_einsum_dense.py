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
import numpy as np
from keras import ops

from tfbertopt.layers.graph_utils import rescaled, runtime_one
from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.quantizers.fake_quant import channel_axes_of, fake_quant_weight


@keras.saving.register_keras_serializable(package="tfbertopt")
class QuantizedEinsumDense(keras.layers.EinsumDense):
    """Args (beyond EinsumDense's):
      weight_bits: bits of the symmetric per-channel kernel grid.
      weight_block_size: one scale per this many consecutive inputs of each channel (blockwise int4), or None.
      learned_weight_scales: a trainable per-channel `weight_clip_ratio` sets the grid's top as a fraction of the
        channel's max |w| (`fake_quant_weight`'s `clip_ratio`; ones, max |w| itself, until set, e.g. by
        `tfbertopt.quantization.quantize_model`).
      output_quantizer: `ActivationQuantizer` config for the output, or None for no output fake-quant.
      pre_activation_quantizer: `ActivationQuantizer` config for the output before `activation`, or None.
      input_quantizer: `ActivationQuantizer` config for the input, or None (the int8-matmul graph quantizes it in
        front of each FULLY_CONNECTED).
      output_channel_scales: carry a non-trainable per-channel `output_scale` (ones, the identity, until
        `set_output_scale`, e.g. from `tfbertopt.quantization.set_output_channel_scales`): the matmul output is
        fake-quantized as y / scale on one grid and multiplied back in float, as
        `tfbertopt.export.channel_equalization` does in the exported file.
      float_activation: the activation runs in float between the two fake-quants (int8-matmul); a runtime 1.0
        multiplies its input so that the converter does not make it an int8 op.
    """

    def __init__(self, equation, output_shape, weight_bits: int = 8, weight_block_size: int | None = None,
                 learned_weight_scales: bool = False, output_quantizer: dict | None = None,
                 pre_activation_quantizer: dict | None = None, input_quantizer: dict | None = None,
                 output_channel_scales: bool = False, float_activation: bool = False, **kwargs):
        super().__init__(equation, output_shape, **kwargs)
        self.weight_bits, self.weight_block_size = int(weight_bits), weight_block_size
        self.learned_weight_scales = bool(learned_weight_scales)
        self.output_channel_scales = bool(output_channel_scales)
        self.float_activation = bool(float_activation)
        self.quantizer_configs = {"output_quantizer": output_quantizer,
                                  "pre_activation_quantizer": pre_activation_quantizer,
                                  "input_quantizer": input_quantizer}
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
        if self.input_quantizer is not None:
            self.input_quantizer.build(input_shape)
        if self.output_channel_scales:
            # Per-channel multipliers of the matmul output (see `tfbertopt.export.channel_equalization`): the
            # output fake-quant sees y / scale on one per-tensor grid, and the float y is that times scale.
            channels = tuple(self.kernel.shape[i] for i in self._channel_axes)
            self.output_scale = self.add_weight(name="output_scale", shape=channels, initializer="ones",
                                                trainable=False, autocast=False)
        self._scaled = False   # all-ones scales are the identity: no rescaling ops in the graph
        self.weight_clip_ratio = None
        if self.learned_weight_scales:
            channels = tuple(self.kernel.shape[i] for i in self._channel_axes)
            self.weight_clip_ratio = self.add_weight(name="weight_clip_ratio", shape=channels, initializer="ones",
                                                     autocast=False)

    def set_output_scale(self, scale):
        """Sets the per-channel output scale (`output_channel_scales` layers); all ones turns the rescaling off."""
        scale = np.asarray(scale, "float32").reshape(tuple(self.output_scale.shape))
        self.output_scale.assign(scale)
        self._scaled = not np.allclose(scale, 1.0)

    @property
    def _has_activation(self):
        return self.activation not in (None, keras.activations.linear)

    @property
    def _matmul_output_quantizer(self):
        """The quantizer of the FULLY_CONNECTED output: before the activation when there is one."""
        return self.pre_activation_quantizer if self._has_activation else self.output_quantizer

    def kernel_grids(self) -> list:
        """[(kernel, its per-channel axes, its clip-ratio variable or None)]: what `quantized_kernel` rounds."""
        return [(self.kernel, self._channel_axes, self.weight_clip_ratio)]

    def quantized_kernel(self):
        """The kernel on its grid (straight-through gradients to the kernel and the clip ratios)."""
        (kernel, axes, ratio), = self.kernel_grids()
        return fake_quant_weight(kernel, axes, self.weight_bits, self.weight_block_size, clip_ratio=ratio)

    def call(self, inputs, training=None):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs, training=training)
        kernel = self.quantized_kernel()
        x = ops.einsum(self.equation, inputs, ops.cast(kernel, inputs.dtype))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        scaled = self._scaled and self._matmul_output_quantizer is not None
        if scaled:
            scale = ops.cast(self.output_scale, x.dtype)
            x = x * (1.0 / scale)                 # the converter folds this into the kernel and bias
        if self.pre_activation_quantizer is not None:
            x = self.pre_activation_quantizer(x, training=training)
        if scaled and self._has_activation:
            x = rescaled(x, scale * runtime_one(inputs))
        elif self.float_activation and self._has_activation and self.pre_activation_quantizer is not None:
            x = x * runtime_one(inputs)   # else the converter makes the activation int8 between two fake-quants
        if self.activation is not None:
            x = self.activation(x)
        if self.output_quantizer is not None:
            x = self.output_quantizer(x, training=training)
        if scaled and not self._has_activation:
            x = rescaled(x, scale * runtime_one(inputs))
        return x

    def weight_only_call(self, inputs):
        """The layer with its kernel on the int8 grid and no activation fake-quant (the output scale is the identity
        in float): for a graph constant, which the export folds into a constant (DeBERTa's relative embeddings)."""
        kernel = self.quantized_kernel()
        x = ops.einsum(self.equation, inputs, ops.cast(kernel, inputs.dtype))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return x if self.activation is None else self.activation(x)

    # EinsumDense stores its kernel and bias by position; the output scale and the clip ratios follow them.
    def _extra_keys(self) -> dict:
        first = 1 + (self.bias is not None)
        names = [n for n, on in (("output_scale", self.output_channel_scales),
                                 ("weight_clip_ratio", self.learned_weight_scales)) if on]
        return {name: str(first + i) for i, name in enumerate(names)}

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.built:
            for name, key in self._extra_keys().items():
                store[key] = getattr(self, name)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if not self.built:
            return
        keys = self._extra_keys()
        if "output_scale" in keys:
            self.set_output_scale(store[keys["output_scale"]])
        if "weight_clip_ratio" in keys:
            self.weight_clip_ratio.assign(store[keys["weight_clip_ratio"]])

    def get_config(self):
        config = super().get_config()
        config.update({"weight_bits": self.weight_bits, "weight_block_size": self.weight_block_size,
                       "learned_weight_scales": self.learned_weight_scales,
                       "output_channel_scales": self.output_channel_scales,
                       "float_activation": self.float_activation,
                       **self.quantizer_configs})
        return config
