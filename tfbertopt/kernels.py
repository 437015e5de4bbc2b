"""Kernel discovery: the one place that walks a keras-hub BERT-family model.

`find_kernels(model)` names every compressible piece of a classifier (or bare backbone) with its role and encoder
layer index. Pruning, quantization, factorization, distillation and export all select what they act on from this
list (by role, layer index or regex on the variable path); nothing else re-walks the model.

Roles:

| role | layer | variable | shape |
| --- | --- | --- | --- |
| attention_query / attention_key / attention_value | EinsumDense in MultiHeadAttention | kernel | (H, heads, head_dim) |
| attention_output | EinsumDense | kernel | (heads, head_dim, H); keras-hub's DeBERTa-v3: (heads * head_dim, H) |
| ffn_intermediate / ffn_output | Dense | kernel | (H, I) / (I, H) |
| token_embedding / position_embedding / segment_embedding | (Reversible)Embedding / PositionEmbedding | embeddings | (V, E) |
| relative_embedding | DeBERTa-v3's relative-position table (shared by all layers) | rel_embedding | (2 * buckets, H) |
| embedding_projection | Dense (ALBERT, ELECTRA) | kernel | (E, H) |
| embedding_layer_norm / attention_layer_norm / ffn_layer_norm | LayerNormalization | gamma | (H,) |
| pooler | Dense | kernel | (H, H) |
| classifier_hidden | Dense (RoBERTa/DistilBERT heads) | kernel | (H, H) |
| classifier | Dense | kernel | (H, classes) |

A low-rank (factorized) projection yields two refs of its role, `part="factor_in"` and `part="factor_out"`;
`kernel_shape(layer)` gives the dense shape either kind stands for.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.kernels import find_kernels
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=2)
>>> [k.role for k in find_kernels(clf, roles=["ffn_intermediate"])]
['ffn_intermediate', 'ffn_intermediate']
>>> find_kernels(clf, roles=["attention_query"])[1].layer_index
1
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable

import keras

ATTENTION_ROLES = ("attention_query", "attention_key", "attention_value", "attention_output")
FFN_ROLES = ("ffn_intermediate", "ffn_output")
ENCODER_DENSE_ROLES = ATTENTION_ROLES + FFN_ROLES
EMBEDDING_ROLES = ("token_embedding", "position_embedding", "segment_embedding", "relative_embedding")
LAYER_NORM_ROLES = ("embedding_layer_norm", "attention_layer_norm", "ffn_layer_norm")
HEAD_ROLES = ("pooler", "classifier_hidden", "classifier")
ROLES = ENCODER_DENSE_ROLES + EMBEDDING_ROLES + ("embedding_projection",) + LAYER_NORM_ROLES + HEAD_ROLES


class UnsupportedModelError(TypeError):
    """The model is not a keras-hub BERT-family classifier/backbone that discovery understands."""


@dataclasses.dataclass(frozen=True)
class KernelRef:
    """One compressible weight: its role, encoder layer index (None outside the encoder) and owning layer."""

    role: str
    layer_index: int | None
    layer: keras.layers.Layer
    variable: keras.Variable
    part: str | None = None

    @property
    def path(self) -> str:
        return self.variable.path

    @property
    def shape(self) -> tuple:
        return tuple(self.variable.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    def __repr__(self) -> str:
        idx = "" if self.layer_index is None else f"[{self.layer_index}]"
        return f"KernelRef({self.role}{idx}, {self.path}, {self.shape})"


def get_backbone(model):
    """The keras-hub Backbone of a task model, or the model itself when it is a backbone."""
    import keras_hub

    if isinstance(model, keras_hub.models.Backbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras_hub.models.Backbone):
        return backbone
    raise UnsupportedModelError(
        f"{type(model).__name__} is not a keras-hub task model or backbone; tfbertopt works on keras-hub "
        f"BERT-family models (BertTextClassifier, DistilBertTextClassifier, AlbertTextClassifier, "
        f"RobertaTextClassifier, or their backbones)."
    )


def encoder_layers(model) -> list:
    """The encoder layers of the backbone, in order (ALBERT: one per shared group): keras-hub TransformerEncoders,
    and DeBERTa-v3's DisentangledAttentionEncoders (the same attribute names for their projections and norms)."""
    import keras_hub
    from keras_hub.src.models.deberta_v3.disentangled_attention_encoder import DisentangledAttentionEncoder

    backbone = get_backbone(model)
    kinds = (keras_hub.layers.TransformerEncoder, DisentangledAttentionEncoder)
    layers = [l for l in backbone.layers if isinstance(l, kinds)]
    if not layers:
        raise UnsupportedModelError(
            f"{type(backbone).__name__} has no keras_hub.layers.TransformerEncoder layers; it is not a "
            f"BERT-family encoder that tfbertopt understands."
        )
    return layers


