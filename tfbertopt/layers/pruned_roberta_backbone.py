"""Load-only: the RoBERTa/DistilBERT backbone that tfbertopt 0.1 shrank to; `CompressedBackbone` replaces it.

Kept so that `.keras` files saved by tfbertopt 0.1 load with the same logits; `tfbertopt.surgery` reads it like any
keras-hub backbone, so every method works on a loaded one (and produces a `CompressedBackbone`).

Example:

>>> from tfbertopt.layers import PrunedRobertaBackbone
>>> backbone = PrunedRobertaBackbone(vocabulary_size=30, hidden_dim=16, max_sequence_length=8,
...     layer_specs=[{"num_heads": 2, "key_dim": 8, "intermediate_dim": 32},
...                  {"num_heads": 1, "key_dim": 8, "intermediate_dim": 12}])
>>> [l.num_heads for l in backbone.transformer_layers], sorted(backbone.input)
([2, 1], ['padding_mask', 'token_ids'])
"""

from __future__ import annotations

import keras
from keras_hub.layers import TokenAndPositionEmbedding
from keras_hub.models import Backbone

from tfbertopt.layers.compressed_transformer_encoder import PrunedTransformerEncoder


@keras.saving.register_keras_serializable(package="tfbertopt")
class PrunedRobertaBackbone(Backbone):
    def __init__(self, vocabulary_size, hidden_dim, layer_specs, dropout=0.1, max_sequence_length=512,
                 layerdrop: float = 0.0, layer_norm_epsilon=1e-5, embeddings_name="embeddings", dtype=None,
                 **kwargs):
        if not layer_specs:
            raise ValueError("layer_specs is empty: a backbone needs at least one encoder layer")
        unsupported = sorted({k for spec in layer_specs for k, v in spec.items()
                              if v is not None and k not in ("num_heads", "key_dim", "intermediate_dim")})
        if unsupported:
            raise ValueError(f"PrunedRobertaBackbone layers take num_heads, key_dim and intermediate_dim only; "
                             f"{unsupported} (factorization, sharing) work on BERT backbones")
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.embeddings = TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size, sequence_length=max_sequence_length, embedding_dim=hidden_dim,
            embeddings_initializer=init, dtype=dtype, name=embeddings_name)
        self.token_embedding = self.embeddings.token_embedding
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            axis=-1, epsilon=layer_norm_epsilon, dtype=dtype, name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            PrunedTransformerEncoder(
                num_heads=spec["num_heads"], key_dim=spec["key_dim"], intermediate_dim=spec["intermediate_dim"],
                activation="gelu", dropout=dropout, layer_norm_epsilon=layer_norm_epsilon, kernel_initializer=init,
                layerdrop=layerdrop, layerdrop_seed=1009 * (i + 1), dtype=dtype, name=f"transformer_layer_{i}")
            for i, spec in enumerate(layer_specs)]
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self.embeddings_dropout(self.embeddings_layer_norm(self.embeddings(token_ids)))
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=padding_mask)
        super().__init__(inputs={"token_ids": token_ids, "padding_mask": padding_mask}, outputs=x, dtype=dtype,
                         **kwargs)
        self.vocabulary_size, self.hidden_dim = vocabulary_size, hidden_dim
        self.layer_specs = [dict(spec) for spec in layer_specs]
        self.num_layers = len(layer_specs)
        self.num_heads = max(spec["num_heads"] for spec in layer_specs)
        self.intermediate_dim = max(spec["intermediate_dim"] for spec in layer_specs)
        self.dropout, self.max_sequence_length, self.layerdrop = dropout, max_sequence_length, layerdrop
        self.layer_norm_epsilon, self.embeddings_name = layer_norm_epsilon, embeddings_name
        # RobertaTextClassifier reads start_token_index, DistilBertTextClassifier cls_token_index.
        self.start_token_index = self.cls_token_index = 0

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim, "layer_specs": self.layer_specs,
            "dropout": self.dropout, "max_sequence_length": self.max_sequence_length, "layerdrop": self.layerdrop,
            "layer_norm_epsilon": self.layer_norm_epsilon, "embeddings_name": self.embeddings_name,
        })
        return config
