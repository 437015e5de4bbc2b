"""Quantization-aware training of keras-hub text classifiers: `quantize_model` and the state around it.

`quantize_model(model)` returns a new classifier whose backbone is the quantization-aware form of `model`'s
(`CompressedBackbone(quantization=...)`): every attention and FFN projection and the pooler run on LiteRT's
per-channel int8 weight grid, and the activations LiteRT quantizes carry an `ActivationQuantizer` (see
`QuantizationConfig` for which). Weights are copied exactly; with `calibration=` the activation ranges start from a
post-training calibration pass (running min/max, as the LiteRT converter calibrates), otherwise from the first
training batch. Train it with ordinary `model.fit` (or through a `Distiller` as the student); export it with
`export_litert(..., quantization="int8")` (or "int8-matmul", below): the converter takes the trained ranges from the
fake-quant ops and calibrates only the tensors that have none.

Two target graphs (`QuantizationConfig.for_export`):

- "int8" (the default config): the full-integer graph; export with `export_litert(..., "int8")`.
- "int8-matmul": only what `export_litert(..., "int8-matmul")` runs in int8: each projection's input, per-channel
  weights and output, and the token/segment embedding lookups (points "matmul_inputs", "linear",
  "embedding_lookups"), with per-channel output scales on the projections whose output channels spread by more than
  8x on the calibration set, chosen and measured on the float model by `tfbertopt.export.channel_equalization` as
  the post-training export chooses them (`set_output_channel_scales`). Attention, softmax, GELU, LayerNorm and the
  residual sums train and run in float. The export takes every int8 range from training; its calibration set
  only ranges the classifier's output (keras-hub's float head, int8 in the file). On a tiny model every int8
  projection output of the file is the Keras model's, element for element (tested); on MiniLM-L6 all but a
  few elements of the first layer's agree (rounding ties broken differently by LiteRT's fixed-point requantization
  and float summation order), and those flips grow through the float attention of the later layers, so the file's
  label agreement with its Keras model falls short of the verifier's default bar (measured:
  benchmarks/results/sst2_qat_int8_matmul.json).

Zeros in the encoder kernels (a pruned model) stay zero: `preserve_sparsity=True` fixes each kernel's zero pattern
as a mask that the optimizer applies after every update, so QAT composes with pruning.

Every family `tfbertopt.surgery` reads (the backbone is rebuilt as a quantization-aware `CompressedBackbone`).
Factorized (low-rank) projections train as two int8 matmuls with a quantized rank-wide tensor between them
(`QuantizedLowRankEinsumDense`), as their file runs them.

Example:

>>> import numpy as np
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.demo import demo_examples
>>> from tfbertopt.quantization import quantize_model, activation_ranges
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> qat = quantize_model(clf, calibration=demo_examples("train", 16))
>>> ranges = activation_ranges(qat)
>>> len(ranges) > 10 and all(lo <= 0.0 <= hi for lo, hi in ranges.values())
True
"""

from __future__ import annotations

import numpy as np

from tfbertopt.data.calibration import calibration_features
from tfbertopt.data.pipeline import model_input_names, without_preprocessor
from tfbertopt.kernels import UnsupportedModelError, find_kernels, get_backbone
from tfbertopt.layers import ActivationQuantizer
from tfbertopt.pruning.prune import attach_mask
from tfbertopt.quantizers.channel_scales import equalization_scales, matmul_ranges
from tfbertopt.quantizers.config import QuantizationConfig
from tfbertopt.quantizers.fake_quant import mse_clip_ratios
from tfbertopt.surgery import as_compressed, rebuild



def activation_quantizers(model) -> dict:
    """{path: ActivationQuantizer} of every learned-range activation quantizer in `model`."""
    found = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, ActivationQuantizer) and layer.fixed_range is None and layer.built:
            found[layer.range_min.path.rsplit("/", 1)[0]] = layer
    return found


def quantization_config(model) -> QuantizationConfig | None:
    """The `QuantizationConfig` a quantization-aware model (or a Distiller's student) trains with; None for a float
    model."""
    model = getattr(model, "student", None) or model
    try:
        backbone = get_backbone(model)
    except UnsupportedModelError:
        return None
    return QuantizationConfig.from_config(getattr(backbone, "quantization", None))


def is_quantized(model) -> bool:
    """Whether `model` (or a Distiller's student) is a quantization-aware model."""
    return quantization_config(model) is not None


def activation_ranges(model) -> dict[str, tuple[float, float]]:
    """{quantizer path: (lo, hi)} of the learned activation ranges (uninitialised quantizers are left out)."""
    out = {}
    for path, q in activation_quantizers(model).items():
        if float(np.asarray(q.observed)) > 0:
            out[path] = (float(np.asarray(q.range_min)), float(np.asarray(q.range_max)))
    return out


