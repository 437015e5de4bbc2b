"""BERT's outlier output dimensions, planted in a tiny model."""

import numpy as np

from tfbertopt.kernels import find_kernels


def plant_outlier_channel(model, channel: int = 3, factor: float = 60.0):
    """Makes one output channel of every FFN-output matmul `factor`x larger, as BERT's outlier dimensions are."""
    for ref in find_kernels(model, roles=["ffn_output"]):
        kernel = np.asarray(ref.layer.kernel)
        kernel[:, channel] *= factor
        ref.layer.kernel.assign(kernel)
