"""The encoder layer of every compressed model: a keras-hub TransformerEncoder with its own head size, LayerDrop,
low-rank projections, shared blocks and quantization-aware training.

After structured pruning a layer may keep, say, 7 of 12 heads of size 32 in a 384-wide model: keras-hub's encoder
would derive a head size of 384 // 7. This one takes `key_dim` explicitly. With `layerdrop > 0` the whole layer is
skipped (its input passed through) with that probability per training batch (Fan et al. 2020); at inference it
always runs. Layers draw independently (give each its own `layerdrop_seed`). `ranks` (kernel role -> rank, roles
as in `tfbertopt.kernels`: attention_query/key/value/output, ffn_intermediate/output) makes those projections
`LowRankEinsumDense` factor pairs (low-rank factorization). `attention_donor` / `ffn_donor` (another, already built
encoder, passed by the backbone that owns both; not part of the config) make this layer use that layer's attention
block or FFN kernels (ALBERT's attention-only / FFN-only cross-layer sharing); LayerNorms stay per layer.
`quantization` (a `QuantizationConfig` config dict) makes the layer train as LiteRT's int8 kernels run it
(quantization-aware training): `QuantizedMultiHeadAttention`, `QuantizedEinsumDense` FFN projections, and
`ActivationQuantizer`s on the residual sums and LayerNorm outputs (points "residual" and "layer_norm"), and
`QuantizedLayerNormalization`s that simulate LiteRT's int8 LayerNorm internals (point "layer_norm_internals").
`attention="disentangled"` (with `bucket_size` and `max_position_embeddings`) makes the attention DeBERTa-v3's
(`DisentangledAttention`, with the same head size, ranks, sharing and quantization options); such a layer is
called with `rel_embeddings=`, the backbone's shared `RelativePositionEmbedding` output.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import CompressedTransformerEncoder
>>> layer = CompressedTransformerEncoder(num_heads=3, key_dim=8, intermediate_dim=20)
>>> tuple(layer(np.zeros((2, 5, 16), "float32")).shape)
(2, 5, 16)
>>> tuple(layer._self_attention_layer._query_dense.kernel.shape)
(16, 3, 8)
"""

from __future__ import annotations

import keras
from keras_hub.layers import TransformerEncoder

from tfbertopt.layers.low_rank_einsum_dense import LowRankEinsumDense
from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.disentangled_attention import DisentangledAttention
from tfbertopt.layers.low_rank_multi_head_attention import LowRankMultiHeadAttention
from tfbertopt.layers.quantized_einsum_dense import QuantizedEinsumDense
from tfbertopt.layers.quantized_layer_normalization import QuantizedLayerNormalization
from tfbertopt.layers.quantized_low_rank_einsum_dense import QuantizedLowRankEinsumDense
from tfbertopt.layers.quantized_multi_head_attention import QuantizedMultiHeadAttention
from tfbertopt.quantizers.config import QuantizationConfig

ATTENTION_RANK_ROLES = {"attention_query": "query", "attention_key": "key", "attention_value": "value",
                        "attention_output": "attention_output"}
FFN_RANK_ROLES = ("ffn_intermediate", "ffn_output")
ATTENTIONS = ("multi_head", "disentangled")


