"""A BERT backbone whose layers may each have their own head count, head size and FFN width.

It is BertBackbone's graph (token + position + segment embeddings, LayerNorm, encoder stack, tanh pooler on [CLS])
with `PrunedTransformerEncoder` layers described by `layer_specs`, so structured pruning and layer dropping can
produce a smaller ordinary Keras model that `BertTextClassifier` wraps, saves, loads, fine-tunes and exports.

Factorization and sharing use the same backbone: a spec's `ranks` (kernel role -> rank) makes those projections
low-rank; a spec's `shared_with: j` makes layer i call layer j's encoder object again (ALBERT's cross-layer
sharing: the weights exist once); `attention_shared_with: j` / `ffn_shared_with: j` share only that block; `embedding_dim=E` < `hidden_dim` factorizes the token embedding into a V x E
table and an E x H `embedding_projection` (ALBERT's factorized embedding; position and segment embeddings stay H).

`quantization` (a `QuantizationConfig` config dict) builds the quantization-aware form (`tfbertopt.quantization`):
every encoder layer quantized, fake-quants on the embedding sum and the embedding LayerNorm output (point
"embeddings"), and a `QuantizedEinsumDense` pooler.

Example:

>>> from tfbertopt.layers import PrunedBertBackbone
>>> backbone = PrunedBertBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8,
...     layer_specs=[{"num_heads": 2, "key_dim": 8, "intermediate_dim": 32},
...                  {"num_heads": 1, "key_dim": 8, "intermediate_dim": 12}])
>>> [l.num_heads for l in backbone.transformer_layers]
[2, 1]
>>> shared = PrunedBertBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8, embedding_dim=4,
...     layer_specs=[{"num_heads": 2, "key_dim": 8, "intermediate_dim": 32},
...                  {"num_heads": 2, "key_dim": 8, "intermediate_dim": 32, "shared_with": 0}])
>>> len(shared.transformer_layers), shared.encoder_call_order
(1, [0, 0])
"""

from __future__ import annotations

import keras
from keras_hub.layers import PositionEmbedding
from keras_hub.models import Backbone

from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.pruned_transformer_encoder import PrunedTransformerEncoder
from tfbertopt.layers.quantized_einsum_dense import QuantizedEinsumDense
from tfbertopt.layers.quantized_layer_normalization import QuantizedLayerNormalization
from tfbertopt.quantization.config import QuantizationConfig


