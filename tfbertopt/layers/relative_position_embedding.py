"""DeBERTa-v3's shared relative-position embeddings: one (2 * bucket_size, hidden) table, layer-normalised.

A `CompressedBackbone(attention="disentangled")` holds one and hands its output to every encoder layer's
`DisentangledAttention`, which projects it with its own query and key projections. It is keras-hub's
`RelativeEmbedding` (same weights, same names: `rel_embedding`, `rel_embeddings_layer_norm`) without the copy per
batch element: the output is (1, 2 * bucket_size, hidden) whatever the batch, so an exported graph folds it (and the
projections of it) into constants.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import RelativePositionEmbedding
>>> layer = RelativePositionEmbedding(hidden_dim=8, bucket_size=4)
>>> tuple(layer(np.zeros((3, 5, 8), "float32")).shape)
(1, 8, 8)
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfbertopt")
class RelativePositionEmbedding(keras.layers.Layer):
    """`hidden_dim`: the table's width; `bucket_size`: half its rows (relative positions -k..k-1 after bucketing)."""

    def __init__(self, hidden_dim, bucket_size, layer_norm_epsilon=1e-7, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        if bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1, got {bucket_size}")
        self.hidden_dim, self.bucket_size = int(hidden_dim), int(bucket_size)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # Created here, in keras-hub's order (table, then its LayerNorm), so that both weight lists align.
        self.rel_embeddings = self.add_weight(shape=(2 * self.bucket_size, self.hidden_dim),
                                              initializer=self.kernel_initializer, name="rel_embedding")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=self.dtype_policy,
                                                          name="rel_embeddings_layer_norm")
        self.layer_norm.build((1, 2 * self.bucket_size, self.hidden_dim))

    def build(self, inputs_shape=None):
        self.built = True

    def call(self, inputs):
        """`inputs` (any tensor of the graph, e.g. the embeddings) only places the table in it; its values are
        not read."""
        del inputs
        return self.layer_norm(ops.expand_dims(ops.convert_to_tensor(self.rel_embeddings), axis=0))

    def compute_output_shape(self, inputs_shape):
        return (1, 2 * self.bucket_size, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "bucket_size": self.bucket_size,
                       "layer_norm_epsilon": self.layer_norm_epsilon,
                       "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)})
        return config
