"""Quantization's lower layer (as Keras' `quantizers/`): the scheme's config apart from the fake-quant algorithm.

`config.QuantizationConfig` says which tensors carry a fake-quant and how; `fake_quant` holds the straight-through
functions. The quantization-aware layers (`tfbertopt.layers`) build on both; `tfbertopt.quantization` applies them
to a model (`quantize_model`) and re-exports these names.
"""

from tfbertopt.quantizers.config import POINTS, QuantizationConfig
from tfbertopt.quantizers.fake_quant import channel_axes_of, fake_quant_activation, fake_quant_weight

__all__ = ["POINTS", "QuantizationConfig", "channel_axes_of", "fake_quant_activation", "fake_quant_weight"]