@keras.saving.register_keras_serializable(package="tfbertopt")
class CompressedTransformerEncoder(TransformerEncoder):
    def __init__(self, intermediate_dim, num_heads, key_dim=None, layerdrop: float = 0.0, layerdrop_seed=None,
                 ranks=None, attention_donor=None, ffn_donor=None, quantization=None, attention="multi_head",
                 bucket_size=None, max_position_embeddings=None, **kwargs):
        super().__init__(intermediate_dim=intermediate_dim, num_heads=num_heads, **kwargs)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if attention == "disentangled" and not (bucket_size and max_position_embeddings):
            raise ValueError("disentangled attention needs bucket_size and max_position_embeddings (DeBERTa's "
                             "relative positions)")
        self.attention = attention
        self.bucket_size, self.max_position_embeddings = bucket_size, max_position_embeddings
        self._attention_donor, self._ffn_donor = attention_donor, ffn_donor
        if not 0.0 <= layerdrop < 1.0:
            raise ValueError(f"layerdrop must be in [0, 1), got {layerdrop}")
        if num_heads < 1 or intermediate_dim < 1:
            raise ValueError(f"a layer needs at least one head and one FFN neuron, got num_heads={num_heads}, "
                             f"intermediate_dim={intermediate_dim}; drop the whole layer instead")
        self.key_dim = key_dim
        ranks = {k: v for k, v in dict(ranks or {}).items() if v is not None}
        unknown = sorted(set(ranks) - set(ATTENTION_RANK_ROLES) - set(FFN_RANK_ROLES))
        if unknown:
            raise ValueError(f"ranks names unknown roles {unknown}; choose from "
                             f"{list(ATTENTION_RANK_ROLES) + list(FFN_RANK_ROLES)}")
        self.ranks = {k: int(v) for k, v in ranks.items()}
        self.quantization = QuantizationConfig.from_config(quantization)
        self.layerdrop = float(layerdrop)
        # Each layer needs its own seed: layers sharing one would all be skipped together.
        self.layerdrop_seed = layerdrop_seed
        self._layerdrop_seed = keras.random.SeedGenerator(layerdrop_seed) if layerdrop else None

    def build(self, inputs_shape):
        if (self.key_dim is None and not self.ranks and self._attention_donor is None and self._ffn_donor is None
                and self.quantization is None and self.attention == "multi_head"):
            return super().build(inputs_shape)
        # keras-hub's build() derives the head size from hidden // heads; this is the same build with our key_dim
        # (and low-rank projections where `ranks` says).
        hidden_dim = inputs_shape[-1]
        key_dim = self.key_dim or hidden_dim // self.num_heads

        def init(initializer):
            return keras.initializers.get(keras.initializers.serialize(initializer))

        dense = dict(kernel_initializer=init(self.kernel_initializer), bias_initializer=init(self.bias_initializer),
                     dtype=self.dtype_policy)
        if self._attention_donor is not None:      # shared: the donor's (built) attention block, weights and all
            self._self_attention_layer = self._attention_donor._self_attention_layer
        elif self.attention == "disentangled":
            self._self_attention_layer = DisentangledAttention(
                num_heads=self.num_heads, key_dim=key_dim, bucket_size=self.bucket_size,
                max_position_embeddings=self.max_position_embeddings, dropout=self.dropout,
                ranks={ATTENTION_RANK_ROLES[k]: v for k, v in self.ranks.items() if k in ATTENTION_RANK_ROLES},
                quantization=None if self.quantization is None else self.quantization.get_config(),
                name="self_attention_layer", **dense)
            self._self_attention_layer.build(inputs_shape)
        elif self.quantization is not None:
            self._self_attention_layer = QuantizedMultiHeadAttention(
                num_heads=self.num_heads, key_dim=key_dim, dropout=self.dropout, output_shape=(hidden_dim,),
                quantization=self.quantization.get_config(), name="self_attention_layer",
                ranks={ATTENTION_RANK_ROLES[k]: v for k, v in self.ranks.items() if k in ATTENTION_RANK_ROLES},
                **dense)
            self._self_attention_layer.build(query_shape=inputs_shape, value_shape=inputs_shape)
        else:
            self._self_attention_layer = LowRankMultiHeadAttention(
                num_heads=self.num_heads, key_dim=key_dim, dropout=self.dropout, output_shape=(hidden_dim,),
                ranks={ATTENTION_RANK_ROLES[k]: v for k, v in self.ranks.items() if k in ATTENTION_RANK_ROLES},
                name="self_attention_layer", **dense)
            self._self_attention_layer.build(query_shape=inputs_shape, value_shape=inputs_shape)
        self._self_attention_layer_norm = self._layer_norm("self_attention_layer_norm")
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name="self_attention_dropout")
        self._feedforward_layer_norm = self._layer_norm("feedforward_layer_norm")
        self._feedforward_layer_norm.build(inputs_shape)
        if self._ffn_donor is not None:            # shared: the donor's FFN kernels
            self._feedforward_intermediate_dense = self._ffn_donor._feedforward_intermediate_dense
            self._feedforward_output_dense = self._ffn_donor._feedforward_output_dense
        else:
            self._feedforward_intermediate_dense = _dense(
                self.intermediate_dim, self.ranks.get("ffn_intermediate"), activation=self.activation,
                name="feedforward_intermediate_dense", quantization=self.quantization, **dense)
            self._feedforward_intermediate_dense.build(inputs_shape)
            self._feedforward_output_dense = _dense(hidden_dim, self.ranks.get("ffn_output"),
                                                    name="feedforward_output_dense", quantization=self.quantization,
                                                    **dense)
            self._feedforward_output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self._feedforward_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name="feedforward_dropout")
        self._quantizers = {}
        if self.quantization is not None:
            for point, names in (("residual", ("attention_residual", "feedforward_residual")),
                                 ("layer_norm", ("attention_layer_norm", "feedforward_layer_norm"))):
                for name in names if self.quantization.quantizes(point) else ():
                    self._quantizers[name] = ActivationQuantizer(**self.quantization.activation_quantizer(),
                                                                 name=f"{name}_quantizer")
                    self._quantizers[name].build(inputs_shape)
        self.built = True

    def _layer_norm(self, name):
        """keras-hub's LayerNorm, or with "layer_norm_internals" the one that simulates LiteRT's int8 LayerNorm."""
        if self.quantization is not None and self.quantization.quantizes("layer_norm_internals"):
            return QuantizedLayerNormalization(quantizer=self.quantization.activation_quantizer(),
                                               epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)

    def _quantize(self, name, x, training):
        quantizer = self._quantizers.get(name)
        return x if quantizer is None else quantizer(x, training=training)

    def _block_call(self, inputs, padding_mask, attention_mask, rel_embeddings, training, return_attention_scores):
        """keras-hub's encoder block, with fake-quant on the residual sums and LayerNorm outputs where the
        quantization says, and DeBERTa's attention (which reads `rel_embeddings`) where `attention` says."""
        from keras_hub.src.layers.modeling.transformer_layer_utils import merge_padding_and_attention_mask

        mask = merge_padding_and_attention_mask(inputs, padding_mask, attention_mask)
        x = residual = inputs
        if self.normalize_first:
            x = self._quantize("attention_layer_norm", self._self_attention_layer_norm(x), training)
        if self.attention == "disentangled":
            x, scores = self._self_attention_layer(x, rel_embeddings=rel_embeddings, attention_mask=mask,
                                                   training=training, return_attention_scores=True)
        else:
            x, scores = self._self_attention_layer(query=x, value=x, attention_mask=mask, training=training,
                                                   return_attention_scores=True)
        x = self._quantize("attention_residual", self._self_attention_dropout(x, training=training) + residual,
                           training)
        if not self.normalize_first:
            x = self._quantize("attention_layer_norm", self._self_attention_layer_norm(x), training)
        residual = x
        if self.normalize_first:
            x = self._quantize("feedforward_layer_norm", self._feedforward_layer_norm(x), training)
        x = self._feedforward_output_dense(self._feedforward_intermediate_dense(x, training=training),
                                           training=training)
        x = self._quantize("feedforward_residual", self._feedforward_dropout(x, training=training) + residual,
                           training)
        if not self.normalize_first:
            x = self._quantize("feedforward_layer_norm", self._feedforward_layer_norm(x), training)
        return (x, scores) if return_attention_scores else x

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None, return_attention_scores=False,
             rel_embeddings=None):
        if self.attention == "disentangled" and rel_embeddings is None:
            raise ValueError("a disentangled-attention layer needs rel_embeddings= (the backbone's "
                             "RelativePositionEmbedding output)")
        if self.quantization is not None or self.attention == "disentangled":
            outputs = self._block_call(inputs, padding_mask, attention_mask, rel_embeddings, training,
                                       return_attention_scores)
        else:
            outputs = super().call(inputs, padding_mask=padding_mask, attention_mask=attention_mask,
                                   training=training, return_attention_scores=return_attention_scores)
        if not (training and self.layerdrop):
            return outputs
        drop = keras.random.uniform((), seed=self._layerdrop_seed) < self.layerdrop
        if return_attention_scores:
            x, scores = outputs
            return keras.ops.where(drop, inputs, x), scores
        return keras.ops.where(drop, inputs, outputs)

    def get_config(self):
        config = super().get_config()
        config.update({"key_dim": self.key_dim, "layerdrop": self.layerdrop, "layerdrop_seed": self.layerdrop_seed,
                       "ranks": dict(self.ranks),
                       "quantization": None if self.quantization is None else self.quantization.get_config()})
        if self.attention != "multi_head":      # configs of BERT-style layers stay as they were
            config.update({"attention": self.attention, "bucket_size": self.bucket_size,
                           "max_position_embeddings": self.max_position_embeddings})
        return config


