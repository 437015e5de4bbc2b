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
ranges spread by more than `min_spread` (max over median) are rescaled, since each one costs a MUL; which ones, and
their `t`, come from `tfbertopt.quantizers.channel_scales` (shared with quantization-aware training).

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
>>> from tfbertopt.quantizers.channel_scales import matmul_ranges, equalization_scales
>>> from tfbertopt.export.channel_equalization import equalized_matmuls
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

from tfbertopt.layers.graph_utils import rescaled, runtime_one
from tfbertopt.quantizers.channel_scales import _linear, _matmul_calls


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
