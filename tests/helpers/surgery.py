"""The masking reference of structured pruning: a model whose dropped heads and FFN neurons are zeroed."""

import numpy as np

from tfbertopt.kernels import encoder_layers


def zero_dropped(model, plan) -> None:
    """Zeroes, in place, the output-projection rows of the heads and FFN neurons `plan` drops: the function a
    shrink by `plan` must compute."""
    for i, encoder in enumerate(encoder_layers(model)):
        for kernel, kept in ((encoder._self_attention_layer._output_dense.kernel, plan.heads[i]),
                             (encoder._feedforward_output_dense.kernel, plan.neurons[i])):
            value = np.asarray(kernel).copy()
            value[[j for j in range(value.shape[0]) if j not in kept]] = 0
            kernel.assign(value)