def _dense(units, rank, activation=None, quantization=None, **kwargs):
    """A Dense over (batch, seq, features), its rank-`rank` factorization, or its quantization-aware form."""
    if quantization is not None:
        # The FFN intermediate's FULLY_CONNECTED output is a "linear" point, its GELU output a "gelu" point.
        linear, gelu = quantization.quantizer_for("linear"), quantization.quantizer_for("gelu")
        if rank is not None:     # two FULLY_CONNECTED ops; the rank-wide tensor between them is a "linear" point
            return QuantizedLowRankEinsumDense(
                "abc,cd->abd", (None, units), rank, bias_axes="d", activation=activation,
                **quantization.weight_options(),
                input_quantizer=quantization.quantizer_for("matmul_inputs"),
                rank_quantizer=linear, float_activation=quantization.matmul_only,
                output_quantizer=gelu if activation is not None else linear,
                pre_activation_quantizer=linear if activation is not None else None, **kwargs)
        return QuantizedEinsumDense("abc,cd->abd", (None, units), bias_axes="d", activation=activation,
                                    **quantization.weight_options(),
                                    input_quantizer=quantization.quantizer_for("matmul_inputs"),
                                    output_channel_scales=quantization.output_channel_spread is not None,
                                    float_activation=quantization.matmul_only,
                                    output_quantizer=gelu if activation is not None else linear,
                                    pre_activation_quantizer=linear if activation is not None else None, **kwargs)
    if rank is None:
        return keras.layers.Dense(units, activation=activation, **kwargs)
    return LowRankEinsumDense("abc,cd->abd", (None, units), rank, bias_axes="d", activation=activation, **kwargs)


@keras.saving.register_keras_serializable(package="tfbertopt")
class PrunedTransformerEncoder(CompressedTransformerEncoder):
    """The name `CompressedTransformerEncoder` had in tfbertopt 0.1; kept so that older configs load."""