def _encoder_refs(index: int, encoder) -> Iterable[KernelRef]:
    attention = encoder._self_attention_layer
    parts = [
        ("attention_query", attention._query_dense),
        ("attention_key", attention._key_dense),
        ("attention_value", attention._value_dense),
        ("attention_output", attention._output_dense),
        ("ffn_intermediate", encoder._feedforward_intermediate_dense),
        ("ffn_output", encoder._feedforward_output_dense),
    ]
    for role, layer in parts:
        if hasattr(layer, "factor_in"):
            yield KernelRef(role, index, layer, layer.factor_in, "factor_in")
            yield KernelRef(role, index, layer, layer.factor_out, "factor_out")
        else:
            yield KernelRef(role, index, layer, layer.kernel)
    yield KernelRef("attention_layer_norm", index, encoder._self_attention_layer_norm,
                    encoder._self_attention_layer_norm.gamma)
    yield KernelRef("ffn_layer_norm", index, encoder._feedforward_layer_norm, encoder._feedforward_layer_norm.gamma)


def _embedding_refs(backbone) -> Iterable[KernelRef]:
    # Names are those keras-hub gives inside BERT/ALBERT/ELECTRA and inside TokenAndPositionEmbedding
    # (DistilBERT, RoBERTa); DeBERTa-v3's relative-position table is "rel_embedding" (keras-hub's and tfbertopt's).
    by_name = {}
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        by_name.setdefault(layer.name, layer)
    for role, name, attr in [
        ("token_embedding", "token_embedding", "embeddings"),
        ("position_embedding", "position_embedding", "position_embeddings"),
        ("segment_embedding", "segment_embedding", "embeddings"),
        ("relative_embedding", "rel_embedding", "rel_embeddings"),
    ]:
        layer = by_name.get(name)
        if layer is not None:
            variable = getattr(layer, attr, None)
            yield KernelRef(role, None, layer, variable if variable is not None else layer.embeddings)
    for name in ("embedding_projection", "embeddings_projection"):
        if name in by_name:
            yield KernelRef("embedding_projection", None, by_name[name], by_name[name].kernel)
    if "embeddings_layer_norm" in by_name:
        norm = by_name["embeddings_layer_norm"]
        yield KernelRef("embedding_layer_norm", None, norm, norm.gamma)


def _head_refs(model, backbone) -> Iterable[KernelRef]:
    pooler = next((l for l in backbone.layers if l.name == "pooled_dense"), None)
    if pooler is not None:
        yield KernelRef("pooler", None, pooler, pooler.kernel)
    if model is backbone:
        return
    hidden = getattr(model, "pooled_dense", None)
    if hidden is not None:
        yield KernelRef("classifier_hidden", None, hidden, hidden.kernel)
    output = getattr(model, "output_dense", None)
    if output is not None:
        yield KernelRef("classifier", None, output, output.kernel)


def find_kernels(
    model,
    roles: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    pattern: str | None = None,
) -> list[KernelRef]:
    """All compressible weights of `model`, filtered by role, encoder layer index and path regex.

    Args:
      model: a keras-hub BERT-family task model or backbone (built).
      roles: keep these roles (see `ROLES`); role groups "attention", "ffn", "embeddings", "layer_norm" and
        "head" expand to their members.
      layers: keep encoder layer indices (negative indices count from the last layer); refs outside the
        encoder are dropped when this is given.
      pattern: keep refs whose variable path matches this regex (`re.search`).

    Raises:
      UnsupportedModelError: the model is not one discovery understands.
      ValueError: an unknown role name.
    """
    backbone = get_backbone(model)
    encoders = encoder_layers(model)
    refs = list(_embedding_refs(backbone))
    for i, encoder in enumerate(encoders):
        refs.extend(_encoder_refs(i, encoder))
    refs.extend(_head_refs(model, backbone))
    if roles is not None:
        wanted = expand_roles(roles)
        refs = [r for r in refs if r.role in wanted]
    if layers is not None:
        n = len(encoders)
        indices = set()
        for i in layers:
            if not -n <= i < n:
                raise ValueError(f"layer index {i} is outside the encoder's {n} layers")
            indices.add(i % n)
        refs = [r for r in refs if r.layer_index in indices]
    if pattern is not None:
        regex = re.compile(pattern)
        refs = [r for r in refs if regex.search(r.path)]
    return refs


