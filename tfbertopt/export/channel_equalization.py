"""Per-channel output scales for LiteRT's per-tensor int8 matmuls (used by `export_litert(..., "int8-matmul")`).

A LiteRT int8 FULLY_CONNECTED has one scale per activation tensor. BERT's FFN outputs are far from uniform across
channels: on the SST-2 MiniLM-L6 a few output channels reach many times the median channel's magnitude
(Bondarenko et al. 2021's outlier dimensions), so one int8 step sized for them rounds the other channels away.
Left float, the six FFN-output matmuls alone lift most of the int8-matmul file's lost label agreement with Keras
(one-off diagnostic runs, described in docs/export.md; measured with and without these scales:
benchmarks/results/sst2_int8_speed.json).

This module gives such a matmul per-channel output scales, exactly, in float:

    y = ((x @ (W diag(1/t)) + b / t)) * t

`t` (one per output channel, its calibrated |max|) is folded into the kernel's columns and the bias, so the int8
output tensor holds every channel on the same [-1, 1] grid; a float MUL by `t` after the DEQUANTIZE restores the
channels. The weights lose nothing (their int8 scales are per output channel anyway). Only matmuls whose channel
ranges spread by more than `min_spread` (max over median) are rescaled, since each one costs a MUL.

Two converter details shape the graph (both measured, TF 2.21): the converter folds a constant MUL next to a
FULLY_CONNECTED into its weights, so `t` is multiplied by a runtime 1.0; and when a MUL reads a FULLY_CONNECTED's
output directly, the quantizer gives the FULLY_CONNECTED output the MUL's range, so a RESHAPE sits between them.
The scales help only where the ops after the matmuls stay float, which is what "int8-matmul" does. (Scaling the
inputs as well, SmoothQuant-style, lowered agreement on the same model in a one-off run.)

Example (the rescaled graph computes what the model computes):

>>> import numpy as np
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.demo import demo_examples
>>> from tfbertopt.data.pipeline import encode
>>> from tfbertopt.export.channel_equalization import matmul_ranges, equalization_scales, equalized_matmuls
>>> clf = tiny_bert_classifier(["neg", "pos"], num_layers=2)
>>> x = encode(demo_examples("train", 8).texts, clf.preprocessor)
>>> scales = equalization_scales(clf, matmul_ranges(clf, x), min_spread=1.0)
>>> reference = np.asarray(clf(x))
>>> with equalized_matmuls(scales):
...     rescaled = np.asarray(clf(x))
>>> bool(np.allclose(reference, rescaled, atol=1e-4))
True
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import numpy as np
from keras import ops

from tfbertopt.kernels import ENCODER_DENSE_ROLES, find_kernels

DEFAULT_MIN_SPREAD = 8.0
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


def rescaled(y, t):
    """`y * t` over the trailing channel dims, through a RESHAPE: when a MUL reads a FULLY_CONNECTED's output
    directly, LiteRT's quantizer gives the FULLY_CONNECTED output the MUL's range (measured, TF 2.21), which would
    undo the equalization; the RESHAPE in between keeps the two ranges apart."""
    shape = tuple(y.shape)
    channels = int(np.prod(shape[len(shape) - np.ndim(t):])) if np.ndim(t) else 1
    if any(d is None for d in shape):
        shape = ops.shape(y)
    flat = ops.reshape(y, (-1, channels)) * ops.reshape(t, (channels,))
    return ops.reshape(flat, shape)


class _RuntimeOne:
    """A 1.0 the converter cannot constant-fold: one per traced graph, from the first scaled matmul's input."""

    def __init__(self):
        self.graph, self.value = None, None

    def __call__(self, inputs):
        graph = _current_graph()
        if graph is None:
            return 1.0
        if graph is not self.graph:
            # |x| >= 0, so min(0, min|x|) is 0: the sum is exactly 1 at run time, and not a constant.
            self.graph, self.value = graph, 1.0 + ops.minimum(ops.min(ops.abs(inputs)), 0.0)
        return self.value


_SHARED_ONE = _RuntimeOne()


def runtime_one(inputs):
    """1.0, computed from `inputs` at run time while a graph is traced (so the converter cannot fold what it
    multiplies), the Python 1.0 otherwise. One per graph, shared by every caller (`equalized_matmuls`, the
    quantization-aware layers)."""
    return _SHARED_ONE(inputs)


def _current_graph():
    import tensorflow as tf

    return None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()


@contextlib.contextmanager
def equalized_matmuls(scales: dict):
    """Within the block, the matmuls of `scales` compute `(x @ W' + b') * t` (the same function)."""
    def rescaling(original):
        def call(self, inputs, training=None):
            sc = scales.get(id(self))
            if sc is None:
                return original(self, inputs, training)
            y = rescaled(_linear(self, inputs, sc.kernel, sc.bias), sc.t * runtime_one(inputs))
            return y if self.activation is None else self.activation(y)
        return call

    with _matmul_calls(rescaling):
        yield
