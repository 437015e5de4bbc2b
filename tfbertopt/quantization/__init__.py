"""Quantization-aware training (QAT) for keras-hub BERT classifiers inside `model.fit`.

Shaped like `tfbertopt.pruning`: `config.py` (what is simulated), `quantizers.py` (the fake-quant core in
`keras.ops`), `qat.py` (where: the model transform and its state); the layers it builds live in `tfbertopt.layers`
(`ActivationQuantizer`, `QuantizedEinsumDense`, `QuantizedMultiHeadAttention`). Post-training quantization is
export's job (`tfbertopt.export.litert`, `tfbertopt.export.mixed_precision`).

>>> from tfbertopt.quantization import QuantizationConfig, quantize_model, calibrate_ranges, activation_ranges
"""

from tfbertopt.quantization.config import POINTS, QuantizationConfig
from tfbertopt.quantization.quantizers import channel_axes_of, fake_quant_activation, fake_quant_weight

_QAT = ("quantize_model", "calibrate_ranges", "activation_ranges", "activation_quantizers", "is_quantized",
        "quantization_config", "set_output_channel_scales", "preserve_sparsity", "uninitialized_quantizers")


def __getattr__(name):
    # qat imports tfbertopt.layers, which imports this package's quantizers: load it on first use.
    if name in _QAT:
        from tfbertopt.quantization import qat

        return getattr(qat, name)
    raise AttributeError(f"module 'tfbertopt.quantization' has no attribute {name!r}")


__all__ = ["QuantizationConfig", "POINTS", "fake_quant_weight", "fake_quant_activation", "channel_axes_of", *_QAT]