def uninitialized_quantizers(model) -> list[str]:
    """Paths of activation quantizers that have seen no data (their range is empty)."""
    return [p for p, q in activation_quantizers(model).items() if float(np.asarray(q.observed)) <= 0]


def calibrate_ranges(model, calibration, steps: int = 100, batch_size: int = 16) -> dict:
    """Sets every activation range to the running min/max over `steps` calibration examples (inference mode).

    `calibration`: GLUE `Examples` (tokenized with the model's preprocessor) or a feature dict from `encode`.
    Returns `activation_ranges(model)`.
    """
    quantizers = activation_quantizers(model)
    if not quantizers:
        raise ValueError("model has no activation quantizers; call quantize_model(model) first")
    features = _calibration_features(model, calibration, steps)
    names = list(features)
    for q in quantizers.values():
        q.observed.assign(0.0)
        q.observing = True
    try:
        n = len(features[names[0]])
        for start in range(0, n, batch_size):
            batch = {k: v[start:start + batch_size] for k, v in features.items()}
            model.backbone(batch, training=False) if hasattr(model, "backbone") else model(batch, training=False)
    finally:
        for q in quantizers.values():
            q.observing = False
    return activation_ranges(model)


def _calibration_features(model, calibration, steps):
    with without_preprocessor(model):
        names = model_input_names(model)
    return calibration_features(calibration, model, names, None, steps)


def set_output_channel_scales(quantized, source, calibration, min_spread: float, steps: int = 100) -> int:
    """Gives the projections of `quantized` whose output channels spread by more than `min_spread` on
    `calibration` (measured on the float `source`) per-channel output scales, as the "int8-matmul" export does
    (`tfbertopt.export.channel_equalization`); returns how many."""
    features = _calibration_features(source, calibration, steps)
    with without_preprocessor(source):
        scales = equalization_scales(source, matmul_ranges(source, features), min_spread)
    chosen = {sc.layer.kernel.path: sc.t for sc in scales.values()}
    count = 0
    for ref in find_kernels(quantized):
        if ref.path in chosen and getattr(ref.layer, "output_channel_scales", False):
            ref.layer.set_output_scale(chosen[ref.path])
            count += 1
    return count


def preserve_sparsity(model) -> int:
    """Fixes the zero pattern of every encoder kernel that has zeros as a mask constraint; returns how many."""
    import keras


    count = 0
    for ref in find_kernels(model):
        value = keras.ops.convert_to_numpy(ref.variable)
        if ref.variable.constraint is None and np.any(value == 0):
            attach_mask(ref, value != 0, suffix="qat_mask")
            count += 1
    return count


def init_clip_ratios(model) -> int:
    """Starts every learned clip ratio (`QuantizationConfig.learned_weight_scales`) at the least-squares clip of its
    kernel's current values (`mse_clip_ratios`); returns how many kernels have them."""
    n = 0
    for layer in model._flatten_layers():
        for kernel, channel_axes, ratio in getattr(layer, "kernel_grids", list)():
            if ratio is not None:
                ratio.assign(mse_clip_ratios(np.asarray(kernel), channel_axes, layer.weight_bits))
                n += 1
    return n


def quantize_model(model, config: QuantizationConfig | dict | None = None, calibration=None,
                   calibration_steps: int = 100, preserve_sparsity_masks: bool = True):
    """A quantization-aware copy of a classifier (TFMOT's `quantize_model`, for keras-hub models).

    Args:
      model: a keras-hub text classifier of a family `tfbertopt.surgery` reads, compressed or not.
      config: a `QuantizationConfig` (or its dict); defaults to LiteRT's int8 scheme at every point.
      calibration: optional GLUE `Examples` or feature dict to start the activation ranges from.
      calibration_steps: how many calibration examples.
      preserve_sparsity_masks: keep the zeros of pruned kernels exactly zero while training.

    Raises:
      UnsupportedModelError: a model `tfbertopt.surgery` cannot rebuild (not a classifier of its families).
    """
    if is_quantized(model):
        raise ValueError("model is already quantization-aware (its backbone has a quantization config)")
    config = QuantizationConfig.from_config(config) or QuantizationConfig()
    source = as_compressed(model)
    quantized = rebuild(source, quantization=config.get_config())
    if preserve_sparsity_masks:
        preserve_sparsity(quantized)
    if config.learned_weight_scales:
        init_clip_ratios(quantized)
    if calibration is not None and config.points:     # weight-only schemes (int4) have no ranges to start
        calibration = _calibration_features(source, calibration, calibration_steps)   # tokenized once, for both
        if config.output_channel_spread is not None:
            set_output_channel_scales(quantized, source, calibration, config.output_channel_spread, calibration_steps)
        calibrate_ranges(quantized, calibration, steps=calibration_steps)
    return quantized
