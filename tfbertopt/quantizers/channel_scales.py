"""Which int8 matmuls need per-channel output scales, and which: the analysis behind int8-matmul's scales.

`matmul_ranges(model, features)` records each encoder matmul's |max| per output channel on calibration data;
`equalization_scales(model, ranges, min_spread)` keeps the matmuls whose channels spread by more than `min_spread`
(max over median) and gives each its multiplier `t` with the kernel and bias divided by it. The export applies them
(`tfbertopt.export.channel_equalization`, which explains the scheme); quantization-aware training for that graph
sets the same scales on its layers (`tfbertopt.quantization.set_output_channel_scales`). Keras ops only.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.demo import demo_examples
>>> from tfbertopt.data.pipeline import encode
>>> from tfbertopt.quantizers.channel_scales import equalization_scales, matmul_ranges
>>> clf = tiny_bert_classifier(["neg", "pos"], num_layers=2)
>>> ranges = matmul_ranges(clf, encode(demo_examples("train", 8).texts, clf.preprocessor))
>>> len(ranges), all(s.spread > 1.0 for s in equalization_scales(clf, ranges, min_spread=1.0).values())
(12, True)
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import numpy as np
from keras import ops

from tfbertopt.kernels import ENCODER_DENSE_ROLES, find_kernels
from tfbertopt.quantizers.config import DEFAULT_MIN_SPREAD

_MATMULS = (keras.layers.Dense, keras.layers.EinsumDense)


def channel_split(layer) -> tuple[int, int]:
    """(input-channel dims, output-channel dims) of a Dense/EinsumDense kernel, e.g. (1, 2) for a query projection."""
    if isinstance(layer, keras.layers.EinsumDense):
        x, kernel, out = layer.equation.replace("->", ",").split(",")
        contracted = [c for c in kernel if c in x and c not in out]
        produced = [c for c in kernel if c in out]
        if kernel != "".join(contracted + produced) or not x.endswith("".join(contracted)) \
                or not out.endswith("".join(produced)):
            raise ValueError(f"{layer.name}: equation {layer.equation} does not put its channels last")
        return len(contracted), len(produced)
    return 1, 1


def _linear(layer, inputs, kernel, bias):
    y = ops.einsum(layer.equation, inputs, kernel) if isinstance(layer, keras.layers.EinsumDense) \
        else ops.matmul(inputs, kernel)
    return y if bias is None else y + bias


def matmul_ranges(model, features: dict, batch_size: int = 8, roles=ENCODER_DENSE_ROLES) -> dict:
    """{kernel path: |max| per output channel (before the activation)} of the encoder matmuls over `features` (a
    feature dict; at a fixed export length, padded to it: padded positions count, as they do in that graph)."""
    refs = find_kernels(model, roles=roles)
    if not refs:
        raise ValueError(f"no encoder matmuls with roles {list(roles)} in {type(model).__name__}")
    # Factorized (low-rank) projections keep one scale per tensor: only plain Dense/EinsumDense kernels are ranged.
    by_layer = {id(r.layer): r for r in refs if r.part is None and isinstance(r.layer, _MATMULS)}
    ranges: dict = {}

    def recording(original):
        def call(self, inputs, training=None):
            ref = by_layer.get(id(self))
            if ref is None:
                return original(self, inputs, training)
            y = _linear(self, inputs, self.kernel, self.bias)   # the pre-activation output, computed once
            _, n_out = channel_split(self)
            magnitude = np.abs(np.asarray(y))
            seen = magnitude.reshape(-1, *magnitude.shape[magnitude.ndim - n_out:]).max(0)
            ranges[ref.path] = np.maximum(ranges[ref.path], seen) if ref.path in ranges else seen
            return y if self.activation is None else self.activation(y)
        return call

    n = len(next(iter(features.values())))
    with _matmul_calls(recording):
        for i in range(0, n, batch_size):
            model({k: v[i:i + batch_size] for k, v in features.items()}, training=False)
    return ranges


@contextlib.contextmanager
def _matmul_calls(make):
    """Within the block, Dense and EinsumDense run `make(original_call)`."""
    originals = {cls: cls.call for cls in _MATMULS}
    for cls, original in originals.items():
        cls.call = make(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.call = original


@dataclasses.dataclass
class MatmulScales:
    """One matmul's output multiplier `t`, with the kernel and bias divided by it."""

    layer: object
    t: np.ndarray
    kernel: np.ndarray
    bias: np.ndarray | None

    @property
    def spread(self) -> float:
        return float(self.t.max() / np.median(self.t))


def equalization_scales(model, ranges: dict, min_spread: float = DEFAULT_MIN_SPREAD) -> dict:
    """{id(layer): MatmulScales} for the matmuls of `ranges` (from `matmul_ranges`) whose output channel ranges
    spread by more than `min_spread` (max / median); the others keep one scale."""
    if not min_spread >= 1.0:
        raise ValueError(f"min_spread must be >= 1 (max over median of the channel ranges), got {min_spread}")
    if not ranges:
        return {}
    refs = [r for r in find_kernels(model, roles=ENCODER_DENSE_ROLES) if r.path in ranges]
    if not refs:
        raise ValueError("ranges name none of this model's encoder matmuls: compute them with matmul_ranges(model)")
    scales = {}
    for r in refs:
        n_in, _ = channel_split(r.layer)
        t = np.maximum(ranges[r.path], 1e-6).astype("float32")
        if t.max() / np.median(t) <= min_spread:
            continue
        kernel = np.asarray(r.layer.kernel) / t.reshape((1,) * n_in + t.shape)
        bias = None if r.layer.bias is None else (np.asarray(r.layer.bias) / t).astype("float32")
        scales[id(r.layer)] = MatmulScales(r.layer, t, kernel.astype("float32"), bias)
    return scales