_ROLE_GROUPS = {
    "attention": ATTENTION_ROLES,
    "ffn": FFN_ROLES,
    "encoder": ENCODER_DENSE_ROLES,
    "embeddings": EMBEDDING_ROLES,
    "layer_norm": LAYER_NORM_ROLES,
    "head": HEAD_ROLES,
}


def expand_roles(roles: Iterable[str]) -> set[str]:
    """Role names with groups expanded; ValueError naming any unknown role."""
    if isinstance(roles, str):
        roles = [roles]
    wanted = set()
    for role in roles:
        if role in _ROLE_GROUPS:
            wanted.update(_ROLE_GROUPS[role])
        elif role in ROLES:
            wanted.add(role)
        else:
            raise ValueError(f"unknown kernel role '{role}'; known roles: {list(ROLES)}, groups: {list(_ROLE_GROUPS)}")
    return wanted


def encoder_shapes(model) -> list[dict]:
    """Per encoder layer: hidden size, heads, head size and FFN width (these may differ after shrinking)."""
    shapes = []
    for encoder in encoder_layers(model):
        q = kernel_shape(encoder._self_attention_layer._query_dense)
        ffn = kernel_shape(encoder._feedforward_intermediate_dense)
        shapes.append({"hidden_dim": int(q[0]), "num_heads": int(q[1]), "head_dim": int(q[2]),
                       "intermediate_dim": int(ffn[1])})
    return shapes


def kernel_shape(layer) -> tuple:
    """The dense kernel shape of a Dense/EinsumDense, or the one a `LowRankEinsumDense` factorizes."""
    shape = getattr(layer, "kernel_shape", None)
    return tuple(int(d) for d in (shape if shape is not None else layer.kernel.shape))


def encoder_call_counts(model) -> list[int]:
    """How many times the backbone calls each of `encoder_layers(model)` in one forward pass (1 each, except
    for shared layers: ALBERT's groups, or `PrunedBertBackbone` specs with `shared_with`)."""
    backbone = get_backbone(model)
    encoders = encoder_layers(model)
    order = getattr(backbone, "encoder_call_order", None)
    if order is not None:
        return [order.count(i) for i in range(len(encoders))]
    repeats = getattr(backbone, "num_layers", None)
    return [max(1, (repeats or len(encoders)) // len(encoders))] * len(encoders)


def count_macs(model, sequence_length: int = 128) -> int:
    """Multiply-accumulates of one forward pass over one sequence (dense kernels + attention matmuls).

    Token-wise dense kernels count `sequence_length * kernel.size`; the pooler and classifier act on one
    token; attention scores and the weighted sum count `2 * S^2 * heads * head_dim` per layer, and DeBERTa-v3's
    disentangled attention adds its content-to-position and position-to-content scores, `2 * S * 2k * heads *
    head_dim` for bucket size k (the projections of the constant position table fold away at export). A shared layer
    (ALBERT, or cross-layer sharing) counts once per call; a low-rank projection counts both factors. Embedding
    lookups and LayerNorms are not MACs.
    """
    calls = encoder_call_counts(model)
    macs = 0
    for ref in find_kernels(model, roles=ENCODER_DENSE_ROLES + ("embedding_projection",)):
        times = calls[ref.layer_index] if ref.layer_index is not None else 1
        macs += sequence_length * ref.size * times
    for encoder, shape, times in zip(encoder_layers(model), encoder_shapes(model), calls):
        positions = sequence_length + 2 * getattr(encoder._self_attention_layer, "bucket_size", 0)
        macs += 2 * sequence_length * positions * shape["num_heads"] * shape["head_dim"] * times
    for ref in find_kernels(model, roles=HEAD_ROLES):
        macs += ref.size
    return int(macs)


def count_params(model) -> int:
    """Number of weights, counting a shared variable once."""
    seen = {}
    for w in model.weights:
        seen[id(w)] = w
    total = 0
    for w in seen.values():
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total
