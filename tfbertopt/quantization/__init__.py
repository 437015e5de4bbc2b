"""Quantization-aware training (QAT) for keras-hub text classifiers inside `model.fit`.

Shaped like `tfbertopt.pruning`: the scheme's config and the fake-quant core live one layer down in
`tfbertopt.quantizers` (re-exported here), `qat.py` applies them (the model transform and its state); the layers it
builds live in `tfbertopt.layers` (`ActivationQuantizer`, `QuantizedEinsumDense`, `QuantizedLowRankEinsumDense`,
`QuantizedMultiHeadAttention`). Post-training quantization is export's job (`tfbertopt.export.litert`,
`tfbertopt.export.mixed_precision`).

>>> from tfbertopt.quantization import QuantizationConfig, quantize_model, calibrate_ranges, activation_ranges
"""

from tfbertopt.quantization.qat import (activation_quantizers, activation_ranges, calibrate_ranges, is_quantized,
                                        preserve_sparsity, quantization_config, quantize_model,
                                        set_output_channel_scales, uninitialized_quantizers)
from tfbertopt.quantizers import POINTS, QuantizationConfig, channel_axes_of, fake_quant_activation, fake_quant_weight

__all__ = ["QuantizationConfig", "POINTS", "fake_quant_weight", "fake_quant_activation", "channel_axes_of",
           "quantize_model", "calibrate_ranges", "activation_ranges", "activation_quantizers", "is_quantized",
           "quantization_config", "set_output_channel_scales", "preserve_sparsity", "uninitialized_quantizers"]
