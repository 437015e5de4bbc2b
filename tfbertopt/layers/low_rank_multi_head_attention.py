"""A MultiHeadAttention whose chosen projections (query, key, value, output) are `LowRankEinsumDense` layers.

Keras builds the four projections in `MultiHeadAttention.build`; this subclass lets it, then swaps each projection
named in `ranks` for a factorized layer with the same equation, output shape and bias, so the attention math and
masks stay Keras' own.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import LowRankMultiHeadAttention
>>> mha = LowRankMultiHeadAttention(num_heads=2, key_dim=4, ranks={"query": 3, "attention_output": 2})
>>> x = np.zeros((1, 5, 8), "float32")
>>> tuple(mha(x, x).shape)
(1, 5, 8)
>>> type(mha._query_dense).__name__, type(mha._key_dense).__name__
('LowRankEinsumDense', 'EinsumDense')
"""

from __future__ import annotations

import keras

from tfbertopt.layers.low_rank_einsum_dense import LowRankEinsumDense

PROJECTIONS = {"query": "_query_dense", "key": "_key_dense", "value": "_value_dense",
               "attention_output": "_output_dense"}


@keras.saving.register_keras_serializable(package="tfbertopt")
class LowRankMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`ranks`: projection name ("query", "key", "value", "attention_output") -> rank; others stay dense."""

    def __init__(self, num_heads, key_dim, ranks=None, **kwargs):
        super().__init__(num_heads=num_heads, key_dim=key_dim, **kwargs)
        ranks = dict(ranks or {})
        unknown = sorted(set(ranks) - set(PROJECTIONS))
        if unknown:
            raise ValueError(f"unknown attention projections {unknown}; choose from {sorted(PROJECTIONS)}")
        self.ranks = {k: int(v) for k, v in ranks.items() if v is not None}

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        common = {k: v for k, v in self._get_common_kwargs_for_sublayer().items()
                  if k in ("kernel_initializer", "bias_initializer", "dtype")}
        for name, rank in self.ranks.items():
            dense = getattr(self, PROJECTIONS[name])
            low = LowRankEinsumDense(dense.equation, dense.partial_output_shape, rank, bias_axes=dense.bias_axes,
                                     name=dense.name, **common)
            shape = {"query": query_shape, "key": key_shape or value_shape, "value": value_shape}.get(name)
            if shape is None:   # the output projection reads (batch, seq, heads, value_dim)
                shape = tuple(query_shape[:-1]) + (self._num_heads, self._value_dim)
            low.build(shape)
            self._layers.remove(dense)      # untrack the dense projection: its weights are gone, not saved
            setattr(self, PROJECTIONS[name], low)

    def get_config(self):
        config = super().get_config()
        config["ranks"] = dict(self.ranks)
        return config
