"""An embedding table trained with per-row fake quantization: the table a LiteRT file stores in `table_bits` bits.

The lookup reads the table rounded to a symmetric narrow-range grid of `table_bits` bits with one scale per row
(scale = max |row| / (2^(bits-1) - 1)), the layout ai-edge-quantizer writes for an EMBEDDING_LOOKUP
(`tfbertopt.export.int4.LAYOUTS`, "CHANNELWISE"), with straight-through gradients to the float table, which stays
the trained variable `embeddings`. Weights load into it from a float model's table under the same name. In the
exported graph the rounding of the constant table folds away: the file's float table already lies on the grid, and
its int4 copy is exact.

Per-row scales make the rounding of one row independent of every other row, so trimming the vocabulary
(`tfbertopt.vocabulary`) before or after training changes no kept row.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import QuantizedEmbedding
>>> layer = QuantizedEmbedding(10, 4, table_bits=4)
>>> rows = np.asarray(layer(np.array([[1, 2]])))[0]
>>> scale = np.abs(np.asarray(layer.embeddings)[[1, 2]]).max(axis=1, keepdims=True) / 7
>>> bool(np.allclose(rows / scale, np.round(rows / scale), atol=1e-4))
True
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.quantizers.fake_quant import fake_quant_weight


@keras.saving.register_keras_serializable(package="tfbertopt")
class QuantizedEmbedding(keras.layers.ReversibleEmbedding):
    """Args (beyond ReversibleEmbedding's):
      table_bits: bits of the symmetric per-row grid of the table (4: LiteRT's int4 EMBEDDING_LOOKUP).
      block_size: one float16 scale per this many consecutive entries of a row instead ("int4-block32"), or None.
    """

    def __init__(self, input_dim, output_dim, table_bits: int = 4, block_size: int | None = None, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        if isinstance(table_bits, bool) or not isinstance(table_bits, int) or not 2 <= table_bits <= 16:
            raise ValueError(f"table_bits must be an integer in [2, 16], got {table_bits!r}")
        self.table_bits, self.block_size = table_bits, block_size

    def call(self, inputs, reverse=False):
        if reverse:
            return super().call(inputs, reverse=True)
        table = fake_quant_weight(self.embeddings, (0,), self.table_bits, self.block_size)
        return ops.cast(ops.take(table, ops.cast(inputs, "int32"), axis=0), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "table_bits": self.table_bits, "block_size": self.block_size}