def _gelu_approximate(x):
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="tfbertopt")
class PrunedBertBackbone(Backbone):
    def __init__(self, vocabulary_size, hidden_dim, layer_specs, dropout=0.1, max_sequence_length=512,
                 num_segments=2, layerdrop: float = 0.0, embedding_dim=None, quantization=None, dtype=None,
                 **kwargs):
        if not layer_specs:
            raise ValueError("layer_specs is empty: a backbone needs at least one encoder layer")
        order = _call_order(layer_specs)
        quantization = QuantizationConfig.from_config(quantization)
        quantization_config = None if quantization is None else quantization.get_config()
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        if embedding_dim is not None and not 1 <= embedding_dim <= hidden_dim:
            raise ValueError(f"embedding_dim must be in [1, hidden_dim={hidden_dim}], got {embedding_dim}")
        factorized = embedding_dim is not None and embedding_dim != hidden_dim
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocabulary_size, embedding_dim if factorized else hidden_dim, embeddings_initializer=init, dtype=dtype,
            name="token_embedding")
        self.embedding_projection = keras.layers.Dense(
            hidden_dim, use_bias=False, kernel_initializer=init, dtype=dtype,
            name="embedding_projection") if factorized else None
        self.position_embedding = PositionEmbedding(
            sequence_length=max_sequence_length, initializer=init, dtype=dtype, name="position_embedding")
        self.segment_embedding = keras.layers.Embedding(
            num_segments, hidden_dim, embeddings_initializer=init, dtype=dtype, name="segment_embedding")
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
        if quantization is not None and quantization.quantizes("layer_norm_internals"):
            self.embeddings_layer_norm = QuantizedLayerNormalization(
                quantizer=quantization.activation_quantizer(), epsilon=1e-12, dtype=dtype,
                name="embeddings_layer_norm")
        else:
            self.embeddings_layer_norm = keras.layers.LayerNormalization(
                axis=-1, epsilon=1e-12, dtype=dtype, name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers, by_position = [], {}
        for i, spec in enumerate(layer_specs):
            if spec.get("shared_with") is not None:
                continue
            donors = {f"{part}_donor": by_position[spec[f"{part}_shared_with"]] for part in ("attention", "ffn")
                      if spec.get(f"{part}_shared_with") is not None}
            by_position[i] = PrunedTransformerEncoder(
                num_heads=spec["num_heads"], key_dim=spec["key_dim"], intermediate_dim=spec["intermediate_dim"],
                activation=_gelu_approximate, dropout=dropout, layer_norm_epsilon=1e-12, kernel_initializer=init,
                layerdrop=layerdrop, layerdrop_seed=1009 * (i + 1), ranks=spec.get("ranks"), dtype=dtype,
                quantization=quantization_config, name=f"transformer_layer_{i}", **donors)
            self.transformer_layers.append(by_position[i])
        # Unique encoder objects in call order: a shared layer is called again, its weights stored once.
        self.encoder_call_order = order
        if quantization is None:
            self.pooled_dense = keras.layers.Dense(hidden_dim, kernel_initializer=init, activation="tanh",
                                                   dtype=dtype, name="pooled_dense")
        else:
            linear = quantization.quantizer_for("linear")
            self.pooled_dense = QuantizedEinsumDense("ab,bc->ac", (hidden_dim,), bias_axes="c", activation="tanh",
                                                     weight_bits=quantization.weight_bits,
                                                     pre_activation_quantizer=linear, output_quantizer=linear,
                                                     input_quantizer=quantization.quantizer_for("matmul_inputs"),
                                                     float_activation=quantization.matmul_only,
                                                     kernel_initializer=init, dtype=dtype, name="pooled_dense")
        self.embeddings_quantizers = [
            ActivationQuantizer(**quantization.activation_quantizer(), dtype=dtype, name=name)
            for name in ("embeddings_sum_quantizer", "embeddings_layer_norm_quantizer")
        ] if quantization is not None and quantization.quantizes("embeddings") else []
        # The int8 GATHERs of an int8-matmul file: its tables are requantized to these ranges.
        self.embedding_lookup_quantizers = [
            ActivationQuantizer(**quantization.activation_quantizer(), dtype=dtype, name=name)
            for name in ("token_lookup_quantizer", "segment_lookup_quantizer")
        ] if quantization is not None and quantization.quantizes("embedding_lookups") else []
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_ids = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens, segments = self.token_embedding(token_ids), self.segment_embedding(segment_ids)
        if self.embedding_lookup_quantizers:
            tokens, segments = (q(x) for q, x in zip(self.embedding_lookup_quantizers, (tokens, segments)))
        if self.embedding_projection is not None:
            tokens = self.embedding_projection(tokens)
        x = self.embeddings_add((tokens, self.position_embedding(tokens), segments))
        if self.embeddings_quantizers:
            x = self.embeddings_quantizers[0](x)
        x = self.embeddings_layer_norm(x)
        if self.embeddings_quantizers:
            x = self.embeddings_quantizers[1](x)
        x = self.embeddings_dropout(x)
        for index in order:
            x = self.transformer_layers[index](x, padding_mask=padding_mask)
        pooled = self.pooled_dense(x[:, 0, :])
        super().__init__(
            inputs={"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            outputs={"sequence_output": x, "pooled_output": pooled},
            dtype=dtype,
            **kwargs,
        )
        self.vocabulary_size, self.hidden_dim = vocabulary_size, hidden_dim
        self.layer_specs = [dict(spec) for spec in layer_specs]
        self.num_layers = len(layer_specs)
        self.num_heads = max(spec["num_heads"] for spec in layer_specs)
        self.intermediate_dim = max(spec["intermediate_dim"] for spec in layer_specs)
        self.dropout, self.max_sequence_length = dropout, max_sequence_length
        self.num_segments, self.layerdrop = num_segments, layerdrop
        self.embedding_dim = embedding_dim
        self.quantization = quantization_config
        self.cls_token_index = 0

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim, "layer_specs": self.layer_specs,
            "dropout": self.dropout, "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments, "layerdrop": self.layerdrop, "embedding_dim": self.embedding_dim,
            "quantization": self.quantization,
        })
        return config


def _call_order(layer_specs) -> list[int]:
    """For each encoder position, the index of the unique encoder object it calls (`shared_with` = an earlier
    position whose layer it reuses, with the same shape)."""
    unique_of, order, n_unique = {}, [], 0
    for i, spec in enumerate(layer_specs):
        j = spec.get("shared_with")
        if j is None:
            unique_of[i], n_unique = n_unique, n_unique + 1
        else:
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < i:
                raise ValueError(f"layer {i}: shared_with must be an earlier layer index (0..{i - 1}), got {j!r}")
            keys = ("num_heads", "key_dim", "intermediate_dim", "ranks")
            if any(spec.get(k) != layer_specs[j].get(k) for k in keys):
                raise ValueError(f"layer {i} cannot share layer {j}'s weights: their shapes differ "
                                 f"({ {k: spec.get(k) for k in keys} } vs { {k: layer_specs[j].get(k) for k in keys} })")
            while layer_specs[j].get("shared_with") is not None:
                j = layer_specs[j]["shared_with"]
            unique_of[i] = unique_of[j]
        order.append(unique_of[i])
        parts = {"attention": ("num_heads", "key_dim"), "ffn": ("intermediate_dim",)}
        for part, keys in parts.items():
            j = spec.get(f"{part}_shared_with")
            if j is None:
                continue
            if spec.get("shared_with") is not None:
                raise ValueError(f"layer {i}: shared_with already shares the whole layer; drop {part}_shared_with")
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < i or \
                    layer_specs[j].get("shared_with") is not None:
                raise ValueError(f"layer {i}: {part}_shared_with must be an earlier layer that owns its weights "
                                 f"(0..{i - 1}, not itself shared), got {j!r}")
            ranks = {r: v for r, v in (spec.get("ranks") or {}).items() if r.startswith(part)}
            donor_ranks = {r: v for r, v in (layer_specs[j].get("ranks") or {}).items() if r.startswith(part)}
            if any(spec.get(k) != layer_specs[j].get(k) for k in keys) or ranks != donor_ranks:
                raise ValueError(f"layer {i} cannot share layer {j}'s {part}: their {part} shapes differ")
    return order
