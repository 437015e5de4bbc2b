"""A MultiHeadAttention trained as LiteRT's int8 kernels run it: quantized projections, scores, softmax and context.

The four projections become `QuantizedEinsumDense` layers (per-channel int8 weights, quantized outputs: the int8
query, key and value the two BATCH_MATMULs read). The attention itself always takes the explicit path:

    scores  = einsum(key, fake_quant(query / sqrt(key_dim)))
    masked  = where(mask, scores, min(scores over keys) - MASK_MARGIN)    # not -1e9: see below
    probs   = fake_quant(softmax(fake_quant(masked)), [0, 255/256])         # LiteRT's fixed int8 softmax output
    context = fake_quant(einsum(probs, value))

Keras masks with -1e9, which gives the softmax input an int8 range of about 1e9 and makes every head attend
uniformly once quantized (`tfbertopt.export.attention_masking`). A floor `MASK_MARGIN` = 8 below the row's minimum
costs 8 more units of range and puts a masked key's weight under exp(-8) of the row's largest, which the softmax's
1/256 output grid rounds to exactly zero, in training as in the int8 model.

Which of these carry a fake-quant follows the `QuantizationConfig` points "linear" (projection outputs) and
"attention" (scores, probabilities, context). Without "attention" (the "int8-matmul" scheme) the attention is
float, as that file runs it: the mask is Keras' additive one, and a runtime 1.0 multiplies the context so that the
converter does not make the context matmul int8 between the int8 value and the int8 output projection. Attention
dropout is applied to the probabilities as in Keras.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import QuantizedMultiHeadAttention
>>> mha = QuantizedMultiHeadAttention(num_heads=2, key_dim=4, quantization={})
>>> x = np.random.default_rng(0).normal(size=(1, 5, 8)).astype("float32")
>>> mask = np.array([[[True] * 3 + [False] * 2] * 5])
>>> out, probs = mha(x, x, attention_mask=mask, return_attention_scores=True, training=True)
>>> float(np.asarray(probs)[..., 3:].max())          # masked keys get exactly zero weight
0.0
>>> bool(np.allclose(np.asarray(probs) * 256, np.round(np.asarray(probs) * 256)))   # on the 1/256 grid
True
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.layers.graph_utils import additive_bias, broadcast_mask, floor_masked, runtime_one
from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.quantized_einsum_dense import QuantizedEinsumDense
from tfbertopt.layers.quantized_low_rank_einsum_dense import QuantizedLowRankEinsumDense
from tfbertopt.quantizers.config import QuantizationConfig

MASK_MARGIN = 8.0
SOFTMAX_OUTPUT_RANGE = (0.0, 255.0 / 256.0)   # LiteRT int8 softmax: scale 1/256, zero point -128
PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
RANK_NAMES = {"_query_dense": "query", "_key_dense": "key", "_value_dense": "value", "_output_dense": "attention_output"}


@keras.saving.register_keras_serializable(package="tfbertopt")
class QuantizedMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`quantization`: a `QuantizationConfig` config dict ({} for the defaults); `ranks`: projection name
    ("query", "key", "value", "attention_output") -> rank, for factorized projections
    (`QuantizedLowRankEinsumDense`)."""

    def __init__(self, num_heads, key_dim, quantization=None, ranks=None, **kwargs):
        super().__init__(num_heads=num_heads, key_dim=key_dim, **kwargs)
        self.quantization = QuantizationConfig.from_config(dict(quantization or {}))
        unknown = sorted(set(ranks or {}) - set(RANK_NAMES.values()))
        if unknown:
            raise ValueError(f"unknown attention projections {unknown}; choose from {sorted(RANK_NAMES.values())}")
        self.ranks = {k: int(v) for k, v in dict(ranks or {}).items() if v is not None}

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        config = self.quantization
        output_quantizer = config.quantizer_for("linear")
        common = {k: v for k, v in self._get_common_kwargs_for_sublayer().items()
                  if k in ("kernel_initializer", "bias_initializer", "dtype")}
        shapes = {"_query_dense": query_shape, "_key_dense": key_shape or value_shape, "_value_dense": value_shape,
                  "_output_dense": tuple(query_shape[:-1]) + (self._num_heads, self._value_dim)}
        for attr in PROJECTIONS:
            dense = getattr(self, attr)
            rank = self.ranks.get(RANK_NAMES[attr])
            if rank is None:
                quantized = QuantizedEinsumDense(
                    dense.equation, dense.partial_output_shape, bias_axes=dense.bias_axes,
                    **config.weight_options(),
                    output_quantizer=output_quantizer,
                    input_quantizer=config.quantizer_for("matmul_inputs"),
                    output_channel_scales=config.output_channel_spread is not None, name=dense.name, **common)
            else:
                quantized = QuantizedLowRankEinsumDense(
                    dense.equation, dense.partial_output_shape, rank, bias_axes=dense.bias_axes,
                    **config.weight_options(),
                    output_quantizer=output_quantizer, rank_quantizer=output_quantizer,
                    input_quantizer=config.quantizer_for("matmul_inputs"), name=dense.name, **common)
            quantized.build(shapes[attr])
            self._layers.remove(dense)      # untrack the float projection: the quantized one has its weights
            setattr(self, attr, quantized)
        self.scores_quantizer = self.probs_quantizer = self.context_quantizer = self.scaled_query_quantizer = None
        if config.quantizes("attention"):
            self.scaled_query_quantizer = ActivationQuantizer(**config.activation_quantizer(),
                                                              name="scaled_query_quantizer")
            self.scaled_query_quantizer.build(None)
            self.scores_quantizer = ActivationQuantizer(**config.activation_quantizer(), name="scores_quantizer")
            self.probs_quantizer = ActivationQuantizer(
                **config.activation_quantizer(fixed_range=SOFTMAX_OUTPUT_RANGE), name="probs_quantizer")
            self.context_quantizer = ActivationQuantizer(**config.activation_quantizer(), name="context_quantizer")
            for quantizer in (self.scores_quantizer, self.probs_quantizer, self.context_quantizer):
                quantizer.build(None)

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        if use_causal_mask:
            raise NotImplementedError("QuantizedMultiHeadAttention is for encoders: no causal mask")
        query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        if self.scaled_query_quantizer is not None:
            query = self.scaled_query_quantizer(query, training=training)
        scores = ops.einsum(self._dot_product_equation, key, query)
        if attention_mask is not None:
            mask = broadcast_mask(self, scores, attention_mask)
            # A float softmax (no "attention" point: the int8-matmul graph) takes the additive mask that graph runs.
            scores = floor_masked(scores, mask, MASK_MARGIN) if self.scores_quantizer is not None \
                else scores + additive_bias(mask, scores.dtype)
        if self.scores_quantizer is not None:
            scores = self.scores_quantizer(scores, training=training)
        probs = ops.softmax(scores, axis=-1)
        if self.probs_quantizer is not None:
            probs = self.probs_quantizer(probs, training=training)
        dropped = self._dropout_layer(probs, training=training) if self._dropout > 0.0 else probs
        context = ops.einsum(self._combine_equation, dropped, value)
        if self.context_quantizer is None and self.quantization.quantizes("matmul_inputs"):
            # A float attention between int8 projections: times a runtime 1.0, or LiteRT's converter, seeing the int8
            # value and the int8 input of the output projection, makes the context matmul int8 too.
            context = context * runtime_one(query)
        if self.context_quantizer is not None:
            context = self.context_quantizer(context, training=training)
        return context, probs

    def get_config(self):
        config = super().get_config()
        config["quantization"] = self.quantization.get_config()
        config["ranks"] = dict(self.ranks)
        return config
