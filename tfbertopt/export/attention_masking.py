"""Attention masking that survives full-integer quantization.

Keras' `MultiHeadAttention` masks padded keys with `where(mask, scores, -1e9)` before the softmax. In a full-integer
LiteRT model that one tensor gets one int8 scale, calibrated over [-1e9, max score]: about 4e6 per step, so every
real score rounds to the same integer and each head attends uniformly to all real tokens. The model still runs and
still agrees with itself, which is why it went unnoticed: a MiniLM int8 export lost most of its SST-2 accuracy this
way (measured: benchmarks/results/sst2_quantization.json, row ptq-int8-keras-mask).

`quantization_friendly_masking()` replaces the constant, while a model is traced for export, with a floor relative to
each row: `where(mask, scores, min(scores) - margin)`. The softmax input's range grows by `margin` instead of 1e9, and
a masked key's weight is at most exp(-margin) of the row's largest (4.5e-5 for the default margin 10): below half a
step of LiteRT's int8 softmax output (1/256), so it is exactly zero in the integer model, and negligible where the
softmax stays float. The quantization-aware attention layer (`QuantizedMultiHeadAttention`) masks the same way with
its trained range instead. DeBERTa-v3's attention in a compressed model (`DisentangledAttention`) masks through the
same two forms within these blocks.

`additive_masking()` is the float form, used by the exports whose softmax runs in float (float32, float16, dynamic,
int8-matmul; Q-BERT-style "mixed" files keep the floor, since their softmax may be int8): Keras' `Softmax(mask=)`
selects twice per layer on the (heads, T, T) scores, once to mask and once to zero masked outputs, and LiteRT runs
SELECT_V2 outside XNNPACK (a visible share of a MiniLM-L6 file's time in `tfbertopt.bench.profile`; docs/export.md).
Adding `0` or `-1e9` from the (1, T, T) mask instead is one broadcast ADD that XNNPACK runs; masked keys still get
exactly zero weight in float32.

Example:

>>> import numpy as np, keras
>>> from tfbertopt.export.attention_masking import quantization_friendly_masking
>>> mha = keras.layers.MultiHeadAttention(num_heads=1, key_dim=4)
>>> x, mask = np.ones((1, 3, 4), "float32"), np.array([[[True, True, False]] * 3])
>>> with quantization_friendly_masking():
...     weights = mha(x, x, attention_mask=mask, return_attention_scores=True)[1]
>>> float(np.asarray(weights)[0, 0, 0, 2]) < 1e-4
True
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from tfbertopt.layers.disentangled_attention import DisentangledAttention
from tfbertopt.layers.graph_utils import DEFAULT_MARGIN, additive_bias, broadcast_mask, floor_masked



def masked_softmax_with_floor(scores, mask, axis=-1, margin: float = DEFAULT_MARGIN):
    """Softmax over `axis` where masked-out entries (mask False) take the row's minimum minus `margin`."""
    return ops.softmax(floor_masked(scores, mask, margin, axis), axis=axis)


@contextlib.contextmanager
def _masking(masked_softmax):
    """Within the block, single-axis Keras `MultiHeadAttention` layers and tfbertopt's float `DisentangledAttention`
    mask with `masked_softmax(scores, mask)`.

    Keras skips `_masked_softmax` for layers without attention dropout (it calls the fused
    `ops.dot_product_attention`, which masks with its own SELECT), so the block also routes those through the
    explicit path, which computes the same attention.
    """
    cls = keras.layers.MultiHeadAttention
    original_softmax, original_attention = cls._masked_softmax, cls._compute_attention
    original_disentangled = DisentangledAttention._masked_softmax

    def _disentangled_softmax(self, attention_scores, attention_mask=None):    # its mask is already broadcast
        if attention_mask is None:
            return original_disentangled(self, attention_scores, attention_mask)
        return masked_softmax(attention_scores, attention_mask)

    def _masked_softmax(self, attention_scores, attention_mask=None):
        if attention_mask is None or len(self._attention_axes) != 1:   # multi-axis attention: Keras' own masking
            return original_softmax(self, attention_scores, attention_mask)
        return masked_softmax(attention_scores, broadcast_mask(self, attention_scores, attention_mask))

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, **kwargs):
        if getattr(self, "_flash_attention", False):
            return original_attention(self, query, key, value, attention_mask, training, return_attention_scores,
                                      **kwargs)
        output, scores = original_attention(self, query, key, value, attention_mask, training, True, **kwargs)
        return output, scores if return_attention_scores else None

    cls._masked_softmax, cls._compute_attention = _masked_softmax, _compute_attention
    DisentangledAttention._masked_softmax = _disentangled_softmax
    try:
        yield
    finally:
        cls._masked_softmax, cls._compute_attention = original_softmax, original_attention
        DisentangledAttention._masked_softmax = original_disentangled


def quantization_friendly_masking(margin: float = DEFAULT_MARGIN):
    """Within the block, every Keras `MultiHeadAttention` (keras-hub's included) and float `DisentangledAttention`
    masks with a row-relative floor."""
    return _masking(lambda scores, mask: masked_softmax_with_floor(scores, mask, axis=-1, margin=margin))


def additive_masking():
    """Within the block, every single-axis Keras `MultiHeadAttention` (and `DisentangledAttention`) masks by adding
    `additive_bias(mask)`."""
    return _masking(lambda scores, mask: ops.softmax(scores + additive_bias(mask, scores.dtype), axis=-1))
