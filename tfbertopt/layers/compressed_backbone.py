"""The backbone of every compressed model: one encoder graph for BERT, MiniLM, ELECTRA, ALBERT, RoBERTa, XLM-RoBERTa,
DistilBERT and DeBERTa-v3, whose layers may each have their own head count, head size, FFN width, low-rank ranks and
sharing.

`tfbertopt.surgery` reads a keras-hub backbone into this one's config (`describe`) and copies its weights, so every
compression (shrink, LayerDrop, SVD, embedding factorization, sharing, quantization-aware training) is a new config of
the same class, saved, loaded, fine-tuned and exported like any keras-hub model, under the family's own task class.

The families differ only in config:

| config | BERT, MiniLM | ELECTRA | ALBERT | RoBERTa, XLM-R | DistilBERT | DeBERTa-v3 |
| --- | --- | --- | --- | --- | --- | --- |
| `num_segments` | 2 | 2 | 2 | 0 | 0 | 0 |
| `embedding_dim` (E) | None (= H) | E | E | None | None | None |
| `embedding_projection` | | "after_norm" | "after_norm" | | | |
| `activation` | gelu_approximate | gelu_approximate | gelu_approximate | gelu | gelu | gelu |
| `layer_norm_epsilon` | 1e-12 | 1e-12 | 1e-12 | 1e-5 | 1e-12 | 1e-7 |
| `pooler` | True | True | True | False | False | False |
| `absolute_positions` | True | True | True | True | True | False |
| `attention` | "multi_head" | "multi_head" | "multi_head" | "multi_head" | "multi_head" | "disentangled" |
| `bucket_size` | | | | | | k |
| layer specs | | | `shared_with` | | | |

Embeddings: token + position (+ segment) lookups are added and normalised. With `embedding_dim=E` < H the token
table is V x E and `embedding_projection` says where it becomes H wide: "factorized" (tfbertopt's ALBERT-style
factorization of a trained table: a bias-free E x H projection right after the token lookup; positions and segments
stay H wide) or "after_norm" (ALBERT's and ELECTRA's own layout: every table E wide, LayerNorm at E, then a Dense E x H
with bias). With `pooler` the outputs are keras-hub's BERT dict (`sequence_output`, `pooled_output` from a tanh dense on
[CLS]), else the sequence output alone, as RoBERTa's, DistilBERT's and DeBERTa-v3's classifiers expect. Without
`absolute_positions` there is no position table (DeBERTa-v3: the token lookups alone are normalised).

Attention: "multi_head" is keras-hub's (BERT's) encoder; "disentangled" is DeBERTa-v3's (`DisentangledAttention`:
content-to-position and position-to-content scores over relative positions, bucketed by `bucket_size` on the scale
of `max_sequence_length`), whose relative-position table (2 * bucket_size x H, with its own LayerNorm) the backbone
holds once (`RelativePositionEmbedding`, "rel_embedding") and every layer reads.

Layer specs: `num_heads`, `key_dim`, `intermediate_dim`; `ranks` (kernel role -> rank) makes those projections
low-rank; `shared_with: j` makes layer i call layer j's encoder object again (cross-layer sharing: the weights exist
once; ALBERT is every layer `shared_with: 0`); `attention_shared_with: j` / `ffn_shared_with: j` share only that
block. `quantization` (a `QuantizationConfig` dict) builds the quantization-aware form (`tfbertopt.quantization`):
every encoder layer quantized, fake-quants on the embedding sum and the embedding LayerNorm output (point
"embeddings") and on the table lookups (point "embedding_lookups"), a `QuantizedEinsumDense` pooler and factorized-embedding projection (kernels on the export's grid), and with
`table_bits` token and segment tables rounded per row (`QuantizedEmbedding`); `quantized_projection=False` keeps
the projection a float Dense, as files saved before it was quantized have it.

Example:

>>> from tfbertopt.layers import CompressedBackbone
>>> backbone = CompressedBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8,
...     layer_specs=[{"num_heads": 2, "key_dim": 8, "intermediate_dim": 32},
...                  {"num_heads": 1, "key_dim": 8, "intermediate_dim": 12}])
>>> [l.num_heads for l in backbone.transformer_layers]
[2, 1]
>>> albert = CompressedBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8, embedding_dim=4,
...     embedding_projection="after_norm",
...     layer_specs=[{"num_heads": 2, "key_dim": 8, "intermediate_dim": 32},
...                  {"num_heads": 2, "key_dim": 8, "intermediate_dim": 32, "shared_with": 0}])
>>> len(albert.transformer_layers), albert.encoder_call_order
(1, [0, 0])
>>> roberta = CompressedBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8, num_segments=0,
...     pooler=False, layer_specs=[{"num_heads": 2, "key_dim": 8, "intermediate_dim": 32}])
>>> sorted(roberta.input)
['padding_mask', 'token_ids']
>>> deberta = CompressedBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8, num_segments=0,
...     pooler=False, absolute_positions=False, attention="disentangled", bucket_size=4,
...     layer_specs=[{"num_heads": 1, "key_dim": 8, "intermediate_dim": 32}])
>>> type(deberta.transformer_layers[0]._self_attention_layer).__name__, deberta.position_embedding
('DisentangledAttention', None)
"""

