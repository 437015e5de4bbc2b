"""An EinsumDense (or Dense) whose kernel is a product of two factors: `W ~= factor_in @ factor_out`.

The layer takes the equation of the EinsumDense it replaces (e.g. "abc,cde->abde" for a MultiHeadAttention query
projection, "abcd,cde->abe" for its output projection, "abc,cd->abd" for a Dense on (batch, seq, features)) and
splits the kernel at the rank `r`: the contracted input axes go to `factor_in` (contracted dims..., r) and the free
output axes to `factor_out` (r, free dims...). Two einsums run, each a matrix product that LiteRT converts to one
FULLY_CONNECTED op; with rank r, a (d_in x d_out) kernel costs r * (d_in + d_out) weights and MACs per token.

`kernel_shape` is the shape of the dense kernel the factors stand for, so code that reads layer geometry (head
count, head size, FFN width) works on factorized and dense layers alike.

Example:

>>> import numpy as np
>>> from tfbertopt.layers import LowRankEinsumDense
>>> layer = LowRankEinsumDense("abc,cde->abde", output_shape=(None, 2, 4), rank=3, bias_axes="de")
>>> tuple(layer(np.zeros((1, 5, 8), "float32")).shape)
(1, 5, 2, 4)
>>> tuple(layer.factor_in.shape), tuple(layer.factor_out.shape), layer.kernel_shape
((8, 3), (3, 2, 4), (8, 2, 4))
"""

from __future__ import annotations

import keras

RANK_AXIS = "z"


def split_equation(equation: str) -> tuple[str, str, str]:
    """(input, kernel, output) letters of a two-operand einsum equation, with its rank-axis letter checked."""
    try:
        operands, output = equation.replace(" ", "").split("->")
        inputs, kernel = operands.split(",")
    except ValueError:
        raise ValueError(f"expected an equation of the form 'input,kernel->output', got {equation!r}") from None
    if RANK_AXIS in equation:
        raise ValueError(f"the letter '{RANK_AXIS}' is reserved for the rank axis; got {equation!r}")
    return inputs, kernel, output


@keras.saving.register_keras_serializable(package="tfbertopt")
class LowRankEinsumDense(keras.layers.Layer):
    """`activation(einsum(einsum(x, factor_in), factor_out) + bias)`: a rank-`rank` EinsumDense.

    Args:
      equation: the replaced EinsumDense's equation (input letters, kernel letters, output letters).
      output_shape: as EinsumDense's `output_shape` (the output without its batch axis; None for free axes).
      rank: the inner dimension of the factorization (>= 1).
      bias_axes: output letters that carry a bias (as EinsumDense), or None.
      activation: applied to the output (a Dense's activation).
    """

    def __init__(self, equation, output_shape, rank, bias_axes=None, activation=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.inputs_letters, self.kernel_letters, self.output_letters = split_equation(equation)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        self.equation, self.rank, self.bias_axes = equation, rank, bias_axes
        self.partial_output_shape = tuple(output_shape) if isinstance(output_shape, (list, tuple)) \
            else (output_shape,)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        contracted = [c for c in self.kernel_letters if c in self.inputs_letters]
        free = [c for c in self.kernel_letters if c not in self.inputs_letters]
        if not contracted or not free:
            raise ValueError(f"{equation!r} has no contracted or no free kernel axis; it is not a projection")
        batch = "".join(c for c in self.inputs_letters if c not in self.kernel_letters)
        self._contracted, self._free = "".join(contracted), "".join(free)
        if bias_axes and not self.output_letters.endswith(bias_axes):
            raise ValueError(f"bias_axes {bias_axes!r} must be the trailing output axes of {equation!r}")
        self._first = f"{self.inputs_letters},{self._contracted}{RANK_AXIS}->{batch}{RANK_AXIS}"
        self._second = f"{batch}{RANK_AXIS},{RANK_AXIS}{self._free}->{self.output_letters}"

    def build(self, input_shape):
        dims = dict(zip(self.inputs_letters, input_shape))
        full = dict(zip(self.output_letters, (None,) * (len(self.output_letters) - len(self.partial_output_shape))
                        + self.partial_output_shape))
        in_dims = tuple(int(dims[c]) for c in self._contracted)
        out_dims = tuple(int(full[c]) for c in self._free)
        self.kernel_shape = tuple(int(dims[c]) if c in dims else int(full[c]) for c in self.kernel_letters)
        self.factor_in = self.add_weight(name="factor_in", shape=in_dims + (self.rank,),
                                         initializer=self.kernel_initializer)
        self.factor_out = self.add_weight(name="factor_out", shape=(self.rank,) + out_dims,
                                          initializer=self.kernel_initializer)
        self.bias = None
        if self.bias_axes:
            self.bias = self.add_weight(name="bias", shape=tuple(int(full[c]) for c in self.bias_axes),
                                        initializer=self.bias_initializer)
        self.built = True

    def call(self, inputs):
        x = keras.ops.einsum(self._second, keras.ops.einsum(self._first, inputs, self.factor_in), self.factor_out)
        if self.bias is not None:
            # Bias axes are trailing output axes (as in MultiHeadAttention's and Dense's projections).
            x = x + self.bias
        return self.activation(x) if self.activation is not None else x

    def compute_output_shape(self, input_shape):
        dims = dict(zip(self.inputs_letters, input_shape))
        tail = self.partial_output_shape
        lead = tuple(dims.get(c) for c in self.output_letters[:len(self.output_letters) - len(tail)])
        return lead + tuple(t if t is not None else dims.get(c) for c, t in
                            zip(self.output_letters[len(lead):], tail))

    def get_config(self):
        config = super().get_config()
        config.update({
            "equation": self.equation, "output_shape": list(self.partial_output_shape), "rank": self.rank,
            "bias_axes": self.bias_axes, "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
