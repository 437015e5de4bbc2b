"""DeBERTa-v3's disentangled self-attention with any head count and head size, low-rank projections and
quantization-aware training: the attention of `CompressedTransformerEncoder(attention="disentangled")`.

keras-hub's `DisentangledSelfAttention` derives its head size as hidden // heads and reshapes its context to the
hidden width, so it cannot hold a layer whose heads were pruned. This layer takes `key_dim` explicitly and projects
the context with an output kernel of shape (heads, key_dim, hidden), as Keras' `MultiHeadAttention` does. Its four
projections are the attributes and names of BERT's (`_query_dense` "query", `_key_dense` "key", `_value_dense`
"value", `_output_dense` "attention_output", with the same equations), so shrinking, SVD, sharing and QAT treat
them as they treat BERT's. The scores are DeBERTa's, over the relative-position embeddings `R` (1, 2k, hidden) the
backbone shares between layers (`RelativePositionEmbedding`, k = `bucket_size`):

    scores[i, j] = (q_i . k_j + q_i . Kr[c2p(i, j)] + k_j . Qr[p2c(j, i)]) / sqrt(3 * key_dim)

with `Qr`, `Kr` this layer's query and key projections of `R`, and `c2p` / `p2c` the log-bucketed relative
positions (i - j, resp. j - i) shifted by k and clipped to the table, exactly as keras-hub computes them
(`max_position_embeddings` sets the log scale). The padding mask is added (0 / -1e9) before the softmax; the export
swaps in its own masking for integer files (`tfbertopt.export.attention_masking`), through `_masked_softmax`.

`ranks` (projection name -> rank) makes projections `LowRankEinsumDense` pairs. `quantization` (a
`QuantizationConfig` dict) makes them `QuantizedEinsumDense` (or `QuantizedLowRankEinsumDense`) and, with the
point "attention", fake-quantizes the scaled query, the scores (masked with a row-relative floor, as
`QuantizedMultiHeadAttention`), the probabilities (LiteRT's fixed 1/256 grid) and the context.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import DisentangledAttention
>>> attention = DisentangledAttention(num_heads=3, key_dim=4, bucket_size=4, max_position_embeddings=16)
>>> x, positions = np.zeros((2, 5, 8), "float32"), np.zeros((1, 8, 8), "float32")
>>> tuple(attention(x, positions).shape)
(2, 5, 8)
>>> tuple(attention._output_dense.kernel.shape)
(3, 4, 8)
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.graph_utils import additive_bias, floor_masked, runtime_one
from tfbertopt.layers.low_rank_einsum_dense import LowRankEinsumDense
from tfbertopt.layers.quantized_einsum_dense import QuantizedEinsumDense
from tfbertopt.layers.quantized_low_rank_einsum_dense import QuantizedLowRankEinsumDense
from tfbertopt.quantizers.config import QuantizationConfig

MASK_MARGIN = 8.0                              # as QuantizedMultiHeadAttention's
SOFTMAX_OUTPUT_RANGE = (0.0, 255.0 / 256.0)    # LiteRT int8 softmax: scale 1/256, zero point -128
PROJECTIONS = {"query": "_query_dense", "key": "_key_dense", "value": "_value_dense",
               "attention_output": "_output_dense"}
_SCORES = "aecd,abcd->acbe"          # (batch, key, heads, dim), (batch, query, heads, dim) -> (batch, heads, q, k)
_POSITION_SCORES = "ecd,abcd->acbe"  # (positions, heads, dim), (batch, seq, heads, dim) -> (batch, heads, seq, pos)
_COMBINE = "acbe,aecd->abcd"


@keras.saving.register_keras_serializable(package="tfbertopt")
class DisentangledAttention(keras.layers.Layer):
    """Args: `num_heads`, `key_dim` (head size); `bucket_size` and `max_position_embeddings` (DeBERTa's relative
    positions: the backbone's bucket size and maximum sequence length); `dropout` (attention probabilities and
    relative embeddings, as keras-hub); `ranks`: projection name ("query", "key", "value", "attention_output") ->
    rank; `quantization`: a `QuantizationConfig` config dict, or None for the float layer."""

    def __init__(self, num_heads, key_dim, bucket_size=256, max_position_embeddings=512, dropout=0.0, ranks=None,
                 quantization=None, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if num_heads < 1 or key_dim < 1 or bucket_size < 1:
            raise ValueError(f"num_heads, key_dim and bucket_size must be >= 1, got {num_heads}, {key_dim}, "
                             f"{bucket_size}")
        ranks = {k: v for k, v in dict(ranks or {}).items() if v is not None}
        unknown = sorted(set(ranks) - set(PROJECTIONS))
        if unknown:
            raise ValueError(f"unknown attention projections {unknown}; choose from {sorted(PROJECTIONS)}")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.bucket_size, self.max_position_embeddings = int(bucket_size), int(max_position_embeddings)
        self.dropout = float(dropout)
        self.ranks = {k: int(v) for k, v in ranks.items()}
        self.quantization = QuantizationConfig.from_config(quantization)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # Three score terms (content, content-to-position, position-to-content), as DeBERTa scales them.
        self.scale = 1.0 / math.sqrt(3.0 * self.key_dim)

    def _projection(self, name, equation, output_shape, bias_axes, input_shape):
        def init(initializer):
            return keras.initializers.get(keras.initializers.serialize(initializer))

        common = {"bias_axes": bias_axes, "kernel_initializer": init(self.kernel_initializer),
                  "bias_initializer": init(self.bias_initializer), "dtype": self.dtype_policy, "name": name}
        rank, config = self.ranks.get(name), self.quantization
        if config is not None:
            linear = config.quantizer_for("linear")
            quantized = {**config.weight_options(),
                         "output_quantizer": linear,
                         "input_quantizer": config.quantizer_for("matmul_inputs"), **common}
            if rank is None:
                layer = QuantizedEinsumDense(equation, output_shape,
                                             output_channel_scales=config.output_channel_spread is not None,
                                             **quantized)
            else:
                layer = QuantizedLowRankEinsumDense(equation, output_shape, rank, rank_quantizer=linear, **quantized)
        elif rank is None:
            layer = keras.layers.EinsumDense(equation, output_shape, **common)
        else:
            layer = LowRankEinsumDense(equation, output_shape, rank, **common)
        layer.build(input_shape)
        return layer

    def build(self, inputs_shape, rel_embeddings_shape=None):
        inputs_shape = tuple(inputs_shape)
        hidden_dim = inputs_shape[-1]
        heads = (None, self.num_heads, self.key_dim)
        self._query_dense = self._projection("query", "abc,cde->abde", heads, "de", inputs_shape)
        self._key_dense = self._projection("key", "abc,cde->abde", heads, "de", inputs_shape)
        self._value_dense = self._projection("value", "abc,cde->abde", heads, "de", inputs_shape)
        self._output_dense = self._projection("attention_output", "abcd,cde->abe", (None, hidden_dim), "e",
                                              inputs_shape[:-1] + (self.num_heads, self.key_dim))
        self._dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="attention_dropout")
        self._position_dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy,
                                                            name="position_dropout")
        self.scaled_query_quantizer = self.scores_quantizer = self.probs_quantizer = self.context_quantizer = None
        config = self.quantization
        if config is not None and config.quantizes("attention"):
            self.scaled_query_quantizer = ActivationQuantizer(**config.activation_quantizer(),
                                                              name="scaled_query_quantizer")
            self.scores_quantizer = ActivationQuantizer(**config.activation_quantizer(), name="scores_quantizer")
            self.probs_quantizer = ActivationQuantizer(
                **config.activation_quantizer(fixed_range=SOFTMAX_OUTPUT_RANGE), name="probs_quantizer")
            self.context_quantizer = ActivationQuantizer(**config.activation_quantizer(), name="context_quantizer")
            for quantizer in (self.scaled_query_quantizer, self.scores_quantizer, self.probs_quantizer,
                              self.context_quantizer):
                quantizer.build(None)
        self.built = True

    def relative_positions(self, length):
        """(length, length) int32: keras-hub's log-bucketed relative position i - j of query i and key j."""
        ids = ops.arange(length, dtype="int32")
        rel = ops.expand_dims(ids, -1) - ops.expand_dims(ids, 0)
        mid = self.bucket_size // 2
        abs_pos = ops.where((rel < mid) & (rel > -mid), mid - 1, ops.abs(rel))
        # In float32, in keras-hub's order, so that the buckets are the same integers.
        numerator = ops.log(ops.cast(abs_pos, "float32") / float(mid)) * float(mid - 1)
        denominator = ops.log(ops.cast(self.max_position_embeddings - 1, "float32") / float(mid))
        log_pos = ops.cast(ops.ceil(numerator / denominator), "int32") + mid
        return ops.where(abs_pos <= mid, rel, log_pos * ops.sign(rel))

    def _masked_softmax(self, scores, mask):
        """The float softmax over keys, masked keys (mask False) given -1e9: Keras' masking, as one ADD."""
        if mask is not None:
            scores = scores + additive_bias(mask, scores.dtype)
        return ops.softmax(scores, axis=-1)

    def call(self, inputs, rel_embeddings, attention_mask=None, training=None, return_attention_scores=False):
        query = self._query_dense(inputs)
        key = self._key_dense(inputs)
        value = self._value_dense(inputs)
        positions = self._position_dropout_layer(rel_embeddings, training=training)
        # The projections of the (shared, batch-free) relative embeddings: (2k, heads, key_dim) each.
        position_query = _constant_projection(self._query_dense, positions)[0] * ops.cast(self.scale, query.dtype)
        position_key = _constant_projection(self._key_dense, positions)[0]
        query = query * ops.cast(self.scale, query.dtype)
        if self.scaled_query_quantizer is not None:
            query = self.scaled_query_quantizer(query, training=training)
        scores = ops.einsum(_SCORES, key, query)
        length, span = ops.shape(query)[1], self.bucket_size
        rel = ops.expand_dims(ops.expand_dims(self.relative_positions(length), 0), 0)
        c2p = ops.einsum(_POSITION_SCORES, position_key, query)            # query i against position p
        scores = scores + ops.take_along_axis(c2p, ops.clip(rel + span, 0, 2 * span - 1), axis=3)
        p2c = ops.einsum(_POSITION_SCORES, position_query, key)            # key j against position p
        p2c = ops.take_along_axis(p2c, ops.clip(span - rel, 0, 2 * span - 1), axis=3)
        scores = scores + ops.transpose(p2c, (0, 1, 3, 2))
        mask = None if attention_mask is None else ops.expand_dims(attention_mask, axis=1)   # over the heads
        if self.scores_quantizer is not None:
            if mask is not None:
                scores = floor_masked(scores, mask, MASK_MARGIN)
            probs = self.probs_quantizer(ops.softmax(self.scores_quantizer(scores, training=training), axis=-1),
                                         training=training)
        else:
            probs = self._masked_softmax(scores, mask)
        dropped = self._dropout_layer(probs, training=training) if self.dropout > 0.0 else probs
        context = ops.einsum(_COMBINE, dropped, value)
        if self.quantization is not None and self.context_quantizer is None and \
                self.quantization.quantizes("matmul_inputs"):
            # A float attention between int8 projections (int8-matmul): times a runtime 1.0, or the converter,
            # seeing the int8 value and the int8 input of the output projection, makes the context matmul int8.
            context = context * runtime_one(inputs)
        if self.context_quantizer is not None:
            context = self.context_quantizer(context, training=training)
        output = self._output_dense(context)
        return (output, probs) if return_attention_scores else output

    def compute_output_shape(self, inputs_shape, rel_embeddings_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads, "key_dim": self.key_dim, "bucket_size": self.bucket_size,
            "max_position_embeddings": self.max_position_embeddings, "dropout": self.dropout,
            "ranks": dict(self.ranks),
            "quantization": None if self.quantization is None else self.quantization.get_config(),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


def _constant_projection(layer, x):
    """`layer` (a projection) applied to the relative embeddings, a constant of the exported graph: its weights (on
    their int8 grid when quantization-aware) without activation fake-quants, and not through `EinsumDense.call`
    (which the export's matmul ranging and rescaling hook), so that the converter folds the projection into a
    constant as it folds keras-hub's, instead of running it in every inference."""
    if isinstance(layer, (QuantizedEinsumDense, QuantizedLowRankEinsumDense)):
        return layer.weight_only_call(x)
    if isinstance(layer, keras.layers.EinsumDense):
        y = ops.einsum(layer.equation, x, layer.kernel)
        return y if layer.bias is None else y + layer.bias
    return layer(x)
