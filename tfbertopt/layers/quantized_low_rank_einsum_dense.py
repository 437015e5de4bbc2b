"""A `LowRankEinsumDense` trained with int8 fake quantization: both factors on LiteRT's per-channel int8 grid, and
the rank-wide intermediate quantized as the int8 tensor between the two FULLY_CONNECTED ops it exports to.

A factorized projection is two matmuls in the file: x @ factor_in (r outputs) and then @ factor_out. Each factor is
fake-quantized per output channel (factor_in per rank channel, factor_out per output channel), the intermediate by
`rank_quantizer`, the output as `QuantizedEinsumDense` does (`pre_activation_quantizer` before a GELU,
`output_quantizer` after it, `input_quantizer` in front for the int8-matmul graph). The variables are
`LowRankEinsumDense`'s own, under the same names, so a float factorized model's weights load into it.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import QuantizedLowRankEinsumDense
>>> layer = QuantizedLowRankEinsumDense("abc,cd->abd", (None, 4), rank=2, bias_axes="d", rank_quantizer={},
...                                     output_quantizer={})
>>> tuple(layer(np.ones((2, 3, 8), "float32"), training=True).shape), sorted(layer.quantizers())
((2, 3, 4), ['output_quantizer', 'rank_quantizer'])
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.layers.graph_utils import runtime_one
from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.low_rank_einsum_dense import LowRankEinsumDense
from tfbertopt.quantizers.fake_quant import fake_quant_weight

QUANTIZERS = ("input_quantizer", "rank_quantizer", "pre_activation_quantizer", "output_quantizer")


@keras.saving.register_keras_serializable(package="tfbertopt")
class QuantizedLowRankEinsumDense(LowRankEinsumDense):
    """Args (beyond LowRankEinsumDense's): `weight_bits`, `weight_block_size` and `learned_weight_scales` (as in
    `QuantizedEinsumDense`; a `clip_ratio` per channel of each factor), and an `ActivationQuantizer` config (or None) for each of
    `input_quantizer`, `rank_quantizer` (the intermediate), `pre_activation_quantizer` and `output_quantizer`;
    `float_activation` as in `QuantizedEinsumDense`."""

    def __init__(self, equation, output_shape, rank, weight_bits: int = 8, weight_block_size: int | None = None,
                 learned_weight_scales: bool = False, input_quantizer: dict | None = None,
                 rank_quantizer: dict | None = None, pre_activation_quantizer: dict | None = None,
                 output_quantizer: dict | None = None, float_activation: bool = False, **kwargs):
        super().__init__(equation, output_shape, rank, **kwargs)
        if pre_activation_quantizer is not None and kwargs.get("activation") is None:
            raise ValueError("pre_activation_quantizer needs an activation")
        self.weight_bits, self.float_activation = int(weight_bits), bool(float_activation)
        self.weight_block_size, self.learned_weight_scales = weight_block_size, bool(learned_weight_scales)
        self.clip_ratios = {}
        self.quantizer_configs = dict(zip(QUANTIZERS, (input_quantizer, rank_quantizer, pre_activation_quantizer,
                                                       output_quantizer)))
        for name, config in self.quantizer_configs.items():
            setattr(self, name, None if config is None else ActivationQuantizer(**config, name=name))

    def quantizers(self) -> dict:
        return {name: getattr(self, name) for name in QUANTIZERS if getattr(self, name) is not None}

    def build(self, input_shape):
        super().build(input_shape)
        for quantizer in self.quantizers().values():
            quantizer.build(None)
        if self.learned_weight_scales:    # per output channel of each factor (the axes `_factors` keeps)
            for name, axes in self._factor_axes().items():
                shape = tuple(getattr(self, name).shape[i] for i in axes)
                self.clip_ratios[name] = self.add_weight(name=f"{name}_clip_ratio", shape=shape, initializer="ones",
                                                         autocast=False)

    @property
    def _has_activation(self):
        return self.activation not in (None, keras.activations.linear)

    def _factor_axes(self) -> dict:
        """Each factor's per-channel axes: the rank axis of `factor_in`, the output axes of `factor_out`."""
        return {"factor_in": (len(self.factor_in.shape) - 1,),
                "factor_out": tuple(range(1, len(self.factor_out.shape)))}

    def kernel_grids(self) -> list:
        """[(factor, its per-channel axes, its clip-ratio variable or None)] for `factor_in`, `factor_out`."""
        return [(getattr(self, name), axes, self.clip_ratios.get(name)) for name, axes in self._factor_axes().items()]

    def _factors(self):
        """Both factors on their per-channel grids."""
        return tuple(fake_quant_weight(factor, axes, self.weight_bits, self.weight_block_size, clip_ratio=ratio)
                     for factor, axes, ratio in self.kernel_grids())

    def weight_only_call(self, inputs):
        """The layer with its factors on the int8 grid and no activation fake-quant: for a graph constant, which
        the export folds into a constant (DeBERTa's relative embeddings)."""
        factor_in, factor_out = self._factors()
        x = ops.einsum(self._first, inputs, ops.cast(factor_in, inputs.dtype))
        x = ops.einsum(self._second, x, ops.cast(factor_out, x.dtype))
        if self.bias is not None:
            x = x + self.bias
        return x if self.activation is None else self.activation(x)

    def call(self, inputs, training=None):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs, training=training)
        factor_in, factor_out = self._factors()
        x = ops.einsum(self._first, inputs, ops.cast(factor_in, inputs.dtype))
        if self.rank_quantizer is not None:
            x = self.rank_quantizer(x, training=training)
        x = ops.einsum(self._second, x, ops.cast(factor_out, x.dtype))
        if self.bias is not None:
            x = x + self.bias
        if self.pre_activation_quantizer is not None:
            x = self.pre_activation_quantizer(x, training=training)
            if self.float_activation and self._has_activation:
                x = x * runtime_one(inputs)   # else the converter makes the activation int8 between two fake-quants
        if self.activation is not None:
            x = self.activation(x)
        if self.output_quantizer is not None:
            x = self.output_quantizer(x, training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update({"weight_bits": self.weight_bits, "weight_block_size": self.weight_block_size,
                       "learned_weight_scales": self.learned_weight_scales,
                       "float_activation": self.float_activation,
                       **self.quantizer_configs})
        return config