from __future__ import annotations

import keras
from keras_hub.layers import PositionEmbedding
from keras_hub.models import Backbone

from tfbertopt.layers.activation_quantizer import ActivationQuantizer
from tfbertopt.layers.compressed_transformer_encoder import (
    ATTENTIONS, CompressedTransformerEncoder, PrunedTransformerEncoder)
from tfbertopt.layers.quantized_einsum_dense import QuantizedEinsumDense
from tfbertopt.layers.quantized_embedding import QuantizedEmbedding
from tfbertopt.layers.quantized_layer_normalization import QuantizedLayerNormalization
from tfbertopt.layers.relative_position_embedding import RelativePositionEmbedding
from tfbertopt.quantizers.config import QuantizationConfig

PROJECTIONS = ("factorized", "after_norm")


def _gelu_approximate(x):
    return keras.activations.gelu(x, approximate=True)


ACTIVATIONS = {"gelu_approximate": _gelu_approximate, "gelu": "gelu", "relu": "relu"}


@keras.saving.register_keras_serializable(package="tfbertopt")
class CompressedBackbone(Backbone):
    # Weight files key layers by their class name, so a 0.1 file needs the encoder class it was saved with.
    encoder_class = CompressedTransformerEncoder

    def __init__(self, vocabulary_size, hidden_dim, layer_specs, dropout=0.1, max_sequence_length=512,
                 num_segments=2, layerdrop: float = 0.0, embedding_dim=None, embedding_projection="factorized",
                 activation="gelu_approximate", layer_norm_epsilon=1e-12, pooler=True, quantization=None,
                 absolute_positions=True, attention="multi_head", bucket_size=None, quantized_projection=True,
                 dtype=None, **kwargs):
        if not layer_specs:
            raise ValueError("layer_specs is empty: a backbone needs at least one encoder layer")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if embedding_projection not in PROJECTIONS:
            raise ValueError(f"embedding_projection must be one of {PROJECTIONS}, got {embedding_projection!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        disentangled = attention == "disentangled"
        if disentangled != (bucket_size is not None):
            raise ValueError(f"bucket_size goes with attention='disentangled' (DeBERTa's relative positions), got "
                             f"attention={attention!r}, bucket_size={bucket_size!r}")
        order = _call_order(layer_specs)
        quantization = QuantizationConfig.from_config(quantization)
        quantization_config = None if quantization is None else quantization.get_config()
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        if embedding_dim is not None and not 1 <= embedding_dim <= hidden_dim:
            raise ValueError(f"embedding_dim must be in [1, hidden_dim={hidden_dim}], got {embedding_dim}")
        after_norm = embedding_dim is not None and embedding_projection == "after_norm"   # ALBERT has one at E = H
        narrow = embedding_dim is not None and (embedding_dim != hidden_dim or after_norm)
        table_dim = embedding_dim if after_norm else hidden_dim    # the width tokens are added and normalised at
        table_bits = None if quantization is None else quantization.table_bits
        tables = {} if table_bits is None else {"table_bits": table_bits, "block_size": quantization.weight_block_size}
        self.token_embedding = (keras.layers.ReversibleEmbedding if table_bits is None else QuantizedEmbedding)(
            vocabulary_size, embedding_dim if narrow else hidden_dim, embeddings_initializer=init, dtype=dtype,
            name="token_embedding", **tables)
        if not narrow:
            self.embedding_projection = None
        elif quantization is None or not quantized_projection:
            self.embedding_projection = keras.layers.Dense(
                hidden_dim, use_bias=after_norm, kernel_initializer=init, dtype=dtype, name="embedding_projection")
        else:   # its kernel on the export's grid; the activations around it are the embeddings' quantizers
            self.embedding_projection = QuantizedEinsumDense(
                "abc,cd->abd", (None, hidden_dim), bias_axes="d" if after_norm else None,
                **quantization.weight_options(),
                kernel_initializer=init, dtype=dtype, name="embedding_projection")
        self.position_embedding = PositionEmbedding(
            sequence_length=max_sequence_length, initializer=init, dtype=dtype,
            name="position_embedding") if absolute_positions else None
        self.segment_embedding = (keras.layers.Embedding if table_bits is None else QuantizedEmbedding)(
            num_segments, table_dim, embeddings_initializer=init, dtype=dtype,
            name="segment_embedding", **tables) if num_segments else None
        n_terms = 1 + bool(absolute_positions) + bool(num_segments)
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add") if n_terms > 1 else None
        if quantization is not None and quantization.quantizes("layer_norm_internals"):
            self.embeddings_layer_norm = QuantizedLayerNormalization(
                quantizer=quantization.activation_quantizer(), epsilon=layer_norm_epsilon, dtype=dtype,
                name="embeddings_layer_norm")
        else:
            self.embeddings_layer_norm = keras.layers.LayerNormalization(
                axis=-1, epsilon=layer_norm_epsilon, dtype=dtype, name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        # DeBERTa-v3's relative-position table, shared by every encoder layer (keras-hub's name and epsilon).
        self.relative_embedding = RelativePositionEmbedding(
            hidden_dim, bucket_size, layer_norm_epsilon=layer_norm_epsilon, kernel_initializer=init, dtype=dtype,
            name="rel_embedding") if disentangled else None
        relative = {"attention": attention, "bucket_size": bucket_size,
                    "max_position_embeddings": max_sequence_length} if disentangled else {}
        self.transformer_layers, by_position = [], {}
        for i, spec in enumerate(layer_specs):
            if spec.get("shared_with") is not None:
                continue
            donors = {f"{part}_donor": by_position[spec[f"{part}_shared_with"]] for part in ("attention", "ffn")
                      if spec.get(f"{part}_shared_with") is not None}
            by_position[i] = self.encoder_class(
                num_heads=spec["num_heads"], key_dim=spec["key_dim"], intermediate_dim=spec["intermediate_dim"],
                activation=ACTIVATIONS[activation], dropout=dropout, layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=init, layerdrop=layerdrop, layerdrop_seed=1009 * (i + 1), ranks=spec.get("ranks"),
                dtype=dtype, quantization=quantization_config, name=f"transformer_layer_{i}", **donors, **relative)
            self.transformer_layers.append(by_position[i])
        # Unique encoder objects in call order: a shared layer is called again, its weights stored once.
        self.encoder_call_order = order
        if not pooler:
            self.pooled_dense = None
        elif quantization is None:
            self.pooled_dense = keras.layers.Dense(hidden_dim, kernel_initializer=init, activation="tanh",
                                                   dtype=dtype, name="pooled_dense")
        else:
            linear = quantization.quantizer_for("linear")
            self.pooled_dense = QuantizedEinsumDense("ab,bc->ac", (hidden_dim,), bias_axes="c", activation="tanh",
                                                     **quantization.weight_options(),
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
            for name in ("token_lookup_quantizer", "segment_lookup_quantizer")[:2 if num_segments else 1]
        ] if quantization is not None and quantization.quantizes("embedding_lookups") else []
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        lookups = [self.token_embedding(token_ids)]
        if num_segments:
            inputs["segment_ids"] = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
            lookups.append(self.segment_embedding(inputs["segment_ids"]))
        if self.embedding_lookup_quantizers:
            lookups = [q(x) for q, x in zip(self.embedding_lookup_quantizers, lookups)]
        tokens = lookups[0]
        if narrow and not after_norm:
            tokens = self.embedding_projection(tokens)
        terms = [tokens] + ([self.position_embedding(tokens)] if absolute_positions else []) + lookups[1:]
        x = self.embeddings_add(terms) if self.embeddings_add is not None else tokens
        if self.embeddings_quantizers:
            x = self.embeddings_quantizers[0](x)
        x = self.embeddings_layer_norm(x)
        if self.embeddings_quantizers:
            x = self.embeddings_quantizers[1](x)
        x = self.embeddings_dropout(x)
        if after_norm:
            x = self.embedding_projection(x)
        context = {"rel_embeddings": self.relative_embedding(x)} if disentangled else {}
        for index in order:
            x = self.transformer_layers[index](x, padding_mask=padding_mask, **context)
        if pooler:
            outputs = {"sequence_output": x, "pooled_output": self.pooled_dense(x[:, 0, :])}
        else:
            outputs = x
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)
        self.vocabulary_size, self.hidden_dim = vocabulary_size, hidden_dim
        self.layer_specs = [dict(spec) for spec in layer_specs]
        self.num_layers = len(layer_specs)
        self.num_heads = max(spec["num_heads"] for spec in layer_specs)
        self.intermediate_dim = max(spec["intermediate_dim"] for spec in layer_specs)
        self.dropout, self.max_sequence_length = dropout, max_sequence_length
        self.num_segments, self.layerdrop = num_segments, layerdrop
        self.embedding_dim, self.embedding_projection_kind = embedding_dim, embedding_projection
        self.activation, self.layer_norm_epsilon, self.pooler = activation, layer_norm_epsilon, pooler
        self.quantization = quantization_config
        self.absolute_positions, self.attention, self.bucket_size = absolute_positions, attention, bucket_size
        self.quantized_projection = bool(quantized_projection)
        # BERT-style classifiers read cls_token_index, RoBERTa-style ones start_token_index.
        self.cls_token_index = self.start_token_index = 0

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim, "layer_specs": self.layer_specs,
            "dropout": self.dropout, "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments, "layerdrop": self.layerdrop, "embedding_dim": self.embedding_dim,
            "embedding_projection": self.embedding_projection_kind, "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon, "pooler": self.pooler, "quantization": self.quantization,
            "absolute_positions": self.absolute_positions, "attention": self.attention,
            "bucket_size": self.bucket_size, "quantized_projection": self.quantized_projection,
        })
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the quantization-aware form fake-quantized the factorized-embedding projection hold a
        # Dense there (Keras stores layers under their class names, so the layer class must stay what it was).
        return super().from_config({"quantized_projection": False, **config})


@keras.saving.register_keras_serializable(package="tfbertopt")
class PrunedBertBackbone(CompressedBackbone):
    """The name `CompressedBackbone` had in tfbertopt 0.1, when it held BERT-shaped encoders only; kept so that
    `.keras` files saved then load unchanged (their configs have no family keys, which default to BERT's)."""

    encoder_class = PrunedTransformerEncoder


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
